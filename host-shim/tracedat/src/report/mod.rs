//! Printing a trace.dat as `trace-cmd report` (3.1.6) prints it, without trace-cmd.
//!
//! [`Report`] takes a whole file, decodes each CPU's pages ([`decode`]), merges the CPUs by
//! time and renders every event with the format texts stored in the file itself (not with
//! `hyptrace_abi::events::ALL`), so a file written by another hyptrace version still decodes.
//! Its lines equal trace-cmd's byte for byte; `cargo xtask test` compares them on every run.
//!
//! ```
//! use hyptrace_tracedat::report::{Report, Selection};
//! use hyptrace_tracedat::{write_trace_dat, CpuData, CpuStats};
//!
//! // A file with one CPU and no pages: just the header line.
//! let cpus = [CpuData { pages: &[], stats: CpuStats::default() }];
//! let mut file = Vec::new();
//! write_trace_dat(&mut file, "hyp", hyptrace_abi::events::ALL, &cpus, "mono").unwrap();
//! let report = Report::new(&file).unwrap();
//! let mut lines = Vec::new();
//! let summary = report.for_each_line(&Selection::default(), |line| {
//!     lines.push(line.to_string());
//!     true
//! });
//! assert_eq!(lines, ["cpus=1"]);
//! assert!(summary.is_clean());
//! ```

pub mod decode;

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use core::fmt::{self, Write as _};

use self::decode::{CpuEvents, Item, Merged, PageError};
use crate::event_format::{self as format, EventFormat, RenderError};
use crate::{FileError, TraceFile};

/// A [`Selection`] the file cannot satisfy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SelectionError {
    /// A CPU the file does not have.
    Cpu {
        /// The CPU asked for.
        cpu: usize,
        /// The file's CPU count.
        cpus: usize,
    },
    /// An event the file does not describe.
    Event {
        /// The name asked for.
        name: String,
        /// The file's events, comma-separated.
        valid: String,
    },
}

impl fmt::Display for SelectionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cpu { cpu, cpus } => write!(
                f,
                "--cpu {cpu}: the file has {cpus} CPUs (0 to {})",
                cpus.saturating_sub(1)
            ),
            Self::Event { name, valid } => {
                write!(
                    f,
                    "--event {name}: no such event in the file; its events: {valid}"
                )
            }
        }
    }
}

impl core::error::Error for SelectionError {}

/// An event [`Report`] could not render; its line says `[FAILED TO PARSE]` or
/// `[UNKNOWN EVENT N]`, as trace-cmd's does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventError {
    /// The CPU.
    pub cpu: usize,
    /// The event's timestamp (ns).
    pub ts: u64,
    /// What went wrong.
    pub kind: EventErrorKind,
}

/// Why an event could not be rendered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventErrorKind {
    /// Its format could not render the payload (a field outside it, say).
    Render {
        /// The event's name.
        name: String,
        /// The format's error.
        error: RenderError,
    },
    /// No format in the file has its ID (`None`: the payload is too short to hold one).
    UnknownId {
        /// The ID read from the payload.
        id: Option<u64>,
        /// The payload's length.
        payload_len: usize,
    },
}

impl fmt::Display for EventError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (cpu, ts) = (self.cpu, self.ts);
        match &self.kind {
            EventErrorKind::Render { name, error } => {
                write!(f, "CPU {cpu} event {name} at {ts} ns: {error}")
            }
            EventErrorKind::UnknownId { id, payload_len } => {
                f.write_fmt(format_args!("CPU {cpu} at {ts} ns: unknown event ID "))?;
                match id {
                    Some(id) => write!(f, "{id}")?,
                    None => f.write_str("(none)")?,
                }
                write!(f, " (payload {payload_len} bytes)")
            }
        }
    }
}

impl core::error::Error for EventError {}

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
    /// Per CPU (index = CPU), every buffer together.
    pub cpus: Vec<CpuTotals>,
    /// Per buffer (0: the top-level one, then the instances), per CPU.
    pub buffers: Vec<Vec<CpuTotals>>,
    /// Pages that did not decode completely.
    pub page_errors: Vec<PageError>,
    /// Events that could not be rendered (unknown ID, field outside the payload): a few
    /// examples and the count.
    pub render_errors: Vec<EventError>,
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
    /// Offset and size of `common_pid`, as libtraceevent finds it: in the format of the
    /// lowest-ID event, for every event (`None`: that event has none, so every pid is -1).
    common_pid: Option<(usize, usize)>,
    /// Width of the buffer-name column (`hypervisor:`); 0 when the file has no instances.
    name_width: usize,
    /// Print nanosecond timestamps (`trace-cmd report -t`).
    nanoseconds: bool,
}

