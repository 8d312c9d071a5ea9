//! Parsing a trace.dat (trace-cmd file format version 6) into its parts: the header texts,
//! the event formats, the kallsyms and printk formats, the CPU count, the options and the
//! flyrecord table of per-CPU data.
//!
//! Everything is bounds-checked against the bytes of the file: a truncated or corrupt file
//! yields a [`FileError`] saying what was being read and where, never a panic. The saved
//! cmdlines are skipped by size. Of the ftrace events, those this crate cannot render (a
//! kernel's `function`, `print`, ...) are set aside ([`TraceFile::skipped_events`]); `bprint`
//! is read, and so are the kallsyms and printk formats its records are printed with.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use crate::event_format::{self, EventFormat, FormatError};
use crate::format::{
    MAGIC, OPTION_BUFFER, OPTION_CPUSTAT, OPTION_DONE, OPTION_TRACECLOCK, SECTION_FLYRECORD,
    SECTION_HEADER_EVENT, SECTION_HEADER_PAGE, SECTION_OPTIONS, TRACING, USECS_CLOCKS, VERSION,
};
use crate::symbols::{Kallsyms, PrintkFormats};
use hyptrace_abi::page::HEADER_SIZE;

/// Why a file could not be parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileError {
    /// The file does not start with trace-cmd's magic.
    BadMagic,
    /// A trace-cmd file of another version.
    UnsupportedVersion(String),
    /// The file ends inside this section.
    Truncated {
        /// What was being read.
        what: String,
        /// File offset where it starts.
        at: usize,
    },
    /// A section does not have the expected contents.
    Malformed {
        /// What is wrong.
        what: String,
        /// File offset of the section.
        at: usize,
    },
    /// A CPU's data lies (partly) outside the file or is not whole pages.
    BadCpuData {
        /// The CPU.
        cpu: usize,
        /// Its data offset.
        offset: u64,
        /// Its data size.
        size: u64,
        /// What is wrong.
        why: String,
    },
    /// A feature of the format hyptrace's reader does not implement.
    Unsupported(String),
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadMagic => f.write_str(
                "not a trace-cmd file: it does not start with the magic 17 08 44 'tracing'",
            ),
            Self::UnsupportedVersion(v) => write!(
                f,
                "trace-cmd file version {v:?} is not supported (only version 6, which \
                 hyptrace writes)"
            ),
            Self::Truncated { what, at } => {
                write!(
                    f,
                    "file truncated: {what} at offset {at:#x} runs past the end"
                )
            }
            Self::Malformed { what, at } => write!(f, "malformed file at offset {at:#x}: {what}"),
            Self::BadCpuData {
                cpu,
                offset,
                size,
                why,
            } => write!(
                f,
                "CPU {cpu}'s data (offset {offset:#x}, {size} bytes) {why}"
            ),
            Self::Unsupported(what) => write!(f, "unsupported trace.dat: {what}"),
        }
    }
}

impl core::error::Error for FileError {}

/// An ftrace event format set aside: what it is, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SkippedEvent {
    /// Its `name:`, if it has one.
    pub name: Option<String>,
    /// Its `ID:`, if it has a readable one.
    pub id: Option<u16>,
    /// Why it was set aside.
    pub error: FormatError,
}

/// One CPU's entry of the flyrecord table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuData {
    /// File offset of the CPU's first page.
    pub offset: u64,
    /// Bytes of pages.
    pub size: u64,
}

/// A parsed trace.dat, borrowing the file's bytes.
#[derive(Debug)]
pub struct TraceFile<'a> {
    /// The whole file.
    pub bytes: &'a [u8],
    /// Ring-buffer page size.
    pub page_size: usize,
    /// Every event format (ftrace events first, then each system's), as parsed.
    pub events: Vec<EventFormat>,
    /// The ftrace events whose formats this crate cannot render, left out of
    /// [`TraceFile::events`] (their records print as unknown events).
    pub skipped_events: Vec<SkippedEvent>,
    /// The kallsyms section: the symbols `bprint` records name their call site with.
    pub kallsyms: Kallsyms,
    /// The printk formats section: the formats `bprint` records name by address.
    pub printk_formats: PrintkFormats,
    /// The CPU count.
    pub cpus: usize,
    /// The CPUSTAT options' texts, in file order (one per CPU normally).
    pub cpustats: Vec<&'a str>,
    /// The trace clock's name, if the file names one.
    pub clock: Option<String>,
    /// Each CPU's data of the top-level buffer.
    pub cpu_data: Vec<CpuData>,
    /// The instance buffers (BUFFER options), in file order.
    pub instances: Vec<Instance>,
}

