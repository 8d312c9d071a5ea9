//! `cargo xtask run`: build, boot both images in QEMU, record a trace, summarise it.
//!
//! The guest gets `hyptrace run duration_ms=.. buffer_kb=.. period_ms=.. [events=..]
//! output=.. [words...]` on its semihosting command line ([`RunArgs::guest_words`]), records
//! for the duration while draining every CPU, writes trace.dat through semihosting (relative
//! names resolve against QEMU's working directory, the workspace root) and prints its per-CPU
//! accounting ([`crate::trace_summary`]), which is turned into the summary here.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::bench_json::Json;
use crate::build;
use crate::cli::DurationMs;
use crate::cli::RunArgs;
use crate::crash_log;
use crate::event_counts::EventCounts;
use crate::harness_outcome::{self, HarnessReport};
use crate::qemu::{self, QemuConfig};
use crate::supervise::{Echo, RunEnd, StopCause};
use crate::trace_summary::GuestTrace;
use crate::workspace;

/// How many console lines a failure report repeats.
const FAILURE_TAIL_LINES: usize = 40;

/// Runs `cargo xtask run`.
pub fn run(args: &RunArgs) -> Result<()> {
    let note =
        crate::limits::buffer_note(args.cpus, args.buffer_size_kb, args.records_host_events())
            .map_err(anyhow::Error::msg)?;
    eprintln!("xtask: {note}");
    let output = TraceOutput::prepare(&args.output_path())?;
    crash_log::begin()?;
    let images = build::build_images(args.build.profile())?;
    let words = args.guest_words_to(&output.partial_word);
    check_guest_words(&words)?;
    let config = QemuConfig::new(&images, args.cpus, words)?.with_cpu_model(&args.cpu_model);
    let timeout = args.timeout_secs();
    let echo = match (args.quiet, args.json) {
        (true, _) => Echo::Off,
        (false, true) => Echo::Stderr,
        (false, false) => Echo::Same,
    };
    if args.duration.until_interrupted() {
        eprintln!("xtask: recording until Ctrl-C (or --timeout {timeout} s)");
    }
    let captured = qemu::run_recording(
        &config,
        Duration::from_secs(timeout),
        // Each figure once on a terminal; with --json, stderr is the whole console, a log
        // for tools (the interrupted-recording CI step reads the accounting from it).
        match echo {
            Echo::Same => (echo, crate::trace_summary::summary_repeats),
            _ => (echo, |_| false),
        },
        is_run_line,
        Duration::from_secs(STOP_GRACE_SECS),
    )?;
    let report = HarnessReport::parse(&captured.kept);
    let guest = GuestTrace::parse(&captured.kept);
    let run = format!("recording ({} CPUs on {})", args.cpus, args.cpu_model);
    if let Err(cause) = verdict(
        captured.end,
        captured.stop,
        &report.fatal,
        &guest.notes,
        timeout,
    ) {
        captured.print_last_lines(FAILURE_TAIL_LINES);
        crash_log::save_failed_run(&run, &captured, &cause);
        eprintln!("xtask: {}", output.kept_message());
        bail!("run failed: {cause}");
    }
    eprintln!(
        "xtask: QEMU exited 0 after {:.1} s ({} console lines)",
        captured.elapsed.as_secs_f64(),
        captured.total_lines
    );
    if captured.stop.is_some() && guest.stopped_ms.is_none() {
        // Asked to stop, it ended well but not because of the stop byte: it was done.
        eprintln!("xtask: the guest had finished recording when asked to stop");
    }
    let problems = guest.problems(args.cpus);
    if !problems.is_empty() {
        captured.print_last_lines(FAILURE_TAIL_LINES);
        let cause = format!(
            "the guest exited 0 but its trace summary is incomplete ({}); has its output \
             format changed? (parsed in xtask/src/trace_summary.rs)",
            problems.join("; ")
        );
        crash_log::save_failed_run(&run, &captured, &cause);
        eprintln!("xtask: {}", output.kept_message());
        bail!(cause);
    }
    // The guest names the file it wrote: the `.partial` file, which now replaces the
    // previous recording, or another one an extra `output=` word named.
    let written = match &guest.saved {
        Some((path, _)) if *path != output.partial_word => workspace::qemu_working_dir().join(path),
        _ => output.finish()?,
    };
    let file_bytes = std::fs::metadata(&written)
        .with_context(|| {
            format!(
                "the guest reported saving {} but it cannot be read",
                written.display()
            )
        })?
        .len();
    // Everything below goes to stdout, or with --json to stderr, stdout holding the JSON.
    let mut lines = vec![render_summary(
        &guest,
        &workspace::display_path(&written),
        file_bytes,
    )];
    let with_latency = !guest.host_cpus.is_empty();
    let (counts, latency) =
        match file_figures(&written, with_latency) {
            Ok((counts, latency)) => {
                lines.push(counts.table(u32::from(args.cpus)).trim_end().to_string());
                // The file's events per CPU must be what the guest says it read.
                for (buffer, list) in [("hypervisor", &guest.cpus), ("", &guest.host_cpus)] {
                    let buffer = if guest.host_cpus.is_empty() {
                        ""
                    } else {
                        buffer
                    };
                    for c in list.iter() {
                        let decoded = counts.cpu_total(buffer, c.cpu);
                        if decoded != c.read {
                            lines.push(format!(
                            "warning: CPU {} of the {} buffer: the file holds {decoded} events, \
                             the guest read {}",
                            c.cpu,
                            if buffer.is_empty() { "top-level" } else { buffer },
                            c.read
                        ));
                        }
                    }
                }
                (Some(counts), latency)
            }
            Err(e) => {
                lines.push(format!(
                    "events per CPU: the file could not be decoded: {e:#}"
                ));
                (None, None)
            }
        };
    let shape = crate::trace_summary::RunShape {
        duration_ms: args.duration.0,
        period_ms: args.period_ms,
        buffer_kb: args.buffer_size_kb,
    };
    let advice = crate::trace_summary::advice(&guest, shape);
    lines.extend(advice.iter().cloned());
    let shown = workspace::display_path(&written);
    lines.extend(viewer_hints(std::env::var_os("PATH").as_deref(), &shown));
    if with_latency {
        lines.push(match &latency {
            Some(line) => format!("latency: {line}"),
            None => "latency: no complete null hypercall was recorded".to_string(),
        });
    }
    let stopped = guest.stopped_ms.and(captured.stop);
    if let Some(line) = stopped_line(stopped, guest.stopped_ms, args.duration, timeout) {
        lines.push(line);
    }
    if args.json {
        for line in &lines {
            eprintln!("{line}");
        }
        let json = run_json(
            &guest,
            &shown,
            file_bytes,
            counts.as_ref(),
            &advice,
            latency.as_deref(),
            stopped,
        );
        println!("{}", json.render());
    } else {
        for line in &lines {
            println!("{line}");
        }
    }
    if stopped == Some(StopCause::Timeout) {
        bail!(
            "the recording was still running after {timeout} s and was stopped; the file \
             keeps what was read until then (raise --timeout if the run is expected to take \
             longer)"
        );
    }
    Ok(())
}

