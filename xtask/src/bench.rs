//! `cargo xtask bench [TARGET]`: benchmarks on the development machine.

use anyhow::Result;
use clap::ValueEnum;

use crate::cli::{BenchArgs, BenchTarget};
use crate::workspace;

/// Runs the selected benchmark, or all of them in declaration order.
pub fn run(args: &BenchArgs) -> Result<()> {
    let targets = match args.target {
        Some(target) => vec![target],
        None => BenchTarget::value_variants().to_vec(),
    };
    for target in targets {
        let (cargo_args, what) = bench_command(target);
        workspace::run_checked(workspace::cargo(cargo_args), what)?;
    }
    Ok(())
}

/// The cargo arguments running one benchmark, and its name for messages.
fn bench_command(target: BenchTarget) -> (&'static [&'static str], &'static str) {
    match target {
        BenchTarget::Ring => (
            &["bench", "-p", "hyp", "--bench", "ring"],
            "bench ring (hyp/benches/ring.rs)",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_bench_command() {
        assert_eq!(
            bench_command(BenchTarget::Ring).0,
            ["bench", "-p", "hyp", "--bench", "ring"]
        );
    }
}