/// An instance buffer of a file: its name and its CPUs' data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Instance {
    /// The instance's name (`hypervisor`).
    pub name: String,
    /// File offset of its `flyrecord` section.
    pub offset: u64,
    /// Each CPU's data (the file's CPU count).
    pub cpu_data: Vec<CpuData>,
}

/// A bounds-checked reader over the file's bytes.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], FileError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or_else(|| FileError::Truncated {
                what: what.to_string(),
                at: self.at,
            })?;
        let s = &self.bytes[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn u16(&mut self, what: &str) -> Result<u16, FileError> {
        let b = self.take(2, what)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self, what: &str) -> Result<u32, FileError> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self, what: &str) -> Result<u64, FileError> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    /// A NUL-terminated string (the NUL consumed, not returned).
    fn cstr(&mut self, what: &str) -> Result<&'a str, FileError> {
        let start = self.at;
        let rest = &self.bytes[start..];
        let len = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or_else(|| FileError::Truncated {
                what: what.to_string(),
                at: start,
            })?;
        self.at += len + 1;
        text(&rest[..len], what, start)
    }

    /// `len` bytes of text, where `len` is a u64 (or u32) read first.
    fn sized_text(&mut self, len: u64, what: &str) -> Result<&'a str, FileError> {
        let at = self.at;
        let len = usize::try_from(len).map_err(|_| FileError::Truncated {
            what: what.to_string(),
            at,
        })?;
        let b = self.take(len, what)?;
        text(b, what, at)
    }

    /// Expects exactly `tag` next.
    fn expect(&mut self, tag: &[u8], what: &str) -> Result<(), FileError> {
        let at = self.at;
        let got = self.take(tag.len(), what)?;
        if got != tag {
            return Err(FileError::Malformed {
                what: format!(
                    "expected {what} ({:?}), found {:?}",
                    String::from_utf8_lossy(tag),
                    String::from_utf8_lossy(got)
                ),
                at,
            });
        }
        Ok(())
    }
}

fn text<'a>(b: &'a [u8], what: &str, at: usize) -> Result<&'a str, FileError> {
    core::str::from_utf8(b).map_err(|_| FileError::Malformed {
        what: format!("{what} is not UTF-8 text"),
        at,
    })
}

/// Reads one event format text and parses it.
fn event_format(c: &mut Cursor<'_>, system: &str) -> Result<EventFormat, FileError> {
    let at = c.at;
    let len = c.u64("event format size")?;
    let body = c.sized_text(len, "event format")?;
    event_format::parse_format(body, system).map_err(|e| FileError::Malformed {
        what: format!("event format of system {system:?}: {e}"),
        at,
    })
}

/// Reads one ftrace event format text: parsed, or set aside when this crate cannot render
/// it (a truncated or non-text format is still an error).
fn ftrace_format(c: &mut Cursor<'_>) -> Result<Result<EventFormat, SkippedEvent>, FileError> {
    let len = c.u64("ftrace event format size")?;
    let body = c.sized_text(len, "ftrace event format")?;
    Ok(event_format::parse_format(body, "ftrace").map_err(|error| {
        let value = |key: &str| {
            body.lines()
                .find_map(|l| l.trim().strip_prefix(key))
                .map(str::trim)
        };
        SkippedEvent {
            name: value("name:").map(ToString::to_string),
            id: value("ID:").and_then(|v| v.parse().ok()),
            error,
        }
    }))
}

/// A section of a u32 size and text, read as text whatever its bytes (libtraceevent reads
/// it as a C string).
fn u32_text(c: &mut Cursor<'_>, what: &str) -> Result<String, FileError> {
    let len = c.u32(&format!("{what} size"))?;
    let bytes = c.take(len as usize, what)?;
    // A C string ends at its first NUL.
    let bytes = bytes.split(|&b| b == 0).next().unwrap_or(&[]);
    Ok(String::from_utf8_lossy(bytes).into_owned())
}

