//! `cargo xtask report [FILE]`: decode a trace.dat with hyptrace's own reader, no trace-cmd
//! needed, and print exactly what `trace-cmd report -i FILE` (3.1.6) prints for it.
//!
//! The decoder is the library's ([`hyptrace_tracedat::report`]: the file, its format texts,
//! each CPU's pages merged by time); this module adds the command line, the `--stat` table,
//! and [`compare`]: the line-by-line comparison with trace-cmd's output that `cargo xtask
//! test` runs.

pub mod compare;

#[cfg(test)]
mod tests;

use crate::bench_json::Json;
use std::fmt::Write as _;
use std::io::{self, BufWriter, Write as _};
use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;

pub use hyptrace_tracedat::report::{Report, Selection, Summary};

/// Options of `cargo xtask report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The trace.dat to read: absolute, or relative to the current directory [default:
    /// target/trace.dat in the workspace, what `cargo xtask run` writes].
    #[arg(value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// The same, as `trace-cmd report -i FILE` spells it.
    #[arg(
        short = 'i',
        long = "input",
        value_name = "FILE",
        conflicts_with = "file"
    )]
    pub input: Option<PathBuf>,
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
    /// Print nanosecond timestamps (as `trace-cmd report -t`).
    #[arg(short = 't', long = "ts-ns")]
    pub nanoseconds: bool,
    /// Instead of the events: per CPU and per hypercall (and SMC function), the time inside
    /// the hypervisor and the host's round trip (count, min, median, p99, max, histogram),
    /// from a recording with host events.
    #[arg(long, conflicts_with_all = ["event", "stat", "compare"])]
    pub latency: bool,
    /// With `--latency` or `--stat`: the same figures as JSON (`--stat`: per buffer and CPU
    /// the decoder's events, pages and drop markers, and the events per name).
    #[arg(long)]
    pub json: bool,
}

/// What this reader cannot render of a file's event formats, one line per kind: those
/// whose records print their raw fields (an unsupported print format, with the first
/// reason) and those set aside (unreadable fields: their records print as unknown events).
pub fn format_notes(file: &hyptrace_tracedat::TraceFile<'_>) -> Vec<String> {
    let mut notes = Vec::new();
    let raw: Vec<_> = file
        .events
        .iter()
        .filter(|e| e.print_error.is_some())
        .collect();
    if let Some(first) = raw.first().and_then(|e| e.print_error.as_ref()) {
        let names: Vec<String> = raw
            .iter()
            .map(|e| format!("{}:{}", e.system, e.name))
            .collect();
        notes.push(format!(
            "{} event(s) print their raw fields, as trace-cmd prints an event it cannot parse: \
             {} (first reason: {first})",
            raw.len(),
            names.join(", ")
        ));
    }
    if let Some(first) = file.skipped_events.first() {
        let names: Vec<String> = file
            .skipped_events
            .iter()
            .map(|e| format!("{}:{}", e.system, e.name.as_deref().unwrap_or("(no name)")))
            .collect();
        notes.push(format!(
            "{} event format(s) left out, their records print as unknown events: {} (first \
             reason: {})",
            names.len(),
            names.join(", "),
            first.error
        ));
    }
    notes
}

/// `--stat`'s table of what this decoder found, per buffer and CPU.
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
    // The CPUSTAT texts of each buffer: the top-level buffer's first, then after each
    // `Buffer: NAME` text the instance's.
    let mut groups: Vec<Vec<&str>> = vec![Vec::new()];
    for text in &report.file.cpustats {
        if text.trim_start().starts_with("Buffer:") {
            groups.push(Vec::new());
        } else if let Some(g) = groups.last_mut() {
            g.push(text);
        }
    }
    for (buffer, totals) in summary.buffers.iter().enumerate() {
        if report.file.buffer_count() > 1 {
            let name = report.file.buffer_name(buffer);
            let _ = writeln!(
                s,
                "  buffer {}:",
                if name.is_empty() { "(top level)" } else { name }
            );
        }
        for &cpu in &shown {
            let t = totals[cpu];
            let stat = groups
                .get(buffer)
                .and_then(|g| {
                    g.iter()
                        .find(|text| text.lines().next() == Some(&format!("CPU: {cpu}")))
                })
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
    }
    if !sel.events.is_empty() {
        let _ = writeln!(s, "(events counted: {} only)", sel.events.join(", "));
    }
    s
}

/// The matched calls of a decoded file: every line (nanosecond timestamps) through
/// [`crate::timeline::Timeline`].
pub fn matching(report: Report<'_>, sel: &Selection) -> Result<crate::timeline::Matching> {
    matching_with(report, sel, |_| {})
}

/// [`matching`], giving every decoded line to `also` too (one pass for several figures).
pub fn matching_with(
    report: Report<'_>,
    sel: &Selection,
    mut also: impl FnMut(&str),
) -> Result<crate::timeline::Matching> {
    let report = report.with_nanoseconds(true);
    let mut timeline = crate::timeline::Timeline::default();
    let summary = report.for_each_line(sel, |line| {
        timeline.line(line);
        also(line);
        true
    });
    if !summary.is_clean() {
        eprint!("{}", summary.problems());
    }
    if !timeline.unreadable.is_empty() {
        bail!(
            "{} events could not be read for matching, e.g. {:?}",
            timeline.unreadable.count,
            timeline.unreadable.examples
        );
    }
    Ok(timeline.matching())
}