impl<'a> Report<'a> {
    /// Parses `bytes` (a whole trace.dat).
    ///
    /// # Errors
    /// The [`FileError`] of [`TraceFile::parse`].
    pub fn new(bytes: &'a [u8]) -> Result<Self, FileError> {
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
        // libtraceevent's `get_common_info` reads the common fields' places from its first
        // event, and its events are sorted by ID.
        let common_pid = file
            .events
            .iter()
            .min_by_key(|e| e.id)
            .and_then(|e| e.field("common_pid"))
            .map(|f| (f.offset, f.size.min(8)));
        // trace-cmd names the buffer on each line of a file with instances (BUFFER options),
        // in a column as wide as the longest name it opened plus one (the top level's "" is
        // one wide, which is all that is left when every instance failed to open).
        let named = !file.instances.is_empty() || !file.dropped_instances.is_empty();
        let name_width = if named {
            file.instances
                .iter()
                .map(|i| i.name.len() + 1)
                .max()
                .unwrap_or(0)
                .max(1)
        } else {
            0
        };
        Ok(Self {
            file,
            by_id,
            common_type,
            common_pid,
            name_width,
            nanoseconds: false,
        })
    }

    /// Prints full nanosecond timestamps, as `trace-cmd report -t` does.
    #[must_use]
    pub fn with_nanoseconds(mut self, on: bool) -> Self {
        self.nanoseconds = on;
        self
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
    ///
    /// # Errors
    /// [`SelectionError::Cpu`] for a CPU the file does not have, [`SelectionError::Event`]
    /// for an event it does not describe.
    pub fn check(&self, sel: &Selection) -> Result<(), SelectionError> {
        if let Some(&cpu) = sel.cpus.iter().find(|&&c| c >= self.file.cpus) {
            return Err(SelectionError::Cpu {
                cpu,
                cpus: self.file.cpus,
            });
        }
        for name in &sel.events {
            if self.file.event_by_name(name).is_none() {
                let valid: Vec<&str> = self.file.events.iter().map(|e| e.name.as_str()).collect();
                return Err(SelectionError::Event {
                    name: name.clone(),
                    valid: valid.join(", "),
                });
            }
        }
        Ok(())
    }

    /// The merged events of the selected CPUs, of every buffer.
    ///
    /// (`trace-cmd report --cpu` 3.1.6 prints the top-level buffer's events only; this
    /// selection takes the CPUs of every buffer.)
    pub fn events(&self, sel: &Selection) -> Merged<'_> {
        // trace-cmd 3.1.6 merges selected CPUs lowest first too, whatever order --cpu gave,
        // and the top-level buffer before the instances.
        let mut sources = Vec::new();
        for buffer in 0..self.file.buffer_count() {
            for cpu in (0..self.file.cpus).filter(|c| sel.cpus.is_empty() || sel.cpus.contains(c)) {
                let d = self.file.buffer_cpu_data(buffer, cpu);
                sources.push(CpuEvents::in_buffer(
                    buffer,
                    cpu,
                    self.file.pages_of(d),
                    self.file.page_size,
                    d.offset,
                ));
            }
        }
        Merged::new(sources)
    }

    /// The buffer-name column trace-cmd prints before every event of a file with
    /// instances: `hypervisor: ` for an instance's, blanks of the same width for the
    /// top-level buffer's; nothing in a file without instances.
    fn write_buffer_name(&self, out: &mut String, buffer: usize) {
        if self.name_width > 0 {
            let name = self.file.buffer_name(buffer);
            let label = if name.is_empty() {
                String::new()
            } else {
                format!("{name}:")
            };
            let _ = write!(out, "{label:<width$} ", width = self.name_width);
        }
    }

    /// Writes the timestamp as trace-cmd does: ` SSSSS.UUUUUU:` (microseconds, rounded) for
    /// nanosecond clocks, else the raw count right-aligned in 12 columns.
    fn write_time(&self, out: &mut String, ts: u64) {
        if self.file.time_in_usecs() && self.nanoseconds {
            let _ = write!(out, " {:5}.{:09}:", ts / 1_000_000_000, ts % 1_000_000_000);
        } else if self.file.time_in_usecs() {
            // As the flight recorder prints it: one definition.
            let _ = hyptrace_abi::event_format::write_timestamp_us(out, ts);
        } else {
            let _ = write!(out, "{ts:12}:");
        }
    }

