//! The console of a failed QEMU run, saved to `<target>/hyp-crash.log` for reading afterwards.
//!
//! When a QEMU run of `cargo xtask run`, `test` or `soak` fails unexpectedly (a failure exit
//! status such as the hypervisor's 3, 4 or 8, xtask's timeout, a signal, failed harness tests,
//! an incomplete guest summary), its whole console ([`Console`]: stdout and stderr in arrival
//! order, at most the last [`crate::supervise::CONSOLE_BYTES`]) is written to [`path`] under
//! a header naming the command, how QEMU ended and the cause, and one line says where.
//!
//! The file belongs to one xtask invocation: [`begin`] deletes an older one before the
//! invocation's first QEMU boot, so a run that passes leaves none behind. The first failure of
//! an invocation creates the file; later failures of the same invocation (e.g. two harness
//! runs of `test`) are appended as further sections, each under its own header.
//!
//! The deliberate-fault checks of `test` (QEMU is expected to end with status 3, 4 or 5) never
//! touch it: each writes its own `<target>/fault-<name>.log` ([`save_fault_check`]), whether
//! the check passed or not, with a header saying which status was expected.
//!
//! Only [`begin`], [`save_failed_run`] and [`save_fault_check`] touch the environment; the
//! rest is pure or works on a path it is given, and is unit-tested without QEMU.

use std::fs::{self, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use anyhow::{Context, Result};

use crate::supervise::{Captured, Console, RunEnd};
use crate::workspace;

/// The crash log's file name, in the target directory.
pub const FILE_NAME: &str = "hyp-crash.log";

/// `<target>/hyp-crash.log`, with the target directory as xtask computes it
/// (`CARGO_TARGET_DIR` honoured).
pub fn path() -> PathBuf {
    path_in(&workspace::target_dir())
}

/// [`path`] in a given target directory.
fn path_in(target: &Path) -> PathBuf {
    target.join(FILE_NAME)
}

/// `<target>/fault-<name>.log`: the console of one deliberate-fault check.
fn fault_log_path(target: &Path, name: &str) -> PathBuf {
    target.join(format!("fault-{name}.log"))
}

/// What a semihosting exit status means (host-shim and hypervisor constants, see
/// `hyp/src/arch/aarch64/fatal.rs` and `host-shim/src/arch/aarch64/`).
pub fn exit_meaning(code: i32) -> Option<&'static str> {
    Some(match code {
        0 => "success",
        1 => "the guest reported a failure",
        3 => "unexpected EL2 exception",
        4 => "hypervisor panic",
        5 => "unexpected EL1 exception in the host",
        6 => "host panic",
        7 => "host boot failed",
        8 => "hypervisor fatal error",
        _ => return None,
    })
}

/// How QEMU ended, with the meaning of its exit status when known:
/// `exit status 3 (unexpected EL2 exception)`.
pub fn describe_end(end: RunEnd) -> String {
    match end {
        RunEnd::Exited(code) => match exit_meaning(code) {
            Some(meaning) => format!("{end} ({meaning})"),
            None => end.to_string(),
        },
        RunEnd::TimedOut { .. } => format!("{end} (killed by xtask)"),
        RunEnd::Killed { .. } => end.to_string(),
    }
}

/// What a log says about its run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict<'a> {
    /// The run failed unexpectedly, for this reason.
    Failed(&'a str),
    /// A deliberate-fault check: the status it expects, and whether it passed.
    FaultCheck {
        /// The exit status the check requires.
        expected_status: i32,
        /// `Err(reason)` when the check failed.
        result: Result<(), &'a str>,
    },
}

/// The header of one log section.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header<'a> {
    /// The xtask invocation, e.g. `cargo xtask test --cpus-list 4`.
    pub invocation: &'a str,
    /// Which QEMU run of it, e.g. `harness (4 CPUs on max)`.
    pub run: &'a str,
    /// How QEMU ended.
    pub end: RunEnd,
    /// The verdict on the run.
    pub verdict: Verdict<'a>,
    /// The QEMU command line, for reproducing the run.
    pub qemu_command: &'a str,
}

/// `text` on one line: line breaks become ` / `.
fn one_line(text: &str) -> String {
    text.trim().lines().collect::<Vec<_>>().join(" / ")
}