/// How long a guest asked to stop may take to drain its buffers, write the file and exit
/// before it is killed (the default timeout's slack: the same work as after a full run).
const STOP_GRACE_SECS: u64 = crate::cli::RUN_TIMEOUT_SLACK_SECS;

/// The summary's line on a recording the stop byte ended early (`cause`), after
/// `stopped_ms`; none when it ran its course.
fn stopped_line(
    cause: Option<StopCause>,
    stopped_ms: Option<u64>,
    duration: DurationMs,
    timeout_secs: u64,
) -> Option<String> {
    let ms = stopped_ms?;
    let asked = if duration.until_interrupted() {
        "until Ctrl-C".to_string()
    } else {
        format!("of the {} ms asked", duration.0)
    };
    let why = match cause? {
        StopCause::Interrupt => "interrupted".to_string(),
        StopCause::Timeout => format!("PARTIAL: stopped at the {timeout_secs} s timeout"),
    };
    Some(format!(
        "{why} after {ms} ms ({asked}): the file holds every event read until then"
    ))
}

/// The events per buffer, CPU and name of the recording at `path`, and with `latency` the
/// `cargo xtask report --latency` line, in one pass over the decoded file.
fn file_figures(path: &Path, latency: bool) -> Result<(EventCounts, Option<String>)> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let report = crate::report::Report::new(&bytes)?;
    let sel = crate::report::Selection::default();
    let mut counts = EventCounts::default();
    if latency {
        let m = crate::report::matching_with(report, &sel, |l| counts.line(l))?;
        return Ok((counts, crate::latency::summary_line(&m)));
    }
    let summary = report.for_each_line(&sel, |l| {
        counts.line(l);
        true
    });
    if !summary.is_clean() {
        bail!("{}", summary.problems().trim_end());
    }
    Ok((counts, None))
}

