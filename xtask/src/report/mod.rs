//! `cargo xtask report [FILE]`: decode a trace.dat with hyptrace's own reader, no trace-cmd
//! needed, and print exactly what `trace-cmd report -i FILE` (3.1.6) prints for it.
//!
//! - [`file`]: the trace.dat (v6) container: header texts, event formats, CPU count, options,
//!   flyrecord table; every offset checked.
//! - [`format`]: event format texts and the printf subset of their print formats.
//! - [`decode`]: each CPU's pages in order (`hyptrace_tracedat::page`), merged by time.
//! - [`compare`]: line-by-line comparison with trace-cmd's output (used by `cargo xtask
//!   test`).
//!
//! Event formats are taken from the file's own format texts (not from
//! `hyptrace_abi::events::ALL`), so a file written by another hyptrace version still decodes, and
//! a format this reader cannot render is refused when the file is opened.

pub mod compare;
pub mod decode;

#[cfg(test)]
mod tests;

use std::fmt::Write as _;
use std::io::{self, BufWriter, Write as _};
use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;

use self::decode::{CpuEvents, Item, Merged, PageError};
use hyptrace_tracedat::event_format::{self as format, EventFormat};
use hyptrace_tracedat::TraceFile;

/// Options of `cargo xtask report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The trace.dat to read: absolute, or relative to the current directory.
    #[arg(value_name = "FILE", default_value = crate::cli::DEFAULT_OUTPUT)]
    pub file: PathBuf,
    /// Only these CPUs (repeatable, or comma-separated).
    #[arg(long, value_name = "N", value_delimiter = ',')]
    pub cpu: Vec<usize>,
    /// Only these events, by name (repeatable, or comma-separated).
    #[arg(long, value_name = "NAME", value_delimiter = ',')]
    pub event: Vec<String>,
    /// Print the per-CPU statistics stored in the file (as `trace-cmd report --stat`) and the
    /// events decoded per CPU, instead of the events.
    #[arg(long)]
    pub stat: bool,
    /// Instead of printing, run `trace-cmd report -i FILE` and compare its output with this
    /// decoder's, line by line (what `cargo xtask test` does).
    #[arg(long, conflicts_with_all = ["cpu", "event", "stat"])]
    pub compare: bool,
}

/// What to print: CPUs in merge order, events by ID.
#[derive(Clone, Debug, Default)]
pub struct Selection {
    /// CPUs to print; empty: all.
    pub cpus: Vec<usize>,
    /// Event names; empty: all.
    pub events: Vec<String>,
}

/// Per-CPU totals of a decode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuTotals {
    /// Events printed.
    pub events: u64,
    /// Pages read.
    pub pages: u64,
    /// `[N EVENTS DROPPED]` markers printed.
    pub drop_markers: u64,
    /// Sum of their counts.
    pub dropped: u64,
    /// `[EVENTS DROPPED]` markers without a count.
    pub unknown_drops: u64,
}

/// What a decode met, besides the lines.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    /// Per CPU (index = CPU).
    pub cpus: Vec<CpuTotals>,
    /// Pages that did not decode completely.
    pub page_errors: Vec<PageError>,
    /// Events that could not be rendered (unknown ID, field outside the payload): a few
    /// examples and the count.
    pub render_errors: Vec<String>,
    /// How many events could not be rendered.
    pub render_error_count: u64,
}

impl Summary {
    /// Whether everything decoded.
    pub fn is_clean(&self) -> bool {
        self.page_errors.is_empty() && self.render_error_count == 0
    }

    /// The problems, one per line.
    pub fn problems(&self) -> String {
        let mut s = String::new();
        for e in &self.page_errors {
            let _ = writeln!(s, "hyptrace report: {e}");
        }
        for e in &self.render_errors {
            let _ = writeln!(s, "hyptrace report: {e}");
        }
        if self.render_error_count > self.render_errors.len() as u64 {
            let _ = writeln!(
                s,
                "hyptrace report: ... {} events could not be rendered in all",
                self.render_error_count
            );
        }
        s
    }
}