/// Checks the `header_page` text describes what hyptrace's page decoder reads: an 8-byte
/// `commit` at offset 8 and data from offset 16.
fn check_header_page(text: &str, at: usize) -> Result<(), FileError> {
    let field = |name: &str| {
        text.lines()
            .find(|l| l.contains(&format!(" {name};")))
            .map(|l| (attr(l, "offset"), attr(l, "size")))
    };
    match (field("commit"), field("data")) {
        (Some((Some(8), Some(8))), Some((Some(data), _))) if data == HEADER_SIZE as u64 => Ok(()),
        (None, _) | (_, None) => Err(FileError::Malformed {
            what: "header_page has no commit or data field".into(),
            at,
        }),
        _ => Err(FileError::Unsupported(
            "header_page: only an 8-byte commit at offset 8 and data at offset 16 (64-bit \
             kernels) are supported"
                .into(),
        )),
    }
}

/// The number after `name:` up to `;` in a format line.
pub fn attr(line: &str, name: &str) -> Option<u64> {
    let key = format!("{name}:");
    let start = line.find(&key)? + key.len();
    let rest = &line[start..];
    let end = rest.find(';')?;
    rest[..end].trim().parse().ok()
}

impl<'a> TraceFile<'a> {
    /// Parses `bytes` (a whole trace.dat).
    ///
    /// # Errors
    /// [`FileError`] naming what was being read and where: not a trace-cmd file, another
    /// version, a truncated or malformed section, CPU data outside the file or not whole
    /// pages, or a feature this reader does not implement.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, FileError> {
        if bytes.len() < 3 || bytes[..3] != MAGIC {
            return Err(FileError::BadMagic);
        }
        let mut c = Cursor { bytes, at: 3 };
        let tracing = c.take(TRACING.len(), "the word 'tracing'")?;
        if tracing != TRACING {
            return Err(FileError::BadMagic);
        }
        let version = c.cstr("version")?;
        if version != VERSION {
            return Err(FileError::UnsupportedVersion(version.to_string()));
        }
        let endian = c.take(1, "endianness")?[0];
        if endian != 0 {
            return Err(FileError::Unsupported(
                "big-endian recordings are not supported".into(),
            ));
        }
        let long_size = c.take(1, "long size")?[0];
        if long_size != 8 {
            return Err(FileError::Unsupported(format!(
                "sizeof(long) = {long_size}: only 8 (64-bit) is supported"
            )));
        }
        let page_size = c.u32("page size")? as usize;
        if page_size != hyptrace_abi::page::PAGE_SIZE {
            return Err(FileError::Unsupported(format!(
                "page size {page_size}: only {} is supported",
                hyptrace_abi::page::PAGE_SIZE
            )));
        }

        c.expect(SECTION_HEADER_PAGE, "header_page")?;
        let at = c.at;
        let len = c.u64("header_page size")?;
        let header_page = c.sized_text(len, "header_page")?;
        check_header_page(header_page, at)?;
        c.expect(SECTION_HEADER_EVENT, "header_event")?;
        let len = c.u64("header_event size")?;
        c.sized_text(len, "header_event")?;

        let mut events = Vec::new();
        let mut skipped_events = Vec::new();
        let n = c.u32("ftrace event count")?;
        for _ in 0..n {
            match ftrace_format(&mut c)? {
                Ok(e) => events.push(e),
                Err(skipped) => skipped_events.push(skipped),
            }
        }
        let systems = c.u32("event system count")?;
        for _ in 0..systems {
            let system = c.cstr("event system name")?;
            let n = c.u32("event count")?;
            for _ in 0..n {
                events.push(event_format(&mut c, system)?);
            }
        }
        for (i, e) in events.iter().enumerate() {
            if let Some(dup) = events[..i].iter().find(|d| d.id == e.id) {
                return Err(FileError::Malformed {
                    what: format!("events {} and {} share the ID {}", dup.name, e.name, e.id),
                    at: 0,
                });
            }
        }

        let kallsyms = Kallsyms::parse(&u32_text(&mut c, "kallsyms")?);
        let printk_formats = PrintkFormats::parse(&u32_text(&mut c, "printk formats")?);
        let at = c.at;
        let len = c.u64("saved cmdlines size")?;
        let len = usize::try_from(len).map_err(|_| FileError::Truncated {
            what: "saved cmdlines".into(),
            at,
        })?;
        c.take(len, "saved cmdlines")?;

