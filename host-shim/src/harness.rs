//! The in-QEMU test harness's portable part: test cases, result lines, the summary, and the
//! semihosting command line that selects what the host shim does.
//!
//! Output format (read by `cargo xtask test`): one line per test,
//! `test <group>::<name> ... ok` or `test <group>::<name> ... FAILED: <reason>`, then one line
//! `N passed, N failed`.

use alloc::string::String;
use core::fmt::{self, Write};
use hyptrace_abi::FaultKind;

/// Start of every result line.
const LINE_PREFIX: &str = "test ";
/// Between a test's name and its result.
const LINE_SEPARATOR: &str = " ... ";
/// The result of a passed test.
const OK: &str = "ok";
/// The result of a failed test (followed by `: <reason>`).
const FAILED: &str = "FAILED";
/// Between the counts of the summary line.
const SUMMARY_PASSED: &str = " passed, ";
/// After the failed count of the summary line.
const SUMMARY_FAILED: &str = " failed";

/// What a test returns: `Err` carries the reason printed after `FAILED: `.
pub type TestResult = Result<(), String>;

/// One named test case run inside QEMU. `C` is the context the image passes (CPU list, ...).
pub struct TestCase<C: ?Sized> {
    /// Group, e.g. `hvc`.
    pub group: &'static str,
    /// Name within the group, e.g. `null_round_trip`.
    pub name: &'static str,
    /// The test body.
    pub run: fn(&C) -> TestResult,
}

impl<C: ?Sized> TestCase<C> {
    /// Whether `filter` (a substring of `group::name`) selects this test.
    pub fn matches(&self, filter: Option<&str>) -> bool {
        match filter {
            None => true,
            Some(f) => {
                let mut full = String::new();
                let _ = write!(full, "{}::{}", self.group, self.name);
                full.contains(f)
            }
        }
    }
}

/// The line printed for one finished test.
pub struct ResultLine<'a> {
    /// Test group.
    pub group: &'a str,
    /// Test name.
    pub name: &'a str,
    /// Its outcome.
    pub result: &'a TestResult,
}

impl fmt::Display for ResultLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{LINE_PREFIX}{}::{}{LINE_SEPARATOR}",
            self.group, self.name
        )?;
        match self.result {
            Ok(()) => f.write_str(OK),
            // A reason must stay on one line or the line-oriented reader loses it.
            Err(reason) => {
                write!(f, "{FAILED}: ")?;
                for c in reason.chars() {
                    f.write_char(if c == '\n' || c == '\r' { ' ' } else { c })?;
                }
                Ok(())
            }
        }
    }
}

/// Pass/fail counts of a harness run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Tests that passed.
    pub passed: usize,
    /// Tests that failed.
    pub failed: usize,
}

impl Tally {
    /// Counts one result.
    pub fn record(&mut self, result: &TestResult) {
        match result {
            Ok(()) => self.passed += 1,
            Err(_) => self.failed += 1,
        }
    }

    /// Semihosting exit status: 0 when everything passed and something ran, 1 otherwise.
    pub fn exit_code(&self) -> u32 {
        if self.failed == 0 && self.passed > 0 {
            0
        } else {
            1
        }
    }
}

impl fmt::Display for Tally {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}{SUMMARY_PASSED}{}{SUMMARY_FAILED}",
            self.passed, self.failed
        )
    }
}

impl Tally {
    /// Parses exactly the summary line [`Tally`]'s `Display` writes: `N passed, N failed`.
    pub fn parse(line: &str) -> Option<Self> {
        let (passed, failed) = line.split_once(SUMMARY_PASSED)?;
        let failed = failed.strip_suffix(SUMMARY_FAILED)?;
        let number = |s: &str| {
            if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
                s.parse().ok()
            } else {
                None
            }
        };
        Some(Self {
            passed: number(passed)?,
            failed: number(failed)?,
        })
    }
}

/// A result line as read back: what [`ResultLine`] wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParsedLine<'a> {
    /// `test <name> ... ok`.
    Ok(&'a str),
    /// `test <name> ... FAILED[: reason]`, with the reason (empty if none).
    Failed(&'a str, &'a str),
}

