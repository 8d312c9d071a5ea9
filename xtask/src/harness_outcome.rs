//! The pure judgement of one in-QEMU harness run: console lines plus how QEMU ended go in,
//! an [`Outcome`] comes out. No I/O here, so every rule is unit-tested with fake lines.
//!
//! The guest's contract (docs/xtask.md):
//! - one line per test, exactly `test <group>::<name> ... ok` or
//!   `test <group>::<name> ... FAILED: <reason>`;
//! - a final summary line `N passed, N failed`;
//! - fatal exceptions and panics print a line containing `EXCEPTION` or `panicked`;
//! - QEMU's exit status is the semihosting exit code: 0 success, 1 failed tests, 2+ fault or
//!   panic.
//!
//! A run passes only if QEMU exited 0, no fatal line appeared, no test failed, the summary
//! exists, reports at least one passed test and agrees with the per-test lines.

use crate::supervise::RunEnd;

/// Markers of a fatal exception or panic in hypervisor or host output.
const FATAL_MARKERS: [&str; 2] = ["EXCEPTION", "panicked"];

/// One failed test: its name and the reason it printed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailedTest {
    /// `<group>::<name>`.
    pub name: String,
    /// The text after `FAILED:` (empty if none was given).
    pub reason: String,
}

/// The summary line's counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Summary {
    /// `N passed`.
    pub passed: u64,
    /// `N failed`.
    pub failed: u64,
}

/// What the console said, before any judgement.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HarnessReport {
    /// Names of tests that printed `... ok`, in order.
    pub ok: Vec<String>,
    /// Tests that printed `... FAILED`, in order.
    pub failed: Vec<FailedTest>,
    /// The last summary line, if any.
    pub summary: Option<Summary>,
    /// Lines with a fatal marker (test result lines excluded), in order.
    pub fatal: Vec<String>,
}

/// The verdict on one harness run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every test passed and all the evidence agrees.
    Passed {
        /// Number of tests that passed.
        passed: u64,
    },
    /// At least one test printed `FAILED`.
    TestsFailed {
        /// Names of the failed tests.
        names: Vec<String>,
    },
    /// A fatal exception or panic was printed, QEMU exited with 2+ or was killed by a signal.
    Crashed {
        /// How QEMU ended.
        end: RunEnd,
        /// The first fatal lines, if any were printed.
        fatal_lines: Vec<String>,
    },
    /// Our timeout killed QEMU.
    Timeout {
        /// The timeout in seconds.
        after_secs: u64,
        /// The last test that reported a result before the hang, if any.
        last_result: Option<String>,
    },
    /// No `N passed, N failed` line was printed.
    NoSummary {
        /// How QEMU ended.
        end: RunEnd,
    },
    /// The summary line disagrees with the per-test lines.
    SummaryMismatch {
        /// What the summary line said.
        summary: Summary,
        /// How many `... ok` lines there were.
        ok_lines: u64,
        /// How many `... FAILED` lines there were.
        failed_lines: u64,
    },
    /// The summary says no test ran (a filter that matches nothing, or an empty harness).
    NoTests,
    /// Everything looked fine but QEMU's exit status was not 0.
    UnexpectedExit {
        /// How QEMU ended.
        end: RunEnd,
    },
}

/// How many fatal lines a [`Outcome::Crashed`] carries (the full tail is printed anyway).
const MAX_FATAL_LINES: usize = 5;

impl Outcome {
    /// Whether the run passed.
    pub fn is_pass(&self) -> bool {
        matches!(self, Outcome::Passed { .. })
    }

    /// One sentence naming the cause of a failure, and what to try.
    pub fn describe(&self) -> String {
        match self {
            Outcome::Passed { passed } => format!("{passed} tests passed"),
            Outcome::TestsFailed { names } => {
                format!("{} test(s) failed: {}", names.len(), names.join(", "))
            }
            Outcome::Crashed { end, fatal_lines } if fatal_lines.is_empty() => format!(
                "the guest crashed ({end}; 2+ means a fault or panic) without printing an \
                 EXCEPTION or panicked line"
            ),
            Outcome::Crashed { end, fatal_lines } => {
                format!("the guest crashed ({end}): {}", fatal_lines.join(" | "))
            }
            Outcome::Timeout {
                after_secs,
                last_result,
            } => format!(
                "timeout after {after_secs} s (QEMU killed); last test result before the \
                 hang: {}; look for a lost wake-up or a spin without a deadline, or raise \
                 --timeout",
                last_result.as_deref().unwrap_or("none")
            ),
            Outcome::NoSummary { end } => format!(
                "no `N passed, N failed` summary line ({end}); the harness stopped early or \
                 the image did not boot"
            ),
            Outcome::SummaryMismatch {
                summary,
                ok_lines,
                failed_lines,
            } => format!(
                "summary `{} passed, {} failed` disagrees with the per-test lines ({ok_lines} \
                 ok, {failed_lines} FAILED); a test result line is missing or malformed",
                summary.passed, summary.failed
            ),
            Outcome::NoTests => {
                "no test ran (summary `0 passed, 0 failed`); check --filter".to_string()
            }
            Outcome::UnexpectedExit { end } => format!(
                "every test passed but QEMU ended with {end}; the guest must exit 0 through \
                 semihosting when all tests pass"
            ),
        }
    }
}