/// `cargo xtask run --json`: the file, the per-CPU accounting of both buffers, the events
/// per buffer, name and CPU, the guest's notes, the loss advice and the latency line.
fn run_json(
    guest: &GuestTrace,
    file: &str,
    bytes: u64,
    counts: Option<&EventCounts>,
    advice: &[String],
    latency: Option<&str>,
    stopped: Option<StopCause>,
) -> Json {
    let cpus = |list: &[crate::trace_summary::CpuCounts]| {
        Json::Arr(
            list.iter()
                .map(|c| {
                    let mut o = Json::object();
                    o.set("cpu", Json::Num(f64::from(c.cpu)));
                    o.set("written", Json::Num(c.written as f64));
                    o.set("read", Json::Num(c.read as f64));
                    o.set("lost", Json::Num(c.lost as f64));
                    o.set("pages", Json::Num(c.pages as f64));
                    o
                })
                .collect(),
        )
    };
    let mut o = Json::object();
    o.set("file", Json::str(file));
    o.set("bytes", Json::Num(bytes as f64));
    o.set("cpus", cpus(&guest.cpus));
    o.set("host_cpus", cpus(&guest.host_cpus));
    o.set("events", counts.map_or(Json::Null, EventCounts::json));
    o.set(
        "recorded_ms",
        guest
            .recorded_ms
            .map_or(Json::Null, |ms| Json::Num(ms as f64)),
    );
    o.set(
        "notes",
        Json::Arr(guest.notes.iter().map(|n| Json::str(n)).collect()),
    );
    o.set(
        "advice",
        Json::Arr(advice.iter().map(|a| Json::str(a)).collect()),
    );
    o.set("latency", latency.map_or(Json::Null, Json::str));
    o.set(
        "stopped",
        match stopped {
            None => Json::Null,
            Some(StopCause::Interrupt) => Json::str("interrupt"),
            Some(StopCause::Timeout) => Json::str("timeout"),
        },
    );
    o
}

/// The guest's own parser (`host_shim::harness::Cmdline`, the one it runs at boot) on the
/// words it would get: a word it would reject is a usage error here, before QEMU starts.
fn check_guest_words(words: &[String]) -> Result<()> {
    let line = format!("hyptrace {}", words.join(" "));
    if let Err(e) = host_shim::harness::Cmdline::parse(&line) {
        bail!("usage: the guest would reject its command line: {e}");
    }
    Ok(())
}

