//! Version 7 of the trace.dat format, read: what `trace-cmd record` (3.x) and
//! `trace-cmd convert` write by default.
//!
//! ```text
//! 17 08 44 "tracing" "7" 00  u8 endian  u8 sizeof(long)  u32 page size
//! compression name 00  compression version 00        ("none" 00 00, or "zstd" 00 "1.5.4" 00)
//! u64 offset of the first options section
//! sections, anywhere: u16 id, u16 flags (1: compressed), u32 description, u64 body size
//!   a compressed body: u32 compressed size, u32 uncompressed size, the compressed bytes
//! options section (id 0): (u16 id, u32 size, data)* then DONE: u16 0, u32 8, u64 offset of
//!   the next options section (0: none)
//!     2 CPUSTAT text, 4 TRACECLOCK text, 8 CPUCOUNT u32
//!     16..=21: u64 offset of the section of that id: header info, ftrace events, event
//!       formats, kallsyms, printk formats, saved cmdlines (their bodies as in version 6)
//!     3 BUFFER: u64 offset of its section (id 3), name 00 ("" for the top level), clock 00,
//!       u32 page size, u32 CPUs, then per CPU: u32 CPU, u64 data offset, u64 data size
//! a CPU's data in a compressed buffer section: u32 chunks, then per chunk u32 compressed
//!   size, u32 uncompressed size (whole pages), the compressed bytes (the BUFFER option's
//!   size counts the chunks, not the u32 before them)
//! ```
//!
//! Checked against trace-cmd 3.1.6's own files (`cargo xtask test` reads what its
//! `convert` writes, compressed and not, and compares the report with trace-cmd's).

use alloc::borrow::Cow;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;

use super::compress::{Budget, Codec};
use super::{
    check_cpu_data, check_cpus, clock_name, cpustat_text, skip_cmdlines, CpuData, Cursor,
    FileError, Instance, Metadata, TraceFile, MAX_INSTANCES,
};
use crate::format::{
    OPTION_BUFFER, OPTION_BUFFER_TEXT, OPTION_CMDLINES, OPTION_CPUCOUNT, OPTION_CPUSTAT,
    OPTION_DONE, OPTION_EVENT_FORMATS, OPTION_FTRACE_EVENTS, OPTION_HEADER_INFO, OPTION_KALLSYMS,
    OPTION_PRINTK, OPTION_TRACECLOCK, SECTION_COMPRESSED, SECTION_ID_BUFFER, SECTION_ID_OPTIONS,
};

/// Options sections followed at most: a chain longer than this is a loop.
const MAX_OPTIONS_SECTIONS: usize = 4096;

/// A BUFFER option: one buffer's data.
struct BufferOption {
    offset: u64,
    name: String,
    clock: String,
    /// (CPU, data offset, data size).
    cpus: Vec<(u32, u64, u64)>,
}

/// What the options sections say.
#[derive(Default)]
struct Options {
    cpustats: Vec<String>,
    traceclock: Option<String>,
    cpucount: Option<usize>,
    /// Section offsets by option id 16..=21.
    sections: [Option<u64>; 6],
    buffers: Vec<BufferOption>,
}

impl Options {
    /// Reads one options section's body; the offset of the next section (0: none).
    fn read(&mut self, body: &[u8], page_size: usize) -> Result<u64, FileError> {
        let mut c = Cursor { bytes: body, at: 0 };
        loop {
            let id = c.u16("option id")?;
            let size = c.u32("option size")?;
            let at = c.at;
            let data = c.take(size as usize, "option data")?;
            let mut o = Cursor { bytes: data, at: 0 };
            match id {
                OPTION_DONE => return o.u64("next options offset"),
                OPTION_CPUSTAT => self.cpustats.push(cpustat_text(data, at)?),
                OPTION_TRACECLOCK => {
                    let text = data.split(|&b| b == 0).next().unwrap_or(&[]);
                    self.traceclock = Some(String::from_utf8_lossy(text).into_owned());
                }
                OPTION_CPUCOUNT => self.cpucount = Some(o.u32("CPU count")? as usize),
                OPTION_HEADER_INFO..=OPTION_CMDLINES => {
                    let slot = usize::from(id - OPTION_HEADER_INFO);
                    self.sections[slot] = Some(o.u64("section offset")?);
                }
                OPTION_BUFFER => self.buffers.push(buffer_option(&mut o, page_size)?),
                OPTION_BUFFER_TEXT => {
                    return Err(FileError::Unsupported(
                        "latency-format recordings are not supported".into(),
                    ))
                }
                _ => {}
            }
        }
    }

    fn section(&self, id: u16) -> Option<u64> {
        self.sections[usize::from(id - OPTION_HEADER_INFO)]
    }
}

