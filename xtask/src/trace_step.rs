//! The `trace.dat` step of `cargo xtask test`: record a short trace on 4 CPUs, then check the
//! file with the real trace-cmd ([`crate::report_check`] judges; this module only runs
//! things), then compare `cargo xtask report`'s output with trace-cmd's
//! ([`crate::report::compare`]).

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use crate::build::Images;
use crate::crash_log;
use crate::harness_outcome::{self, HarnessReport};
use crate::qemu::{self, QemuConfig};
use crate::report;
use crate::report_check::{self, CapturedRun, Evidence, ReportScan, ScannedRun};
use crate::run_cmd::TraceOutput;
use crate::supervise::RunEnd;
use crate::timeline::{self, Timeline};
use crate::tools;
use crate::trace_summary::GuestTrace;
use crate::workspace;

/// CPUs of the recording.
pub const CPUS: u16 = 4;

/// How long the guest records, in milliseconds.
pub const DURATION_MS: u64 = 1500;

/// The QEMU timeout of the recording, in seconds.
const QEMU_TIMEOUT_SECS: u64 = 120;

/// The timeout of each trace-cmd run, in seconds (a 1.5 s trace reports in about 1.5 s).
const TRACE_CMD_TIMEOUT_SECS: u64 = 300;

/// How many console lines a failed recording repeats.
const FAILURE_TAIL_LINES: usize = 40;

/// Records `<target>/ci/trace.dat` and checks it; prints which rules failed, with examples.
pub fn run(images: &Images) -> Result<()> {
    let trace_cmd = tools::ensure_tool(tools::TRACE_CMD.0, tools::TRACE_CMD.1)?;
    let path = workspace::target_dir().join("ci").join("trace.dat");
    // Relative to the workspace root (QEMU's working directory) when it is below it.
    let path = path
        .strip_prefix(workspace::qemu_working_dir())
        .map(Path::to_path_buf)
        .unwrap_or(path);
    let output = TraceOutput::prepare(&path)?;
    let words = vec![
        "run".to_string(),
        format!("duration_ms={DURATION_MS}"),
        format!("output={}", output.partial_word),
    ];
    let config = QemuConfig::new(images, CPUS, words)?;
    let captured = qemu::run(
        &config,
        Duration::from_secs(QEMU_TIMEOUT_SECS),
        true,
        |line| harness_outcome::is_relevant(line) || line.trim_start().starts_with("trace:"),
    )?;
    let fatal = HarnessReport::parse(&captured.kept).fatal;
    let guest = GuestTrace::parse(&captured.kept);
    if captured.end != RunEnd::Exited(0) || !fatal.is_empty() {
        captured.print_last_lines(FAILURE_TAIL_LINES);
        let cause = format!(
            "the recording ended with {}{}{}",
            captured.end,
            fatal.first().map_or(String::new(), |f| format!(": {f}")),
            guest
                .notes
                .first()
                .map_or(String::new(), |n| format!(" ({n})"))
        );
        let run = format!("trace.dat recording ({CPUS} CPUs)");
        crash_log::save_failed_run(&run, &captured, &cause);
        bail!(cause);
    }
    output.finish()?;
    let file_bytes = std::fs::metadata(&output.absolute)
        .with_context(|| format!("the recording left no {}", output.absolute.display()))?
        .len();
    let passed = judge_file(&trace_cmd, &guest, CPUS, &output)?;
    eprintln!("xtask: {} ({} bytes): {passed}", output.word, file_bytes);
    // hyptrace's own decoder must print exactly what trace-cmd prints, on this file and on
    // what trace-cmd itself makes of it.
    same_report_as_trace_cmd(&trace_cmd, &output.absolute)?;
    trace_cmd_files_read_alike(&trace_cmd, &output.absolute)?;
    clocks_line_up(&trace_cmd, output.absolute.as_os_str())
}

/// How `trace_cmd_files_read_alike` splits the recording: parts of this many ms.
const SPLIT_MS: u64 = 500;

