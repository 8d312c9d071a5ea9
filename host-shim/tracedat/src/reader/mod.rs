//! Parsing a trace.dat into its parts: the header texts, the event formats, the kallsyms and
//! printk formats, the CPU count, the options and every buffer's per-CPU data. Both of
//! trace-cmd's versions are read: 6, strictly sequential (what this crate writes), and 7,
//! in sections, compressed or not (what `trace-cmd record` and `trace-cmd convert` write:
//! the `v7` module).
//!
//! Everything is bounds-checked against the bytes of the file: a truncated or corrupt file
//! yields a [`FileError`] saying what was being read and where, never a panic. The saved
//! cmdlines are skipped by size. An event format whose print format this crate cannot
//! render is kept, and its records print their raw fields as libtraceevent prints an event
//! it failed to parse ([`EventFormat::print_error`]); one whose fields cannot be read is set
//! aside ([`TraceFile::skipped_events`]). `bprint` is read, and so are the kallsyms and
//! printk formats its records are printed with. An instance buffer whose data cannot be
//! found is left out with a warning ([`TraceFile::warnings`]), as trace-cmd leaves it out.

mod compress;
mod v7;

pub use compress::{Budget, Codec, MAX_INFLATED, MAX_RATIO, MIN_BUDGET};

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use crate::event_format::{self, EventFormat, FormatError};
use crate::format::{
    MAGIC, OPTION_BUFFER, OPTION_CPUSTAT, OPTION_DONE, OPTION_TRACECLOCK, SECTION_FLYRECORD,
    SECTION_HEADER_EVENT, SECTION_HEADER_PAGE, SECTION_OPTIONS, TRACING, USECS_CLOCKS, VERSION,
    VERSION_7,
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
                "trace-cmd file version {v:?} is not supported (versions 6 and 7 are)"
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

/// An event format set aside: what it is, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SkippedEvent {
    /// Its system (`ftrace`, `hyp`, ...).
    pub system: String,
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
    /// File offset of the CPU's first page (of its compressed chunks, in a compressed file).
    pub offset: u64,
    /// Bytes of pages in the file (compressed bytes, in a compressed file).
    pub size: u64,
    /// Where the inflated pages of compressed data are kept, in [`TraceFile`].
    inflated: Option<usize>,
}

impl CpuData {
    /// A CPU without data.
    const EMPTY: Self = Self {
        offset: 0,
        size: 0,
        inflated: None,
    };

    /// Whether the pages are inflated from compressed data (not the file's own bytes).
    pub fn is_inflated(&self) -> bool {
        self.inflated.is_some()
    }

    /// Data stored as it is, `size` bytes at `offset`.
    fn stored(offset: u64, size: u64) -> Self {
        Self {
            offset,
            size,
            inflated: None,
        }
    }
}

/// A parsed trace.dat, borrowing the file's bytes (and holding the inflated data of a
/// compressed one).
#[derive(Debug)]
pub struct TraceFile<'a> {
    /// The whole file.
    pub bytes: &'a [u8],
    /// Its format version: 6 or 7.
    pub version: u32,
    /// A version 7 file's compression: algorithm and version (`zstd`, `1.5.4`); `None`
    /// when it is not compressed.
    pub compression: Option<(String, String)>,
    /// What was left out of the file, as trace-cmd leaves it out with a message (an instance
    /// whose data cannot be found, as `trace-cmd split` writes them).
    pub warnings: Vec<String>,
    /// The names of the instances left out (see [`TraceFile::warnings`]).
    pub dropped_instances: Vec<String>,
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
    pub cpustats: Vec<String>,
    /// The trace clock's name, if the file names one.
    pub clock: Option<String>,
    /// Each CPU's data of the top-level buffer.
    pub cpu_data: Vec<CpuData>,
    /// The instance buffers (BUFFER options), in file order.
    pub instances: Vec<Instance>,
    /// The inflated pages of a compressed file's CPUs ([`CpuData::inflated`]).
    inflated: Vec<Vec<u8>>,
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
    /// A cursor at `at` in `bytes` (an offset read from the file: checked here).
    fn at(bytes: &'a [u8], at: u64, what: &str) -> Result<Self, FileError> {
        let at = usize::try_from(at)
            .ok()
            .filter(|&a| a <= bytes.len())
            .ok_or_else(|| FileError::Truncated {
                what: what.to_string(),
                at: usize::try_from(at).unwrap_or(usize::MAX),
            })?;
        Ok(Self { bytes, at })
    }

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