impl HarnessReport {
    /// Extracts test results, the summary and fatal lines from console lines.
    pub fn parse<S: AsRef<str>>(lines: &[S]) -> Self {
        let mut report = HarnessReport::default();
        for line in lines {
            let line = line.as_ref().trim();
            if let Some(result) = parse_test_line(line) {
                match result {
                    TestLine::Ok(name) => report.ok.push(name.to_string()),
                    TestLine::Failed(name, reason) => report.failed.push(FailedTest {
                        name: name.to_string(),
                        reason: reason.to_string(),
                    }),
                }
            } else if let Some(summary) = parse_summary(line) {
                report.summary = Some(summary);
            } else if is_fatal(line) {
                report.fatal.push(line.to_string());
            }
        }
        report
    }

    /// Counts for the aggregate `harness: N passed, N failed` line. A run that failed without
    /// naming a failed test (crash, timeout, missing summary, ...) counts as one failure, so
    /// the aggregate never claims `0 failed` for a broken run.
    pub fn counts(&self, outcome: &Outcome) -> (u64, u64) {
        let passed = self.ok.len() as u64;
        let failed = self.failed.len() as u64;
        if outcome.is_pass() {
            (passed, 0)
        } else {
            (passed, failed.max(1))
        }
    }
}

/// Whether a line matters to [`HarnessReport::parse`]; others need not be kept in memory.
pub fn is_relevant(line: &str) -> bool {
    let line = line.trim();
    parse_test_line(line).is_some() || parse_summary(line).is_some() || is_fatal(line)
}

/// Judges a run from its report and how QEMU ended. Rules in order, first match wins:
/// timeout; crash (fatal line, exit 2+, signal); failed tests; no summary; summary mismatch;
/// no tests; non-zero exit; pass.
pub fn judge(report: &HarnessReport, end: RunEnd) -> Outcome {
    if let RunEnd::TimedOut { after_secs } = end {
        let last_ok = report.ok.last().map(String::as_str);
        let last_failed = report.failed.last().map(|f| f.name.as_str());
        return Outcome::Timeout {
            after_secs,
            last_result: last_failed.or(last_ok).map(str::to_string),
        };
    }
    let crashed_status = match end {
        RunEnd::Exited(code) => !(0..2).contains(&code),
        RunEnd::Killed { .. } => true,
        RunEnd::TimedOut { .. } => false,
    };
    if !report.fatal.is_empty() || crashed_status {
        return Outcome::Crashed {
            end,
            fatal_lines: report.fatal.iter().take(MAX_FATAL_LINES).cloned().collect(),
        };
    }
    if !report.failed.is_empty() {
        return Outcome::TestsFailed {
            names: report.failed.iter().map(|f| f.name.clone()).collect(),
        };
    }
    let Some(summary) = report.summary else {
        return Outcome::NoSummary { end };
    };
    let ok_lines = report.ok.len() as u64;
    let failed_lines = report.failed.len() as u64;
    if summary.passed != ok_lines || summary.failed != failed_lines {
        return Outcome::SummaryMismatch {
            summary,
            ok_lines,
            failed_lines,
        };
    }
    if summary.passed == 0 {
        return Outcome::NoTests;
    }
    if end != RunEnd::Exited(0) {
        return Outcome::UnexpectedExit { end };
    }
    Outcome::Passed {
        passed: summary.passed,
    }
}

/// A result line of the harness (its format is `host_shim::harness`'s, written and parsed
/// there).
use host_shim::harness::ParsedLine as TestLine;

/// Parses a result line (see [`TestLine::parse`]).
fn parse_test_line(line: &str) -> Option<TestLine<'_>> {
    TestLine::parse(line)
}

/// Parses exactly `N passed, N failed` (`host_shim::harness::Tally`'s summary line).
fn parse_summary(line: &str) -> Option<Summary> {
    host_shim::harness::Tally::parse(line).map(|t| Summary {
        passed: t.passed as u64,
        failed: t.failed as u64,
    })
}

