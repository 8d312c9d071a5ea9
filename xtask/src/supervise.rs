//! Running a child process under a deadline while draining its stdout and stderr.
//!
//! Both pipes are read on their own threads from the moment the child starts: reading only
//! after the child exits deadlocks as soon as a pipe fills. Lines are echoed live (optionally)
//! and kept for later judgement; the child is killed when the deadline passes.
//!
//! Memory stays bounded whatever the child prints: a line is cut every [`MAX_LINE_BYTES`], at
//! most [`CHANNEL_LINES`] lines wait between the reader threads and the collector (a reader
//! blocks, and so does the child's write, when the collector falls behind), and the whole
//! console ([`Console`]) keeps only its most recent [`Supervision::console_bytes`].
//!
//! A child that can stop cleanly ([`Supervision::stop`], the recorder) is asked to, with a
//! byte on its stdin, at the deadline or on Ctrl-C, and killed only if it has not ended after
//! a grace period (or on a second Ctrl-C). It runs in its own process group then, so the
//! terminal's Ctrl-C reaches xtask alone and the child is stopped, not killed.

use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::workspace;

/// How often the child's exit and the deadline are checked while no output arrives.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// How long to keep reading after the child exited, in case something else holds the pipes.
const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// How many of the most recent lines are kept for failure reports.
pub const TAIL_LINES: usize = 200;

/// How much of the console [`Console`] keeps by default: the last 64 MiB.
pub const CONSOLE_BYTES: usize = 64 << 20;

/// A longer run of bytes without a newline is cut into lines of this size, so that a child
/// printing without newlines cannot grow a reader's buffer without bound.
pub const MAX_LINE_BYTES: usize = 64 << 10;

/// How many lines may wait between the reader threads and the collector.
const CHANNEL_LINES: usize = 4096;

/// What [`Console`] charges for each line beyond its text: the line's own bookkeeping.
const LINE_OVERHEAD: usize = std::mem::size_of::<OutputLine>();

/// Which of the child's output streams a line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    /// Standard output (QEMU: the guest's serial console).
    Stdout,
    /// Standard error (QEMU: its own messages and the semihosting console).
    Stderr,
}

/// One line of the child's output, without its line ending.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutputLine {
    /// Where it came from.
    pub stream: Stream,
    /// The text, decoded lossily from UTF-8, with trailing `\r`/`\n` removed.
    pub text: String,
}

impl AsRef<str> for OutputLine {
    fn as_ref(&self) -> &str {
        &self.text
    }
}

/// How the child ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunEnd {
    /// It exited with this status code.
    Exited(i32),
    /// A signal killed it (not our timeout), e.g. Ctrl-C or the OOM killer.
    Killed {
        /// The signal number, when known.
        signal: Option<i32>,
    },
    /// We killed it because it was still running after this many seconds.
    TimedOut {
        /// The timeout that expired, in seconds.
        after_secs: u64,
    },
}

impl std::fmt::Display for RunEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunEnd::Exited(code) => write!(f, "exit status {code}"),
            RunEnd::Killed { signal: Some(s) } => write!(f, "killed by signal {s}"),
            RunEnd::Killed { signal: None } => write!(f, "killed by a signal"),
            RunEnd::TimedOut { after_secs } => write!(f, "timeout after {after_secs} s"),
        }
    }
}

/// Where the child's lines are echoed live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Echo {
    /// Not at all.
    Off,
    /// To our stdout or stderr, as the child printed them.
    Same,
    /// Both streams to our stderr (our stdout carries something else: JSON).
    Stderr,
}

/// Why a child that can stop cleanly was asked to ([`Captured::stop`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopCause {
    /// The deadline passed.
    Timeout,
    /// Ctrl-C (or SIGTERM, SIGHUP) reached xtask.
    Interrupt,
}

/// How a child that can stop cleanly is stopped.
#[derive(Clone, Debug)]
pub struct StopRequest {
    /// The byte written to its stdin to ask it to stop.
    pub byte: u8,
    /// How long it may take to end after that, before it is killed.
    pub grace: Duration,
    /// Interrupts received so far (Ctrl-C and its kin: see [`interrupts`]): the first asks
    /// the child to stop, another one kills it.
    pub interrupts: Arc<AtomicUsize>,
}