/// Reads one event format text of `system`: parsed, or set aside when its fields cannot be
/// read (a truncated or non-text format is still an error).
fn event_format(
    c: &mut Cursor<'_>,
    system: &str,
) -> Result<Result<EventFormat, SkippedEvent>, FileError> {
    let len = c.u64("event format size")?;
    let body = c.sized_text(len, "event format")?;
    Ok(event_format::parse_format(body, system).map_err(|error| {
        let value = |key: &str| {
            body.lines()
                .find_map(|l| l.trim().strip_prefix(key))
                .map(str::trim)
        };
        SkippedEvent {
            system: system.to_string(),
            name: value("name:").map(ToString::to_string),
            id: value("ID:").and_then(|v| v.parse().ok()),
            error,
        }
    }))
}

/// The event formats and symbol tables of a file, in either version.
#[derive(Debug, Default)]
struct Metadata {
    events: Vec<EventFormat>,
    skipped_events: Vec<SkippedEvent>,
    kallsyms: Kallsyms,
    printk_formats: PrintkFormats,
}

impl Metadata {
    /// `header_page` (checked: the page layout this crate decodes) and `header_event`.
    fn header_info(c: &mut Cursor<'_>) -> Result<(), FileError> {
        c.expect(SECTION_HEADER_PAGE, "header_page")?;
        let at = c.at;
        let len = c.u64("header_page size")?;
        let header_page = c.sized_text(len, "header_page")?;
        check_header_page(header_page, at)?;
        c.expect(SECTION_HEADER_EVENT, "header_event")?;
        let len = c.u64("header_event size")?;
        c.sized_text(len, "header_event")?;
        Ok(())
    }

    /// The ftrace events: a u32 count, then each format.
    fn ftrace_events(&mut self, c: &mut Cursor<'_>) -> Result<(), FileError> {
        let n = c.u32("ftrace event count")?;
        for _ in 0..n {
            self.keep(event_format(c, "ftrace")?);
        }
        Ok(())
    }

    /// The event systems: a u32 count, then each system's name, u32 count and formats.
    fn event_systems(&mut self, c: &mut Cursor<'_>) -> Result<(), FileError> {
        let systems = c.u32("event system count")?;
        for _ in 0..systems {
            let system = c.cstr("event system name")?;
            let n = c.u32("event count")?;
            for _ in 0..n {
                self.keep(event_format(c, system)?);
            }
        }
        Ok(())
    }

    fn keep(&mut self, e: Result<EventFormat, SkippedEvent>) {
        match e {
            Ok(e) => self.events.push(e),
            Err(skipped) => self.skipped_events.push(skipped),
        }
    }

    /// The kallsyms section (u32 size and text).
    fn kallsyms(&mut self, c: &mut Cursor<'_>) -> Result<(), FileError> {
        self.kallsyms = Kallsyms::parse(&u32_text(c, "kallsyms")?);
        Ok(())
    }

    /// The printk formats section (u32 size and text).
    fn printk_formats(&mut self, c: &mut Cursor<'_>) -> Result<(), FileError> {
        self.printk_formats = PrintkFormats::parse(&u32_text(c, "printk formats")?);
        Ok(())
    }

    /// Two events with one ID would make every record of that ID ambiguous: one is kept,
    /// the one this reader renders (else the first), and the other set aside, never the
    /// whole file refused.
    fn dedup_ids(&mut self) {
        let mut kept: Vec<EventFormat> = Vec::with_capacity(self.events.len());
        // Where each ID is in `kept`: one look-up per event, whatever the count.
        let mut slot = alloc::vec![u32::MAX; usize::from(u16::MAX) + 1];
        for e in core::mem::take(&mut self.events) {
            let i = slot[usize::from(e.id)];
            if i == u32::MAX {
                slot[usize::from(e.id)] = kept.len() as u32;
                kept.push(e);
                continue;
            }
            let i = i as usize;
            let dropped = if kept[i].print_error.is_some() && e.print_error.is_none() {
                core::mem::replace(&mut kept[i], e)
            } else {
                e
            };
            let reason = dropped
                .print_error
                .as_ref()
                .map_or(String::new(), |err| format!("{err}; "));
            self.skipped_events.push(SkippedEvent {
                system: dropped.system.clone(),
                name: Some(dropped.name.clone()),
                id: Some(dropped.id),
                error: FormatError(format!(
                    "{reason}its ID {} is also {}'s, which is kept",
                    dropped.id, kept[i].name
                )),
            });
        }
        self.events = kept;
    }
}

/// The most instance buffers a file may have: each costs a table of every CPU.
pub const MAX_INSTANCES: usize = 256;

/// The saved cmdlines (u64 size and text), skipped.
fn skip_cmdlines(c: &mut Cursor<'_>) -> Result<(), FileError> {
    let at = c.at;
    let len = c.u64("saved cmdlines size")?;
    let len = usize::try_from(len).map_err(|_| FileError::Truncated {
        what: "saved cmdlines".into(),
        at,
    })?;
    c.take(len, "saved cmdlines")?;
    Ok(())
}