fn buffer_option(o: &mut Cursor<'_>, page_size: usize) -> Result<BufferOption, FileError> {
    let offset = o.u64("BUFFER section offset")?;
    let name = o.cstr("BUFFER name")?.to_string();
    let clock = o.cstr("BUFFER clock")?.to_string();
    let page = o.u32("BUFFER page size")? as usize;
    if page != page_size {
        return Err(FileError::Unsupported(format!(
            "buffer {name:?} has {page}-byte pages, the file {page_size}"
        )));
    }
    let n = o.u32("BUFFER CPU count")?;
    let mut cpus = Vec::new();
    for _ in 0..n {
        let cpu = o.u32("BUFFER CPU")?;
        let data = o.u64("BUFFER CPU data offset")?;
        let size = o.u64("BUFFER CPU data size")?;
        cpus.push((cpu, data, size));
    }
    Ok(BufferOption {
        offset,
        name,
        clock,
        cpus,
    })
}

/// A section's header: its flags and its body.
fn section<'a>(
    bytes: &'a [u8],
    at: u64,
    id: u16,
    what: &str,
) -> Result<(u16, &'a [u8]), FileError> {
    let mut c = Cursor::at(bytes, at, what)?;
    let start = c.at;
    let found = c.u16("section id")?;
    if found != id {
        return Err(FileError::Malformed {
            what: format!("expected the {what} section (id {id}), found section id {found}"),
            at: start,
        });
    }
    let flags = c.u16("section flags")?;
    c.u32("section description")?;
    let size = c.u64("section size")?;
    let size = usize::try_from(size).map_err(|_| FileError::Truncated {
        what: what.to_string(),
        at: start,
    })?;
    Ok((flags, c.take(size, what)?))
}

/// A section's body, inflated (and charged to `budget`) when it is compressed.
fn section_body<'a>(
    bytes: &'a [u8],
    at: u64,
    id: u16,
    what: &str,
    codec: Codec,
    budget: &mut Budget,
) -> Result<Cow<'a, [u8]>, FileError> {
    let (flags, body) = section(bytes, at, id, what)?;
    if flags & SECTION_COMPRESSED == 0 {
        return Ok(Cow::Borrowed(body));
    }
    let mut c = Cursor { bytes: body, at: 0 };
    let compressed = c.u32("compressed size")? as usize;
    let size = c.u32("uncompressed size")? as usize;
    let data = c.take(compressed, what)?;
    Ok(Cow::Owned(codec.inflate(
        data,
        size,
        budget,
        what,
        at as usize,
    )?))
}

/// One CPU's compressed data at `offset`: its chunks, inflated and joined.
fn inflate_cpu(
    bytes: &[u8],
    offset: u64,
    size: u64,
    codec: Codec,
    budget: &mut Budget,
    what: &str,
) -> Result<Vec<u8>, FileError> {
    let mut whole = Cursor::at(bytes, offset, what)?;
    let start = whole.at;
    let chunks = whole.u32("chunk count")?;
    // trace-cmd 3.1.6 counts the chunks, not the count before them, in the size.
    let size = usize::try_from(size).unwrap_or(usize::MAX);
    let data = whole.take(size, what)?;
    let mut c = Cursor { bytes: data, at: 0 };
    let mut out = Vec::new();
    for _ in 0..chunks {
        let at = start + 4 + c.at;
        let compressed = c.u32("chunk compressed size")? as usize;
        let size = c.u32("chunk uncompressed size")? as usize;
        let chunk = c.take(compressed, "chunk")?;
        out.extend_from_slice(&codec.inflate(chunk, size, budget, what, at)?);
    }
    Ok(out)
}

