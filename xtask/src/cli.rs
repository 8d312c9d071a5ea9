//! The `cargo xtask` command line.
//!
//! Each subcommand has its own argument struct; options that change what the guest does are
//! turned into its semihosting words next to the struct (`guest_words`).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::build::Profile;

/// The most CPUs a QEMU run may have: the hypervisor's per-CPU tables are this large.
const MAX_CPUS: i64 = hyptrace_platform::memmap::MAX_CPUS as i64;

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
    /// Build, then boot both images in QEMU and record a trace (`record` is the same, as in
    /// `trace-cmd record`).
    #[command(visible_alias = "record")]
    Run(RunArgs),
    /// Format check, clippy, host tests, loom model checks, then the in-QEMU harness.
    Test(TestArgs),
    /// Trace at full speed on every CPU for minutes with randomized control calls; check
    /// exact accounting.
    Soak(SoakArgs),
    /// Run benchmarks on the development machine.
    Bench(BenchArgs),
    /// Check (and as root, install) QEMU; print the machine model that will be used.
    QemuCheck,
    /// Print a trace.dat's events as `trace-cmd report` does, with hyptrace's own decoder.
    Report(crate::report::ReportArgs),
    /// Run the coverage-guided fuzz targets (hypercall, pack, ring, tracedat) with libFuzzer.
    Fuzz(crate::fuzz_cmd::FuzzArgs),
}

/// Options for building the images.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Build the debug profile instead of release.
    #[arg(long)]
    pub debug: bool,
    /// Also build the test-only hypervisor that answers the fault-injection and printk
    /// benchmark calls (under target/fault-injection/; never for real use).
    #[arg(long)]
    pub fault_injection: bool,
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

/// Options of `cargo xtask soak`.
#[derive(Debug, Args)]
pub struct SoakArgs {
    /// How long to soak, in minutes (fractions allowed).
    #[arg(long, default_value_t = 10.0)]
    pub minutes: f64,
    /// Number of virtual CPUs.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=MAX_CPUS))]
    pub cpus: u16,
    /// QEMU CPU model.
    #[arg(long, value_name = "MODEL", default_value = crate::qemu::DEFAULT_CPU_MODEL, value_parser = clap::builder::PossibleValuesParser::new(crate::qemu::CPU_MODELS))]
    pub cpu_model: String,
    /// Ring-buffer size per CPU, in KiB.
    #[arg(long, value_name = "KIB", default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=MAX_BUFFER_KB))]
    pub buffer_size_kb: u64,
    /// Seed of the control-call generator (printed by the guest; default: from the clock).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Do not echo the console (progress and the verdict are still printed).
    #[arg(long)]
    pub quiet: bool,
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
    /// QEMU CPU model.
    #[arg(long, value_name = "MODEL", default_value = crate::qemu::DEFAULT_CPU_MODEL, value_parser = clap::builder::PossibleValuesParser::new(crate::qemu::CPU_MODELS))]
    pub cpu_model: String,
    /// Ring-buffer size per CPU, in KiB (`-b`, as `trace-cmd record -b`): rounded up to whole
    /// pages of 4048 event bytes (at least 2), and at most what the hypervisor's pack and
    /// descriptor pool and the guest's memory allow for --cpus, checked before QEMU starts
    /// (the error names the largest that fits).
    #[arg(short = 'b', long, value_name = "KIB", default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=MAX_BUFFER_KB))]
    pub buffer_size_kb: u64,
    /// How long the workload runs and the trace records, in seconds (e.g. 2, 0.5); 0 records
    /// until Ctrl-C, as `trace-cmd record` does (or until the guest's page store is full).
    /// Ctrl-C during any recording stops it early and saves everything read so far.
    #[arg(long, value_name = "SECS", default_value = "2", value_parser = parse_duration_ms)]
    pub duration: DurationMs,
    /// How often the host drains every CPU's buffer, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub period_ms: u64,
    /// Events to enable, comma-separated (default: all). Names: see `hyptrace_abi::events::ALL`.
    #[arg(short = 'e', long, value_name = "NAME,NAME,...", value_parser = parse_events)]
    pub events: Option<EventList>,
    /// Where trace.dat goes: absolute, or relative to the current directory (as
    /// `trace-cmd record -o`) [default: target/trace.dat in the workspace].
    #[arg(short = 'o', long, value_name = "PATH")]
    pub output: Option<PathBuf>,
    /// Record the host's own events too (hypercalls and SMCs it issues, the reader's polls
    /// and swaps, workload phases) in trace.dat's top-level buffer, with the hypervisor's in
    /// the `hypervisor` instance, on one clock [default].
    #[arg(long, overrides_with = "no_host_events")]
    pub host_events: bool,
    /// Record the hypervisor's events only (in the top-level buffer).
    #[arg(long, overrides_with = "host_events")]
    pub no_host_events: bool,
    /// Stop the recording after this many seconds, as Ctrl-C does (the file keeps what was
    /// read, and the run fails), and kill QEMU if it has not ended 120 s later [default: the
    /// duration + 120 s; with --duration 0, a day].
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: Option<u64>,
    /// Do not echo the console; it is still printed (last lines) on failure.
    #[arg(long)]
    pub quiet: bool,
    /// Print the summary as JSON on stdout (the console and the human summary go to
    /// stderr): per CPU of both buffers written, read, lost and pages, the events per buffer,
    /// name and CPU, and whether Ctrl-C or the timeout stopped the recording.
    #[arg(long)]
    pub json: bool,
    /// Extra words passed to the guest after the options (semihosting command line).
    #[arg(last = true, value_name = "WORDS")]
    pub extra: Vec<String>,
}

