//! The `cargo xtask` command line.
//!
//! Each subcommand has its own argument struct so that new options (for example the trace
//! recording options planned for `run`) are added in one place, next to the function that
//! turns them into semihosting words for the guest.

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::build::Profile;

/// The most CPUs a QEMU run may have: the hypervisor's per-CPU tables are this large.
const MAX_CPUS: i64 = hyp::memmap::MAX_CPUS as i64;

/// hyptrace's build, run, test and bench driver.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build the `hyp` (EL2) and `host-shim` (EL1) bare-metal images.
    Build(BuildArgs),
    /// Build, then boot both images in QEMU and stream the console.
    Run(RunArgs),
    /// Format check, clippy, host tests, loom model checks, then the in-QEMU harness.
    Test(TestArgs),
    /// Run benchmarks on the development machine.
    Bench(BenchArgs),
    /// Check (and as root, install) QEMU; print the machine model that will be used.
    QemuCheck,
}

/// Options for building the images.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Build the debug profile instead of release.
    #[arg(long)]
    pub debug: bool,
}

impl BuildArgs {
    /// The cargo profile selected by these options.
    pub fn profile(&self) -> Profile {
        if self.debug {
            Profile::Debug
        } else {
            Profile::Release
        }
    }
}

/// Options of `cargo xtask run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// How the images are built.
    #[command(flatten)]
    pub build: BuildArgs,
    /// Number of virtual CPUs.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=MAX_CPUS))]
    pub cpus: u16,
    /// Kill QEMU after this many seconds.
    #[arg(long, value_name = "SECS", default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: u64,
    /// Do not echo the console; it is still printed (last lines) on failure.
    #[arg(long)]
    pub quiet: bool,
    /// Extra words passed to the guest after `hyptrace run` (semihosting command line).
    #[arg(last = true, value_name = "WORDS")]
    pub extra: Vec<String>,
}

impl RunArgs {
    /// The guest's semihosting command line after the program name `hyptrace`.
    ///
    /// Options that change what the guest does (e.g. future trace-recording options such as
    /// `--buffer-size-kb` or `--events`) become words here, before the free extra words.
    pub fn guest_words(&self) -> Vec<String> {
        let mut words = vec!["run".to_string()];
        words.extend(self.extra.iter().cloned());
        words
    }
}

/// Options of `cargo xtask test`.
#[derive(Debug, Args)]
pub struct TestArgs {
    /// CPU counts for the in-QEMU harness, run in this order.
    #[arg(
        long,
        value_name = "N,N,...",
        value_delimiter = ',',
        default_values_t = [4u16, 1],
        value_parser = clap::value_parser!(u16).range(1..=MAX_CPUS)
    )]
    pub cpus_list: Vec<u16>,
    /// Run only the harness tests whose name contains SUBSTR (passed to the guest).
    #[arg(long, value_name = "SUBSTR")]
    pub filter: Option<String>,
    /// Seed for the harness's randomised tests (passed to the guest).
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// Kill each QEMU run after this many seconds.
    #[arg(long, value_name = "SECS", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: u64,
    /// Skip the host steps (fmt, clippy, host tests, loom).
    #[arg(long)]
    pub skip_host: bool,
    /// Skip building the images and the in-QEMU harness.
    #[arg(long)]
    pub skip_qemu: bool,
}

impl TestArgs {
    /// The guest's semihosting command line after the program name `hyptrace`.
    pub fn guest_words(&self) -> Vec<String> {
        let mut words = vec!["test".to_string()];
        if let Some(filter) = &self.filter {
            words.push(format!("filter={filter}"));
        }
        if let Some(seed) = self.seed {
            words.push(format!("seed={seed}"));
        }
        words
    }
}

/// Options of `cargo xtask bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Which benchmark to run; all of them when omitted.
    #[arg(value_enum)]
    pub target: Option<BenchTarget>,
}

/// The benchmarks `cargo xtask bench` knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BenchTarget {
    /// The ring-buffer writer and reader on the development machine (`hyp`'s `ring` bench).
    Ring,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("cargo-xtask").chain(args.iter().copied()))
            .unwrap_or_else(|e| panic!("{args:?} should parse: {e}"))
    }

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn run_defaults_and_extra_words() {
        let Command::Run(run) = parse(&["run", "--", "alpha", "beta"]).command else {
            panic!("expected run");
        };
        assert_eq!(run.cpus, 4);
        assert_eq!(run.timeout, 120);
        assert!(!run.quiet);
        assert_eq!(run.build.profile(), Profile::Release);
        assert_eq!(run.guest_words(), ["run", "alpha", "beta"]);
    }

    #[test]
    fn test_defaults() {
        let Command::Test(test) = parse(&["test"]).command else {
            panic!("expected test");
        };
        assert_eq!(test.cpus_list, [4, 1]);
        assert_eq!(test.timeout, 300);
        assert_eq!(test.guest_words(), ["test"]);
    }

    #[test]
    fn test_filter_seed_and_cpus_list() {
        let Command::Test(test) = parse(&[
            "test",
            "--cpus-list",
            "2,8,1",
            "--filter",
            "ring::",
            "--seed",
            "42",
            "--skip-host",
        ])
        .command
        else {
            panic!("expected test");
        };
        assert_eq!(test.cpus_list, [2, 8, 1]);
        assert!(test.skip_host && !test.skip_qemu);
        assert_eq!(test.guest_words(), ["test", "filter=ring::", "seed=42"]);
    }

    #[test]
    fn cpu_counts_are_bounded() {
        let too_many = (MAX_CPUS + 1).to_string();
        assert!(Cli::try_parse_from(["x", "run", "--cpus", "0"]).is_err());
        assert!(Cli::try_parse_from(["x", "run", "--cpus", too_many.as_str()]).is_err());
        assert!(Cli::try_parse_from(["x", "test", "--cpus-list", "4,0"]).is_err());
        assert!(Cli::try_parse_from(["x", "test", "--timeout", "0"]).is_err());
    }

    #[test]
    fn bench_target_is_optional() {
        let Command::Bench(all) = parse(&["bench"]).command else {
            panic!("expected bench");
        };
        assert_eq!(all.target, None);
        let Command::Bench(ring) = parse(&["bench", "ring"]).command else {
            panic!("expected bench");
        };
        assert_eq!(ring.target, Some(BenchTarget::Ring));
    }
}