/// How many render errors a summary keeps as examples.
const MAX_RENDER_EXAMPLES: usize = 5;

/// A trace.dat ready to be printed.
pub struct Report<'a> {
    /// The parsed file.
    pub file: TraceFile<'a>,
    /// Index into `file.events` by event ID.
    by_id: Vec<Option<u16>>,
    /// Offset and size of `common_type` in payloads.
    common_type: (usize, usize),
}

impl<'a> Report<'a> {
    /// Parses `bytes` (a whole trace.dat).
    pub fn new(bytes: &'a [u8]) -> Result<Self> {
        let file = TraceFile::parse(bytes)?;
        let mut by_id = vec![None; usize::from(u16::MAX) + 1];
        for (i, e) in file.events.iter().enumerate() {
            by_id[usize::from(e.id)] = Some(i as u16);
        }
        let common_type = file
            .events
            .iter()
            .find_map(|e| e.field("common_type"))
            .map_or((0, 2), |f| (f.offset, f.size.min(8)));
        Ok(Self {
            file,
            by_id,
            common_type,
        })
    }

    fn event_of(&self, payload: &[u8]) -> Option<(u64, &EventFormat)> {
        let (off, size) = self.common_type;
        let bytes = payload.get(off..off + size)?;
        let mut raw = [0u8; 8];
        raw[..size].copy_from_slice(bytes);
        let id = u64::from_le_bytes(raw);
        let index = usize::try_from(id)
            .ok()
            .and_then(|id| self.by_id.get(id).copied().flatten());
        Some((id, index.map(|i| &self.file.events[usize::from(i)])?))
    }

    /// The lines trace-cmd prints before the events: `cpus=N`. (A CPU without data prints
    /// nothing with trace-cmd 3.1.6, although its source has a `CPU N is empty` message.)
    pub fn header_lines(&self) -> Vec<String> {
        vec![format!("cpus={}", self.file.cpus)]
    }

    /// Checks a selection against the file: CPUs in range, events named in the file.
    pub fn check(&self, sel: &Selection) -> Result<()> {
        if let Some(&cpu) = sel.cpus.iter().find(|&&c| c >= self.file.cpus) {
            bail!(
                "--cpu {cpu}: the file has {} CPUs (0 to {})",
                self.file.cpus,
                self.file.cpus - 1
            );
        }
        for name in &sel.events {
            if self.file.event_by_name(name).is_none() {
                let valid: Vec<&str> = self.file.events.iter().map(|e| e.name.as_str()).collect();
                bail!(
                    "--event {name}: no such event in the file; its events: {}",
                    valid.join(", ")
                );
            }
        }
        Ok(())
    }