/// Where `run` writes trace.dat unless `--output` says otherwise (relative to the workspace
/// root, which is QEMU's working directory), and what `report` reads by default.
pub const DEFAULT_OUTPUT: &str = "target/trace.dat";

/// A path the user typed: absolute as given, relative to the current directory (`cwd`) as
/// trace-cmd takes them; none: `default`, relative to the workspace root.
pub fn user_path(given: Option<&std::path::Path>, cwd: &std::path::Path, default: &str) -> PathBuf {
    match given {
        Some(p) => cwd.join(p),
        None => PathBuf::from(default),
    }
}

/// The largest `--buffer-size-kb`: 256 MiB per CPU, far more than the guest's RAM allows for
/// several CPUs, but a bound that keeps the guest's arithmetic in range.
pub const MAX_BUFFER_KB: u64 = 256 * 1024;

/// The longest `--duration`, in seconds (a day): beyond that a typo is more likely than intent.
const MAX_DURATION_SECS: f64 = 86_400.0;

/// How much longer than the recording QEMU may take by default (boot, final drain, writing the
/// file through semihosting), in seconds.
pub const RUN_TIMEOUT_SLACK_SECS: u64 = 120;

/// A recording duration, in whole milliseconds; 0: until Ctrl-C.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DurationMs(pub u64);

impl DurationMs {
    /// Whether the recording runs until Ctrl-C (`--duration 0`).
    pub fn until_interrupted(self) -> bool {
        self.0 == 0
    }
}

/// A validated, comma-separated list of event names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventList(pub Vec<String>);

impl RunArgs {
    /// [`guest_words_to`](Self::guest_words_to) with the guest writing `--output` itself (the
    /// tests' view of the options).
    #[cfg(test)]
    pub fn guest_words(&self) -> Vec<String> {
        self.guest_words_to(&self.output_path().display().to_string())
    }

    /// `--output` made absolute against the current directory, or the default (relative to
    /// the workspace root, QEMU's working directory).
    pub fn output_path(&self) -> PathBuf {
        let cwd = std::env::current_dir().unwrap_or_default();
        user_path(self.output.as_deref(), &cwd, DEFAULT_OUTPUT)
    }

    /// The guest's semihosting command line after the program name `hyptrace`: the mode, every
    /// recording option (always explicit, so the printed QEMU command shows them) with the
    /// guest writing to `output` (`cargo xtask run` passes `--output` plus `.partial`, renamed
    /// when the run ends well), then the free extra words.
    pub fn guest_words_to(&self, output: &str) -> Vec<String> {
        let mut words = vec![
            "run".to_string(),
            format!("duration_ms={}", self.duration.0),
            format!("buffer_kb={}", self.buffer_size_kb),
            format!("period_ms={}", self.period_ms),
        ];
        if let Some(events) = &self.events {
            words.push(format!("events={}", events.0.join(",")));
        }
        words.push(format!("output={output}"));
        words.push(format!(
            "host_events={}",
            u8::from(self.records_host_events())
        ));
        words.extend(self.extra.iter().cloned());
        words
    }

    /// Whether the host records its own events (`--host-events`, the default, unless
    /// `--no-host-events` came last).
    pub fn records_host_events(&self) -> bool {
        !self.no_host_events
    }

    /// The QEMU timeout: `--timeout`, else the duration (a day for `--duration 0`) rounded
    /// up plus [`RUN_TIMEOUT_SLACK_SECS`].
    pub fn timeout_secs(&self) -> u64 {
        let ms = if self.duration.until_interrupted() {
            MAX_DURATION_SECS as u64 * 1000
        } else {
            self.duration.0
        };
        self.timeout
            .unwrap_or(ms.div_ceil(1000) + RUN_TIMEOUT_SLACK_SECS)
    }
}

