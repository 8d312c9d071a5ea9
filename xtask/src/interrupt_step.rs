//! The interrupted-recording step of `cargo xtask test`: a user's recording that ends early
//! must still be saved, whole and readable.
//!
//! It runs `cargo xtask run` as a user does (this very binary, as a child process) twice:
//! - `--duration 0`, and SIGINT (what a terminal's Ctrl-C sends) once the guest has recorded
//!   for about a second: the run must end well and say it was interrupted;
//! - a long `--duration` with a short `--timeout`: the run must fail, and say the file it
//!   saved is partial.
//!
//! Each file is then checked with the real trace-cmd exactly as a complete recording is
//! ([`crate::trace_step::judge_file`]: every event the guest read is in the file, in order,
//! with the accounting balanced), and `cargo xtask report` must print what trace-cmd prints.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};

use crate::run_cmd::TraceOutput;
use crate::supervise::{self, RunEnd};
use crate::tools;
use crate::trace_step;
use crate::trace_summary::GuestTrace;
use crate::workspace;

/// CPUs of both recordings.
const CPUS: u16 = 4;

/// Progress lines (one per 250 ms of recording) the guest prints before the Ctrl-C.
const PROGRESS_BEFORE_INTERRUPT: usize = 4;

/// The `--timeout` of the second recording, in seconds: a few seconds of recording after
/// the boot, far less than its `--duration`.
const SHORT_TIMEOUT_SECS: u64 = 3;

/// How long each child `cargo xtask run` may take in all (building nothing: the images are
/// built) before it is killed.
const CHILD_TIMEOUT: Duration = Duration::from_secs(300);

/// Runs the step: both recordings, both checked.
pub fn run() -> Result<()> {
    let trace_cmd = tools::ensure_tool(tools::TRACE_CMD.0, tools::TRACE_CMD.1)?;
    let dir = workspace::target_dir().join("ci");
    let interrupted = dir.join("interrupted.dat");
    let run = record(
        &interrupted,
        &["--duration", "0"],
        Some(PROGRESS_BEFORE_INTERRUPT),
    )?;
    ensure!(
        run.end == RunEnd::Exited(0),
        "the interrupted recording ended with {} (expected status 0): {}",
        run.end,
        run.last_lines()
    );
    ensure!(
        run.stdout.contains("\"stopped\": \"interrupt\""),
        "`run --json` does not say the recording was interrupted:\n{}",
        run.stdout
    );
    ensure!(
        run.stderr.contains("interrupted after "),
        "the summary does not say the recording was interrupted: {}",
        run.last_lines()
    );
    check_file(&trace_cmd, &interrupted, &run)?;

    let timed_out = dir.join("timed-out.dat");
    let timeout = SHORT_TIMEOUT_SECS.to_string();
    let run = record(
        &timed_out,
        &["--duration", "600", "--timeout", &timeout],
        None,
    )?;
    ensure!(
        matches!(run.end, RunEnd::Exited(code) if code != 0),
        "a recording stopped by its timeout must fail, but it ended with {}: {}",
        run.end,
        run.last_lines()
    );
    let partial = format!("PARTIAL: stopped at the {SHORT_TIMEOUT_SECS} s timeout");
    ensure!(
        run.stderr.contains(&partial) && run.stdout.contains("\"stopped\": \"timeout\""),
        "the summary does not say the file is partial ({partial:?}): {}",
        run.last_lines()
    );
    check_file(&trace_cmd, &timed_out, &run)
}

/// Checks a recording a stopped run saved: the guest said it was stopped on the console,
/// no `.partial` file is left, and trace-cmd (and `cargo xtask report`) read it all.
fn check_file(trace_cmd: &Path, path: &Path, run: &ChildRun) -> Result<()> {
    let lines: Vec<&str> = run.stderr.lines().collect();
    let guest = GuestTrace::parse(&lines);
    let Some(ms) = guest.stopped_ms else {
        bail!(
            "the guest did not say it was stopped on the console: {}",
            run.last_lines()
        );
    };
    let output = TraceOutput::paths(path)?;
    ensure!(
        !output.partial.exists(),
        "{} is left behind: the run did not rename it",
        output.partial.display()
    );
    let passed = trace_step::judge_file(trace_cmd, &guest, CPUS, &output)?;
    eprintln!(
        "xtask: {} (stopped after {ms} ms of recording): {passed}",
        output.word
    );
    trace_step::same_report_as_trace_cmd(trace_cmd, &output.absolute)
}