impl<'a> ParsedLine<'a> {
    /// Parses a line [`ResultLine`] wrote. The name must be one word (normally
    /// `<group>::<name>`); anything else is `None`.
    pub fn parse(line: &'a str) -> Option<Self> {
        let (name, result) = line.strip_prefix(LINE_PREFIX)?.split_once(LINE_SEPARATOR)?;
        if name.is_empty() || name.contains(char::is_whitespace) {
            return None;
        }
        if result == OK {
            return Some(Self::Ok(name));
        }
        let rest = result.strip_prefix(FAILED)?;
        if rest.is_empty() {
            return Some(Self::Failed(name, ""));
        }
        rest.strip_prefix(':')
            .map(|reason| Self::Failed(name, reason.trim()))
    }
}

/// What the host shim was asked to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Run the test harness.
    Test,
    /// Boot and run the default workload.
    Run,
    /// Trace at full speed with randomized control calls and check exact accounting.
    Soak,
    /// Print the in-QEMU performance figures.
    Bench,
    /// Execute an undefined instruction at EL1, to check that fatal exceptions are reported
    /// and end QEMU with a failure status.
    Crash,
    /// Ask a hypervisor built with the `fault-injection` feature to commit the fault named by
    /// `kind=` at EL2, to check its fatal report.
    Fault,
}

/// The byte that stops a recording when it arrives on the guest's console (ASCII ETX, what
/// a terminal sends for Ctrl-C): `run` then stops its workload, drains every buffer and saves
/// the file as at the end of its duration, and says so with [`STOPPED_LINE`]. `cargo xtask
/// run` sends it on Ctrl-C and at its timeout.
pub const STOP_BYTE: u8 = 0x03;

/// The start of the line `run` prints when [`STOP_BYTE`] stopped it, followed by `N ms`.
pub const STOPPED_LINE: &str = "trace: stopped on the console after ";

/// What `run` records, from its `key=value` words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunOptions<'a> {
    /// How long the workload runs; 0: until [`STOP_BYTE`] arrives on the console (or the
    /// host's page store is full).
    pub duration_ms: u64,
    /// Ring-buffer data bytes per CPU, in KiB.
    pub buffer_kb: u64,
    /// How often the reader polls every CPU's buffer.
    pub period_ms: u64,
    /// Comma-separated event names to enable; `None` means all.
    pub events: Option<&'a str>,
    /// Where the trace goes (relative to QEMU's working directory).
    pub output: &'a str,
    /// Whether the host records its own events too (`host_events=1`, the default): the
    /// top-level buffer of trace.dat, with the hypervisor's in the `hypervisor` instance.
    pub host_events: bool,
}

impl Default for RunOptions<'_> {
    fn default() -> Self {
        Self {
            duration_ms: 2_000,
            buffer_kb: 64,
            period_ms: 10,
            events: None,
            output: "target/trace.dat",
            host_events: true,
        }
    }
}

/// The semihosting command line: `hyptrace <test|run|soak|bench|crash|fault> [key=value ...]`.
/// `test` takes `filter=S` and `seed=N`; `run` takes `duration_ms=`, `buffer_kb=`,
/// `period_ms=`, `events=a,b`, `host_events=0|1` and `output=PATH`; `soak` the same but
/// `output=` and `host_events=`, plus `seed=`;
/// `fault` takes `kind=` with a [`FaultKind`] name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cmdline<'a> {
    /// Selected mode.
    pub mode: Mode,
    /// Only tests whose `group::name` contains this.
    pub filter: Option<&'a str>,
    /// Seed for randomized tests.
    pub seed: Option<u64>,
    /// Options of `run`.
    pub run: RunOptions<'a>,
    /// The fault `fault` asks for.
    pub fault: Option<FaultKind>,
    /// `fault ... trace=1`: trace every CPU first and fault while they write (the flight
    /// recorder's check).
    pub fault_traced: bool,
    /// `bench icount=1`: only the deterministic figures, in instructions (QEMU runs with
    /// `-icount shift=0`).
    pub bench_icount: bool,
}

/// Semihosting exit status of a guest that rejected its command line: a usage error, not a
/// fault (1 is failed tests, 2 and up faults and panics; see docs/architecture.md).
pub const EXIT_BAD_CMDLINE: u32 = 9;

/// The longest semihosting command line the host reads, program name and terminating NUL
/// included: its buffer's size. A longer line is refused (QEMU will not truncate it).
pub const MAX_CMDLINE: usize = 1024;

/// The mode words.
pub const MODES: [&str; 6] = ["test", "run", "soak", "bench", "crash", "fault"];

