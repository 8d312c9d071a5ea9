//! `cargo xtask fuzz [TARGET] [--seconds N] [--seed N] [--runs N] [--update-seeds]`: builds
//! the coverage-guided fuzz targets of `hyp/fuzz` with `cargo fuzz` (installed if missing)
//! and runs each under libFuzzer, then prints one line of figures per target.
//!
//! - Targets are built without a sanitizer (`-s none`: safe Rust needs none, and it works on
//!   the stable toolchain) and with debug assertions and overflow checks.
//! - Each target's working corpus is `<target>/fuzz/corpus/TARGET`; the committed seed
//!   corpus `hyp/fuzz/corpus/TARGET` is read alongside it. `--update-seeds` then replaces the
//!   seeds with the smallest set of inputs covering what seeds and working corpus cover
//!   (libFuzzer's `-set_cover_merge=1`), keeping hand-named seeds.
//! - A crash stops the run: the input is saved under `<target>/fuzz/artifacts/TARGET/` and the
//!   error says how to replay it.
//! - `cargo xtask test` runs every target for [`CI_SECONDS`] with seed [`CI_SEED`].

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::workspace;

/// Seconds per target in `cargo xtask test`.
pub const CI_SECONDS: u64 = 30;
/// libFuzzer seed in `cargo xtask test`.
pub const CI_SEED: u64 = 1;

/// The cargo-fuzz release installed when it is missing.
const CARGO_FUZZ_VERSION: &str = "0.13.2";
/// The fuzz crate, relative to the workspace root.
const FUZZ_DIR: &str = "hyp/fuzz";
/// libFuzzer's memory limits: a target using more has a bug (`-rss_limit_mb`,
/// `-malloc_limit_mb`), and its per-input time limit in seconds (`-timeout`).
const RSS_LIMIT_MB: u64 = 2048;
const MALLOC_LIMIT_MB: u64 = 512;
const INPUT_TIMEOUT_S: u64 = 10;

/// Options of `cargo xtask fuzz`.
#[derive(Debug, Args)]
pub struct FuzzArgs {
    /// Fuzz only this target [default: all of them].
    #[arg(value_name = "TARGET", value_parser = clap::builder::PossibleValuesParser::new(target_names()))]
    pub target: Option<String>,
    /// Seconds per target.
    #[arg(long, value_name = "N", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub seconds: u64,
    /// libFuzzer's seed [default: chosen by libFuzzer, and printed].
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// Stop a target after this many executions (or at --seconds, whichever comes first).
    #[arg(long, value_name = "N")]
    pub runs: Option<u64>,
    /// Longest input libFuzzer makes [default: 64 KiB for tracedat, 4 KiB for the others].
    #[arg(long, value_name = "BYTES")]
    pub max_len: Option<usize>,
    /// Afterwards, replace the committed seed corpus with the smallest set of inputs that
    /// covers what it and this run's corpus cover.
    #[arg(long)]
    pub update_seeds: bool,
    /// Instead of fuzzing, measure the source lines of the code under test that the seeds and
    /// the working corpus reach (`cargo fuzz coverage`, then `llvm-cov report`; needs the
    /// `llvm-tools` rustup component).
    #[arg(long, conflicts_with_all = ["seconds", "seed", "runs", "update_seeds", "max_len"])]
    pub coverage: bool,
}

/// The source files each target is there to exercise, for `--coverage`.
fn code_under_test(name: &str) -> &'static [&'static str] {
    match name {
        "hypercall" => &[
            "hyp/src/hypercall.rs",
            "hyp/src/tracing/mod.rs",
            "hyp/src/tracing/memory_rules.rs",
            "hyp/src/tracing/ownership.rs",
            "hyp/src/tracing/host_memory.rs",
            "hyp/abi/src/calls.rs",
            "hyp/abi/src/pack.rs",
        ],
        "pack" => &["hyp/abi/src/pack.rs"],
        "ring" => &[
            "hyp/ring/src/lib.rs",
            "hyp/ring/src/control.rs",
            "hyp/ring/src/writer.rs",
            "hyp/ring/src/desc.rs",
            "hyp/ring/src/page_io.rs",
        ],
        "tracedat" => &[
            "host-shim/tracedat/src/reader.rs",
            "host-shim/tracedat/src/event_format.rs",
            "host-shim/tracedat/src/page.rs",
            "host-shim/tracedat/src/report/mod.rs",
            "host-shim/tracedat/src/report/decode.rs",
        ],
        _ => &[],
    }
}

