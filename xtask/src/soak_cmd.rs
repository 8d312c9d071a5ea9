//! `cargo xtask soak`: every CPU traces at full speed for minutes while the host drains
//! continuously and issues randomized control calls (disable/enable, reset, clock, swaps);
//! passes when the guest's exact accounting holds on every CPU.

use std::time::Duration;

use anyhow::{bail, Result};

use crate::build::{self, Images, Profile};
use crate::cli::SoakArgs;
use crate::crash_log;
use crate::qemu::{self, QemuConfig};
use crate::supervise::RunEnd;

/// Console lines a failed soak repeats.
const FAILURE_TAIL_LINES: usize = 40;

/// Lines kept for the verdict: the guest's `soak:` lines and fatal reports.
fn is_soak_line(line: &str) -> bool {
    let line = line.trim_start();
    line.starts_with("soak:") || line.contains("EXCEPTION") || line.contains("panicked")
}

/// The guest words of a soak of `minutes` (fractions allowed) on `buffer_kb` KiB per CPU.
pub fn guest_words(minutes: f64, buffer_kb: u64, seed: Option<u64>) -> Vec<String> {
    let mut words = vec![
        "soak".to_string(),
        format!(
            "duration_ms={}",
            (minutes * 60_000.0).round().max(1.0) as u64
        ),
        format!("buffer_kb={buffer_kb}"),
    ];
    if let Some(seed) = seed {
        words.push(format!("seed={seed}"));
    }
    words
}

/// Judges a soak from its kept lines and how QEMU ended.
pub fn judge<S: AsRef<str>>(lines: &[S], end: RunEnd) -> Result<(), String> {
    let find = |pat: &str| lines.iter().map(AsRef::as_ref).find(|l| l.contains(pat));
    if let Some(fatal) = lines
        .iter()
        .map(AsRef::as_ref)
        .find(|l| l.contains("EXCEPTION") || l.contains("panicked"))
    {
        return Err(format!("the guest crashed: {}", fatal.trim()));
    }
    if let Some(failed) = find("soak: FAILED") {
        return Err(failed.trim().to_string());
    }
    match end {
        RunEnd::Exited(0) => {}
        RunEnd::TimedOut { after_secs } => return Err(format!("timeout after {after_secs} s")),
        other => return Err(format!("QEMU ended with {other:?}")),
    }
    if find("soak: PASSED").is_none() {
        return Err("the guest exited 0 without printing `soak: PASSED`".into());
    }
    if !lines.iter().any(|l| l.as_ref().contains("soak: cpu ")) {
        return Err("no per-CPU accounting lines".into());
    }
    Ok(())
}

/// Boots a soak and judges it.
pub fn soak(
    images: &Images,
    cpus: u16,
    words: Vec<String>,
    minutes: f64,
    echo: bool,
) -> Result<()> {
    let config = QemuConfig::new(images, cpus, words)?;
    let timeout = Duration::from_secs((minutes * 60.0).ceil() as u64 + 120);
    let captured = qemu::run(&config, timeout, echo, is_soak_line)?;
    let lines: Vec<&str> = captured.kept.iter().map(|l| l.text.as_str()).collect();
    if let Err(cause) = judge(&lines, captured.end) {
        captured.print_last_lines(FAILURE_TAIL_LINES);
        let run = format!("soak ({minutes} min, {cpus} CPUs)");
        crash_log::save_failed_run(&run, &captured, &cause);
        bail!("soak failed: {cause}");
    }
    for line in lines
        .iter()
        .filter(|l| l.contains("soak: cpu ") || l.contains("soak: actions"))
    {
        eprintln!("xtask: {}", line.trim());
    }
    eprintln!(
        "xtask: soak of {minutes} min passed in {:.0} s",
        captured.elapsed.as_secs_f64()
    );
    Ok(())
}

/// `cargo xtask soak`.
pub fn run(args: &SoakArgs) -> Result<()> {
    crash_log::begin()?;
    let images = build::build_images(Profile::Release)?;
    let words = guest_words(args.minutes, args.buffer_size_kb, args.seed);
    soak(&images, args.cpus, words, args.minutes, !args.quiet)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSED: [&str; 4] = [
        "soak: 5/60 s, events read 2608161, lost 8136735, actions [15, 10, 12, 10]",
        "soak: cpu 0 written 123894 read 123894 lost 0",
        "soak: actions (disable/enable, reset, clock, swaps) = [37, 30, 39, 36]",
        "soak: PASSED",
    ];

    #[test]
    fn words() {
        assert_eq!(
            guest_words(1.0, 64, Some(7)),
            ["soak", "duration_ms=60000", "buffer_kb=64", "seed=7"]
        );
        assert_eq!(guest_words(0.25, 8, None)[1], "duration_ms=15000");
    }

    #[test]
    fn verdicts() {
        assert_eq!(judge(&PASSED, RunEnd::Exited(0)), Ok(()));
        assert!(judge(&PASSED, RunEnd::Exited(1)).is_err());
        assert!(judge(&PASSED, RunEnd::TimedOut { after_secs: 180 }).is_err());
        let failed = [
            "soak: cpu 1 written 5 read 3 lost 1",
            "soak: FAILED: cpu 1: read + lost = 4 != written 5",
        ];
        assert!(judge(&failed, RunEnd::Exited(1))
            .unwrap_err()
            .contains("read + lost"));
        let crashed = ["hyp: EXCEPTION on CPU 2: synchronous exception at the current EL"];
        assert!(judge(&crashed, RunEnd::Exited(3))
            .unwrap_err()
            .contains("crashed"));
        let silent = ["soak: cpu 0 written 1 read 1 lost 0"];
        assert!(judge(&silent, RunEnd::Exited(0)).is_err(), "no PASSED line");
    }
}