impl Mode {
    /// The `key=` words this mode takes (what [`Cmdline::parse`] accepts after it).
    pub const fn keys(self) -> &'static [&'static str] {
        match self {
            Mode::Run => &[
                "duration_ms",
                "buffer_kb",
                "period_ms",
                "events",
                "output",
                "host_events",
                "filter",
                "seed",
            ],
            Mode::Soak => &[
                "duration_ms",
                "buffer_kb",
                "period_ms",
                "events",
                "filter",
                "seed",
            ],
            Mode::Fault => &["kind", "trace", "filter", "seed"],
            Mode::Bench => &["icount", "filter", "seed"],
            Mode::Test | Mode::Crash => &["filter", "seed"],
        }
    }

    /// The mode's word.
    pub const fn word(self) -> &'static str {
        match self {
            Mode::Test => "test",
            Mode::Run => "run",
            Mode::Soak => "soak",
            Mode::Bench => "bench",
            Mode::Crash => "crash",
            Mode::Fault => "fault",
        }
    }
}

/// Why a command line was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmdlineError<'a> {
    /// No mode word.
    MissingMode,
    /// A first word that is no mode.
    UnknownMode(&'a str),
    /// A word the mode does not take (not `key=value`, or an unknown key or value).
    Unknown(Mode, &'a str),
    /// `seed=` not followed by a decimal number.
    BadSeed(&'a str),
    /// A numeric option that is not a positive decimal number.
    BadNumber(&'a str),
}

impl core::fmt::Display for CmdlineError<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::MissingMode => {
                write!(f, "no mode: the first word is one of {}", MODES.join(", "))
            }
            Self::UnknownMode(w) => {
                write!(
                    f,
                    "unknown mode `{w}`: the first word is one of {}",
                    MODES.join(", ")
                )
            }
            Self::Unknown(mode, w) => write!(
                f,
                "`{w}` is not a word of `{}`, which takes {}=..., each with a valid value",
                mode.word(),
                mode.keys().join("=..., ")
            ),
            Self::BadSeed(v) => write!(f, "seed={v}: the seed is a decimal number"),
            Self::BadNumber(v) => {
                write!(f, "`{v}`: the value is a positive decimal number (or 0/1)")
            }
        }
    }
}

impl core::error::Error for CmdlineError<'_> {}