/// How to install each viewer the summary names that `path_var` does not hold, with the
/// recording (`file`) to read meanwhile with hyptrace's own reader.
fn viewer_hints(path_var: Option<&std::ffi::OsStr>, file: &str) -> Vec<String> {
    [crate::tools::TRACE_CMD, crate::tools::KERNELSHARK]
        .into_iter()
        .filter(|(viewer, _)| crate::tools::find_on_path(viewer, path_var).is_none())
        .map(|(viewer, package)| {
            format!(
                "{viewer} is not installed: sudo apt-get install -y --no-install-recommends \
                 {package}  (meanwhile `cargo xtask report {}` prints what trace-cmd prints)",
                workspace::shell_quote(file)
            )
        })
        .collect()
}

/// The lines `run` keeps: the harness's fatal markers and every line of the recorder.
fn is_run_line(line: &str) -> bool {
    harness_outcome::is_relevant(line) || line.trim_start().starts_with("trace:")
}

/// Where the guest writes trace.dat, prepared before QEMU starts.
///
/// The guest writes `NAME.partial` next to the file the user named, and only a run that
/// ended well renames it over that file: a run that fails, times out or is interrupted
/// leaves the previous recording as it was.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceOutput {
    /// The path as the user gave it (relative to QEMU's working directory, or absolute).
    pub word: String,
    /// The recording, as an absolute path.
    pub absolute: PathBuf,
    /// What the guest is told to write: `word` with `.partial` appended.
    pub partial_word: String,
    /// The same file as an absolute path.
    pub partial: PathBuf,
}

impl TraceOutput {
    /// Checks `path` (absolute, or relative to the workspace root), creates its parent
    /// directory and removes a `.partial` file an earlier run left there. The recording
    /// itself is replaced only by [`finish`](Self::finish).
    pub fn prepare(path: &Path) -> Result<Self> {
        let output = Self::resolve(path, &workspace::qemu_working_dir())?;
        if let Some(parent) = output.absolute.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        match std::fs::remove_file(&output.partial) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot remove {}", output.partial.display()))
            }
        }
        if output.absolute.extension().is_none_or(|e| e != "dat") {
            eprintln!(
                "xtask: note: {} does not end in .dat; KernelShark only opens *.dat files",
                output.word
            );
        }
        Ok(output)
    }

    /// After a run that ended well: the `.partial` file becomes the recording (one rename,
    /// so a reader never sees half a file). Returns the recording's path.
    pub fn finish(&self) -> Result<PathBuf> {
        std::fs::rename(&self.partial, &self.absolute).with_context(|| {
            format!(
                "the run wrote no {} to rename to {}",
                self.partial.display(),
                self.absolute.display()
            )
        })?;
        Ok(self.absolute.clone())
    }

    /// What a failed run left: the previous recording, if any, and no finished new one.
    pub fn kept_message(&self) -> String {
        let previous = if self.absolute.exists() {
            format!("the previous recording {} is unchanged", self.word)
        } else {
            format!("no recording was saved to {}", self.word)
        };
        if self.partial.exists() {
            format!(
                "{previous}; the incomplete file the guest began is {}",
                self.partial_word
            )
        } else {
            previous
        }
    }

    /// The paths of a recording at `path` (absolute, or relative to the workspace root),
    /// checked, without touching the file system.
    pub fn paths(path: &Path) -> Result<Self> {
        Self::resolve(path, &workspace::qemu_working_dir())
    }

    /// [`TraceOutput::prepare`] without touching the file system: the checks and the paths.
    fn resolve(path: &Path, qemu_dir: &Path) -> Result<Self> {
        let Some(word) = path.to_str() else {
            bail!("--output {} is not UTF-8", path.display());
        };
        if word.is_empty() || word.contains(char::is_whitespace) {
            bail!(
                "--output {word:?} is empty or contains whitespace; the guest receives its \
                 arguments joined by spaces, so choose a path without spaces"
            );
        }
        if word.ends_with('/') || path.file_name().is_none() {
            bail!("--output {word:?} names a directory; give a file name such as trace.dat");
        }
        let partial_word = format!("{word}.partial");
        Ok(Self {
            word: word.to_string(),
            absolute: qemu_dir.join(path),
            partial: qemu_dir.join(&partial_word),
            partial_word,
        })
    }
}