        let cpus = c.u32("CPU count")? as usize;
        if cpus == 0 || cpus > 4096 {
            return Err(FileError::Malformed {
                what: format!("CPU count {cpus}"),
                at: c.at - 4,
            });
        }

        let mut cpustats = Vec::new();
        let mut clock_option = false;
        let mut buffers = Vec::new();
        let at = c.at;
        let mut tag = c.take(10, "section tag")?;
        if tag == SECTION_OPTIONS {
            loop {
                let id = c.u16("option id")?;
                if id == OPTION_DONE {
                    break;
                }
                let size = c.u32("option size")?;
                let at = c.at;
                let data = c.take(size as usize, "option data")?;
                match id {
                    OPTION_CPUSTAT => {
                        // trace-cmd replaces the last byte (the NUL) with a newline.
                        let data = &data[..data.len().saturating_sub(1)];
                        cpustats.push(text(data, "CPUSTAT option", at)?);
                    }
                    OPTION_TRACECLOCK => clock_option = true,
                    OPTION_BUFFER => {
                        let mut o = Cursor { bytes: data, at: 0 };
                        let offset = o.u64("buffer offset").map_err(|_| FileError::Malformed {
                            what: "BUFFER option shorter than its offset".into(),
                            at,
                        })?;
                        let name = o.cstr("buffer name").map_err(|_| FileError::Malformed {
                            what: "BUFFER option without a NUL-terminated name".into(),
                            at,
                        })?;
                        buffers.push((name.to_string(), offset));
                    }
                    _ => {}
                }
            }
            tag = c.take(10, "section tag")?;
        }
        if tag.starts_with(b"latency") {
            return Err(FileError::Unsupported(
                "latency-format recordings are not supported".into(),
            ));
        }
        if tag != SECTION_FLYRECORD {
            return Err(FileError::Malformed {
                what: format!(
                    "expected options or flyrecord, found {:?}",
                    String::from_utf8_lossy(tag)
                ),
                at,
            });
        }

        let cpu_data = cpu_table(&mut c, cpus, clock_option)?;
        let clock = cpu_data.1;
        let cpu_data = cpu_data.0;
        let header_end = c.at as u64;
        check_cpu_data(&cpu_data, bytes.len() as u64, header_end, page_size)?;

        let mut instances = Vec::with_capacity(buffers.len());
        for (name, offset) in buffers {
            let at = usize::try_from(offset)
                .ok()
                .filter(|&at| at < bytes.len())
                .ok_or_else(|| FileError::Truncated {
                    what: format!("buffer {name:?}"),
                    at: offset as usize,
                })?;
            let mut b = Cursor { bytes, at };
            let mut tag = b.take(10, "buffer section tag")?;
            if tag == SECTION_OPTIONS {
                loop {
                    if b.u16("option id")? == OPTION_DONE {
                        break;
                    }
                    let size = b.u32("option size")?;
                    b.take(size as usize, "option data")?;
                }
                tag = b.take(10, "buffer section tag")?;
            }
            if tag != SECTION_FLYRECORD {
                return Err(FileError::Malformed {
                    what: format!("buffer {name:?} does not start with flyrecord"),
                    at,
                });
            }
            let (data, _) = cpu_table(&mut b, cpus, clock_option)?;
            check_cpu_data(&data, bytes.len() as u64, header_end, page_size)?;
            instances.push(Instance {
                name,
                offset,
                cpu_data: data,
            });
        }

