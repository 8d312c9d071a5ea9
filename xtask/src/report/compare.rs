//! Comparing hyptrace's report with trace-cmd's, line by line, without keeping either:
//! `cargo xtask test` feeds trace-cmd's stdout in as it arrives while the decoder produces
//! its lines.

use std::fmt;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};

/// The first difference between two outputs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mismatch {
    /// 1-based line number.
    pub line: u64,
    /// hyptrace's line there (`None`: its output had ended).
    pub ours: Option<String>,
    /// trace-cmd's line there (`None`: its output had ended).
    pub theirs: Option<String>,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |l: &Option<String>| match l {
            Some(l) => format!("{l:?}"),
            None => "(end of output)".to_string(),
        };
        write!(
            f,
            "first difference at line {}:\n  hyptrace:  {}\n  trace-cmd: {}",
            self.line,
            show(&self.ours),
            show(&self.theirs)
        )
    }
}

/// Compares lines pushed one at a time (ours) with lines pulled from `theirs`.
pub struct LineComparer<I> {
    theirs: I,
    line: u64,
    mismatch: Option<Mismatch>,
    /// Accept our `[EVENTS DROPPED]` for their `[N EVENTS DROPPED]` (see
    /// [`is_count_outside_the_page`]).
    unknown_counts: bool,
    /// How many lines were accepted so.
    pub tolerated: u64,
}