/// `--stat --json`: the decoder's totals per buffer and CPU, and the events per name.
fn stat_json(report: &Report<'_>, sel: &Selection, file: &std::path::Path) -> Result<()> {
    let mut counts = crate::event_counts::EventCounts::default();
    let summary = report.for_each_line(sel, |line| {
        counts.line(line);
        true
    });
    if !summary.is_clean() {
        eprint!("{}", summary.problems());
        bail!("{} did not decode cleanly (see above)", file.display());
    }
    let mut buffers = Vec::new();
    for (b, totals) in summary.buffers.iter().enumerate() {
        let mut o = Json::object();
        o.set("name", Json::str(report.file.buffer_name(b)));
        let cpus = totals
            .iter()
            .enumerate()
            .filter(|(cpu, _)| sel.cpus.is_empty() || sel.cpus.contains(cpu))
            .map(|(cpu, t)| {
                let mut c = Json::object();
                c.set("cpu", Json::Num(cpu as f64));
                c.set("events", Json::Num(t.events as f64));
                c.set("pages", Json::Num(t.pages as f64));
                c.set(
                    "drop_markers",
                    Json::Num((t.drop_markers + t.unknown_drops) as f64),
                );
                c.set("dropped", Json::Num(t.dropped as f64));
                c
            })
            .collect();
        o.set("cpus", Json::Arr(cpus));
        buffers.push(o);
    }
    let mut out = Json::object();
    out.set("file", Json::str(&file.display().to_string()));
    out.set("buffers", Json::Arr(buffers));
    out.set("events", counts.json());
    println!("{}", out.render());
    Ok(())
}

/// `--latency`: the figures of [`crate::latency`], as text or JSON.
fn latency(report: Report<'_>, sel: &Selection, json: bool) -> Result<()> {
    if report.file.instances.is_empty() {
        bail!(
            "--latency needs the host's events beside the hypervisor's: record with \
             `cargo xtask run` (host events are on unless --no-host-events)"
        );
    }
    let m = matching(report, sel)?;
    let rows = crate::latency::rows(&m);
    if json {
        print!("{}", crate::latency::json(&rows));
    } else {
        print!("{}", crate::latency::text(&rows));
    }
    let failures: u64 = m.cpus.values().map(|c| c.failures.count).sum();
    if failures > 0 {
        for c in m.cpus.values() {
            for e in &c.failures.examples {
                eprintln!("  {e}");
            }
        }
        bail!("{failures} calls are out of order between host and hypervisor (see above)");
    }
    Ok(())
}

impl ReportArgs {
    /// The file to read: FILE or `-i FILE` against the current directory, else the
    /// workspace's `target/trace.dat`.
    pub fn path(&self) -> PathBuf {
        let cwd = std::env::current_dir().unwrap_or_default();
        let default = crate::workspace::qemu_working_dir().join(crate::cli::DEFAULT_OUTPUT);
        let default = default.to_string_lossy();
        crate::cli::user_path(
            self.file.as_deref().or(self.input.as_deref()),
            &cwd,
            &default,
        )
    }
}

/// Runs `cargo xtask report`.
pub fn run(args: &ReportArgs) -> Result<()> {
    let file = args.path();
    if args.compare {
        let trace_cmd =
            crate::tools::ensure_tool(crate::tools::TRACE_CMD.0, crate::tools::TRACE_CMD.1)?;
        let started = std::time::Instant::now();
        let lines = compare::against_trace_cmd(&trace_cmd, &file)?;
        eprintln!(
            "xtask: cargo xtask report prints the same {lines} lines as trace-cmd report ({:.1} s)",
            started.elapsed().as_secs_f64()
        );
        return Ok(());
    }
    let bytes =
        std::fs::read(&file).with_context(|| format!("could not read {}", file.display()))?;
    let report =
        Report::new(&bytes).with_context(|| format!("could not decode {}", file.display()))?;
    // What trace-cmd leaves out it says on stderr; so does this reader.
    for warning in &report.file.warnings {
        eprintln!("  {warning}");
    }
    for line in format_notes(&report.file) {
        eprintln!("hyptrace report: note: {line}");
    }
    let sel = Selection {
        cpus: args.cpu.clone(),
        events: args.event.clone(),
    };
    report.check(&sel)?;
    if args.json && !args.latency && !args.stat {
        bail!("--json goes with --stat or --latency");
    }
    if args.stat && args.json {
        return stat_json(&report, &sel, &file);
    }
    if args.latency {
        return latency(report, &sel, args.json);
    }
    let report = report.with_nanoseconds(args.nanoseconds);
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
        bail!("{} did not decode cleanly (see above)", file.display());
    }
    Ok(())
}