/// The process's interrupt count, counted from the first call on by a Ctrl-C handler (which
/// takes over SIGINT, SIGTERM and SIGHUP: xtask no longer dies of them but lets the child
/// stop cleanly, see [`StopRequest`]). `None` when no handler could be installed.
pub fn interrupts() -> Option<Arc<AtomicUsize>> {
    static COUNT: std::sync::OnceLock<Option<Arc<AtomicUsize>>> = std::sync::OnceLock::new();
    COUNT
        .get_or_init(|| {
            let count = Arc::new(AtomicUsize::new(0));
            let seen = Arc::clone(&count);
            // Relaxed: a counter read by polling; the child's stop orders nothing else.
            ctrlc::set_handler(move || {
                seen.fetch_add(1, Ordering::Relaxed);
            })
            .ok()
            .map(|()| count)
        })
        .clone()
}

/// What to do with the child and its output.
pub struct Supervision {
    /// Stop the child when it runs longer than this: ask it ([`Supervision::stop`]) or kill
    /// it.
    pub timeout: Duration,
    /// Echo each line live.
    pub echo: Echo,
    /// Lines not echoed (they are kept all the same): what the caller prints again itself.
    pub quiet_lines: fn(&str) -> bool,
    /// Which lines to keep in [`Captured::kept`] (every line also passes through the tail).
    pub keep: fn(&str) -> bool,
    /// How much of the whole console [`Captured::console`] keeps (the most recent lines);
    /// normally [`CONSOLE_BYTES`].
    pub console_bytes: usize,
    /// How to ask the child to stop cleanly; `None`: kill it at the deadline (and let Ctrl-C
    /// reach it as it reaches xtask).
    pub stop: Option<StopRequest>,
}

/// Every line of the child's output in arrival order (both streams), keeping only the most
/// recent ones that fit in a byte budget: each line costs its text plus [`LINE_OVERHEAD`].
/// When a new line does not fit, the oldest lines are dropped and counted. The newest line is
/// always kept, even if it alone exceeds the budget (lines are at most [`MAX_LINE_BYTES`]).
#[derive(Debug)]
pub struct Console {
    lines: VecDeque<OutputLine>,
    bytes: usize,
    limit: usize,
    dropped_lines: u64,
    dropped_bytes: u64,
}

impl Console {
    /// An empty console that keeps at most `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self {
            lines: VecDeque::new(),
            bytes: 0,
            limit,
            dropped_lines: 0,
            dropped_bytes: 0,
        }
    }

    /// Appends a line, dropping the oldest ones while over the budget.
    pub fn push(&mut self, line: OutputLine) {
        self.bytes += cost(&line);
        self.lines.push_back(line);
        while self.bytes > self.limit && self.lines.len() > 1 {
            if let Some(old) = self.lines.pop_front() {
                self.bytes -= cost(&old);
                self.dropped_lines += 1;
                self.dropped_bytes += old.text.len() as u64;
            }
        }
    }

    /// The lines kept, oldest first.
    pub fn lines(&self) -> impl Iterator<Item = &OutputLine> {
        self.lines.iter()
    }

    /// How many lines are kept.
    pub fn len(&self) -> usize {
        self.lines.len()
    }

    /// How many of the oldest lines were dropped to stay within the budget.
    pub fn dropped_lines(&self) -> u64 {
        self.dropped_lines
    }

    /// How many bytes of text those dropped lines held.
    pub fn dropped_bytes(&self) -> u64 {
        self.dropped_bytes
    }

    /// The budget in bytes.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// The bytes charged for the lines kept (text plus bookkeeping).
    #[cfg(test)]
    pub fn charged_bytes(&self) -> usize {
        self.bytes
    }
}

/// What a line costs in [`Console`]'s budget.
fn cost(line: &OutputLine) -> usize {
    line.text.len() + LINE_OVERHEAD
}