/// Whether `ours` says `CPU:N [EVENTS DROPPED]` where `theirs` gives the same marker a count:
/// a page flagged with a stored count but no room for it (as `trace-cmd split` writes full
/// pages) holds none, and trace-cmd 3.1.6 prints whatever its memory holds past the page.
pub fn is_count_outside_the_page(ours: &str, theirs: &str) -> bool {
    let Some(head) = ours.strip_suffix("[EVENTS DROPPED]") else {
        return false;
    };
    theirs
        .strip_prefix(head)
        .and_then(|t| t.strip_prefix('['))
        .and_then(|t| t.strip_suffix(" EVENTS DROPPED]"))
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

impl<I: Iterator<Item = String>> LineComparer<I> {
    /// A comparer against `theirs`, line for line.
    pub fn new(theirs: I) -> Self {
        Self {
            theirs,
            line: 0,
            mismatch: None,
            unknown_counts: false,
            tolerated: 0,
        }
    }

    /// A comparer that also accepts an unknown drop count where trace-cmd read one from
    /// outside the page ([`is_count_outside_the_page`]), counting them.
    pub fn accepting_unknown_counts(mut self) -> Self {
        self.unknown_counts = true;
        self
    }

    /// Compares our next line; false once a difference was found (stop feeding).
    pub fn push(&mut self, ours: &str) -> bool {
        if self.mismatch.is_some() {
            return false;
        }
        self.line += 1;
        match self.theirs.next() {
            Some(t) if t == ours => true,
            Some(t) if self.unknown_counts && is_count_outside_the_page(ours, &t) => {
                self.tolerated += 1;
                true
            }
            theirs => {
                self.mismatch = Some(Mismatch {
                    line: self.line,
                    ours: Some(ours.to_string()),
                    theirs,
                });
                false
            }
        }
    }

    /// Ends the comparison: the number of equal lines, or the first difference (including
    /// trace-cmd having more lines).
    pub fn finish(mut self) -> Result<u64, Mismatch> {
        if let Some(m) = self.mismatch {
            return Err(m);
        }
        match self.theirs.next() {
            None => Ok(self.line),
            Some(t) => Err(Mismatch {
                line: self.line + 1,
                ours: None,
                theirs: Some(t),
            }),
        }
    }
}

/// Lines per message from the thread reading trace-cmd's output.
const BATCH: usize = 4096;

/// How long trace-cmd may go without producing a line before it is killed, in seconds.
const STALL_SECS: u64 = 300;

/// Runs `trace-cmd report -i FILE` and compares its stdout with this decoder's output for
/// the same file, line by line, streaming both. Returns the number of equal lines.
pub fn against_trace_cmd(trace_cmd: &Path, file: &Path) -> Result<u64> {
    compare(trace_cmd, file, false).map(|(lines, _)| lines)
}

/// [`against_trace_cmd`] for a file `trace-cmd split` wrote, whose full pages may claim a
/// stored drop count they have no room for: those markers may differ
/// ([`is_count_outside_the_page`]). Returns the lines compared and how many were such.
pub fn against_trace_cmd_split(trace_cmd: &Path, file: &Path) -> Result<(u64, u64)> {
    compare(trace_cmd, file, true)
}

fn compare(trace_cmd: &Path, file: &Path, unknown_counts: bool) -> Result<(u64, u64)> {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    use std::sync::mpsc;
    use std::time::Duration;

    let bytes =
        std::fs::read(file).with_context(|| format!("could not read {}", file.display()))?;
    let report = super::Report::new(&bytes)
        .with_context(|| format!("could not decode {}", file.display()))?;
    let mut child = Command::new(trace_cmd)
        .arg("report")
        .arg("-i")
        .arg(file)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("could not start {}", trace_cmd.display()))?;
    let stdout = child
        .stdout
        .take()
        .context("trace-cmd has no stdout pipe")?;
    let (tx, rx) = mpsc::sync_channel::<Vec<String>>(16);
    let reader = std::thread::spawn(move || {
        let mut lines = BufReader::with_capacity(1 << 16, stdout);
        let mut buf = Vec::new();
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            buf.clear();
            match lines.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let text = String::from_utf8_lossy(&buf);
                    batch.push(text.trim_end_matches(['\n', '\r']).to_string());
                    if batch.len() == BATCH
                        && tx
                            .send(std::mem::replace(&mut batch, Vec::with_capacity(BATCH)))
                            .is_err()
                    {
                        return;
                    }
                }
            }
        }
        let _ = tx.send(batch);
    });
    let mut stalled = false;
    let theirs = std::iter::from_fn(|| match rx.recv_timeout(Duration::from_secs(STALL_SECS)) {
        Ok(batch) => Some(batch),
        Err(mpsc::RecvTimeoutError::Timeout) => {
            stalled = true;
            None
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => None,
    })
    .flatten();
    let mut comparer = LineComparer::new(theirs);
    if unknown_counts {
        comparer = comparer.accepting_unknown_counts();
    }
    let summary = report.for_each_line(&super::Selection::default(), |l| comparer.push(l));
    let tolerated = comparer.tolerated;
    let result = comparer.finish();
    // Stop trace-cmd if we stopped reading early; then reap it.
    let _ = child.kill();
    let status = child.wait().context("could not reap trace-cmd")?;
    let _ = reader.join();
    if stalled {
        bail!("trace-cmd report produced no output for {STALL_SECS} s: killed");
    }
    let lines = result.map_err(|m| anyhow!("hyptrace's report differs from trace-cmd's: {m}"))?;
    if !summary.is_clean() {
        bail!(
            "hyptrace's decoder met problems in {}:\n{}",
            file.display(),
            summary.problems()
        );
    }
    // Killed after its last line is fine; any other failure is not.
    if !status.success() && status.code().is_some() {
        bail!("trace-cmd report exited with {status}");
    }
    Ok((lines, tolerated))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_unknown_count_against_a_count_of_the_same_marker_is_tolerated() {
        let ours = "  CPU:1 [EVENTS DROPPED]";
        assert!(is_count_outside_the_page(
            ours,
            "  CPU:1 [1222179216 EVENTS DROPPED]"
        ));
        assert!(!is_count_outside_the_page(
            ours,
            "  CPU:2 [12 EVENTS DROPPED]"
        ));
        assert!(!is_count_outside_the_page(
            ours,
            "CPU:1 [12 EVENTS DROPPED]"
        ));
        assert!(!is_count_outside_the_page(
            ours,
            "  CPU:1 [EVENTS DROPPED]x"
        ));
        assert!(!is_count_outside_the_page(
            "  CPU:1 [3 EVENTS DROPPED]",
            "  CPU:1 [4 EVENTS DROPPED]"
        ));
        let theirs = ["a", "  CPU:1 [99 EVENTS DROPPED]", "b"].map(String::from);
        let mut strict = LineComparer::new(theirs.clone().into_iter());
        assert!(strict.push("a") && !strict.push(ours));
        let mut lenient = LineComparer::new(theirs.into_iter()).accepting_unknown_counts();
        assert!(lenient.push("a") && lenient.push(ours) && lenient.push("b"));
        assert_eq!(lenient.tolerated, 1);
        assert_eq!(lenient.finish(), Ok(3));
    }
}