        Ok(Self {
            bytes,
            page_size,
            events,
            skipped_events,
            kallsyms,
            printk_formats,
            cpus,
            cpustats,
            clock,
            cpu_data,
            instances,
        })
    }

    /// Whether trace-cmd prints this file's timestamps as seconds.microseconds (true) or as
    /// raw counts.
    pub fn time_in_usecs(&self) -> bool {
        match &self.clock {
            None => true,
            Some(c) => USECS_CLOCKS.contains(&c.as_str()) || c.starts_with("mono"),
        }
    }

    /// The pages of `cpu` of the top-level buffer (whole pages, validated by
    /// [`TraceFile::parse`]).
    pub fn cpu_pages(&self, cpu: usize) -> &'a [u8] {
        self.pages_of(self.cpu_data[cpu])
    }

    /// The data of `cpu` in buffer `buffer`: 0 is the top-level buffer, `i` the `i`-th
    /// instance.
    pub fn buffer_cpu_data(&self, buffer: usize, cpu: usize) -> CpuData {
        match buffer.checked_sub(1) {
            None => self.cpu_data[cpu],
            Some(i) => self.instances[i].cpu_data[cpu],
        }
    }

    /// The name of buffer `buffer` (`""` for the top-level one).
    pub fn buffer_name(&self, buffer: usize) -> &str {
        buffer
            .checked_sub(1)
            .map_or("", |i| self.instances[i].name.as_str())
    }

    /// How many buffers the file has: the top-level one and the instances.
    pub fn buffer_count(&self) -> usize {
        1 + self.instances.len()
    }

    /// The pages a table entry names (validated by [`TraceFile::parse`]).
    pub fn pages_of(&self, d: CpuData) -> &'a [u8] {
        if d.size == 0 {
            return &[];
        }
        &self.bytes[d.offset as usize..(d.offset + d.size) as usize]
    }

    /// The event with this name, if the file has it.
    pub fn event_by_name(&self, name: &str) -> Option<&EventFormat> {
        self.events.iter().find(|e| e.name == name)
    }

    /// `trace-cmd report --stat`'s statistics text: the CPUSTAT texts, then where each CPU's
    /// data is.
    pub fn stat_text(&self) -> String {
        use core::fmt::Write as _;
        let mut s = String::from(
            "\nKernel buffer statistics:\n  Note: \"entries\" are the entries left in the kernel \
             ring buffer and are not\n        recorded in the trace data. They should all be \
             zero.\n\n",
        );
        if self.cpustats.is_empty() {
            s.push_str(" No stats in this file\n");
        } else {
            for t in &self.cpustats {
                s.push_str(t);
                s.push('\n');
            }
            s.push('\n');
        }
        for (i, d) in self.cpu_data.iter().enumerate() {
            // Writing to a String cannot fail.
            let _ = write!(
                s,
                "CPU{i} data recorded at offset={:#x}\n    {} bytes in size\n",
                d.offset, d.size
            );
        }
        s
    }
}

/// A `flyrecord` table of `cpus` entries, then the clock text when the file has one (as
/// trace-cmd: the text after the table is read only when the TRACECLOCK option says the file
/// has one).
fn cpu_table(
    c: &mut Cursor<'_>,
    cpus: usize,
    clock_option: bool,
) -> Result<(Vec<CpuData>, Option<String>), FileError> {
    let mut cpu_data = Vec::with_capacity(cpus);
    for _ in 0..cpus {
        let offset = c.u64("flyrecord offset")?;
        let size = c.u64("flyrecord size")?;
        cpu_data.push(CpuData { offset, size });
    }
    let clock = if clock_option {
        let len = c.u64("trace clock size")?;
        let text = c.sized_text(len, "trace clock")?;
        clock_name(text)
    } else {
        None
    };
    Ok((cpu_data, clock))
}

/// Every CPU's data must lie inside the file, after the header, in whole pages.
fn check_cpu_data(
    cpu_data: &[CpuData],
    file_len: u64,
    header_end: u64,
    page_size: usize,
) -> Result<(), FileError> {
    for (cpu, d) in cpu_data.iter().enumerate() {
        if d.size == 0 {
            continue;
        }
        let bad = |why: &str| FileError::BadCpuData {
            cpu,
            offset: d.offset,
            size: d.size,
            why: why.to_string(),
        };
        match d.offset.checked_add(d.size) {
            Some(end) if end <= file_len => {}
            _ => {
                return Err(bad(&format!(
                    "runs past the end of the file ({file_len} bytes): truncated?"
                )))
            }
        }
        if d.offset < header_end {
            return Err(bad("overlaps the file's header"));
        }
        if d.size % page_size as u64 != 0 {
            return Err(bad(&format!(
                "is not a whole number of {page_size}-byte pages"
            )));
        }
    }
    Ok(())
}

/// The clock name of a `trace_clock` text: the bracketed word (`local [mono] global` or
/// `[mono]`).
fn clock_name(text: &str) -> Option<String> {
    let word = text.split_whitespace().find(|w| w.starts_with('['))?;
    let name = word.trim_start_matches('[').split(']').next()?;
    (!name.is_empty()).then(|| name.to_string())
}