/// The first line of a section: which command and run, how QEMU ended, and why it failed (or
/// what a fault check expected).
pub fn header_line(header: &Header) -> String {
    let what = format!("{}, {}", one_line(header.invocation), one_line(header.run));
    let end = describe_end(header.end);
    match header.verdict {
        Verdict::Failed(cause) => format!(
            "# hyptrace crash log: {what}: QEMU ended with {end}; cause: {}",
            one_line(cause)
        ),
        Verdict::FaultCheck {
            expected_status,
            result,
        } => {
            let expected = describe_end(RunEnd::Exited(expected_status));
            let result = match result {
                Ok(()) => "check passed".to_string(),
                Err(reason) => format!("check FAILED: {}", one_line(reason)),
            };
            format!(
                "# hyptrace deliberate-fault check: {what} (expects {expected}): QEMU ended \
                 with {end}; {result}"
            )
        }
    }
}

/// `1 line`, `2 lines`.
fn lines_label(count: u64) -> String {
    if count == 1 {
        "1 line".to_string()
    } else {
        format!("{count} lines")
    }
}

/// The budget in MiB when it is a whole number of MiB, else in bytes.
fn budget_label(bytes: usize) -> String {
    if bytes >= 1 << 20 && bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{bytes} bytes")
    }
}

/// Writes one section: the header, the QEMU command, what the console holds (and whether its
/// beginning was dropped), then every console line in order.
pub fn write_section<W: Write>(out: &mut W, header: &Header, console: &Console) -> io::Result<()> {
    writeln!(out, "{}", header_line(header))?;
    writeln!(out, "# qemu: {}", one_line(header.qemu_command))?;
    let kept = console.len() as u64;
    let dropped = console.dropped_lines();
    if dropped == 0 {
        writeln!(
            out,
            "# console: {} (stdout and stderr as they arrived)",
            lines_label(kept)
        )?;
    } else {
        let budget = budget_label(console.limit());
        writeln!(
            out,
            "# console: the last {} of {} (stdout and stderr as they arrived); the first {} \
             ({} bytes) were dropped to keep at most {budget}",
            lines_label(kept),
            kept + dropped,
            lines_label(dropped),
            console.dropped_bytes()
        )?;
        writeln!(
            out,
            "[... {} dropped: only the last {budget} of the console are kept ...]",
            lines_label(dropped)
        )?;
    }
    for line in console.lines() {
        writeln!(out, "{}", line.text)?;
    }
    writeln!(out, "# end of console")
}

/// The line printed after saving: where, and how much.
pub fn saved_message(shown_path: &str, console: &Console, section: usize) -> String {
    let mut count = lines_label(console.len() as u64);
    if console.dropped_lines() > 0 {
        count.push_str(&format!(
            ", the first {} dropped",
            lines_label(console.dropped_lines())
        ));
    }
    if section <= 1 {
        format!("console of the failed run saved to {shown_path} ({count})")
    } else {
        format!(
            "console of the failed run appended to {shown_path} as failure {section} of this \
             invocation ({count})"
        )
    }
}

/// The crash log of one xtask invocation.
#[derive(Debug)]
pub struct Session {
    path: PathBuf,
    sections: usize,
}

impl Session {
    /// Starts a session at `path`, deleting a log left by an earlier invocation.
    pub fn start(path: PathBuf) -> io::Result<Self> {
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        Ok(Self { path, sections: 0 })
    }

    /// The log's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes a section: the first one replaces the file, later ones are appended after a
    /// blank line. Returns the section's number (1 for the first).
    pub fn save(&mut self, header: &Header, console: &Console) -> io::Result<usize> {
        if let Some(parent) = self.path.parent() {
            fs::create_dir_all(parent)?;
        }
        let first = self.sections == 0;
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(first)
            .append(!first)
            .open(&self.path)?;
        let mut out = BufWriter::new(file);
        if !first {
            writeln!(out)?;
        }
        write_section(&mut out, header, console)?;
        out.flush()?;
        self.sections += 1;
        Ok(self.sections)
    }
}

/// Writes `<target>/fault-<name>.log` (replacing it) and returns its path.
fn write_fault_log(
    target: &Path,
    name: &str,
    header: &Header,
    console: &Console,
) -> io::Result<PathBuf> {
    let path = fault_log_path(target, name);
    fs::create_dir_all(target)?;
    let mut out = BufWriter::new(fs::File::create(&path)?);
    write_section(&mut out, header, console)?;
    out.flush()?;
    Ok(path)
}

/// This invocation's crash log, once [`begin`] ran or something failed.
static SESSION: Mutex<Option<Session>> = Mutex::new(None);

