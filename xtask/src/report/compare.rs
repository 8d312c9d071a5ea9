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
}

impl<I: Iterator<Item = String>> LineComparer<I> {
    /// A comparer against `theirs`.
    pub fn new(theirs: I) -> Self {
        Self {
            theirs,
            line: 0,
            mismatch: None,
        }
    }

    /// Compares our next line; false once a difference was found (stop feeding).
    pub fn push(&mut self, ours: &str) -> bool {
        if self.mismatch.is_some() {
            return false;
        }
        self.line += 1;
        match self.theirs.next() {
            Some(t) if t == ours => true,
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
    let summary = report.for_each_line(&super::Selection::default(), |l| comparer.push(l));
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
    Ok(lines)
}