/// Whether a line reports a fatal exception or a panic.
fn is_fatal(line: &str) -> bool {
    FATAL_MARKERS.iter().any(|marker| line.contains(marker))
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: RunEnd = RunEnd::Exited(0);

    fn judge_lines(lines: &[&str], end: RunEnd) -> Outcome {
        judge(&HarnessReport::parse(lines), end)
    }

    #[test]
    fn clean_run_passes() {
        let lines = [
            "hyp: booted at EL2",
            "test ring::write ... ok",
            "test ring::swap ... ok",
            "test abi::pack ... ok",
            "3 passed, 0 failed",
        ];
        assert_eq!(judge_lines(&lines, OK), Outcome::Passed { passed: 3 });
    }

    #[test]
    fn crlf_and_surrounding_spaces_are_tolerated() {
        let lines = ["test ring::write ... ok\r", "  1 passed, 0 failed \r"];
        assert_eq!(judge_lines(&lines, OK), Outcome::Passed { passed: 1 });
    }

    #[test]
    fn failed_test_is_named_with_its_reason() {
        let lines = [
            "test ring::write ... ok",
            "test ring::swap ... FAILED: expected head 3, got 4",
            "1 passed, 1 failed",
        ];
        let report = HarnessReport::parse(&lines);
        assert_eq!(
            report.failed,
            [FailedTest {
                name: "ring::swap".into(),
                reason: "expected head 3, got 4".into()
            }]
        );
        let outcome = judge(&report, RunEnd::Exited(1));
        assert_eq!(
            outcome,
            Outcome::TestsFailed {
                names: vec!["ring::swap".into()]
            }
        );
        assert!(outcome.describe().contains("ring::swap"));
        assert_eq!(report.counts(&outcome), (1, 1));
    }

    #[test]
    fn failed_line_fails_even_with_exit_zero_and_clean_summary() {
        let lines = ["test a::b ... FAILED", "0 passed, 0 failed"];
        assert!(matches!(
            judge_lines(&lines, OK),
            Outcome::TestsFailed { .. }
        ));
    }

    #[test]
    fn summary_reporting_failures_without_failed_lines_is_a_mismatch() {
        let lines = ["test a::b ... ok", "1 passed, 1 failed"];
        assert_eq!(
            judge_lines(&lines, RunEnd::Exited(1)),
            Outcome::SummaryMismatch {
                summary: Summary {
                    passed: 1,
                    failed: 1
                },
                ok_lines: 1,
                failed_lines: 0
            }
        );
    }

    #[test]
    fn summary_claiming_more_passes_than_ok_lines_fails() {
        let lines = ["test a::b ... ok", "2 passed, 0 failed"];
        assert!(matches!(
            judge_lines(&lines, OK),
            Outcome::SummaryMismatch { ok_lines: 1, .. }
        ));
    }

    #[test]
    fn fewer_passes_than_ok_lines_fails() {
        let lines = ["test a::b ... ok", "test a::c ... ok", "1 passed, 0 failed"];
        assert!(matches!(
            judge_lines(&lines, OK),
            Outcome::SummaryMismatch { ok_lines: 2, .. }
        ));
    }

    #[test]
    fn missing_summary_fails() {
        let lines = ["test a::b ... ok"];
        assert_eq!(judge_lines(&lines, OK), Outcome::NoSummary { end: OK });
        assert_eq!(
            judge_lines(&[] as &[&str], RunEnd::Exited(1)),
            Outcome::NoSummary {
                end: RunEnd::Exited(1)
            }
        );
    }

    #[test]
    fn zero_tests_fails() {
        assert_eq!(judge_lines(&["0 passed, 0 failed"], OK), Outcome::NoTests);
        // The harness exits 1 when the filter matched nothing: still "no tests", not "bad exit".
        assert_eq!(
            judge_lines(&["0 passed, 0 failed"], RunEnd::Exited(1)),
            Outcome::NoTests
        );
    }

    #[test]
    fn last_summary_line_counts() {
        let lines = [
            "0 passed, 0 failed",
            "test a::b ... ok",
            "1 passed, 0 failed",
        ];
        assert_eq!(judge_lines(&lines, OK), Outcome::Passed { passed: 1 });
    }

    #[test]
    fn nonzero_exit_with_clean_output_fails() {
        let lines = ["test a::b ... ok", "1 passed, 0 failed"];
        assert_eq!(
            judge_lines(&lines, RunEnd::Exited(1)),
            Outcome::UnexpectedExit {
                end: RunEnd::Exited(1)
            }
        );
    }

    #[test]
    fn exit_two_or_more_is_a_crash_even_without_a_message() {
        let lines = ["test a::b ... ok", "1 passed, 0 failed"];
        assert_eq!(
            judge_lines(&lines, RunEnd::Exited(3)),
            Outcome::Crashed {
                end: RunEnd::Exited(3),
                fatal_lines: vec![]
            }
        );
    }

    #[test]
    fn exception_line_is_a_crash_even_with_exit_zero() {
        let lines = [
            "test a::b ... ok",
            "hyp: EXCEPTION EC=0x25 ELR=0x40201234 FAR=0x0",
            "1 passed, 0 failed",
        ];
        let outcome = judge_lines(&lines, OK);
        assert_eq!(
            outcome,
            Outcome::Crashed {
                end: OK,
                fatal_lines: vec!["hyp: EXCEPTION EC=0x25 ELR=0x40201234 FAR=0x0".into()]
            }
        );
        assert!(outcome.describe().contains("EC=0x25"));
    }

    #[test]
    fn panic_line_is_a_crash() {
        let lines = ["host-shim panicked at src/main.rs:10:5: boom"];
        assert!(matches!(
            judge_lines(&lines, RunEnd::Exited(2)),
            Outcome::Crashed { fatal_lines, .. } if fatal_lines.len() == 1
        ));
    }

    #[test]
    fn crash_takes_precedence_over_failed_tests() {
        let lines = ["test a::b ... FAILED: x", "EXCEPTION at EL1"];
        assert!(matches!(
            judge_lines(&lines, RunEnd::Exited(2)),
            Outcome::Crashed { .. }
        ));
    }

    #[test]
    fn killed_by_signal_is_a_crash() {
        let end = RunEnd::Killed { signal: Some(9) };
        assert!(matches!(
            judge_lines(&["1 passed, 0 failed"], end),
            Outcome::Crashed { .. }
        ));
    }

    #[test]
    fn fatal_words_inside_test_lines_are_not_crashes() {
        let lines = [
            "test psci::cpu_off_after_panicked_peer ... ok",
            "test vectors::EXCEPTION_class ... ok",
            "2 passed, 0 failed",
        ];
        assert_eq!(judge_lines(&lines, OK), Outcome::Passed { passed: 2 });
    }

    #[test]
    fn timeout_wins_and_names_the_last_result() {
        let lines = ["test a::first ... ok", "test a::second ... ok"];
        let outcome = judge_lines(&lines, RunEnd::TimedOut { after_secs: 300 });
        assert_eq!(
            outcome,
            Outcome::Timeout {
                after_secs: 300,
                last_result: Some("a::second".into())
            }
        );
        assert!(outcome.describe().contains("timeout after 300 s"));
        let report = HarnessReport::parse(&lines);
        assert_eq!(report.counts(&outcome), (2, 1));
    }

    #[test]
    fn timeout_after_full_summary_still_fails() {
        let lines = ["test a::b ... ok", "1 passed, 0 failed"];
        assert!(matches!(
            judge_lines(&lines, RunEnd::TimedOut { after_secs: 5 }),
            Outcome::Timeout { .. }
        ));
    }

    #[test]
    fn malformed_lines_are_ignored() {
        let lines = [
            "test a::b ... okay",
            "test two words ... ok",
            "test  ... ok",
            "test a::b ...ok",
            "test a::b ... FAILEDX",
            "harness: 3 passed, 0 failed",
            "x passed, 0 failed",
            "1 passed, 0 failed, 2 skipped",
            "-1 passed, 0 failed",
        ];
        let report = HarnessReport::parse(&lines);
        assert_eq!(report, HarnessReport::default());
        assert!(lines.iter().all(|l| !is_relevant(l)));
    }

    #[test]
    fn relevant_lines_are_the_ones_parse_uses() {
        assert!(is_relevant("test a::b ... ok"));
        assert!(is_relevant("test a::b ... FAILED: why"));
        assert!(is_relevant("12 passed, 3 failed"));
        assert!(is_relevant("EL2 EXCEPTION"));
        assert!(is_relevant("panicked at x"));
        assert!(!is_relevant("hyp: booting CPU 1"));
    }

    #[test]
    fn failed_without_reason_and_reason_with_colons() {
        let report = HarnessReport::parse(&[
            "test a::b ... FAILED",
            "test a::c ... FAILED: left: 1, right: 2",
        ]);
        assert_eq!(report.failed[0].reason, "");
        assert_eq!(report.failed[1].reason, "left: 1, right: 2");
    }

    #[test]
    fn counts_for_aggregation() {
        let passing = HarnessReport::parse(&["test a::b ... ok", "1 passed, 0 failed"]);
        assert_eq!(passing.counts(&judge(&passing, OK)), (1, 0));
        let empty = HarnessReport::default();
        assert_eq!(empty.counts(&judge(&empty, RunEnd::Exited(2))), (0, 1));
    }

    #[test]
    fn every_failure_describes_its_cause() {
        let failures = [
            Outcome::NoTests,
            Outcome::NoSummary { end: OK },
            Outcome::UnexpectedExit {
                end: RunEnd::Exited(1),
            },
            Outcome::Crashed {
                end: RunEnd::Exited(4),
                fatal_lines: vec![],
            },
        ];
        for outcome in failures {
            assert!(!outcome.is_pass());
            assert!(outcome.describe().len() > 20, "{outcome:?}");
        }
    }
}