/// The rest of a version 7 file, after the page size.
pub(super) fn parse<'a>(mut c: Cursor<'a>, page_size: usize) -> Result<TraceFile<'a>, FileError> {
    let bytes = c.bytes;
    let name = c.cstr("compression name")?;
    let version = c.cstr("compression version")?;
    let codec = Codec::named(name)?;
    let compression = (codec != Codec::None).then(|| (name.to_string(), version.to_string()));
    let prefix_end = c.at as u64 + 8;
    let mut next = c.u64("first options offset")?;

    let mut budget = Budget::for_file(bytes.len());
    let mut options = Options::default();
    let mut seen = Vec::new();
    while next != 0 {
        if seen.contains(&next) || seen.len() == MAX_OPTIONS_SECTIONS {
            return Err(FileError::Malformed {
                what: "the options sections form a loop".into(),
                at: next as usize,
            });
        }
        seen.push(next);
        let body = section_body(
            bytes,
            next,
            SECTION_ID_OPTIONS,
            "options",
            codec,
            &mut budget,
        )?;
        next = options.read(&body, page_size)?;
        if options.buffers.len() > MAX_INSTANCES + 1 {
            return Err(FileError::Unsupported(format!(
                "more than {MAX_INSTANCES} instance buffers"
            )));
        }
    }

    let mut meta = Metadata::default();
    let mut read = |id: u16,
                    what: &str,
                    f: &mut dyn FnMut(&mut Cursor<'_>) -> Result<(), FileError>|
     -> Result<bool, FileError> {
        let Some(at) = options.section(id) else {
            return Ok(false);
        };
        let body = section_body(bytes, at, id, what, codec, &mut budget)?;
        f(&mut Cursor {
            bytes: &body,
            at: 0,
        })?;
        Ok(true)
    };
    let has_header = read(
        OPTION_HEADER_INFO,
        "header info",
        &mut Metadata::header_info,
    )?;
    if !has_header {
        return Err(FileError::Malformed {
            what: "no header info section (trace-cmd cannot read such a file either)".into(),
            at: 0,
        });
    }
    read(OPTION_FTRACE_EVENTS, "ftrace event formats", &mut |c| {
        meta.ftrace_events(c)
    })?;
    read(OPTION_EVENT_FORMATS, "event formats", &mut |c| {
        meta.event_systems(c)
    })?;
    read(OPTION_KALLSYMS, "kallsyms", &mut |c| meta.kallsyms(c))?;
    read(OPTION_PRINTK, "printk formats", &mut |c| {
        meta.printk_formats(c)
    })?;
    read(OPTION_CMDLINES, "saved cmdlines", &mut skip_cmdlines)?;
    meta.dedup_ids();

    let highest = options
        .buffers
        .iter()
        .flat_map(|b| b.cpus.iter().map(|&(cpu, ..)| u64::from(cpu) + 1))
        .max()
        .unwrap_or(1);
    let highest = usize::try_from(highest).unwrap_or(usize::MAX);
    let cpus = check_cpus(options.cpucount.unwrap_or(highest).max(highest), 0)?;

    // Each CPU's data inflated once, whatever number of entries name it.
    let mut inflated: Vec<Vec<u8>> = Vec::new();
    let mut inflated_at: Vec<(u64, u64, usize)> = Vec::new();
    let mut top: Option<(Vec<CpuData>, String)> = None;
    let mut instances = Vec::new();
    let mut warnings = Vec::new();
    let mut dropped_instances = Vec::new();
    let mut buffer_offsets = Vec::new();
    for b in &options.buffers {
        let what = format!("buffer {:?}", b.name);
        let top_level = b.name.is_empty() && top.is_none();
        let mut read_buffer = || -> Result<Vec<CpuData>, FileError> {
            if buffer_offsets.contains(&b.offset) {
                return Err(FileError::Malformed {
                    what: format!("{what}: its section is another buffer's"),
                    at: b.offset as usize,
                });
            }
            buffer_offsets.push(b.offset);
            let (flags, _) = section(bytes, b.offset, SECTION_ID_BUFFER, &what)?;
            let mut cpu_data = vec![CpuData::EMPTY; cpus];
            let mut listed = vec![false; cpus];
            for &(cpu, offset, size) in &b.cpus {
                let cpu = cpu as usize;
                if core::mem::replace(&mut listed[cpu], true) {
                    return Err(FileError::Malformed {
                        what: format!("{what} lists CPU {cpu} twice"),
                        at: b.offset as usize,
                    });
                }
                let d = if flags & SECTION_COMPRESSED != 0 && size > 0 {
                    let known = inflated_at
                        .iter()
                        .find(|&&(o, s, _)| (o, s) == (offset, size))
                        .map(|&(.., i)| i);
                    let index = match known {
                        Some(i) => i,
                        None => {
                            let data = inflate_cpu(bytes, offset, size, codec, &mut budget, &what)?;
                            if data.len() % page_size != 0 {
                                return Err(FileError::BadCpuData {
                                    cpu,
                                    offset,
                                    size,
                                    why: format!(
                                        "inflates to {} bytes, not whole pages",
                                        data.len()
                                    ),
                                });
                            }
                            inflated.push(data);
                            inflated_at.push((offset, size, inflated.len() - 1));
                            inflated.len() - 1
                        }
                    };
                    CpuData {
                        offset,
                        size,
                        inflated: Some(index),
                    }
                } else {
                    CpuData::stored(offset, size)
                };
                cpu_data[cpu] = d;
            }
            check_cpu_data(&cpu_data, bytes.len() as u64, prefix_end, page_size)?;
            Ok(cpu_data)
        };
        match read_buffer() {
            Ok(cpu_data) if top_level => top = Some((cpu_data, b.clock.clone())),
            Ok(cpu_data) => instances.push(Instance {
                name: b.name.clone(),
                offset: b.offset,
                cpu_data,
            }),
            Err(e) if top_level => return Err(e),
            // As in version 6 (and as trace-cmd does): an instance that cannot be read is left
            // out with a message; the rest of the file still reads.
            Err(e) => {
                warnings.push(format!("could not retrieve handle {}: {e}", b.name));
                dropped_instances.push(b.name.clone());
            }
        }
    }
    let (cpu_data, clock) = top.unwrap_or_else(|| (vec![CpuData::EMPTY; cpus], String::new()));
    let clock = if clock.is_empty() {
        options.traceclock.as_deref().and_then(clock_name)
    } else {
        Some(clock)
    };
    Ok(TraceFile {
        bytes,
        version: 7,
        compression,
        warnings,
        dropped_instances,
        page_size,
        events: meta.events,
        skipped_events: meta.skipped_events,
        kallsyms: meta.kallsyms,
        printk_formats: meta.printk_formats,
        cpus,
        cpustats: options.cpustats,
        clock,
        cpu_data,
        instances,
        inflated,
    })
}