/// A CPU count read from the file, checked.
fn check_cpus(cpus: usize, at: usize) -> Result<usize, FileError> {
    if cpus == 0 || cpus > MAX_FILE_CPUS {
        return Err(FileError::Malformed {
            what: format!("CPU count {cpus}"),
            at,
        });
    }
    Ok(cpus)
}

/// The most CPUs a file may have.
const MAX_FILE_CPUS: usize = 4096;

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
    /// Parses `bytes` (a whole trace.dat of version 6 or 7).
    ///
    /// # Errors
    /// [`FileError`] naming what was being read and where: not a trace-cmd file, another
    /// version, a truncated or malformed section, CPU data outside the file or not whole
    /// pages, or a feature this reader does not implement (big-endian or 32-bit files,
    /// another page size, latency-format data, a compression other than zstd).
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
        if version != VERSION && version != VERSION_7 {
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
        if version == VERSION_7 {
            return v7::parse(c, page_size);
        }
        Self::parse_v6(c, page_size)
    }

    /// The rest of a version 6 file, after the page size.
    fn parse_v6(mut c: Cursor<'a>, page_size: usize) -> Result<Self, FileError> {
        let bytes = c.bytes;
        let mut meta = Metadata::default();
        Metadata::header_info(&mut c)?;
        meta.ftrace_events(&mut c)?;
        meta.event_systems(&mut c)?;
        meta.dedup_ids();
        meta.kallsyms(&mut c)?;
        meta.printk_formats(&mut c)?;
        skip_cmdlines(&mut c)?;
        let cpus = check_cpus(c.u32("CPU count")? as usize, c.at)?;

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
                    OPTION_CPUSTAT => cpustats.push(cpustat_text(data, at)?),
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

        let (cpu_data, clock) = cpu_table(&mut c, cpus, clock_option)?;
        let header_end = c.at as u64;
        check_cpu_data(&cpu_data, bytes.len() as u64, header_end, page_size)?;

        let mut instances = Vec::with_capacity(buffers.len());
        let mut warnings = Vec::new();
        let mut dropped_instances = Vec::new();
        if buffers.len() > MAX_INSTANCES {
            return Err(FileError::Unsupported(format!(
                "{} instance buffers (at most {MAX_INSTANCES} are read)",
                buffers.len()
            )));
        }
        for (name, offset) in buffers {
            match instance_v6(bytes, offset, cpus, clock_option, header_end, page_size) {
                Ok(cpu_data) => instances.push(Instance {
                    name,
                    offset,
                    cpu_data,
                }),
                // trace-cmd leaves such an instance out ("could not retrieve handle"), and
                // `trace-cmd split` writes them: a file whose top level reads still reads.
                Err(e) => {
                    warnings.push(format!("could not retrieve handle {name}: {e}"));
                    dropped_instances.push(name);
                }
            }
        }

        Ok(Self {
            bytes,
            version: 6,
            compression: None,
            warnings,
            dropped_instances,
            page_size,
            events: meta.events,
            skipped_events: meta.skipped_events,
            kallsyms: meta.kallsyms,
            printk_formats: meta.printk_formats,
            cpus,
            cpustats,
            clock,
            cpu_data,
            instances,
            inflated: Vec::new(),
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
    pub fn cpu_pages(&self, cpu: usize) -> &[u8] {
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

    /// The pages a table entry names (validated by [`TraceFile::parse`]; inflated, in a
    /// compressed file).
    pub fn pages_of(&self, d: CpuData) -> &[u8] {
        if let Some(i) = d.inflated {
            return &self.inflated[i];
        }
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

/// A version 6 instance buffer: the `flyrecord` section at `offset` (options before it
/// skipped) and its table, checked as the top level's.
fn instance_v6(
    bytes: &[u8],
    offset: u64,
    cpus: usize,
    clock_option: bool,
    header_end: u64,
    page_size: usize,
) -> Result<Vec<CpuData>, FileError> {
    let mut b = Cursor::at(bytes, offset, "buffer section")?;
    let at = b.at;
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
            what: "the buffer does not start with flyrecord".into(),
            at,
        });
    }
    let (data, _) = cpu_table(&mut b, cpus, clock_option)?;
    check_cpu_data(&data, bytes.len() as u64, header_end, page_size)?;
    Ok(data)
}

/// A CPUSTAT option's text: trace-cmd replaces the last byte (the NUL) with a newline.
fn cpustat_text(data: &[u8], at: usize) -> Result<String, FileError> {
    let data = &data[..data.len().saturating_sub(1)];
    text(data, "CPUSTAT option", at).map(ToString::to_string)
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
        cpu_data.push(CpuData::stored(offset, size));
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
        if d.size == 0 || d.inflated.is_some() {
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