/// The target `args` names, or all of them.
fn selected(args: &FuzzArgs) -> Vec<&str> {
    match &args.target {
        Some(t) => vec![t.as_str()],
        None => target_names(),
    }
}

fn target_names() -> Vec<&'static str> {
    hyptrace_fuzz::TARGETS.iter().map(|t| t.0).collect()
}

/// What libFuzzer reported at the end of a run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Figures {
    /// Inputs executed.
    pub executions: u64,
    /// Executions per second.
    pub per_second: u64,
    /// Coverage: instrumented edges reached (`cov:`).
    pub edges: u64,
    /// Features (edges with hit counts, comparisons) reached (`ft:`).
    pub features: u64,
    /// Inputs in the corpus at the end.
    pub corpus: u64,
    /// Peak resident memory, MiB.
    pub peak_rss_mb: u64,
}

impl Figures {
    /// Parses libFuzzer's output: the `stat::` lines of `-print_final_stats=1` and the last
    /// status line (`#N DONE cov: E ft: F corp: C/...`).
    pub fn parse(output: &str) -> Option<Self> {
        let stat = |name: &str| {
            output.lines().find_map(|l| {
                l.strip_prefix(name)?
                    .trim_start_matches(':')
                    .trim()
                    .parse()
                    .ok()
            })
        };
        let status = output
            .lines()
            .rev()
            .find(|l| l.starts_with('#') && l.contains(" cov: "))?;
        let after = |key: &str| -> Option<u64> {
            let rest = status.split(key).nth(1)?.trim_start();
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        };
        Some(Self {
            executions: stat("stat::number_of_executed_units")?,
            per_second: stat("stat::average_exec_per_sec")?,
            edges: after(" cov: ")?,
            features: after(" ft: ")?,
            corpus: after(" corp: ")?,
            peak_rss_mb: stat("stat::peak_rss_mb").unwrap_or(0),
        })
    }
}

/// Where a target's files are.
struct Paths {
    binary: PathBuf,
    work: PathBuf,
    seeds: PathBuf,
    artifacts: PathBuf,
}

fn fuzz_target_dir() -> PathBuf {
    workspace::target_dir().join("fuzz")
}

fn host_triple() -> Result<String> {
    let out = workspace::output_checked({
        let mut c = Command::new("rustc");
        c.arg("-vV").current_dir(workspace::root());
        c
    })?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_string))
        .context("rustc -vV printed no host triple")
}

fn paths(name: &str, triple: &str) -> Paths {
    let dir = fuzz_target_dir();
    Paths {
        binary: dir.join(triple).join("release").join(name),
        work: dir.join("corpus").join(name),
        seeds: workspace::root().join(FUZZ_DIR).join("corpus").join(name),
        artifacts: dir.join("artifacts").join(name),
    }
}

/// `cargo fuzz`, with cargo's own bin directory on `PATH` (where `cargo install` puts it).
fn cargo_fuzz(args: &[&str]) -> Command {
    let mut command = workspace::cargo(&["fuzz"]);
    command.args(args);
    let path = std::env::var_os("PATH").unwrap_or_default();
    let on_path = |dir: &Path| std::env::split_paths(&path).any(|p| p == dir);
    if let Some(bin) = cargo_bin_dir().filter(|b| !on_path(b)) {
        let mut dirs = vec![bin];
        dirs.extend(std::env::split_paths(&path));
        if let Ok(joined) = std::env::join_paths(dirs) {
            command.env("PATH", joined);
        }
    }
    command
}

