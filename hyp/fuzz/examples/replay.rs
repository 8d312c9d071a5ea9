//! Replays fuzz inputs without libFuzzer, printing each decoded input first:
//! `cargo run -p hyptrace-fuzz --example replay -- TARGET FILE...`. A crash libFuzzer found
//! shows here as the input that caused it, then the panic. With `HYPTRACE_FUZZ_VERBOSE=1`
//! the hypercall target also prints every call and its answer.

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(target), files) = (args.next(), args.collect::<Vec<_>>()) else {
        eprintln!("usage: replay TARGET FILE...");
        std::process::exit(2);
    };
    let Some(&(_, run, describe)) = hyptrace_fuzz::TARGETS.iter().find(|t| t.0 == target) else {
        eprintln!("replay: no target {target}");
        std::process::exit(2);
    };
    // With HYPTRACE_FUZZ_VERBOSE set, the hypercall target prints every call and answer.
    if std::env::var_os("HYPTRACE_FUZZ_VERBOSE").is_some() {
        hyptrace_fuzz::hypercall::VERBOSE.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    for file in files {
        let data = std::fs::read(&file).unwrap_or_else(|e| panic!("{file}: {e}"));
        println!("{file}: {}", describe(&data));
        run(&data);
        println!("{file}: passed");
    }
}