/// Everything seen of a finished child.
#[derive(Debug)]
pub struct Captured {
    /// How it ended.
    pub end: RunEnd,
    /// The lines selected by [`Supervision::keep`], in arrival order.
    pub kept: Vec<OutputLine>,
    /// The last [`TAIL_LINES`] lines of any kind, in arrival order.
    pub tail: Vec<OutputLine>,
    /// How many lines were read in total.
    pub total_lines: usize,
    /// The whole console, both streams in arrival order (bounded: see [`Console`]).
    pub console: Console,
    /// The command line as started (for logs: how to reproduce the run).
    pub command: String,
    /// Wall-clock time from start to exit.
    pub elapsed: Duration,
    /// Why the child was asked to stop ([`Supervision::stop`]), if it was.
    pub stop: Option<StopCause>,
}

impl Captured {
    /// Prints the last `count` lines (at most [`TAIL_LINES`]) to stderr between markers.
    pub fn print_last_lines(&self, count: usize) {
        let start = self.tail.len().saturating_sub(count);
        let lines = &self.tail[start..];
        eprintln!("---- last {} console lines ----", lines.len());
        for line in lines {
            eprintln!("{}", line.text);
        }
        eprintln!("---- end of console ----");
    }
}

/// Starts `command` with piped stdout/stderr, and stdin null (or piped, to ask it to stop:
/// [`Supervision::stop`]), and supervises it to the end.
pub fn run(mut command: Command, supervision: &Supervision) -> Result<Captured> {
    let line = workspace::display_command(&command);
    let start = Instant::now();
    if supervision.stop.is_some() {
        command.stdin(Stdio::piped());
        own_process_group(&mut command);
    } else {
        command.stdin(Stdio::null());
    }
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("could not start `{line}`"))?;
    let (sender, receiver) = mpsc::sync_channel(CHANNEL_LINES);
    let readers = [
        spawn_reader(child.stdout.take(), Stream::Stdout, sender.clone()),
        spawn_reader(child.stderr.take(), Stream::Stderr, sender),
    ];
    let mut collector = Collector::new(supervision);
    let (end, stop) = wait_draining(&mut child, &receiver, &mut collector, supervision)
        .with_context(|| format!("while supervising `{line}`"))?;
    let elapsed = start.elapsed();
    // Any line still in flight arrives before the readers finish; take what is there.
    while let Ok(line) = receiver.try_recv() {
        collector.push(line);
    }
    for reader in readers.into_iter().flatten() {
        if reader.is_finished() {
            // A reader thread only ends by returning; a panic there is a bug worth seeing.
            reader
                .join()
                .map_err(|_| anyhow::anyhow!("an output reader thread panicked"))?;
        }
    }
    Ok(collector.finish(end, stop, elapsed, line))
}

/// Puts the child in a process group of its own: the terminal's Ctrl-C then reaches xtask
/// only, which asks the child to stop instead of seeing it die.
#[cfg(unix)]
fn own_process_group(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    command.process_group(0);
}

#[cfg(not(unix))]
fn own_process_group(_command: &mut Command) {}

/// Reads `pipe` line by line on a new thread and sends each line to `sender`.
fn spawn_reader<R: Read + Send + 'static>(
    pipe: Option<R>,
    stream: Stream,
    sender: SyncSender<OutputLine>,
) -> Option<thread::JoinHandle<()>> {
    let pipe = pipe?;
    Some(thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        let mut buffer = Vec::new();
        while let Ok(true) = read_line_bounded(&mut reader, &mut buffer, MAX_LINE_BYTES) {
            let text = trim_line_ending(&String::from_utf8_lossy(&buffer)).to_string();
            if sender.send(OutputLine { stream, text }).is_err() {
                return;
            }
        }
    }))
}

/// Reads into `line` (cleared first) up to and including the next `\n`, or `max` bytes,
/// whichever comes first. `Ok(false)` at the end of input with nothing read.
fn read_line_bounded<R: BufRead>(
    reader: &mut R,
    line: &mut Vec<u8>,
    max: usize,
) -> io::Result<bool> {
    line.clear();
    loop {
        let available = match reader.fill_buf() {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            return Ok(!line.is_empty());
        }
        let window = &available[..available.len().min(max - line.len())];
        let (taken, complete) = match window.iter().position(|&b| b == b'\n') {
            Some(at) => (at + 1, true),
            None => (window.len(), false),
        };
        line.extend_from_slice(&window[..taken]);
        reader.consume(taken);
        if complete || line.len() >= max {
            return Ok(true);
        }
    }
}