/// The summary after a successful recording: the per-CPU table, the file, how to view it.
fn render_summary(guest: &GuestTrace, path: &str, file_bytes: u64) -> String {
    let mut out = String::from("trace summary (per CPU: read + lost = written):\n");
    // Writing to a String cannot fail.
    let _ = writeln!(out, "{}", guest.table());
    if let Some(n) = guest.printk_formats {
        let _ = writeln!(
            out,
            "hyp_printk: the formats of {n} call sites are in the file (trace-cmd prints their text)"
        );
    }
    for note in &guest.notes {
        let _ = writeln!(out, "  note: {note}");
    }
    let _ = writeln!(
        out,
        "trace file: {path} ({file_bytes} bytes, {:.1} MiB)",
        file_bytes as f64 / (1024.0 * 1024.0)
    );
    let quoted = workspace::shell_quote(path);
    let _ = write!(
        out,
        "View it with: trace-cmd report -i {quoted}  |  kernelshark {quoted}"
    );
    out
}

/// Whether a run succeeded: QEMU exited 0 and printed no fatal line. The guest's own notes
/// (`trace: FAILED: ...`) explain a status 1.
fn verdict(
    end: RunEnd,
    stop: Option<StopCause>,
    fatal: &[String],
    notes: &[String],
    timeout_secs: u64,
) -> Result<(), String> {
    if let Some(first) = fatal.first() {
        return Err(format!("the guest reported a fatal error ({end}): {first}"));
    }
    let said = if notes.is_empty() {
        String::new()
    } else {
        format!(": {}", notes.join(" / "))
    };
    match end {
        RunEnd::Exited(0) => Ok(()),
        RunEnd::Exited(1) => Err(format!("the guest exited with status 1 (failure){said}")),
        RunEnd::Exited(code) if code == host_shim::harness::EXIT_BAD_CMDLINE as i32 => {
            Err(format!(
                "the guest rejected its command line (status {code}: a usage error, not a fault; \
             its reason is in the last lines above)"
            ))
        }
        RunEnd::Exited(code) => Err(format!(
            "the guest exited with status {code} (2+ means a fault or panic)"
        )),
        RunEnd::Killed { .. } if stop == Some(StopCause::Interrupt) => Err(format!(
            "QEMU was {end} after a second Ctrl-C; the previous recording is kept"
        )),
        RunEnd::Killed { .. } => Err(format!("QEMU was {end}")),
        RunEnd::TimedOut { after_secs } => Err(match stop {
            Some(StopCause::Interrupt) => format!(
                "the guest did not end after Ctrl-C asked it to stop: killed after {after_secs} \
                 s; look for a hang in the last lines"
            ),
            Some(StopCause::Timeout) => format!(
                "QEMU still running at the {timeout_secs} s timeout, asked to stop, and killed \
                 after {after_secs} s; raise --timeout if the guest needs longer, else look for \
                 a hang in the last lines"
            ),
            None => format!(
                "QEMU still running after {after_secs} s and killed; raise --timeout if the \
                 guest needs longer, else look for a hang in the last lines"
            ),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_clean_exit_zero_succeeds() {
        assert_eq!(verdict(RunEnd::Exited(0), None, &[], &[], 120), Ok(()));
        assert!(verdict(RunEnd::Exited(1), None, &[], &[], 120).is_err());
        assert!(verdict(RunEnd::Exited(3), None, &[], &[], 120).is_err_and(|e| e.contains("fault")));
        assert!(
            verdict(RunEnd::TimedOut { after_secs: 120 }, None, &[], &[], 120)
                .is_err_and(|e| e.contains("120 s"))
        );
        assert!(verdict(RunEnd::Killed { signal: Some(2) }, None, &[], &[], 120).is_err());
    }

    #[test]
    fn a_stopped_run_that_did_not_end_says_what_asked_it_to_stop() {
        let end = RunEnd::TimedOut { after_secs: 125 };
        let ctrl_c = verdict(end, Some(StopCause::Interrupt), &[], &[], 86_520).unwrap_err();
        assert!(
            ctrl_c.contains("after Ctrl-C") && !ctrl_c.contains("86520"),
            "{ctrl_c}"
        );
        let timeout = verdict(end, Some(StopCause::Timeout), &[], &[], 5).unwrap_err();
        assert!(
            timeout.contains("at the 5 s timeout, asked to stop"),
            "{timeout}"
        );
        let plain = verdict(end, None, &[], &[], 5).unwrap_err();
        assert!(!plain.contains("asked to stop"), "{plain}");
        let killed = RunEnd::Killed { signal: Some(9) };
        let again = verdict(killed, Some(StopCause::Interrupt), &[], &[], 5).unwrap_err();
        assert!(again.contains("second Ctrl-C"), "{again}");
    }

    #[test]
    fn fatal_line_fails_even_with_exit_zero() {
        let fatal = ["EXCEPTION: EC=0x24".to_string()];
        assert!(verdict(RunEnd::Exited(0), None, &fatal, &[], 120)
            .is_err_and(|e| e.contains("EC=0x24")));
    }

    #[test]
    fn guest_failure_notes_explain_status_1() {
        let notes = ["trace: FAILED: cannot create x/y.dat: errno 2".to_string()];
        assert_eq!(
            verdict(RunEnd::Exited(1), None, &[], &notes, 120),
            Err(
                "the guest exited with status 1 (failure): trace: FAILED: cannot create \
                 x/y.dat: errno 2"
                    .into()
            )
        );
    }

    #[test]
    fn recorder_lines_are_kept() {
        assert!(is_run_line("trace: cpu 0 written 1 read 1 lost 0 pages 1"));
        assert!(is_run_line("trace: saved target/trace.dat (4096 bytes)"));
        assert!(is_run_line("hyp: EXCEPTION on CPU 1"));
        assert!(!is_run_line("host: CPU 1 (MPIDR 0x1) is up at EL1"));
    }

    #[test]
    fn output_paths() {
        let ws = Path::new("/ws");
        let rel = TraceOutput::resolve(Path::new("target/trace.dat"), ws).expect("relative");
        assert_eq!(rel.word, "target/trace.dat");
        assert_eq!(rel.absolute, Path::new("/ws/target/trace.dat"));
        let abs = TraceOutput::resolve(Path::new("/tmp/t,1.dat"), ws).expect("absolute");
        assert_eq!(abs.word, "/tmp/t,1.dat");
        assert_eq!(abs.absolute, Path::new("/tmp/t,1.dat"));
        for bad in ["", "my trace.dat", "target/", ".."] {
            assert!(
                TraceOutput::resolve(Path::new(bad), ws).is_err(),
                "{bad:?} should be rejected"
            );
        }
    }

    #[test]
    fn a_run_replaces_the_recording_only_when_it_finishes() {
        let dir = std::env::temp_dir().join(format!("xtask-run-{}", std::process::id()));
        let file = dir.join("sub/old.dat");
        std::fs::create_dir_all(file.parent().expect("parent")).expect("mkdir");
        std::fs::write(&file, b"previous").expect("write");
        let partial = dir.join("sub/old.dat.partial");
        std::fs::write(&partial, b"left by an earlier run").expect("write");
        let output = TraceOutput::prepare(&file).expect("prepare");
        assert_eq!(
            (output.absolute.as_path(), output.partial.as_path()),
            (file.as_path(), partial.as_path())
        );
        assert!(output.partial_word.ends_with("old.dat.partial"));
        assert!(
            !partial.exists(),
            "an earlier run's partial file is removed"
        );
        assert_eq!(
            std::fs::read(&file).expect("read"),
            b"previous",
            "the recording is kept"
        );
        // A run that failed before writing: the recording is untouched, and said so.
        assert!(output.finish().is_err());
        assert!(output.kept_message().contains("is unchanged"));
        // A run that failed while writing: the partial file is named too.
        std::fs::write(&partial, b"half").expect("write");
        assert!(output.kept_message().contains("old.dat.partial"));
        // A run that ended well: one rename.
        std::fs::write(&partial, b"new").expect("write");
        assert_eq!(output.finish().expect("finish"), file);
        assert_eq!(std::fs::read(&file).expect("read"), b"new");
        assert!(!partial.exists());
        let fresh = dir.join("new/dir/t.dat");
        let output = TraceOutput::prepare(&fresh).expect("prepare");
        assert!(fresh.parent().expect("parent").is_dir());
        assert!(output.kept_message().starts_with("no recording was saved"));
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn guest_words_are_checked_with_the_guests_parser() {
        let words = |extra: &[&str]| {
            let mut w: Vec<String> = ["run", "duration_ms=100", "output=t.dat"]
                .map(String::from)
                .into();
            w.extend(extra.iter().map(|s| s.to_string()));
            w
        };
        assert!(check_guest_words(&words(&[])).is_ok());
        assert!(check_guest_words(&words(&["seed=3"])).is_ok());
        let e = check_guest_words(&words(&["bogus=1"]))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("usage: the guest would reject") && e.contains("bogus=1"),
            "{e}"
        );
        assert!(verdict(RunEnd::Exited(9), None, &[], &[], 10)
            .unwrap_err()
            .contains("a usage error, not a fault"));
    }

    #[test]
    fn a_missing_viewer_comes_with_its_install_command() {
        let none = viewer_hints(
            Some(std::ffi::OsStr::new("/nonexistent")),
            "target/trace.dat",
        );
        assert_eq!(none.len(), 2);
        assert!(none[0].starts_with("trace-cmd is not installed: sudo apt-get install"));
        assert!(none[1].contains("kernelshark"));
        assert!(none[0].contains("cargo xtask report target/trace.dat"));
        // A directory holding both (as fake executables) gives no hint.
        let dir = std::env::temp_dir().join(format!("xtask-viewers-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        for name in ["trace-cmd", "kernelshark"] {
            let f = dir.join(name);
            std::fs::write(&f, "#!/bin/sh\n").expect("write");
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        assert!(viewer_hints(Some(dir.as_os_str()), "t.dat").is_empty());
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn summary_has_table_file_and_viewers() {
        let lines = [
            "trace: cpu 0 written 5 read 5 lost 0 pages 1",
            "trace: cpu 1 written 9 read 4 lost 5 pages 2",
            "trace: the host's page store is full: stopping early",
            "trace: 8 hyp_printk formats",
            "trace: saved target/trace.dat (12288 bytes)",
        ];
        let guest = GuestTrace::parse(&lines);
        let text = render_summary(&guest, "target/trace.dat", 12288);
        assert!(text.contains("hyp_printk: the formats of 8 call sites are in the file"));
        assert!(!text.contains("note: trace: 8"), "not a note: {text}");
        let rows: Vec<Vec<&str>> = text
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(rows[2], ["0", "5", "5", "0", "1"]);
        assert_eq!(rows[3], ["1", "9", "4", "5", "2"]);
        assert_eq!(rows[4], ["total", "14", "9", "5", "3"]);
        assert!(text.contains("note: trace: the host's page store is full"));
        assert!(text.contains("trace file: target/trace.dat (12288 bytes, 0.0 MiB)"));
        assert!(text.ends_with(
            "View it with: trace-cmd report -i target/trace.dat  |  kernelshark target/trace.dat"
        ));
    }
}
