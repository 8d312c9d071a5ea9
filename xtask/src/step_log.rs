//! Timing and summarising the steps of `cargo xtask test`.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::Result;

/// How a step ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StepStatus {
    /// It succeeded.
    Passed,
    /// It failed.
    Failed,
    /// It did not run, for the given reason.
    Skipped(String),
}

/// One step's record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepRecord {
    /// Human-readable step name, e.g. "clippy (host)".
    pub name: String,
    /// Wall-clock duration (zero when skipped).
    pub duration: Duration,
    /// How it ended.
    pub status: StepStatus,
}

/// The steps run so far, in order.
#[derive(Debug, Default)]
pub struct StepLog {
    steps: Vec<StepRecord>,
}

impl StepLog {
    /// Runs `step`, records its duration and status, and returns its result with the step's
    /// name added to any error.
    pub fn run<T>(&mut self, name: &str, step: impl FnOnce() -> Result<T>) -> Result<T> {
        eprintln!("xtask: ==== {name} ====");
        let start = Instant::now();
        let result = step();
        let status = if result.is_ok() {
            StepStatus::Passed
        } else {
            StepStatus::Failed
        };
        self.steps.push(StepRecord {
            name: name.to_string(),
            duration: start.elapsed(),
            status,
        });
        result.map_err(|e| e.context(format!("step `{name}` failed")))
    }

    /// Records a step that was not run.
    pub fn skip(&mut self, name: &str, reason: &str) {
        self.steps.push(StepRecord {
            name: name.to_string(),
            duration: Duration::ZERO,
            status: StepStatus::Skipped(reason.to_string()),
        });
    }

    /// The summary table: one line per step with its status and duration, then the total.
    pub fn render(&self) -> String {
        let mut out = String::from("xtask test summary:\n");
        let width = self.steps.iter().map(|s| s.name.len()).max().unwrap_or(0);
        let mut total = Duration::ZERO;
        for step in &self.steps {
            total += step.duration;
            let (status, note) = match &step.status {
                StepStatus::Passed => ("ok", String::new()),
                StepStatus::Failed => ("FAILED", String::new()),
                StepStatus::Skipped(why) => ("skipped", format!(" ({why})")),
            };
            // Writing to a String cannot fail.
            let line = format!(
                "  {status:<7} {:>7.1} s  {:<width$}{note}",
                step.duration.as_secs_f64(),
                step.name
            );
            let _ = writeln!(out, "{}", line.trim_end());
        }
        let _ = write!(out, "  total   {:>7.1} s", total.as_secs_f64());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_pass_fail_and_skip() {
        let mut log = StepLog::default();
        assert_eq!(log.run("fmt", || Ok(5)).ok(), Some(5));
        let error = log
            .run("clippy (host)", || -> Result<()> { anyhow::bail!("lint") })
            .expect_err("the step fails");
        assert_eq!(format!("{error:#}"), "step `clippy (host)` failed: lint");
        log.skip("harness", "--skip-qemu");
        let text = log.render();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5, "{text}");
        assert!(lines[1].starts_with("  ok ") && lines[1].contains("fmt"));
        assert!(lines[2].starts_with("  FAILED") && lines[2].contains("clippy (host)"));
        assert!(lines[3].starts_with("  skipped") && lines[3].ends_with("(--skip-qemu)"));
        assert!(lines[4].starts_with("  total"));
    }

    #[test]
    fn durations_are_shown_in_seconds() {
        let mut log = StepLog::default();
        log.steps.push(StepRecord {
            name: "loom".into(),
            duration: Duration::from_millis(12_340),
            status: StepStatus::Passed,
        });
        assert!(log.render().contains("   12.3 s  loom"), "{}", log.render());
    }
}