impl<'a> Cmdline<'a> {
    /// Parses the words after the program name. An empty line means `run`.
    pub fn parse(line: &'a str) -> Result<Self, CmdlineError<'a>> {
        let mut words = line.split_ascii_whitespace();
        // The first word is the program name QEMU was given (`arg=hyptrace`).
        let first = words.next();
        let mode = match first.and_then(|_| words.next()) {
            None => {
                return if first.is_none() {
                    Ok(Self::run())
                } else {
                    Err(CmdlineError::MissingMode)
                }
            }
            Some("test") => Mode::Test,
            Some("run") => Mode::Run,
            Some("crash") => Mode::Crash,
            Some("soak") => Mode::Soak,
            Some("bench") => Mode::Bench,
            Some("fault") => Mode::Fault,
            Some(other) => return Err(CmdlineError::UnknownMode(other)),
        };
        let mut cmd = Self {
            mode,
            ..Self::run()
        };
        let number = |v: &'a str| -> Result<u64, CmdlineError<'a>> {
            match v.parse() {
                Ok(n) if n > 0 => Ok(n),
                _ => Err(CmdlineError::BadNumber(v)),
            }
        };
        for word in words {
            let (key, value) = word
                .split_once('=')
                .ok_or(CmdlineError::Unknown(mode, word))?;
            match (mode, key) {
                (_, "filter") => cmd.filter = Some(value),
                (_, "seed") => {
                    cmd.seed = Some(value.parse().map_err(|_| CmdlineError::BadSeed(value))?)
                }
                // `run duration_ms=0` records until stopped on the console ([`STOP_BYTE`]);
                // a soak always has a length.
                (Mode::Run, "duration_ms") if value == "0" => cmd.run.duration_ms = 0,
                (Mode::Run | Mode::Soak, "duration_ms") => cmd.run.duration_ms = number(value)?,
                (Mode::Run | Mode::Soak, "buffer_kb") => cmd.run.buffer_kb = number(value)?,
                (Mode::Run | Mode::Soak, "period_ms") => cmd.run.period_ms = number(value)?,
                (Mode::Run | Mode::Soak, "events") => cmd.run.events = Some(value),
                (Mode::Run, "output") => cmd.run.output = value,
                (Mode::Run, "host_events") => {
                    cmd.run.host_events = match value {
                        "0" => false,
                        "1" => true,
                        _ => return Err(CmdlineError::BadNumber(value)),
                    }
                }
                (Mode::Fault, "kind") => {
                    let kind = FaultKind::ALL.into_iter().find(|k| k.name() == value);
                    cmd.fault = Some(kind.ok_or(CmdlineError::Unknown(mode, word))?);
                }
                (Mode::Bench, "icount") => {
                    cmd.bench_icount = match value {
                        "0" => false,
                        "1" => true,
                        _ => return Err(CmdlineError::BadNumber(value)),
                    }
                }
                (Mode::Fault, "trace") => {
                    cmd.fault_traced = match value {
                        "0" => false,
                        "1" => true,
                        _ => return Err(CmdlineError::BadNumber(value)),
                    }
                }
                _ => return Err(CmdlineError::Unknown(mode, word)),
            }
        }
        Ok(cmd)
    }

    fn run() -> Self {
        Self {
            mode: Mode::Run,
            filter: None,
            seed: None,
            run: RunOptions::default(),
            fault: None,
            fault_traced: false,
            bench_icount: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn lines_read_back_as_written() {
        let ok: TestResult = Ok(());
        let bad: TestResult = Err("head 3\nnot 4".into());
        let line = ResultLine {
            group: "ring",
            name: "swap",
            result: &ok,
        }
        .to_string();
        assert_eq!(ParsedLine::parse(&line), Some(ParsedLine::Ok("ring::swap")));
        let line = ResultLine {
            group: "ring",
            name: "swap",
            result: &bad,
        }
        .to_string();
        assert_eq!(
            ParsedLine::parse(&line),
            Some(ParsedLine::Failed("ring::swap", "head 3 not 4"))
        );
        let t = Tally {
            passed: 12,
            failed: 3,
        };
        assert_eq!(Tally::parse(&t.to_string()), Some(t));
        assert_eq!(Tally::parse("12 passed, 3 failed!"), None);
        assert_eq!(ParsedLine::parse("test two words ... ok"), None);
    }

    #[test]
    fn result_lines() {
        let ok: TestResult = Ok(());
        let line = ResultLine {
            group: "hvc",
            name: "null",
            result: &ok,
        };
        assert_eq!(line.to_string(), "test hvc::null ... ok");
        let bad: TestResult = Err("x0 was -1\nexpected 0".into());
        let line = ResultLine {
            group: "psci",
            name: "on",
            result: &bad,
        };
        assert_eq!(
            line.to_string(),
            "test psci::on ... FAILED: x0 was -1 expected 0"
        );
    }

    #[test]
    fn tally_and_exit_code() {
        let mut t = Tally::default();
        assert_eq!(t.exit_code(), 1, "nothing ran is a failure");
        t.record(&Ok(()));
        assert_eq!(t.exit_code(), 0);
        t.record(&Err("no".into()));
        assert_eq!(t.to_string(), "1 passed, 1 failed");
        assert_eq!(t.exit_code(), 1);
    }

    #[test]
    fn cmdline() {
        assert_eq!(Cmdline::parse("").unwrap().mode, Mode::Run);
        assert_eq!(Cmdline::parse("hyptrace"), Err(CmdlineError::MissingMode));
        let c = Cmdline::parse("hyptrace test filter=psci:: seed=42").unwrap();
        assert_eq!(c.mode, Mode::Test);
        assert_eq!(c.filter, Some("psci::"));
        assert_eq!(c.seed, Some(42));
        assert_eq!(Cmdline::parse("hyptrace run").unwrap().mode, Mode::Run);
        assert_eq!(Cmdline::parse("hyptrace crash").unwrap().mode, Mode::Crash);
        let fault = Cmdline::parse("hyptrace fault kind=write-text").unwrap();
        assert_eq!(
            (fault.mode, fault.fault),
            (Mode::Fault, Some(FaultKind::WriteText))
        );
        assert!(
            Cmdline::parse("hyptrace bench icount=1")
                .unwrap()
                .bench_icount
        );
        assert!(!Cmdline::parse("hyptrace bench").unwrap().bench_icount);
        let traced = Cmdline::parse("hyptrace fault kind=write-text trace=1").unwrap();
        assert!(traced.fault_traced && !fault.fault_traced);
        assert_eq!(
            Cmdline::parse("hyptrace fault kind=melt"),
            Err(CmdlineError::Unknown(Mode::Fault, "kind=melt"))
        );
        assert_eq!(
            Cmdline::parse("hyptrace run kind=write-text"),
            Err(CmdlineError::Unknown(Mode::Run, "kind=write-text"))
        );
        assert_eq!(
            Cmdline::parse("hyptrace walk"),
            Err(CmdlineError::UnknownMode("walk"))
        );
        assert_eq!(
            Cmdline::parse("hyptrace test x=1"),
            Err(CmdlineError::Unknown(Mode::Test, "x=1"))
        );
        assert_eq!(
            Cmdline::parse("hyptrace test seed=z"),
            Err(CmdlineError::BadSeed("z"))
        );
        let r = Cmdline::parse(
            "hyptrace run duration_ms=500 buffer_kb=8 period_ms=1 events=hyp_enter,selftest \
             output=x.dat",
        )
        .unwrap()
        .run;
        assert_eq!(
            r,
            RunOptions {
                duration_ms: 500,
                buffer_kb: 8,
                period_ms: 1,
                events: Some("hyp_enter,selftest"),
                output: "x.dat",
                host_events: true,
            }
        );
        let off = Cmdline::parse("hyptrace run host_events=0").unwrap().run;
        assert!(!off.host_events);
        assert_eq!(
            Cmdline::parse("hyptrace run host_events=yes"),
            Err(CmdlineError::BadNumber("yes"))
        );
        assert_eq!(
            Cmdline::parse("hyptrace run").unwrap().run,
            RunOptions::default()
        );
        let soak = Cmdline::parse("hyptrace soak duration_ms=60000 seed=3").unwrap();
        assert_eq!(
            (soak.mode, soak.run.duration_ms, soak.seed),
            (Mode::Soak, 60_000, Some(3))
        );
        assert_eq!(
            Cmdline::parse("hyptrace soak output=x.dat"),
            Err(CmdlineError::Unknown(Mode::Soak, "output=x.dat"))
        );
        assert_eq!(
            Cmdline::parse("hyptrace run duration_ms=0").map(|c| c.run.duration_ms),
            Ok(0),
            "run until stopped"
        );
        assert_eq!(
            Cmdline::parse("hyptrace soak duration_ms=0"),
            Err(CmdlineError::BadNumber("0"))
        );
        assert_eq!(
            Cmdline::parse("hyptrace run period_ms=0"),
            Err(CmdlineError::BadNumber("0"))
        );
        assert_eq!(
            Cmdline::parse("hyptrace test buffer_kb=8"),
            Err(CmdlineError::Unknown(Mode::Test, "buffer_kb=8"))
        );
    }

    #[test]
    fn every_mode_takes_exactly_the_keys_it_lists() {
        let sample = |key: &str| match key {
            "kind" => "write-text",
            "events" => "selftest",
            "output" => "x.dat",
            "filter" => "psci::",
            _ => "1",
        };
        // Every key some mode takes, and one none does.
        let mut all: Vec<&str> = MODES
            .iter()
            .flat_map(|w| {
                Cmdline::parse(&format!("hyptrace {w}"))
                    .unwrap()
                    .mode
                    .keys()
            })
            .copied()
            .collect();
        all.sort_unstable();
        all.dedup();
        all.push("bogus");
        for word in MODES {
            let mode = Cmdline::parse(&format!("hyptrace {word}")).unwrap().mode;
            assert_eq!(mode.word(), word);
            for &key in &all {
                let line = format!("hyptrace {word} {key}={}", sample(key));
                let listed = mode.keys().contains(&key);
                assert_eq!(Cmdline::parse(&line).is_ok(), listed, "{line}");
            }
        }
        let e = Cmdline::parse("hyptrace run bogus=1")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`bogus=1` is not a word of `run`") && e.contains("duration_ms=..."),
            "{e}"
        );
        let e = Cmdline::parse("hyptrace walk").unwrap_err().to_string();
        assert!(
            e.contains("unknown mode `walk`") && e.contains("bench"),
            "{e}"
        );
    }

    #[test]
    fn filters() {
        let t: TestCase<()> = TestCase {
            group: "psci",
            name: "cpu_on",
            run: |_| Ok(()),
        };
        assert!(t.matches(None));
        assert!(t.matches(Some("psci::")));
        assert!(t.matches(Some("cpu_on")));
        assert!(!t.matches(Some("hvc::")));
    }
}