/// What a child `cargo xtask run` printed, and how it ended.
struct ChildRun {
    end: RunEnd,
    stdout: String,
    stderr: String,
}

impl ChildRun {
    /// The last lines of its stderr, for an error message.
    fn last_lines(&self) -> String {
        let lines: Vec<&str> = self.stderr.lines().collect();
        let from = lines.len().saturating_sub(30);
        format!("\n{}", lines[from..].join("\n"))
    }
}

/// Runs `cargo xtask run --json --cpus 4 -o PATH EXTRA...` (this binary), its console on
/// stderr. With `interrupt_after`, sends it SIGINT once the guest printed that many progress
/// lines.
fn record(path: &Path, extra: &[&str], interrupt_after: Option<usize>) -> Result<ChildRun> {
    let exe = std::env::current_exe().context("cannot find xtask's own executable")?;
    let mut command = Command::new(exe);
    command
        .args(["run", "--json", "--cpus", &CPUS.to_string(), "-o"])
        .arg(path)
        .args(extra)
        .current_dir(workspace::root())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    eprintln!("xtask: $ {}", workspace::display_command(&command));
    let mut child = command.spawn().context("cannot start cargo xtask run")?;
    let stdout = child
        .stdout
        .take()
        .map(|p| thread::spawn(move || trace_step::read_all(p)));
    let (lines, receiver) = mpsc::channel::<String>();
    let stderr = child.stderr.take().map(|pipe| {
        thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let _ = lines.send(line);
            }
        })
    });
    let deadline = Instant::now() + CHILD_TIMEOUT;
    let mut text = String::new();
    let mut progress = 0;
    let mut interrupted = interrupt_after.is_none();
    let end = loop {
        match receiver.recv_timeout(Duration::from_millis(50)) {
            Ok(line) => {
                progress += usize::from(is_progress(&line));
                text.push_str(&line);
                text.push('\n');
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                break wait(&mut child, deadline)?;
            }
        }
        if !interrupted && interrupt_after.is_some_and(|n| progress >= n) {
            interrupt(&child)?;
            interrupted = true;
        }
        if Instant::now() >= deadline {
            break wait(&mut child, deadline)?;
        }
    };
    if let Some(reader) = stderr {
        let _ = reader.join();
    }
    text.extend(receiver.try_iter().map(|l| l + "\n"));
    let stdout = stdout
        .map(|r| r.join().unwrap_or_default())
        .unwrap_or_default();
    if !interrupted {
        bail!(
            "the recording ended ({end}) before {} progress lines to interrupt:\n{text}",
            interrupt_after.unwrap_or(0)
        );
    }
    Ok(ChildRun {
        end,
        stdout,
        stderr: text,
    })
}

/// A guest progress line: `trace: N ms, events read ...` (a recording until stopped).
fn is_progress(line: &str) -> bool {
    line.strip_prefix("trace: ")
        .and_then(|r| r.split_once(" ms, events read "))
        .is_some_and(|(ms, _)| !ms.is_empty() && ms.bytes().all(|b| b.is_ascii_digit()))
}

/// Sends SIGINT to the child, as a terminal's Ctrl-C does.
fn interrupt(child: &Child) -> Result<()> {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let pid = i32::try_from(child.id()).context("a child pid beyond i32")?;
    eprintln!("xtask: sending SIGINT (Ctrl-C) to the recording (pid {pid})");
    kill(Pid::from_raw(pid), Signal::SIGINT).map_err(|e| anyhow!("kill -INT {pid}: {e}"))
}

/// Waits for the child until `deadline`, then kills it.
fn wait(child: &mut Child, deadline: Instant) -> Result<RunEnd> {
    loop {
        if let Some(status) = child.try_wait().context("cannot poll cargo xtask run")? {
            return Ok(supervise::end_of(status));
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            child.wait().context("cannot reap cargo xtask run")?;
            return Ok(RunEnd::TimedOut {
                after_secs: CHILD_TIMEOUT.as_secs(),
            });
        }
        thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_lines_of_a_recording_until_stopped() {
        assert!(is_progress(
            "trace: 254 ms, events read 330128, pages 1494, lost 226838"
        ));
        assert!(!is_progress(
            "trace: 254/2000 ms, events read 330128, pages 1494, lost 226838"
        ));
        assert!(!is_progress("trace: recorded 1293 ms"));
        assert!(!is_progress("xtask: 254 ms, events read 1"));
    }
}