fn cargo_bin_dir() -> Option<PathBuf> {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")))?;
    Some(home.join("bin"))
}

/// Installs cargo-fuzz unless `cargo fuzz --version` works.
fn ensure_cargo_fuzz() -> Result<()> {
    let works = cargo_fuzz(&["--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if works {
        return Ok(());
    }
    eprintln!(
        "xtask: cargo-fuzz is missing; installing cargo-fuzz {CARGO_FUZZ_VERSION} from crates.io"
    );
    let command = workspace::cargo(&[
        "install",
        "cargo-fuzz",
        "--locked",
        "--version",
        CARGO_FUZZ_VERSION,
    ]);
    workspace::run_checked(command, "installing cargo-fuzz")
}

/// Builds every target.
fn build(triple: &str) -> Result<()> {
    ensure_cargo_fuzz()?;
    let target_dir = fuzz_target_dir();
    let target_dir = target_dir.to_string_lossy();
    let command = cargo_fuzz(&[
        "build",
        "--fuzz-dir",
        FUZZ_DIR,
        "--sanitizer",
        "none",
        "--debug-assertions",
        "--features",
        "libfuzzer",
        "--target",
        triple,
        "--target-dir",
        &target_dir,
    ]);
    workspace::run_checked(command, "building the fuzz targets")
}

/// Runs one target for `seconds` and returns libFuzzer's figures.
fn run_target(name: &str, triple: &str, args: &FuzzArgs) -> Result<Figures> {
    let p = paths(name, triple);
    for dir in [&p.work, &p.artifacts, &p.seeds] {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut command = Command::new(&p.binary);
    command
        .arg(&p.work)
        .arg(&p.seeds)
        .arg(format!("-max_total_time={}", args.seconds))
        .arg(format!("-rss_limit_mb={RSS_LIMIT_MB}"))
        .arg(format!("-malloc_limit_mb={MALLOC_LIMIT_MB}"))
        .arg(format!("-timeout={INPUT_TIMEOUT_S}"))
        .arg(format!(
            "-max_len={}",
            args.max_len.unwrap_or(max_len(name))
        ))
        .arg("-print_final_stats=1")
        .arg(format!("-artifact_prefix={}/", p.artifacts.display()))
        .current_dir(workspace::root());
    if let Some(seed) = args.seed {
        command.arg(format!("-seed={seed}"));
    }
    if let Some(runs) = args.runs {
        command.arg(format!("-runs={runs}"));
    }
    eprintln!("xtask: $ {}", workspace::display_command(&command));
    let (status, text) = run_streaming(command, name)?;
    if !status.success() {
        let tail: Vec<&str> = text.lines().rev().take(30).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        let crash = text
            .lines()
            .find_map(|l| l.split("Test unit written to ").nth(1))
            .map(str::trim);
        match crash {
            Some(file) => bail!(
                "fuzz target {name} found a failing input, saved as {file}; replay it with \
                 `cargo run -p hyptrace-fuzz --example replay -- {name} {file}`, and make it \
                 a regression test in {FUZZ_DIR}/regressions/{name}/ before fixing it. \
                 libFuzzer's last lines:\n{}",
                tail.join("\n")
            ),
            None => bail!(
                "fuzz target {name} failed ({status}); libFuzzer's last lines:\n{}",
                tail.join("\n")
            ),
        }
    }
    let seed = text
        .lines()
        .find_map(|l| l.split("Seed: ").nth(1))
        .unwrap_or("?")
        .trim()
        .to_string();
    let figures = Figures::parse(&text)
        .with_context(|| format!("libFuzzer printed no final figures for {name}:\n{text}"))?;
    eprintln!(
        "xtask: fuzz {name}: seed {seed}, {} executions",
        figures.executions
    );
    if args.update_seeds {
        merge_into_seeds(name, &p)?;
    }
    Ok(figures)
}

/// Runs libFuzzer, showing its progress lines (`pulse`, at every power of two executions, and
/// `DONE`) as they come; returns its status and everything it printed.
fn run_streaming(mut command: Command, name: &str) -> Result<(std::process::ExitStatus, String)> {
    use std::io::{BufRead, BufReader};
    let mut child = command
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("could not start the {name} fuzz target"))?;
    let mut text = String::new();
    let stderr = child.stderr.take().context("libFuzzer's stderr")?;
    for line in BufReader::new(stderr).lines() {
        let line = line.context("reading libFuzzer's output")?;
        if line.contains("\tpulse ") || line.contains("\tDONE ") {
            eprintln!("xtask: fuzz {name}: {}", line.replace('\t', " "));
        }
        text.push_str(&line);
        text.push('\n');
    }
    let status = child.wait().context("waiting for libFuzzer")?;
    Ok((status, text))
}

/// The longest input per target: a trace.dat needs room for a few pages.
fn max_len(name: &str) -> usize {
    if name == "tracedat" {
        64 * 1024
    } else {
        4096
    }
}

/// Replaces the seed corpus with the smallest set of inputs, from the seeds and the working
/// corpus together, that reaches every feature either reaches (libFuzzer's
/// `-set_cover_merge=1`), so the committed corpus grows only with coverage.
fn merge_into_seeds(name: &str, p: &Paths) -> Result<()> {
    let merged = fuzz_target_dir().join("merged").join(name);
    if merged.exists() {
        std::fs::remove_dir_all(&merged)
            .with_context(|| format!("removing {}", merged.display()))?;
    }
    std::fs::create_dir_all(&merged).with_context(|| format!("creating {}", merged.display()))?;
    let mut command = Command::new(&p.binary);
    command
        .arg("-set_cover_merge=1")
        .arg(format!("-max_len={}", max_len(name)))
        .arg(&merged)
        .arg(&p.seeds)
        .arg(&p.work);
    workspace::output_checked(command)?;
    let count = std::fs::read_dir(&merged)?.count();
    if count == 0 {
        bail!("merging the {name} corpus kept no input; the seeds are left as they were");
    }
    for entry in std::fs::read_dir(&p.seeds)? {
        let path = entry?.path();
        if path.is_file() && !is_kept_seed(&path) {
            std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
        }
    }
    for entry in std::fs::read_dir(&merged)? {
        let path = entry?.path();
        let to = p
            .seeds
            .join(path.file_name().context("a merged input without a name")?);
        std::fs::copy(&path, &to).with_context(|| format!("copying to {}", to.display()))?;
    }
    eprintln!("xtask: fuzz {name}: {count} seeds in {}", p.seeds.display());
    Ok(())
}

/// Seeds kept whatever the merge says: hand-made inputs, named rather than hashed (libFuzzer
/// names its inputs by their SHA-1, 40 hex digits).
fn is_kept_seed(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    !(name.len() == 40 && name.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The figures as a table.
pub fn table(rows: &[(&str, Figures)]) -> String {
    let mut s =
        String::from("target       executions     exec/s   edges  features  corpus  peak RSS\n");
    for (name, f) in rows {
        s.push_str(&format!(
            "{name:<10} {:>12} {:>10} {:>7} {:>9} {:>7} {:>6} MB\n",
            f.executions, f.per_second, f.edges, f.features, f.corpus, f.peak_rss_mb
        ));
    }
    s
}

/// Line coverage of one target's code under test: (lines, lines reached) per file and in all.
fn coverage(name: &str, triple: &str) -> Result<String> {
    let p = paths(name, triple);
    let cov_dir = workspace::target_dir().join("fuzz-coverage");
    let cov_dir_text = cov_dir.to_string_lossy();
    let seeds = p.seeds.to_string_lossy();
    let work = p.work.to_string_lossy();
    let mut corpora = vec![seeds.as_ref()];
    if p.work.is_dir() {
        corpora.push(work.as_ref());
    }
    let mut args = vec![
        "coverage",
        "--fuzz-dir",
        FUZZ_DIR,
        "--sanitizer",
        "none",
        "--features",
        "libfuzzer",
        "--target",
        triple,
        "--target-dir",
        &cov_dir_text,
        name,
    ];
    args.extend(corpora);
    workspace::run_checked(cargo_fuzz(&args), "cargo fuzz coverage")?;
    let profile = workspace::root()
        .join(FUZZ_DIR)
        .join("coverage")
        .join(name)
        .join("coverage.profdata");
    let binary = cov_dir.join(triple).join("release").join(name);
    let sysroot = workspace::output_checked({
        let mut c = Command::new("rustc");
        c.args(["--print", "sysroot"])
            .current_dir(workspace::root());
        c
    })?;
    let sysroot = String::from_utf8_lossy(&sysroot.stdout).trim().to_string();
    let llvm_cov = Path::new(&sysroot)
        .join("lib/rustlib")
        .join(triple)
        .join("bin/llvm-cov");
    if !llvm_cov.exists() {
        bail!(
            "{} is missing; install it with `rustup component add llvm-tools`",
            llvm_cov.display()
        );
    }
    let mut report = Command::new(&llvm_cov);
    report
        .arg("report")
        .arg(&binary)
        .arg(format!("-instr-profile={}", profile.display()))
        .args(code_under_test(name))
        .current_dir(workspace::root());
    let out = workspace::output_checked(report)?;
    // The coverage build leaves its raw data in the fuzz crate; only the report is wanted.
    let _ = std::fs::remove_dir_all(workspace::root().join(FUZZ_DIR).join("coverage"));
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `cargo xtask fuzz`.
pub fn run(args: &FuzzArgs) -> Result<()> {
    let triple = host_triple()?;
    if args.coverage {
        ensure_cargo_fuzz()?;
        for name in selected(args) {
            let report = coverage(name, &triple)?;
            println!(
                "coverage of the code the {name} target exercises (seeds and working corpus):"
            );
            print!("{report}");
        }
        return Ok(());
    }
    build(&triple)?;
    let mut rows = Vec::new();
    for name in selected(args) {
        let figures = run_target(name, &triple, args)?;
        rows.push((name, figures));
    }
    print!("{}", table(&rows));
    Ok(())
}

/// `cargo xtask test`'s fuzz step: every target for [`CI_SECONDS`] with seed [`CI_SEED`].
pub fn ci() -> Result<()> {
    run(&FuzzArgs {
        target: None,
        seconds: CI_SECONDS,
        seed: Some(CI_SEED),
        runs: None,
        max_len: None,
        update_seeds: false,
        coverage: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_come_from_the_final_stats_and_the_last_status_line() {
        let out = "INFO: Seed: 1\n\
            #2\tINITED cov: 10 ft: 11 corp: 1/1b exec/s: 0 rss: 30Mb\n\
            #4554012\tDONE   cov: 245 ft: 894 corp: 216/57Kb lim: 4096 exec/s: 284625 rss: 28Mb\n\
            Done 4554012 runs in 16 second(s)\n\
            stat::number_of_executed_units: 4554012\n\
            stat::average_exec_per_sec:     284625\n\
            stat::new_units_added:          216\n\
            stat::slowest_unit_time_sec:    0\n\
            stat::peak_rss_mb:              28\n";
        assert_eq!(
            Figures::parse(out),
            Some(Figures {
                executions: 4_554_012,
                per_second: 284_625,
                edges: 245,
                features: 894,
                corpus: 216,
                peak_rss_mb: 28,
            })
        );
        assert_eq!(Figures::parse("no stats at all"), None);
    }

    #[test]
    fn every_target_has_a_seed_directory_in_the_fuzz_crate() {
        for name in target_names() {
            let dir = workspace::root().join(FUZZ_DIR).join("corpus").join(name);
            assert!(dir.is_dir(), "{}", dir.display());
        }
    }
}