/// The files trace-cmd 3.1.6 writes from `recording`, and `cargo xtask report` must print each
/// as `trace-cmd report` does: `trace-cmd convert` to version 7 compressed (its default, zstd)
/// and uncompressed, and every part of `trace-cmd split -r -m 500` (version 6, whose instance
/// trace-cmd itself cannot open, and whose pages may flag a drop count they leave no room
/// for).
fn trace_cmd_files_read_alike(trace_cmd: &Path, recording: &Path) -> Result<()> {
    let dir = recording.with_extension("trace-cmd");
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot remove {}", dir.display())),
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut made = Vec::new();
    for (name, extra) in [
        ("convert-v7-zstd.dat", &["--compression", "any"][..]),
        ("convert-v7-none.dat", &["--compression", "none"][..]),
    ] {
        let out = dir.join(name);
        let mut convert = Command::new(trace_cmd);
        convert
            .args(["convert", "--file-version", "7", "-i"])
            .arg(recording)
            .arg("-o")
            .arg(&out)
            .args(extra);
        expect_success(captured_run(convert)?, "trace-cmd convert")?;
        made.push(out);
    }
    let mut split = Command::new(trace_cmd);
    split
        .args(["split", "-r", "-m", &SPLIT_MS.to_string(), "-i"])
        .arg(recording)
        .arg("-o")
        .arg(dir.join("split.dat"));
    expect_success(captured_run(split)?, "trace-cmd split")?;
    let mut parts: Vec<_> = std::fs::read_dir(&dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x != "dat"))
        .collect();
    parts.sort();
    if parts.len() < 2 {
        bail!(
            "trace-cmd split -m {SPLIT_MS} made {} part(s), expected several",
            parts.len()
        );
    }
    let converted = made.len();
    made.extend(parts);
    for (i, file) in made.iter().enumerate() {
        let started = Instant::now();
        let (lines, unknown) = if i < converted {
            (report::compare::against_trace_cmd(trace_cmd, file)?, 0)
        } else {
            report::compare::against_trace_cmd_split(trace_cmd, file)?
        };
        let unknown = match unknown {
            0 => String::new(),
            n => format!(
                "; {n} drop marker(s) of full pages without room for their count say \
                 [EVENTS DROPPED] where trace-cmd prints what lies past the page"
            ),
        };
        eprintln!(
            "xtask: {}: cargo xtask report prints the same {lines} lines as trace-cmd report \
             ({:.1} s{unknown})",
            workspace::display_path(file),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

/// A trace-cmd run that must have exited 0.
fn expect_success(run: CapturedRun, what: &str) -> Result<()> {
    if run.end != RunEnd::Exited(0) {
        bail!("{what} ended with {}: {}", run.end, run.stderr.trim_end());
    }
    Ok(())
}

/// Checks the recording `output` with the real trace-cmd against what the guest said of it
/// ([`report_check::judge`]); on failure prints which rules failed, with examples.
pub fn judge_file(
    trace_cmd: &Path,
    guest: &GuestTrace,
    cpus: u16,
    output: &TraceOutput,
) -> Result<report_check::Passed> {
    let file = output.absolute.as_os_str();
    let file_bytes = std::fs::metadata(file)
        .with_context(|| format!("the recording left no {}", output.absolute.display()))?
        .len();
    let report_args = |extra: &[&str]| {
        let mut command = Command::new(trace_cmd);
        command.arg("report").arg("-i").arg(file).args(extra);
        command
    };
    let report = scanned(report_args(&[]))?;
    let check_events = captured_run(report_args(&["--check-events"]))?;
    let ts_check = scanned(report_args(&["--ts-check"]))?;
    let mut stat = Command::new(trace_cmd);
    stat.args(["report", "--stat", "-i"]).arg(file);
    let stat = captured_run(stat)?;
    let evidence = Evidence {
        cpus,
        guest,
        file_bytes,
        report: &report,
        check_events: &check_events,
        ts_check: &ts_check,
        stat: &stat,
    };
    report_check::judge(&evidence).map_err(|failures| {
        eprintln!("{}", guest.table());
        eprintln!("{}", report_check::render_failures(&failures));
        let rules: Vec<&str> = failures.iter().map(|f| f.rule).collect();
        anyhow!(
            "trace-cmd disagrees with the recording in {}: rule(s) {}",
            output.word,
            rules.join(", ")
        )
    })
}

/// `cargo xtask report` must print the same lines as `trace-cmd report` on `file`.
pub fn same_report_as_trace_cmd(trace_cmd: &Path, file: &Path) -> Result<()> {
    let started = Instant::now();
    let lines = report::compare::against_trace_cmd(trace_cmd, file)?;
    eprintln!(
        "xtask: cargo xtask report prints the same {lines} lines as trace-cmd report ({:.1} s)",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Complete HVC sequences every CPU must show in the CI recording.
const MIN_HVC_PER_CPU: usize = 10_000;
/// Complete SMC sequences every CPU must show in the CI recording.
const MIN_SMC_PER_CPU: usize = 500;

/// The proof that host and hypervisor share one clock, from the real `trace-cmd report -t`
/// (nanosecond timestamps): every complete call in order `hvc_call <= hyp_enter <=
/// host_hcall <= hyp_exit <= hvc_return` (and the same for SMCs), not one inversion.
fn clocks_line_up(trace_cmd: &Path, file: &std::ffi::OsStr) -> Result<()> {
    let mut command = Command::new(trace_cmd);
    command.args(["report", "-t", "-i"]).arg(file);
    let (end, timeline) = supervised(command, |stdout, stderr| {
        let errors = thread::spawn(move || read_all(stderr));
        let mut timeline = Timeline::default();
        for_each_line(stdout, |line| timeline.line(line));
        drop(errors.join());
        timeline
    })?;
    if end != RunEnd::Exited(0) {
        bail!("`trace-cmd report -t` ended with {end}");
    }
    if !timeline.unreadable.is_empty() {
        bail!(
            "{} lines of `trace-cmd report -t` could not be read, e.g. {:?}",
            timeline.unreadable.count,
            timeline.unreadable.examples
        );
    }
    let matching = timeline.matching();
    match timeline::judge(&matching, u32::from(CPUS), MIN_HVC_PER_CPU, MIN_SMC_PER_CPU) {
        Ok(summary) => {
            eprintln!("xtask: host and hypervisor clocks line up, 0 inversions: {summary}");
            Ok(())
        }
        Err(problems) => bail!("host and hypervisor events do not line up:\n{problems}"),
    }
}

/// Runs a `trace-cmd report` whose output is too large to keep, scanning stdout and stderr
/// line by line.
fn scanned(command: Command) -> Result<ScannedRun> {
    let (end, (mut scan, stderr)) = supervised(command, |stdout, stderr| {
        let errors = thread::spawn(move || read_all(stderr));
        let mut scan = ReportScan::default();
        for_each_line(stdout, |line| scan.line(line));
        let stderr = errors.join().unwrap_or_default();
        (scan, stderr)
    })?;
    for line in stderr.lines() {
        scan.line(line);
    }
    Ok(ScannedRun { end, scan })
}

/// Runs a `trace-cmd` command with small output and keeps it whole.
fn captured_run(command: Command) -> Result<CapturedRun> {
    let (end, (stdout, stderr)) = supervised(command, |stdout, stderr| {
        let errors = thread::spawn(move || read_all(stderr));
        let stdout = read_all(stdout);
        (stdout, errors.join().unwrap_or_default())
    })?;
    Ok(CapturedRun {
        end,
        stdout,
        stderr,
    })
}

/// Starts `command` with piped output, hands the pipes to `consume` on a thread, and kills
/// the command if it runs longer than [`TRACE_CMD_TIMEOUT_SECS`].
fn supervised<T: Send + 'static>(
    mut command: Command,
    consume: impl FnOnce(std::process::ChildStdout, std::process::ChildStderr) -> T + Send + 'static,
) -> Result<(RunEnd, T)> {
    let line = workspace::display_command(&command);
    eprintln!("xtask: $ {line}");
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("could not start `{line}`"))?;
    let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
    let (Some(stdout), Some(stderr)) = (stdout, stderr) else {
        bail!("`{line}` has no output pipes");
    };
    let consumer = thread::spawn(move || consume(stdout, stderr));
    let deadline = Instant::now() + Duration::from_secs(TRACE_CMD_TIMEOUT_SECS);
    let end = loop {
        if let Some(status) = child.try_wait().context("could not poll trace-cmd")? {
            break end_of(status);
        }
        if Instant::now() >= deadline {
            // It may have exited in the meantime; either way it is reaped below.
            let _ = child.kill();
            child.wait().context("could not reap trace-cmd")?;
            break RunEnd::TimedOut {
                after_secs: TRACE_CMD_TIMEOUT_SECS,
            };
        }
        thread::sleep(Duration::from_millis(20));
    };
    let output = consumer
        .join()
        .map_err(|_| anyhow!("the reader of `{line}` panicked"))?;
    Ok((end, output))
}

fn end_of(status: ExitStatus) -> RunEnd {
    match status.code() {
        Some(code) => RunEnd::Exited(code),
        None => RunEnd::Killed { signal: None },
    }
}

/// Calls `f` with each line of `pipe` (lossy UTF-8, line ending removed).
fn for_each_line(pipe: impl Read, mut f: impl FnMut(&str)) {
    let mut reader = BufReader::with_capacity(1 << 16, pipe);
    let mut buffer = Vec::new();
    loop {
        buffer.clear();
        match reader.read_until(b'\n', &mut buffer) {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let text = String::from_utf8_lossy(&buffer);
                f(text.trim_end_matches(['\n', '\r']));
            }
        }
    }
}

/// Everything `pipe` yields, as lossy UTF-8.
pub fn read_all(mut pipe: impl Read) -> String {
    let mut bytes = Vec::new();
    let _ = pipe.read_to_end(&mut bytes);
    String::from_utf8_lossy(&bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        let mut command = Command::new("sh");
        command.args(["-c", script]);
        command
    }

    #[test]
    fn scanned_sees_stdout_and_stderr_lines() {
        let run = scanned(sh(
            "echo cpus=2; echo '   <...>--1    [001]     0.5: hyp_enter:  '; \
             echo 'WARNING: Record on cpu 1 went backwards: 2 to 1' >&2; exit 3",
        ))
        .expect("sh runs");
        assert_eq!(run.end, RunEnd::Exited(3));
        assert_eq!(run.scan.header_cpus, Some(2));
        assert_eq!(run.scan.events_per_cpu.get(&1), Some(&1));
        assert_eq!(run.scan.went_backwards.count, 1);
    }

    #[test]
    fn large_output_streams_without_deadlock() {
        let run = scanned(sh(
            "i=0; while [ $i -lt 20000 ]; do \
             echo \"   <...>--1    [000]     0.5: hyp_exit:  \"; echo e$i >&2; i=$((i+1)); done",
        ))
        .expect("sh runs");
        assert_eq!(run.end, RunEnd::Exited(0));
        assert_eq!(run.scan.total_events(), 20000);
        assert_eq!(run.scan.unrecognised.count, 20000);
    }

    #[test]
    fn captured_keeps_both_streams() {
        let run = captured_run(sh("echo 'CPU: 0'; echo oops >&2")).expect("sh runs");
        assert_eq!(run.end, RunEnd::Exited(0));
        assert_eq!(run.stdout, "CPU: 0\n");
        assert_eq!(run.stderr, "oops\n");
    }
}