/// Strips trailing `\n` and `\r` characters (serial consoles often send `\r\n`).
fn trim_line_ending(line: &str) -> &str {
    line.trim_end_matches(['\n', '\r'])
}

/// Collects lines until the child has exited and its pipes are drained (or the grace period
/// after exit has passed), stopping the child at the deadline: asking it to
/// ([`Supervision::stop`]) and killing it if it has not ended after the grace period, or
/// killing it at once.
fn wait_draining(
    child: &mut Child,
    receiver: &Receiver<OutputLine>,
    collector: &mut Collector,
    supervision: &Supervision,
) -> Result<(RunEnd, Option<StopCause>)> {
    let started = Instant::now();
    let mut deadline = started + supervision.timeout;
    let mut stdin = child.stdin.take();
    // Once asked to stop: why, and the interrupt count then (one more kills the child).
    let mut asked: Option<(StopCause, usize)> = None;
    let mut ended: Option<(RunEnd, Instant)> = None;
    let mut pipes_closed = false;
    loop {
        if pipes_closed {
            thread::sleep(POLL_INTERVAL);
        } else {
            match receiver.recv_timeout(POLL_INTERVAL) {
                Ok(line) => collector.push(line),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => pipes_closed = true,
            }
        }
        match ended {
            None => {
                if let Some(status) = child.try_wait().context("could not poll the child")? {
                    ended = Some((end_of(status), Instant::now()));
                    continue;
                }
                let now = Instant::now();
                // Relaxed: a counter polled here; nothing else is ordered by it.
                let interrupts = supervision
                    .stop
                    .as_ref()
                    .map_or(0, |s| s.interrupts.load(Ordering::Relaxed));
                match (&supervision.stop, asked) {
                    (Some(stop), None) if interrupts > 0 || now >= deadline => {
                        let cause = if interrupts > 0 {
                            StopCause::Interrupt
                        } else {
                            StopCause::Timeout
                        };
                        // The byte first: a message that cannot be written (a closed
                        // pipe after Ctrl-C, a hung-up terminal) must not keep it from going.
                        ask_to_stop(&mut stdin, stop.byte);
                        let _ = writeln!(
                            io::stderr(),
                            "xtask: {}",
                            stop_message(cause, supervision.timeout, stop.grace)
                        );
                        asked = Some((cause, interrupts));
                        deadline = now + stop.grace;
                    }
                    (Some(_), Some((_, seen))) if interrupts > seen => {
                        let _ = writeln!(io::stderr(), "xtask: interrupted again: killing QEMU");
                        ended = Some((kill(child)?, Instant::now()));
                    }
                    _ if now >= deadline => {
                        kill(child)?;
                        let after_secs = started.elapsed().as_secs();
                        ended = Some((RunEnd::TimedOut { after_secs }, Instant::now()));
                    }
                    _ => {}
                }
            }
            Some((end, at)) => {
                if pipes_closed || at.elapsed() >= DRAIN_GRACE {
                    return Ok((end, asked.map(|(cause, _)| cause)));
                }
            }
        }
    }
}

/// What xtask says when it asks the child to stop.
fn stop_message(cause: StopCause, timeout: Duration, grace: Duration) -> String {
    let why = match cause {
        StopCause::Interrupt => "interrupted".to_string(),
        StopCause::Timeout => format!("timeout after {} s", timeout.as_secs()),
    };
    format!(
        "{why}: asking the guest to stop and save what it has read (it may take up to {} s; \
         Ctrl-C again kills QEMU)",
        grace.as_secs()
    )
}

/// Writes the stop byte to the child's stdin. A child that already closed it is about to
/// end anyway: the error is of no use.
fn ask_to_stop(stdin: &mut Option<ChildStdin>, byte: u8) {
    if let Some(pipe) = stdin.as_mut() {
        let _ = pipe.write_all(&[byte]).and_then(|()| pipe.flush());
    }
}

/// Kills the child and reaps it; how it ended (it may have exited on its own meanwhile).
fn kill(child: &mut Child) -> Result<RunEnd> {
    // The child may exit on its own in the meantime; that is fine.
    let _ = child.kill();
    let status = child
        .wait()
        .context("could not reap the child after killing it")?;
    Ok(end_of(status))
}