    /// Renders one event's line (without the newline) into `out`. When the event cannot be
    /// rendered (unknown ID, a field outside the payload) the line says so and the error
    /// describes it.
    ///
    /// # Errors
    /// An [`EventError`] naming the event and why it could not be rendered.
    pub fn render_event(&self, item: &Item<'_>, out: &mut String) -> Result<(), EventError> {
        self.render(item, true, out)
    }

    /// [`Report::render_event`]; `named`: whether the line starts with the buffer's name
    /// (trace-cmd prints it once per record: before the record's drop marker when it has
    /// one, else before the event).
    fn render(&self, item: &Item<'_>, named: bool, out: &mut String) -> Result<(), EventError> {
        let event = self.event_of(item.payload);
        let pid = self.pid_of(item.payload);
        let comm = if pid == 0 { "<idle>" } else { "<...>" };
        if named {
            self.write_buffer_name(out, item.buffer);
        }
        let _ = write!(out, "{comm:>16}-{pid:<5} [{:03}]", item.cpu);
        self.write_time(out, item.ts);
        match event {
            Some((_, e)) => {
                format::write_event_name(out, &e.name);
                let start = out.len();
                let (kallsyms, printk) = (&self.file.kallsyms, &self.file.printk_formats);
                if let Err(err) = e.render_with(item.payload, kallsyms, printk, out) {
                    out.truncate(start);
                    out.push_str("[FAILED TO PARSE]");
                    return Err(EventError {
                        cpu: item.cpu,
                        ts: item.ts,
                        kind: EventErrorKind::Render {
                            name: e.name.clone(),
                            error: err,
                        },
                    });
                }
                if out.ends_with('\n') {
                    out.pop();
                }
                Ok(())
            }
            None => {
                let id = self.event_of_id(item.payload);
                let shown = id.map_or_else(|| "(none)".to_string(), |id| id.to_string());
                let _ = write!(out, " [UNKNOWN EVENT {shown}]");
                Err(EventError {
                    cpu: item.cpu,
                    ts: item.ts,
                    kind: EventErrorKind::UnknownId {
                        id,
                        payload_len: item.payload.len(),
                    },
                })
            }
        }
    }

    /// The pid, where the lowest-ID event has it, in every event (libtraceevent); without
    /// one (pKVM's header) it is -1, shown as `<...>`.
    fn pid_of(&self, payload: &[u8]) -> i64 {
        self.common_pid
            .and_then(|(off, size)| {
                let bytes = payload.get(off..off + size)?;
                let mut raw = [0u8; 8];
                raw[..size].copy_from_slice(bytes);
                let shift = 64 - 8 * size as u32;
                Some(((u64::from_le_bytes(raw) << shift) as i64) >> shift)
            })
            .unwrap_or(-1)
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
        let cpus = self.file.cpus;
        let mut summary = Summary {
            cpus: vec![CpuTotals::default(); cpus],
            buffers: vec![vec![CpuTotals::default(); cpus]; self.file.buffer_count()],
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
        let mut pending = vec![0i64; cpus * self.file.buffer_count()];
        let mut merged = self.events(sel);
        let mut line = String::with_capacity(160);
        for item in merged.by_ref() {
            let cpu = item.cpu;
            let slot = item.buffer * cpus + cpu;
            if item.missed != 0 {
                pending[slot] = match (pending[slot], item.missed) {
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
            let totals = &mut summary.buffers[item.buffer][cpu];
            let missed = core::mem::take(&mut pending[slot]);
            if missed != 0 {
                line.clear();
                self.write_buffer_name(&mut line, item.buffer);
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
            if let Err(e) = self.render(&item, missed == 0, &mut line) {
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
            summary.buffers[source.buffer()][source.cpu()].pages = source.pages_read as u64;
        }
        for buffer in &summary.buffers {
            for (all, t) in summary.cpus.iter_mut().zip(buffer) {
                all.events += t.events;
                all.pages += t.pages;
                all.drop_markers += t.drop_markers;
                all.dropped += t.dropped;
                all.unknown_drops += t.unknown_drops;
            }
        }
        summary
    }
}