    /// The merged events of the selected CPUs.
    pub fn events(&self, sel: &Selection) -> Merged<'a> {
        // trace-cmd 3.1.6 merges selected CPUs lowest first too, whatever order --cpu gave.
        let order: Vec<usize> = (0..self.file.cpus)
            .filter(|c| sel.cpus.is_empty() || sel.cpus.contains(c))
            .collect();
        Merged::new(
            order
                .into_iter()
                .map(|cpu| {
                    CpuEvents::new(
                        cpu,
                        self.file.cpu_pages(cpu),
                        self.file.page_size,
                        self.file.cpu_data[cpu].offset,
                    )
                })
                .collect(),
        )
    }

    /// Writes the timestamp as trace-cmd does: ` SSSSS.UUUUUU:` (microseconds, rounded) for
    /// nanosecond clocks, else the raw count right-aligned in 12 columns.
    fn write_time(&self, out: &mut String, ts: u64) {
        if self.file.time_in_usecs() {
            let us = ts / 1000 + u64::from(ts % 1000 >= 500);
            let _ = write!(out, " {:5}.{:06}:", us / 1_000_000, us % 1_000_000);
        } else {
            let _ = write!(out, "{ts:12}:");
        }
    }

    /// Renders one event's line (without the newline) into `out`. When the event cannot be
    /// rendered (unknown ID, a field outside the payload) the line says so and the error
    /// describes it.
    pub fn render_event(&self, item: &Item<'_>, out: &mut String) -> Result<(), String> {
        let event = self.event_of(item.payload);
        // No `common_pid` field in hyptrace's formats: pid -1, shown as `<...>` by
        // libtraceevent; a format that has one is honoured.
        let pid = event
            .and_then(|(_, e)| {
                let f = e.field("common_pid")?;
                e.read_field(item.payload, f)
            })
            .unwrap_or(-1);
        let comm = if pid == 0 { "<idle>" } else { "<...>" };
        let _ = write!(out, "{comm:>16}-{pid:<5} [{:03}]", item.cpu);
        self.write_time(out, item.ts);
        match event {
            Some((_, e)) => {
                format::write_event_name(out, &e.name);
                let start = out.len();
                if let Err(err) = e.render(item.payload, out) {
                    out.truncate(start);
                    out.push_str("[FAILED TO PARSE]");
                    return Err(format!(
                        "CPU {} event {} at {} ns: {err}",
                        item.cpu, e.name, item.ts
                    ));
                }
                if out.ends_with('\n') {
                    out.pop();
                }
                Ok(())
            }
            None => {
                let id = self
                    .event_of_id(item.payload)
                    .map_or_else(|| "(none)".to_string(), |id| id.to_string());
                let _ = write!(out, " [UNKNOWN EVENT {id}]");
                Err(format!(
                    "CPU {} at {} ns: unknown event ID {id} (payload {} bytes)",
                    item.cpu,
                    item.ts,
                    item.payload.len()
                ))
            }
        }
    }

    fn event_of_id(&self, payload: &[u8]) -> Option<u64> {
        let (off, size) = self.common_type;
        let bytes = payload.get(off..off + size)?;
        let mut raw = [0u8; 8];
        raw[..size].copy_from_slice(bytes);
        Some(u64::from_le_bytes(raw))
    }

    /// Produces every output line of the selection (no newlines), header first, into `sink`;
    /// stops early when `sink` returns false. Returns what was met on the way.
    pub fn for_each_line(&self, sel: &Selection, mut sink: impl FnMut(&str) -> bool) -> Summary {
        let mut summary = Summary {
            cpus: vec![CpuTotals::default(); self.file.cpus],
            ..Summary::default()
        };
        for line in self.header_lines() {
            if !sink(&line) {
                return summary;
            }
        }
        let wanted: Option<Vec<u16>> = (!sel.events.is_empty()).then(|| {
            sel.events
                .iter()
                .filter_map(|n| self.file.event_by_name(n).map(|e| e.id))
                .collect()
        });
        // Losses of events filtered out are carried to the CPU's next printed event.
        let mut pending = vec![0i64; self.file.cpus];
        let mut merged = self.events(sel);
        let mut line = String::with_capacity(160);
        for item in merged.by_ref() {
            let cpu = item.cpu;
            if item.missed != 0 {
                pending[cpu] = match (pending[cpu], item.missed) {
                    (_, -1) | (-1, _) => -1,
                    (a, b) => a.saturating_add(b),
                };
            }
            if let Some(ids) = &wanted {
                let keep = self
                    .event_of(item.payload)
                    .is_some_and(|(_, e)| ids.contains(&e.id));
                if !keep {
                    continue;
                }
            }
            let totals = &mut summary.cpus[cpu];
            let missed = std::mem::take(&mut pending[cpu]);
            if missed != 0 {
                line.clear();
                if missed > 0 {
                    let _ = write!(line, "CPU:{cpu} [{missed} EVENTS DROPPED]");
                    totals.drop_markers += 1;
                    totals.dropped += missed as u64;
                } else {
                    let _ = write!(line, "CPU:{cpu} [EVENTS DROPPED]");
                    totals.unknown_drops += 1;
                }
                if !sink(&line) {
                    return summary;
                }
            }
            line.clear();
            if let Err(e) = self.render_event(&item, &mut line) {
                summary.render_error_count += 1;
                if summary.render_errors.len() < MAX_RENDER_EXAMPLES {
                    summary.render_errors.push(e);
                }
            }
            totals.events += 1;
            if !sink(&line) {
                return summary;
            }
        }
        for source in merged.sources() {
            summary.page_errors.extend(source.errors.iter().cloned());
            summary.cpus[source.cpu()].pages = source.pages_read as u64;
        }
        summary
    }
}