/// Translates an exit status.
pub fn end_of(status: ExitStatus) -> RunEnd {
    match status.code() {
        Some(code) => RunEnd::Exited(code),
        None => RunEnd::Killed {
            signal: signal_of(status),
        },
    }
}

#[cfg(unix)]
fn signal_of(status: ExitStatus) -> Option<i32> {
    use std::os::unix::process::ExitStatusExt;
    status.signal()
}

#[cfg(not(unix))]
fn signal_of(_status: ExitStatus) -> Option<i32> {
    None
}

/// Echoes, keeps and tails lines as they arrive.
struct Collector {
    echo: Echo,
    quiet_lines: fn(&str) -> bool,
    keep: fn(&str) -> bool,
    kept: Vec<OutputLine>,
    tail: VecDeque<OutputLine>,
    console: Console,
    total: usize,
}

impl Collector {
    fn new(supervision: &Supervision) -> Self {
        Self {
            echo: supervision.echo,
            quiet_lines: supervision.quiet_lines,
            keep: supervision.keep,
            kept: Vec::new(),
            tail: VecDeque::with_capacity(TAIL_LINES),
            console: Console::new(supervision.console_bytes),
            total: 0,
        }
    }

    fn push(&mut self, line: OutputLine) {
        // Echo failures (e.g. a closed terminal) must not abort the run being judged.
        let echo = if (self.quiet_lines)(&line.text) {
            Echo::Off
        } else {
            self.echo
        };
        let _ = match (echo, line.stream) {
            (Echo::Off, _) => Ok(()),
            (Echo::Same, Stream::Stdout) => writeln!(std::io::stdout().lock(), "{}", line.text),
            (Echo::Same | Echo::Stderr, _) => writeln!(std::io::stderr().lock(), "{}", line.text),
        };
        self.total += 1;
        if (self.keep)(&line.text) {
            self.kept.push(line.clone());
        }
        if self.tail.len() == TAIL_LINES {
            self.tail.pop_front();
        }
        self.tail.push_back(line.clone());
        self.console.push(line);
    }

