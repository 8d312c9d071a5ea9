//! `cargo xtask run`: build, boot both images in QEMU, stream the console.
//!
//! The guest gets `hyptrace run [words...]` on its semihosting command line. Trace recording
//! (planned options `--buffer-size-kb`, `--duration`, `--events`, `--output`) will add words in
//! [`crate::cli::RunArgs::guest_words`] and post-processing after [`qemu::run`] here.

use std::time::Duration;

use anyhow::{bail, Result};

use crate::build;
use crate::cli::RunArgs;
use crate::harness_outcome::HarnessReport;
use crate::qemu::{self, QemuConfig};
use crate::supervise::RunEnd;

/// How many console lines a failure report repeats.
const FAILURE_TAIL_LINES: usize = 40;

/// Runs `cargo xtask run`.
pub fn run(args: &RunArgs) -> Result<()> {
    let images = build::build_images(args.build.profile())?;
    let config = QemuConfig::new(&images, args.cpus, args.guest_words())?;
    let captured = qemu::run(&config, Duration::from_secs(args.timeout), !args.quiet)?;
    let report = HarnessReport::parse(&captured.kept);
    match verdict(captured.end, &report.fatal, args.timeout) {
        Ok(()) => {
            eprintln!(
                "xtask: QEMU exited 0 after {:.1} s ({} console lines)",
                captured.elapsed.as_secs_f64(),
                captured.total_lines
            );
            Ok(())
        }
        Err(cause) => {
            captured.print_last_lines(FAILURE_TAIL_LINES);
            bail!("run failed: {cause}")
        }
    }
}

/// Whether a plain run succeeded: QEMU exited 0 and printed no fatal line.
fn verdict(end: RunEnd, fatal: &[String], timeout_secs: u64) -> Result<(), String> {
    if let Some(first) = fatal.first() {
        return Err(format!("the guest reported a fatal error ({end}): {first}"));
    }
    match end {
        RunEnd::Exited(0) => Ok(()),
        RunEnd::Exited(1) => Err("the guest exited with status 1 (failure)".into()),
        RunEnd::Exited(code) => Err(format!(
            "the guest exited with status {code} (2+ means a fault or panic)"
        )),
        RunEnd::Killed { .. } => Err(format!("QEMU was {end}")),
        RunEnd::TimedOut { .. } => Err(format!(
            "QEMU still running after {timeout_secs} s and killed; raise --timeout if the \
             guest needs longer, else look for a hang in the last lines"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_clean_exit_zero_succeeds() {
        assert_eq!(verdict(RunEnd::Exited(0), &[], 120), Ok(()));
        assert!(verdict(RunEnd::Exited(1), &[], 120).is_err());
        assert!(verdict(RunEnd::Exited(3), &[], 120).is_err_and(|e| e.contains("fault")));
        assert!(verdict(RunEnd::TimedOut { after_secs: 120 }, &[], 120)
            .is_err_and(|e| e.contains("120 s")));
        assert!(verdict(RunEnd::Killed { signal: Some(2) }, &[], 120).is_err());
    }

    #[test]
    fn fatal_line_fails_even_with_exit_zero() {
        let fatal = ["EXCEPTION: EC=0x24".to_string()];
        assert!(verdict(RunEnd::Exited(0), &fatal, 120).is_err_and(|e| e.contains("EC=0x24")));
    }
}