/// `--stat`'s table of what this decoder found, per CPU.
pub fn decoded_table(report: &Report<'_>, summary: &Summary, sel: &Selection) -> String {
    let mut s = String::from(
        "hyptrace decoder, per CPU:\n    CPU       events    pages  drop marks  dropped (counted)  \
         stat read events\n",
    );
    let shown: Vec<usize> = if sel.cpus.is_empty() {
        (0..report.file.cpus).collect()
    } else {
        sel.cpus.clone()
    };
    for cpu in shown {
        let t = summary.cpus[cpu];
        let stat = report
            .file
            .cpustats
            .iter()
            .find(|text| text.lines().next() == Some(&format!("CPU: {cpu}")))
            .and_then(|text| {
                text.lines()
                    .find_map(|l| l.strip_prefix("read events: "))
                    .map(str::to_string)
            })
            .unwrap_or_else(|| "-".into());
        let marks = t.drop_markers + t.unknown_drops;
        let _ = writeln!(
            s,
            "{cpu:>7} {:>12} {:>8} {marks:>11} {:>18} {stat:>17}",
            t.events, t.pages, t.dropped
        );
    }
    if !sel.events.is_empty() {
        let _ = writeln!(s, "(events counted: {} only)", sel.events.join(", "));
    }
    s
}

/// Runs `cargo xtask report`.
pub fn run(args: &ReportArgs) -> Result<()> {
    if args.compare {
        let trace_cmd =
            crate::tools::ensure_tool(crate::tools::TRACE_CMD.0, crate::tools::TRACE_CMD.1)?;
        let started = std::time::Instant::now();
        let lines = compare::against_trace_cmd(&trace_cmd, &args.file)?;
        eprintln!(
            "xtask: cargo xtask report prints the same {lines} lines as trace-cmd report ({:.1} s)",
            started.elapsed().as_secs_f64()
        );
        return Ok(());
    }
    let bytes = std::fs::read(&args.file)
        .with_context(|| format!("could not read {}", args.file.display()))?;
    let report =
        Report::new(&bytes).with_context(|| format!("could not decode {}", args.file.display()))?;
    let sel = Selection {
        cpus: args.cpu.clone(),
        events: args.event.clone(),
    };
    report.check(&sel)?;
    let stdout = io::stdout();
    let mut out = BufWriter::with_capacity(1 << 16, stdout.lock());
    let mut write_error = None;
    let summary = if args.stat {
        let summary = report.for_each_line(&sel, |_| true);
        // Header lines only, then the statistics.
        let mut text = report.header_lines().join("\n");
        text.push('\n');
        text.push_str(&report.file.stat_text());
        text.push('\n');
        text.push_str(&decoded_table(&report, &summary, &sel));
        if let Err(e) = out.write_all(text.as_bytes()) {
            write_error = Some(e);
        }
        summary
    } else {
        report.for_each_line(&sel, |line| {
            let r = out
                .write_all(line.as_bytes())
                .and_then(|()| out.write_all(b"\n"));
            match r {
                Ok(()) => true,
                Err(e) => {
                    write_error = Some(e);
                    false
                }
            }
        })
    };
    let flushed = out.flush();
    match write_error.map_or(flushed, Err) {
        // `| head` closed the pipe: not an error of ours.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(()),
        Err(e) => return Err(anyhow!(e).context("could not write the report")),
        Ok(()) => {}
    }
    if !summary.is_clean() {
        eprint!("{}", summary.problems());
        bail!("{} did not decode cleanly (see above)", args.file.display());
    }
    Ok(())
}