    fn finish(
        self,
        end: RunEnd,
        stop: Option<StopCause>,
        elapsed: Duration,
        command: String,
    ) -> Captured {
        Captured {
            end,
            stop,
            kept: self.kept,
            tail: self.tail.into(),
            total_lines: self.total,
            console: self.console,
            command,
            elapsed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str, timeout_secs: u64) -> Captured {
        sh_bounded(script, timeout_secs, CONSOLE_BYTES)
    }

    fn sh_bounded(script: &str, timeout_secs: u64, console_bytes: usize) -> Captured {
        let mut command = Command::new("sh");
        command.args(["-c", script]);
        let supervision = Supervision {
            timeout: Duration::from_secs(timeout_secs),
            echo: Echo::Off,
            quiet_lines: |_| false,
            keep: |text| text.starts_with("keep"),
            console_bytes,
            stop: None,
        };
        run(command, &supervision).expect("sh runs")
    }

    /// Runs `script` as a child that can stop cleanly (stop byte 0x03) with `interrupts`
    /// as its Ctrl-C count.
    fn sh_stoppable(
        script: &str,
        timeout: Duration,
        grace: Duration,
        interrupts: &Arc<AtomicUsize>,
    ) -> Captured {
        let mut command = Command::new("sh");
        command.args(["-c", script]);
        let supervision = Supervision {
            timeout,
            echo: Echo::Off,
            quiet_lines: |_| false,
            keep: |_| true,
            console_bytes: CONSOLE_BYTES,
            stop: Some(StopRequest {
                byte: 3,
                grace,
                interrupts: Arc::clone(interrupts),
            }),
        };
        run(command, &supervision).expect("sh runs")
    }

    /// Reads one byte from stdin and prints it in hex, then exits 0: a recorder stopped cleanly.
    const STOPS_ON_A_BYTE: &str = "echo started; head -c1 | od -An -tx1; exit 0";

    #[test]
    fn at_the_deadline_a_stoppable_child_gets_the_stop_byte_and_ends_well() {
        let none = Arc::new(AtomicUsize::new(0));
        let c = sh_stoppable(
            STOPS_ON_A_BYTE,
            Duration::from_millis(300),
            Duration::from_secs(20),
            &none,
        );
        assert_eq!(c.end, RunEnd::Exited(0));
        assert_eq!(c.stop, Some(StopCause::Timeout));
        let texts: Vec<&str> = c.kept.iter().map(|l| l.text.trim()).collect();
        assert_eq!(texts, ["started", "03"]);
    }

    #[test]
    fn an_interrupt_asks_a_stoppable_child_to_stop_and_a_second_one_kills_it() {
        let once = Arc::new(AtomicUsize::new(1));
        let c = sh_stoppable(
            STOPS_ON_A_BYTE,
            Duration::from_secs(60),
            Duration::from_secs(20),
            &once,
        );
        assert_eq!(
            (c.end, c.stop),
            (RunEnd::Exited(0), Some(StopCause::Interrupt))
        );
        assert!(c.elapsed < Duration::from_secs(20), "{:?}", c.elapsed);
        // A child that ignores the byte: the second interrupt kills it, long before the grace
        // period ends.
        let count = Arc::new(AtomicUsize::new(1));
        let again = Arc::clone(&count);
        let second = thread::spawn(move || {
            thread::sleep(Duration::from_millis(500));
            again.fetch_add(1, Ordering::Relaxed);
        });
        let c = sh_stoppable(
            "exec sleep 60",
            Duration::from_secs(60),
            Duration::from_secs(60),
            &count,
        );
        second.join().unwrap();
        assert!(matches!(c.end, RunEnd::Killed { .. }), "{:?}", c.end);
        assert_eq!(c.stop, Some(StopCause::Interrupt));
        assert!(c.elapsed < Duration::from_secs(30), "{:?}", c.elapsed);
    }

    #[test]
    fn a_stoppable_child_that_does_not_stop_is_killed_after_the_grace_period() {
        let none = Arc::new(AtomicUsize::new(0));
        let c = sh_stoppable(
            "exec sleep 60",
            Duration::from_millis(200),
            Duration::from_millis(500),
            &none,
        );
        assert!(matches!(c.end, RunEnd::TimedOut { .. }), "{:?}", c.end);
        assert_eq!(c.stop, Some(StopCause::Timeout));
        assert!(c.elapsed >= Duration::from_millis(700), "{:?}", c.elapsed);
        assert!(c.elapsed < Duration::from_secs(30), "{:?}", c.elapsed);
    }

    fn line(text: &str) -> OutputLine {
        OutputLine {
            stream: Stream::Stdout,
            text: text.into(),
        }
    }

    #[test]
    fn console_holds_every_line_of_both_streams_in_order() {
        // The pauses order the two streams, which are read on separate threads.
        let captured = sh(
            "echo one; sleep 0.2; echo two >&2; sleep 0.2; echo three; exit 4",
            10,
        );
        assert_eq!(captured.end, RunEnd::Exited(4));
        let texts: Vec<&str> = captured.console.lines().map(|l| l.text.as_str()).collect();
        assert_eq!(texts, ["one", "two", "three"]);
        assert_eq!(
            captured.console.lines().nth(1).map(|l| l.stream),
            Some(Stream::Stderr)
        );
        assert_eq!(captured.console.dropped_lines(), 0);
        assert!(
            captured.command.starts_with("sh -c "),
            "{}",
            captured.command
        );
    }

    #[test]
    fn console_keeps_the_most_recent_lines_within_its_budget() {
        let budget = 10 * (LINE_OVERHEAD + 6);
        let mut console = Console::new(budget);
        for i in 0..100 {
            console.push(line(&format!("line{i:02}")));
            assert!(console.charged_bytes() <= budget);
        }
        assert_eq!(console.len(), 10);
        assert_eq!(console.dropped_lines(), 90);
        assert_eq!(console.dropped_bytes(), 90 * 6);
        let texts: Vec<&str> = console.lines().map(|l| l.text.as_str()).collect();
        assert_eq!(texts.first(), Some(&"line90"));
        assert_eq!(texts.last(), Some(&"line99"));
        // A line larger than the whole budget replaces everything but is kept.
        console.push(line(&"x".repeat(budget)));
        assert_eq!(console.len(), 1);
        assert_eq!(console.dropped_lines(), 100);
    }

    #[test]
    fn supervised_console_is_bounded() {
        let captured = sh_bounded(
            "i=0; while [ $i -lt 2000 ]; do echo line $i; i=$((i+1)); done",
            60,
            4096,
        );
        assert_eq!(captured.total_lines, 2000);
        let kept = captured.console.len() as u64;
        assert!(kept > 0 && kept < 2000, "{kept} lines kept");
        assert_eq!(captured.console.dropped_lines() + kept, 2000);
        assert!(captured.console.charged_bytes() <= 4096);
        assert_eq!(
            captured.console.lines().last().map(|l| l.text.as_str()),
            Some("line 1999")
        );
    }

    #[test]
    fn lines_without_newline_are_cut_at_the_maximum() {
        let mut input = io::Cursor::new(b"abcdefghij\nxy\n\nz".to_vec());
        let mut buffer = Vec::new();
        let mut pieces = Vec::new();
        while read_line_bounded(&mut input, &mut buffer, 4).expect("reads") {
            pieces.push(String::from_utf8(buffer.clone()).expect("utf-8"));
        }
        assert_eq!(pieces, ["abcd", "efgh", "ij\n", "xy\n", "\n", "z"]);
        // Through the supervisor: a long line arrives as several bounded ones.
        let captured = sh(
            &format!("head -c {} /dev/zero | tr '\\0' a", 3 * MAX_LINE_BYTES),
            10,
        );
        assert_eq!(captured.total_lines, 3);
        assert!(captured
            .console
            .lines()
            .all(|l| l.text.len() == MAX_LINE_BYTES));
    }

    #[test]
    fn captures_both_streams_and_exit_code() {
        let captured = sh(
            "echo keep out; echo keep err >&2; printf 'x\\r\\n'; exit 3",
            10,
        );
        assert_eq!(captured.end, RunEnd::Exited(3));
        assert_eq!(captured.total_lines, 3);
        assert_eq!(captured.kept.len(), 2);
        assert!(captured.kept.contains(&OutputLine {
            stream: Stream::Stderr,
            text: "keep err".into()
        }));
        assert!(captured.tail.iter().any(|l| l.text == "x"));
    }

    #[test]
    fn last_line_without_newline_is_kept() {
        let captured = sh("printf 'keep partial'", 10);
        assert_eq!(captured.end, RunEnd::Exited(0));
        assert_eq!(captured.kept[0].text, "keep partial");
    }

    #[test]
    fn kills_at_the_deadline() {
        let captured = sh("echo keep started; exec sleep 30", 1);
        assert_eq!(captured.end, RunEnd::TimedOut { after_secs: 1 });
        assert!(captured.elapsed < Duration::from_secs(10), "{captured:?}");
        assert_eq!(captured.kept[0].text, "keep started");
    }

    #[test]
    fn large_output_does_not_deadlock_and_tail_is_bounded() {
        // Far more than a pipe buffer (64 KiB) on both streams.
        let captured = sh(
            "i=0; while [ $i -lt 5000 ]; do echo line $i; echo err $i >&2; i=$((i+1)); done; \
             echo keep done",
            60,
        );
        assert_eq!(captured.end, RunEnd::Exited(0));
        assert_eq!(captured.total_lines, 10_001);
        assert_eq!(captured.tail.len(), TAIL_LINES);
        assert_eq!(captured.kept.len(), 1);
    }

    #[test]
    fn run_end_messages() {
        assert_eq!(RunEnd::Exited(2).to_string(), "exit status 2");
        assert_eq!(
            RunEnd::TimedOut { after_secs: 300 }.to_string(),
            "timeout after 300 s"
        );
        assert_eq!(
            RunEnd::Killed { signal: Some(9) }.to_string(),
            "killed by signal 9"
        );
    }

    #[test]
    fn trims_crlf_only_at_the_end() {
        assert_eq!(trim_line_ending("a\r\n"), "a");
        assert_eq!(trim_line_ending("a\rb\n"), "a\rb");
        assert_eq!(trim_line_ending("  a  \n"), "  a  ");
    }
}