/// Parses `--duration`: seconds, integer or decimal, 0 (until Ctrl-C) or more than 0 and at
/// most a day, rounded to whole milliseconds (at least 1).
fn parse_duration_ms(text: &str) -> Result<DurationMs, String> {
    let secs: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a number of seconds (e.g. 2 or 0.5)"))?;
    if secs == 0.0 {
        return Ok(DurationMs(0));
    }
    if !(0.0..=MAX_DURATION_SECS).contains(&secs) {
        return Err(format!(
            "`{text}` is out of range: the duration is 0 (until Ctrl-C) or more, and at most \
             {MAX_DURATION_SECS} seconds"
        ));
    }
    // In range by the check above: at most 86_400_000, at least 1 after `max`.
    Ok(DurationMs(((secs * 1000.0).round() as u64).max(1)))
}

/// Parses `--events`: names of `hyptrace_abi::events::ALL` and `bprint` (`hyp_printk`'s),
/// comma-separated, no duplicates.
fn parse_events(text: &str) -> Result<EventList, String> {
    let valid = || {
        hyptrace_abi::events::ALL
            .iter()
            .chain([&hyptrace_abi::printk::DESC])
            .map(|e| e.name)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut names: Vec<String> = Vec::new();
    for name in text.split(',').map(str::trim) {
        if name.is_empty() {
            return Err(format!(
                "empty event name in `{text}`; give names separated by single commas \
                 (valid: {})",
                valid()
            ));
        }
        if hyptrace_abi::events::by_name(name).is_none() && name != hyptrace_abi::printk::NAME {
            return Err(format!("unknown event `{name}`; valid names: {}", valid()));
        }
        if names.iter().any(|n| n == name) {
            return Err(format!("event `{name}` is listed twice"));
        }
        names.push(name.to_string());
    }
    Ok(EventList(names))
}

/// Options of `cargo xtask test`.
#[derive(Debug, Args)]
pub struct TestArgs {
    /// CPU counts for the in-QEMU harness, run in this order on every `--cpu-model`
    /// [default: the CI matrix: 4 and 1 CPUs on max, 4 on cortex-a53 and neoverse-n1, 8 on
    /// max].
    #[arg(
        long,
        value_name = "N,N,...",
        value_delimiter = ',',
        value_parser = clap::value_parser!(u16).range(1..=MAX_CPUS)
    )]
    pub cpus_list: Vec<u16>,
    /// QEMU CPU models for the harness [default: see --cpus-list; with --cpus-list alone: max].
    #[arg(long, value_name = "MODEL,...", value_delimiter = ',', value_parser = clap::builder::PossibleValuesParser::new(crate::qemu::CPU_MODELS))]
    pub cpu_model: Vec<String>,
    /// Run only the harness tests whose name contains SUBSTR (passed to the guest).
    #[arg(long, value_name = "SUBSTR")]
    pub filter: Option<String>,
    /// Seed for the harness's randomised tests (passed to the guest).
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// Kill each QEMU run after this many seconds.
    #[arg(long, value_name = "SECS", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: u64,
    /// Skip the host steps (fmt, clippy, host tests, package, loom, examples, fuzz).
    #[arg(long)]
    pub skip_host: bool,
    /// Skip building the images and the in-QEMU harness.
    #[arg(long)]
    pub skip_qemu: bool,
}

/// The harness runs of `cargo xtask test` without `--cpus-list` or `--cpu-model`: every
/// supported CPU count on the default model, two other cores, and the most CPUs once.
pub const DEFAULT_HARNESS_MATRIX: [(&str, u16); 5] = [
    ("max", 4),
    ("max", 1),
    ("cortex-a53", 4),
    ("neoverse-n1", 4),
    ("max", MAX_CPUS as u16),
];