/// The xtask invocation as a person would type it: `cargo xtask test --skip-host`.
fn invocation() -> String {
    let mut words = vec!["cargo".to_string(), "xtask".to_string()];
    words.extend(
        std::env::args()
            .skip(1)
            .map(|arg| workspace::shell_quote(&arg)),
    );
    words.join(" ")
}

/// Deletes the crash log of an earlier invocation: called before this invocation's first
/// QEMU boot, so that only a failure of this invocation leaves one.
pub fn begin() -> Result<()> {
    let path = path();
    let session = Session::start(path.clone())
        .with_context(|| format!("cannot remove the old crash log {}", path.display()))?;
    *SESSION.lock().unwrap_or_else(PoisonError::into_inner) = Some(session);
    Ok(())
}

/// Saves the console of a QEMU run that failed unexpectedly and prints where. `run` names the
/// run within the command (e.g. `harness (4 CPUs on max)`), `cause` says why it failed. A
/// file that cannot be written is a warning: it must not hide the failure itself.
pub fn save_failed_run(run: &str, captured: &Captured, cause: &str) {
    let invocation = invocation();
    let header = Header {
        invocation: &invocation,
        run,
        end: captured.end,
        verdict: Verdict::Failed(cause),
        qemu_command: &captured.command,
    };
    let mut guard = SESSION.lock().unwrap_or_else(PoisonError::into_inner);
    let session = match guard.take() {
        Some(session) => session,
        None => match Session::start(path()) {
            Ok(session) => session,
            Err(e) => {
                eprintln!(
                    "xtask: warning: could not replace {}: {e}",
                    path().display()
                );
                return;
            }
        },
    };
    let session = guard.insert(session);
    let shown = workspace::display_path(session.path());
    match session.save(&header, &captured.console) {
        Ok(section) => eprintln!(
            "xtask: {}",
            saved_message(&shown, &captured.console, section)
        ),
        Err(e) => eprintln!("xtask: warning: could not save the console to {shown}: {e}"),
    }
}

