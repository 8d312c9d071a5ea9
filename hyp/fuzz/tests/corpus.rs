//! Every input of the seed corpus (`corpus/TARGET/`) and every input that once found a bug
//! (`regressions/TARGET/`) is replayed through its target, without libFuzzer: a fix that
//! regresses fails `cargo test`.

use std::path::{Path, PathBuf};

fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("reading a corpus directory").path())
        .filter(|p| p.is_file() && p.extension().is_none_or(|e| e != "md"))
        .collect();
    files.sort();
    files
}

#[test]
fn seed_corpus_and_regressions_pass() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (name, run, _) in hyptrace_fuzz::TARGETS {
        let seeds = inputs(&root.join("corpus").join(name));
        assert!(!seeds.is_empty(), "target {name} has no seed corpus");
        let regressions = inputs(&root.join("regressions").join(name));
        for file in seeds.iter().chain(&regressions) {
            let data = std::fs::read(file).expect("reading an input");
            let outcome = std::panic::catch_unwind(|| run(&data));
            assert!(
                outcome.is_ok(),
                "{name}: {} fails; replay it with `cargo run -p hyptrace-fuzz --example \
                 replay -- {name} {}`",
                file.display(),
                file.display()
            );
        }
    }
}