impl TestArgs {
    /// The harness runs, as (CPU model, CPU count), in order.
    pub fn harness_matrix(&self) -> Vec<(String, u16)> {
        match (self.cpu_model.is_empty(), self.cpus_list.is_empty()) {
            (true, true) => DEFAULT_HARNESS_MATRIX
                .iter()
                .map(|(m, n)| (m.to_string(), *n))
                .collect(),
            (models_default, counts_default) => {
                let models = if models_default {
                    vec![crate::qemu::DEFAULT_CPU_MODEL.to_string()]
                } else {
                    self.cpu_model.clone()
                };
                let counts = if counts_default {
                    vec![4, 1]
                } else {
                    self.cpus_list.clone()
                };
                models
                    .iter()
                    .flat_map(|m| counts.iter().map(move |n| (m.clone(), *n)))
                    .collect()
            }
        }
    }

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
    /// Which benchmark to run alone; when omitted, the suite (docs/performance.md): one
    /// table and `<target>/bench/results.json`.
    #[arg(value_enum)]
    pub target: Option<BenchTarget>,
    /// Print only the table (no per-round progress, no guest console).
    #[arg(long)]
    pub quiet: bool,
    /// Only the deterministic instruction counts (QEMU's `-icount shift=0`, two boots that
    /// must agree) and their budgets.
    #[arg(long)]
    pub icount: bool,
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
        assert_eq!(run.buffer_size_kb, 64);
        assert_eq!(run.duration, DurationMs(2000));
        assert_eq!(run.period_ms, 10);
        assert_eq!(run.events, None);
        assert_eq!(run.output, None);
        assert_eq!(run.output_path(), PathBuf::from("target/trace.dat"));
        assert_eq!(run.timeout, None);
        assert_eq!(run.timeout_secs(), 122);
        assert!(!run.quiet);
        assert_eq!(run.build.profile(), Profile::Release);
        assert_eq!(
            run.guest_words(),
            [
                "run",
                "duration_ms=2000",
                "buffer_kb=64",
                "period_ms=10",
                "output=target/trace.dat",
                "host_events=1",
                "alpha",
                "beta"
            ]
        );
    }

    #[test]
    fn trace_cmds_spellings_work() {
        let Command::Run(run) =
            parse(&["record", "-o", "t.dat", "-e", "selftest", "-b", "128"]).command
        else {
            panic!("`record` is `run`");
        };
        assert_eq!(run.buffer_size_kb, 128);
        assert_eq!(
            run.events.as_ref().map(|e| e.0.clone()),
            Some(vec!["selftest".to_string()])
        );
        let cwd = std::env::current_dir().expect("cwd");
        assert_eq!(
            run.output_path(),
            cwd.join("t.dat"),
            "relative to where the user stands"
        );
        assert_eq!(
            user_path(
                Some(std::path::Path::new("/abs/x.dat")),
                &cwd,
                DEFAULT_OUTPUT
            ),
            PathBuf::from("/abs/x.dat")
        );
        assert_eq!(
            user_path(None, &cwd, DEFAULT_OUTPUT),
            PathBuf::from(DEFAULT_OUTPUT)
        );
    }

    #[test]
    fn host_events_are_on_unless_switched_off_last() {
        let words = |args: &[&str]| {
            let mut all = vec!["xtask", "run"];
            all.extend(args);
            match Cli::try_parse_from(all).unwrap().command {
                Command::Run(run) => run.guest_words(),
                other => panic!("{other:?}"),
            }
        };
        let flag = |w: Vec<String>| w.iter().find(|w| w.starts_with("host_events=")).cloned();
        assert_eq!(flag(words(&[])).as_deref(), Some("host_events=1"));
        assert_eq!(
            flag(words(&["--no-host-events"])).as_deref(),
            Some("host_events=0")
        );
        assert_eq!(
            flag(words(&["--no-host-events", "--host-events"])).as_deref(),
            Some("host_events=1")
        );
        assert_eq!(
            flag(words(&["--host-events", "--no-host-events"])).as_deref(),
            Some("host_events=0")
        );
    }

    #[test]
    fn run_recording_options_become_guest_words() {
        let Command::Run(run) = parse(&[
            "run",
            "--cpus",
            "2",
            "--buffer-size-kb",
            "8",
            "--duration",
            "0.25",
            "--period-ms",
            "1",
            "--events",
            "selftest,hyp_enter",
            "--output",
            "/tmp/x.dat",
            "--timeout",
            "30",
        ])
        .command
        else {
            panic!("expected run");
        };
        assert_eq!(run.cpus, 2);
        assert_eq!(run.timeout_secs(), 30);
        assert_eq!(
            run.guest_words(),
            [
                "run",
                "duration_ms=250",
                "buffer_kb=8",
                "period_ms=1",
                "events=selftest,hyp_enter",
                "output=/tmp/x.dat",
                "host_events=1"
            ]
        );
    }

    #[test]
    fn durations_in_seconds() {
        assert_eq!(parse_duration_ms("2"), Ok(DurationMs(2000)));
        assert_eq!(parse_duration_ms("1.5"), Ok(DurationMs(1500)));
        assert_eq!(parse_duration_ms("0.0004"), Ok(DurationMs(1)));
        assert_eq!(parse_duration_ms("0.0016"), Ok(DurationMs(2)));
        assert_eq!(parse_duration_ms("86400"), Ok(DurationMs(86_400_000)));
        assert_eq!(parse_duration_ms("0"), Ok(DurationMs(0)), "until Ctrl-C");
        assert_eq!(parse_duration_ms("0.0"), Ok(DurationMs(0)));
        for bad in ["-1", "-0.5", "abc", "", "NaN", "inf", "86401", "1s"] {
            assert!(
                parse_duration_ms(bad).is_err(),
                "{bad:?} should be rejected"
            );
        }
    }

    #[test]
    fn timeout_grows_with_the_duration() {
        let Command::Run(run) = parse(&["run", "--duration", "60.2"]).command else {
            panic!("expected run");
        };
        assert_eq!(run.timeout_secs(), 61 + RUN_TIMEOUT_SLACK_SECS);
        let Command::Run(run) = parse(&["run", "--duration", "0"]).command else {
            panic!("expected run");
        };
        assert!(run.duration.until_interrupted());
        assert_eq!(run.timeout_secs(), 86_400 + RUN_TIMEOUT_SLACK_SECS);
        assert!(run.guest_words().contains(&"duration_ms=0".to_string()));
    }

    #[test]
    fn event_names_are_checked_against_the_abi() {
        let all: Vec<&str> = hyptrace_abi::events::ALL.iter().map(|e| e.name).collect();
        assert_eq!(
            parse_events(&all.join(",")),
            Ok(EventList(all.iter().map(|n| n.to_string()).collect()))
        );
        let unknown = parse_events("hyp_enter,hyp_entre").unwrap_err();
        assert!(unknown.contains("`hyp_entre`"), "{unknown}");
        assert!(unknown.contains(&all.join(", ")), "{unknown}");
        assert!(parse_events("hyp_enter,,selftest").is_err());
        assert!(parse_events("").is_err());
        assert!(parse_events("selftest,selftest").is_err());
        assert_eq!(
            parse_events("bprint,host_smc"),
            Ok(EventList(vec!["bprint".into(), "host_smc".into()])),
            "hyp_printk's event is enabled by name too"
        );
        assert!(unknown.contains("bprint"), "{unknown}");
        assert!(Cli::try_parse_from(["x", "run", "--events", "nope"]).is_err());
        assert!(Cli::try_parse_from(["x", "run", "--buffer-size-kb", "0"]).is_err());
        assert!(Cli::try_parse_from(["x", "run", "--period-ms", "0"]).is_err());
    }

    #[test]
    fn test_defaults() {
        let Command::Test(test) = parse(&["test"]).command else {
            panic!("expected test");
        };
        assert!(test.cpus_list.is_empty() && test.cpu_model.is_empty());
        let matrix: Vec<(String, u16)> = test.harness_matrix();
        let expected = [
            ("max", 4),
            ("max", 1),
            ("cortex-a53", 4),
            ("neoverse-n1", 4),
            ("max", 8),
        ];
        assert_eq!(matrix.len(), expected.len());
        for ((model, cpus), (want_model, want_cpus)) in matrix.iter().zip(expected) {
            assert_eq!((model.as_str(), *cpus), (want_model, want_cpus));
        }
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
        let counts: Vec<u16> = test.harness_matrix().iter().map(|(_, n)| *n).collect();
        assert_eq!(counts, [2, 8, 1]);
        assert!(test.harness_matrix().iter().all(|(m, _)| m == "max"));
        assert!(test.skip_host && !test.skip_qemu);
        assert_eq!(test.guest_words(), ["test", "filter=ring::", "seed=42"]);
    }

    #[test]
    fn cpu_models_are_checked_and_combined_with_counts() {
        let Command::Test(test) = parse(&["test", "--cpu-model", "cortex-a53,neoverse-n1"]).command
        else {
            panic!("expected test");
        };
        let runs: Vec<(String, u16)> = test.harness_matrix();
        let runs: Vec<(&str, u16)> = runs.iter().map(|(m, n)| (m.as_str(), *n)).collect();
        assert_eq!(
            runs,
            [
                ("cortex-a53", 4),
                ("cortex-a53", 1),
                ("neoverse-n1", 4),
                ("neoverse-n1", 1)
            ]
        );
        let Command::Run(run) = parse(&["run", "--cpu-model", "cortex-a72"]).command else {
            panic!("expected run");
        };
        assert_eq!(run.cpu_model, "cortex-a72");
        assert!(Cli::try_parse_from(["x", "run", "--cpu-model", "cortex-a15"]).is_err());
        assert!(Cli::try_parse_from(["x", "test", "--cpu-model", "pentium"]).is_err());
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