/// Writes the console of a deliberate-fault check to `<target>/fault-<name>.log` and returns
/// the path as shown to the user (`None`, after a warning, if it cannot be written). Never
/// touches the crash log.
pub fn save_fault_check(
    name: &str,
    captured: &Captured,
    expected_status: i32,
    result: Result<(), &str>,
) -> Option<String> {
    let invocation = invocation();
    let run = format!("fault check {name}");
    let header = Header {
        invocation: &invocation,
        run: &run,
        end: captured.end,
        verdict: Verdict::FaultCheck {
            expected_status,
            result,
        },
        qemu_command: &captured.command,
    };
    let target = workspace::target_dir();
    match write_fault_log(&target, name, &header, &captured.console) {
        Ok(path) => Some(workspace::display_path(&path)),
        Err(e) => {
            eprintln!(
                "xtask: warning: could not save the console of fault check {name} to {}: {e}",
                fault_log_path(&target, name).display()
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::supervise::{OutputLine, Stream};

    fn console(limit: usize, lines: &[&str]) -> Console {
        let mut console = Console::new(limit);
        for (i, text) in lines.iter().enumerate() {
            let stream = if i % 2 == 0 {
                Stream::Stdout
            } else {
                Stream::Stderr
            };
            console.push(OutputLine {
                stream,
                text: text.to_string(),
            });
        }
        console
    }

    const QEMU: &str = "qemu-system-aarch64 -M virt-7.2,virtualization=on -smp 4";

    fn failed(end: RunEnd, cause: &str) -> Header<'_> {
        Header {
            invocation: "cargo xtask run",
            run: "recording (4 CPUs on max)",
            end,
            verdict: Verdict::Failed(cause),
            qemu_command: QEMU,
        }
    }

    fn render(header: &Header, console: &Console) -> String {
        let mut out = Vec::new();
        write_section(&mut out, header, console).expect("writes to a Vec");
        String::from_utf8(out).expect("utf-8")
    }

    /// A fresh directory under the system's temporary directory.
    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("xtask-crash-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("mkdir");
        dir
    }

    #[test]
    fn exit_statuses_are_named() {
        assert_eq!(
            describe_end(RunEnd::Exited(3)),
            "exit status 3 (unexpected EL2 exception)"
        );
        assert_eq!(
            describe_end(RunEnd::Exited(4)),
            "exit status 4 (hypervisor panic)"
        );
        assert_eq!(
            describe_end(RunEnd::Exited(8)),
            "exit status 8 (hypervisor fatal error)"
        );
        assert_eq!(describe_end(RunEnd::Exited(42)), "exit status 42");
        assert_eq!(
            describe_end(RunEnd::TimedOut { after_secs: 300 }),
            "timeout after 300 s (killed by xtask)"
        );
        assert_eq!(
            describe_end(RunEnd::Killed { signal: Some(9) }),
            "killed by signal 9"
        );
    }

    #[test]
    fn header_names_command_status_and_cause_on_one_line() {
        let header = failed(
            RunEnd::Exited(4),
            "the guest crashed\nhyp: panicked at src/x.rs:1",
        );
        assert_eq!(
            header_line(&header),
            "# hyptrace crash log: cargo xtask run, recording (4 CPUs on max): QEMU ended with \
             exit status 4 (hypervisor panic); cause: the guest crashed / hyp: panicked at \
             src/x.rs:1"
        );
    }

    #[test]
    fn whole_section_in_order() {
        let console = console(1 << 20, &["boot", "hyp: EXCEPTION on CPU 0", "  ESR"]);
        let text = render(&failed(RunEnd::Exited(3), "fatal line"), &console);
        let expected = "\
# hyptrace crash log: cargo xtask run, recording (4 CPUs on max): QEMU ended with exit status 3 (unexpected EL2 exception); cause: fatal line
# qemu: qemu-system-aarch64 -M virt-7.2,virtualization=on -smp 4
# console: 3 lines (stdout and stderr as they arrived)
boot
hyp: EXCEPTION on CPU 0
  ESR
# end of console
";
        assert_eq!(text, expected);
    }

    #[test]
    fn dropped_beginning_is_stated() {
        // Room for about two of these lines (each costs its text plus bookkeeping).
        let limit = 2 * (std::mem::size_of::<OutputLine>() + 6);
        let console = console(limit, &["line-0", "line-1", "line-2", "line-3"]);
        assert_eq!(console.dropped_lines(), 2);
        let text = render(
            &failed(RunEnd::TimedOut { after_secs: 5 }, "hang"),
            &console,
        );
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].contains("timeout after 5 s (killed by xtask); cause: hang"),
            "{}",
            lines[0]
        );
        assert_eq!(
            lines[2],
            format!(
                "# console: the last 2 lines of 4 (stdout and stderr as they arrived); the first \
                 2 lines (12 bytes) were dropped to keep at most {limit} bytes"
            )
        );
        assert_eq!(
            lines[3],
            format!(
                "[... 2 lines dropped: only the last {limit} bytes of the console are kept ...]"
            )
        );
        assert_eq!(&lines[4..], ["line-2", "line-3", "# end of console"]);
        assert_eq!(budget_label(64 << 20), "64 MiB");
        assert_eq!(
            saved_message("target/hyp-crash.log", &console, 1),
            "console of the failed run saved to target/hyp-crash.log (2 lines, the first 2 \
             lines dropped)"
        );
    }

    #[test]
    fn printed_lines() {
        let one = console(1 << 20, &["a"]);
        assert_eq!(
            saved_message("target/hyp-crash.log", &one, 1),
            "console of the failed run saved to target/hyp-crash.log (1 line)"
        );
        let three = console(1 << 20, &["a", "b", "c"]);
        assert_eq!(
            saved_message("/t/hyp-crash.log", &three, 2),
            "console of the failed run appended to /t/hyp-crash.log as failure 2 of this \
             invocation (3 lines)"
        );
    }

    #[test]
    fn fault_check_headers_do_not_claim_a_crash() {
        let mut header = failed(RunEnd::Exited(3), "unused");
        header.run = "fault check stack-overflow";
        header.verdict = Verdict::FaultCheck {
            expected_status: 3,
            result: Ok(()),
        };
        let line = header_line(&header);
        assert_eq!(
            line,
            "# hyptrace deliberate-fault check: cargo xtask run, fault check stack-overflow \
             (expects exit status 3 (unexpected EL2 exception)): QEMU ended with exit status 3 \
             (unexpected EL2 exception); check passed"
        );
        assert!(!line.contains("crash log") && !line.contains("FAILED"));
        header.end = RunEnd::Exited(0);
        header.verdict = Verdict::FaultCheck {
            expected_status: 3,
            result: Err("expected status 3"),
        };
        assert!(header_line(&header)
            .ends_with("exit status 0 (success); check FAILED: expected status 3"));
    }

    #[test]
    fn session_removes_a_stale_log_then_replaces_and_appends() {
        let dir = temp_dir("session");
        let path = path_in(&dir);
        assert!(path.ends_with("hyp-crash.log"));
        fs::write(&path, "stale log of an earlier invocation\n").expect("write");
        let mut session = Session::start(path.clone()).expect("start");
        assert!(!path.exists(), "a stale log must not survive the start");

        let first = console(1 << 20, &["first run"]);
        let header = failed(RunEnd::Exited(3), "one");
        assert_eq!(session.save(&header, &first).expect("save"), 1);
        assert_eq!(
            fs::read_to_string(&path).expect("read"),
            render(&header, &first)
        );

        let second = console(1 << 20, &["second run", "more"]);
        let header2 = failed(RunEnd::Exited(8), "two");
        assert_eq!(session.save(&header2, &second).expect("save"), 2);
        let text = fs::read_to_string(&path).expect("read");
        assert_eq!(
            text,
            format!("{}\n{}", render(&header, &first), render(&header2, &second))
        );

        // A new invocation starts over: the next save replaces, it does not append.
        let mut next = Session::start(path.clone()).expect("start");
        next.save(&header2, &second).expect("save");
        assert_eq!(
            fs::read_to_string(&path).expect("read"),
            render(&header2, &second)
        );
        fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn a_supervised_child_that_fails_is_logged_whole() {
        use crate::supervise::{self, Supervision};
        // The pauses order the streams: each is read on its own thread, so lines of stdout and
        // stderr written close together may arrive in either order.
        let mut command = std::process::Command::new("sh");
        command.args([
            "-c",
            "i=0; while [ $i -lt 300 ]; do echo boot $i; i=$((i+1)); done; \
             sleep 0.2; echo 'qemu: warning' >&2; sleep 0.2; echo 'hyp: panicked at x'; exit 4",
        ]);
        let supervision = Supervision {
            timeout: std::time::Duration::from_secs(30),
            echo: supervise::Echo::Off,
            quiet_lines: |_| false,
            keep: |_| false,
            console_bytes: supervise::CONSOLE_BYTES,
            stop: None,
        };
        let captured = supervise::run(command, &supervision).expect("sh runs");
        assert_eq!(captured.end, RunEnd::Exited(4));
        let dir = temp_dir("supervised");
        let mut session = Session::start(path_in(&dir)).expect("start");
        let header = Header {
            invocation: "cargo xtask test",
            run: "harness (1 CPU on max)",
            end: captured.end,
            verdict: Verdict::Failed("the guest crashed"),
            qemu_command: &captured.command,
        };
        session.save(&header, &captured.console).expect("save");
        let text = fs::read_to_string(path_in(&dir)).expect("read");
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].contains("exit status 4 (hypervisor panic); cause: the guest crashed"));
        assert!(lines[1].starts_with("# qemu: sh -c "), "{}", lines[1]);
        assert_eq!(
            lines[2],
            "# console: 302 lines (stdout and stderr as they arrived)"
        );
        // Every line, not only the tail the supervisor keeps for its own report.
        assert_eq!(lines[3], "boot 0");
        assert_eq!(lines[302], "boot 299");
        assert_eq!(
            &lines[303..],
            ["qemu: warning", "hyp: panicked at x", "# end of console"]
        );
        assert_eq!(
            saved_message("target/hyp-crash.log", &captured.console, 1),
            "console of the failed run saved to target/hyp-crash.log (302 lines)"
        );
        fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn session_creates_a_missing_target_directory() {
        let dir = temp_dir("mkdir");
        let path = path_in(&dir.join("not/yet"));
        let mut session = Session::start(path.clone()).expect("start");
        session
            .save(&failed(RunEnd::Exited(1), "x"), &console(1 << 20, &["a"]))
            .expect("save");
        assert!(path.is_file());
        fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn fault_logs_leave_the_crash_log_alone() {
        let dir = temp_dir("fault");
        let crash = path_in(&dir);
        fs::write(&crash, "crash log of a real failure\n").expect("write");
        let header = Header {
            invocation: "cargo xtask test",
            run: "fault check write-text",
            end: RunEnd::Exited(3),
            verdict: Verdict::FaultCheck {
                expected_status: 3,
                result: Ok(()),
            },
            qemu_command: QEMU,
        };
        let lines = console(1 << 20, &["hyp:   cause    = permission fault"]);
        let written = write_fault_log(&dir, "write-text", &header, &lines).expect("write");
        assert_eq!(written, dir.join("fault-write-text.log"));
        assert_eq!(
            fs::read_to_string(&written).expect("read"),
            render(&header, &lines)
        );
        assert_eq!(
            fs::read_to_string(&crash).expect("read"),
            "crash log of a real failure\n"
        );
        fs::remove_dir_all(&dir).expect("cleanup");
    }
}
