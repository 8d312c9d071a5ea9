//! A trace.dat (version 6) writer that trace-cmd 3.1.6 and KernelShark read.
//!
//! The layout follows trace-cmd's file format v6: magic and sizes, the `header_page` and
//! `header_event` texts, the ftrace events (none, or `ftrace:bprint` when the file carries
//! `hyp_printk` formats), the event formats of each system (`hyp`, `host`), the kallsyms and
//! printk formats sections (empty, or one line per `hyp_printk` site: [`PrintkFormat`]),
//! empty saved cmdlines, the CPU count, options (per-CPU statistics for `trace-cmd report
//! --stat`, one BUFFER option per instance, and the clock), the `flyrecord` table of the
//! top-level buffer's per-CPU data offsets and its pages; then, for each instance, a
//! `flyrecord` table of its own and its pages. Pages are copied verbatim, each CPU starting on
//! a page boundary. Offsets are computed before anything is written, so the file is written
//! strictly sequentially (as semihosting wants).

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::{self, Write};

use hyptrace_abi::event_format::EventDesc;
use hyptrace_abi::page::PAGE_SIZE;
use hyptrace_abi::printk;

use crate::format::{
    header_page_text, HEADER_EVENT, MAGIC, OPTION_BUFFER, OPTION_CPUSTAT, OPTION_DONE,
    OPTION_TRACECLOCK, SECTION_FLYRECORD, SECTION_HEADER_EVENT, SECTION_HEADER_PAGE,
    SECTION_OPTIONS, TRACING, VERSION,
};

/// Statistics of one CPU's buffer, stored in the CPUSTAT option.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuStats {
    /// Events still in the buffer, unread, when the recording stopped (ftrace's meaning of
    /// `entries`: 0 after a complete drain; written = entries + overrun + read).
    pub entries: u64,
    /// Events lost to overwrite.
    pub overrun: u64,
    /// Events the reader read.
    pub read: u64,
    /// Bytes of page data read.
    pub bytes: u64,
    /// Timestamp (ns) of the oldest event read.
    pub oldest_ts: u64,
    /// Timestamp (ns) when the recording stopped.
    pub now_ts: u64,
}

/// One CPU's recorded data: whole pages, oldest first, as exported by the reader.
#[derive(Clone, Copy, Debug)]
pub struct CpuData<'a> {
    /// Concatenated 4096-byte pages.
    pub pages: &'a [u8],
    /// Its statistics.
    pub stats: CpuStats,
}

/// Where the file goes: a semihosting file at EL1, a `Vec`, or (with the `std` feature) any
/// [`std::io::Write`] through [`IoSink`].
pub trait Sink {
    /// The sink's error.
    type Error;
    /// Writes all of `bytes`.
    ///
    /// # Errors
    /// The sink's own, when it cannot take them.
    fn write_all(&mut self, bytes: &[u8]) -> Result<(), Self::Error>;
}

impl Sink for Vec<u8> {
    type Error = core::convert::Infallible;
    fn write_all(&mut self, bytes: &[u8]) -> Result<(), Self::Error> {
        self.extend_from_slice(bytes);
        Ok(())
    }
}

/// A [`Sink`] over any [`std::io::Write`] (a file, a socket).
#[cfg(feature = "std")]
#[derive(Debug)]
pub struct IoSink<W>(pub W);

#[cfg(feature = "std")]
impl<W: std::io::Write> Sink for IoSink<W> {
    type Error = std::io::Error;
    fn write_all(&mut self, bytes: &[u8]) -> Result<(), Self::Error> {
        self.0.write_all(bytes)
    }
}

/// Why a trace could not be written.
#[derive(Debug, PartialEq, Eq)]
pub enum WriteError<E> {
    /// A CPU's data is not a whole number of pages.
    PartialPage {
        /// The CPU.
        cpu: usize,
    },
    /// No buffer to write.
    NoBuffer,
    /// A buffer's CPU count differs from the top-level buffer's.
    BufferCpus {
        /// The buffer's index.
        buffer: usize,
        /// Its CPU count.
        cpus: usize,
        /// The top-level buffer's.
        expected: usize,
    },
    /// A printk format that the file's text sections cannot carry (libtraceevent would
    /// misread it, or stop reading the section there).
    BadPrintkFormat {
        /// The site's address.
        addr: u64,
        /// What is wrong.
        why: &'static str,
    },
    /// The sink failed.
    Sink(E),
}

impl<E: fmt::Display> fmt::Display for WriteError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::PartialPage { cpu } => {
                write!(
                    f,
                    "CPU {cpu}'s data is not a whole number of {PAGE_SIZE}-byte pages"
                )
            }
            Self::NoBuffer => f.write_str("a trace needs at least its top-level buffer"),
            Self::BufferCpus {
                buffer,
                cpus,
                expected,
            } => write!(
                f,
                "buffer {buffer} has {cpus} CPUs but the top-level buffer {expected}: every \
                 buffer of a file has the file's CPU count"
            ),
            Self::BadPrintkFormat { addr, why } => {
                write!(f, "the printk format of site {addr:#x} {why}")
            }
            Self::Sink(e) => write!(f, "writing the trace failed: {e}"),
        }
    }
}

impl<E: fmt::Debug + fmt::Display> core::error::Error for WriteError<E> {}

fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_le_bytes());
}
fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}
fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// The text of one CPU's CPUSTAT option, in the layout of ftrace's `per_cpu/cpuN/stats`.
pub fn cpustat_text(cpu: usize, s: &CpuStats) -> String {
    let mut t = String::new();
    let secs = |ns: u64| (ns / 1_000_000_000, ns % 1_000_000_000 / 1_000);
    let (old_s, old_us) = secs(s.oldest_ts);
    let (now_s, now_us) = secs(s.now_ts);
    // Writing to a String cannot fail.
    let _ = write!(
        t,
        "CPU: {cpu}\nentries: {}\noverrun: {}\ncommit overrun: 0\nbytes: {}\n\
         oldest event ts: {old_s:5}.{old_us:06}\nnow ts: {now_s:5}.{now_us:06}\n\
         dropped events: 0\nread events: {}\n",
        s.entries, s.overrun, s.bytes, s.read
    );
    t
}

/// One event system of a file: a name (`hyp`, `host`) and its events' formats.
#[derive(Clone, Copy, Debug)]
pub struct System<'a> {
    /// The name trace-cmd prints with `-F system:event` and `--stat`.
    pub name: &'a str,
    /// Its events. IDs must be unique across every system of the file.
    pub events: &'a [EventDesc],
}

/// One ring buffer of a file: the top-level buffer (name `""`) or an instance (the
/// `hypervisor` instance of a tracefs, say), each with the same CPUs.
#[derive(Clone, Copy, Debug)]
pub struct Buffer<'a> {
    /// `""` for the top-level buffer, else the instance's name.
    pub name: &'a str,
    /// Every CPU's data, CPU 0 first.
    pub cpus: &'a [CpuData<'a>],
}

/// One `hyp_printk` call site, for the file's kallsyms and printk formats sections: the
/// address its `ftrace:bprint` records carry in `ip` and `fmt`, its C format and its location.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrintkFormat<'a> {
    /// The site's address.
    pub addr: u64,
    /// Its C format (`swap cpu=%llu lost=%lld`): no quote, backslash or control character.
    pub format: &'a str,
    /// Where the call is (`hyp::psci`): what trace-cmd prints as the event's function. One
    /// word: not empty, no blanks or control characters, not starting with `$`.
    pub location: &'a str,
}

/// Why a site cannot be written, if it cannot: what libtraceevent's parsers of the two
/// sections (`tep_parse_kallsyms`, `tep_parse_printk_formats`) would get wrong.
fn check_printk(p: &PrintkFormat) -> Result<(), &'static str> {
    if p.format
        .chars()
        .any(|c| c.is_control() || c == '"' || c == '\\')
    {
        // The section has one quoted format per line, and libtraceevent reads `\` as the
        // start of an escape: the rule of `hyptrace_abi::printk` formats.
        return Err("holds a quote, backslash or control character");
    }
    if p.location.is_empty() {
        // `tep_parse_kallsyms` stops at a line without a name, dropping the rest.
        return Err("has an empty location");
    }
    if p.location
        .chars()
        .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(
            "has a location with a blank or control character (kallsyms names are one word)",
        );
    }
    if p.location.starts_with('$') {
        // libtraceevent skips `$` names (ARM mapping symbols).
        return Err("has a location starting with `$`, which libtraceevent ignores");
    }
    Ok(())
}

/// The text of the kallsyms section for `sites` (sorted by address): one `/proc/kallsyms`
/// line per site, `ADDR t LOCATION`.
fn kallsyms_text(sites: &[PrintkFormat]) -> String {
    let mut t = String::new();
    for p in sites {
        // Writing to a String cannot fail.
        let _ = writeln!(t, "{:016x} t {}", p.addr, p.location);
    }
    t
}

/// The text of the printk formats section for `sites`, in the layout of the kernel's
/// `printk_formats` file: `0xADDR : "FORMAT"` per line.
fn printk_formats_text(sites: &[PrintkFormat]) -> String {
    let mut t = String::new();
    for p in sites {
        // Writing to a String cannot fail.
        let _ = writeln!(t, "{:#x} : \"{}\"", p.addr, p.format);
    }
    t
}

/// The CPU data table and clock text of one buffer: `flyrecord\0`, then per CPU an offset and
/// a size, then the clock text, padded so the first CPU's pages start on a page boundary.
/// `start` is where the table's `flyrecord` tag sits in the file (for the top buffer it
/// follows the options; an instance's table starts a page-aligned section after the top's
/// data). Returns the bytes and where the data that follows them ends.
fn flyrecord(start: usize, cpus: &[CpuData], clock: &str) -> (Vec<u8>, u64) {
    let mut h = Vec::new();
    h.extend_from_slice(SECTION_FLYRECORD);
    let table_at = h.len();
    h.resize(table_at + 16 * cpus.len(), 0);
    let clock_text = alloc::format!("[{clock}]\n");
    put_u64(&mut h, clock_text.len() as u64);
    h.extend_from_slice(clock_text.as_bytes());
    h.resize((start + h.len()).next_multiple_of(PAGE_SIZE) - start, 0);
    let mut offset = (start + h.len()) as u64;
    for (cpu, data) in cpus.iter().enumerate() {
        let size = data.pages.len() as u64;
        let entry = table_at + 16 * cpu;
        // A CPU without data gets offset 0 and size 0, as trace-cmd writes it.
        let at = if size == 0 { 0 } else { offset };
        h[entry..entry + 8].copy_from_slice(&at.to_le_bytes());
        h[entry + 8..entry + 16].copy_from_slice(&size.to_le_bytes());
        offset += size;
    }
    (h, offset)
}

fn put_cpustats(h: &mut Vec<u8>, cpus: &[CpuData]) {
    for (cpu, data) in cpus.iter().enumerate() {
        put_option(h, OPTION_CPUSTAT, cpustat_text(cpu, &data.stats).as_bytes());
    }
}

/// An option record: id, size, data and its NUL.
fn put_option(h: &mut Vec<u8>, id: u16, text: &[u8]) {
    put_u16(h, id);
    put_u32(h, text.len() as u32 + 1);
    h.extend_from_slice(text);
    h.push(0);
}

/// A whole file's layout, computed before anything is written: the header (up to and
/// including the top buffer's CPU table), then for each instance the section that precedes
/// its pages.
struct Layout {
    header: Vec<u8>,
    sections: Vec<Vec<u8>>,
    len: u64,
}

fn layout(
    systems: &[System],
    buffers: &[Buffer],
    clock: &str,
    printk: Option<&[PrintkFormat]>,
) -> Layout {
    let mut h = Vec::new();
    h.extend_from_slice(&MAGIC);
    h.extend_from_slice(TRACING);
    h.extend_from_slice(VERSION.as_bytes());
    h.push(0);
    h.push(0); // little endian
    h.push(8); // sizeof(long)
    put_u32(&mut h, PAGE_SIZE as u32);

    let header_page = header_page_text();
    h.extend_from_slice(SECTION_HEADER_PAGE);
    put_u64(&mut h, header_page.len() as u64);
    h.extend_from_slice(header_page.as_bytes());
    h.extend_from_slice(SECTION_HEADER_EVENT);
    put_u64(&mut h, HEADER_EVENT.len() as u64);
    h.extend_from_slice(HEADER_EVENT.as_bytes());

    // ftrace events: `bprint` when the file carries printk formats, else none.
    if printk.is_some() {
        put_u32(&mut h, 1);
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = printk::write_format(&mut text);
        put_u64(&mut h, text.len() as u64);
        h.extend_from_slice(text.as_bytes());
    } else {
        put_u32(&mut h, 0);
    }
    put_u32(&mut h, systems.len() as u32);
    for system in systems {
        h.extend_from_slice(system.name.as_bytes());
        h.push(0);
        put_u32(&mut h, system.events.len() as u32);
        for e in system.events {
            let mut text = String::new();
            // Writing to a String cannot fail.
            let _ = e.write_format(&mut text);
            put_u64(&mut h, text.len() as u64);
            h.extend_from_slice(text.as_bytes());
        }
    }
    let sites = printk.unwrap_or_default();
    for text in [kallsyms_text(sites), printk_formats_text(sites)] {
        put_u32(&mut h, text.len() as u32);
        h.extend_from_slice(text.as_bytes());
    }
    put_u64(&mut h, 0); // saved cmdlines
    let (top, instances) = buffers
        .split_first()
        .map_or((&[][..], &[][..]), |(t, i)| (t.cpus, i));
    put_u32(&mut h, top.len() as u32);

    h.extend_from_slice(SECTION_OPTIONS);
    put_cpustats(&mut h, top);
    // Each instance: a BUFFER option (the offset of its section, patched below, and its
    // name), and its statistics after a `Buffer: NAME` line, as `trace-cmd record` writes
    // them.
    let mut patches = Vec::new();
    for b in instances {
        put_u16(&mut h, OPTION_BUFFER);
        put_u32(&mut h, 8 + b.name.len() as u32 + 1);
        patches.push(h.len());
        put_u64(&mut h, 0);
        h.extend_from_slice(b.name.as_bytes());
        h.push(0);
        put_option(
            &mut h,
            OPTION_CPUSTAT,
            alloc::format!("\nBuffer: {}\n\n", b.name).as_bytes(),
        );
        put_cpustats(&mut h, b.cpus);
    }
    put_option(
        &mut h,
        OPTION_TRACECLOCK,
        alloc::format!("[{clock}]").as_bytes(),
    );
    put_u16(&mut h, OPTION_DONE);

    let start = h.len();
    let (table, mut end) = flyrecord(start, top, clock);
    h.extend_from_slice(&table);
    let mut sections = Vec::new();
    for (b, patch) in instances.iter().zip(patches) {
        let at = end.next_multiple_of(PAGE_SIZE as u64);
        h[patch..patch + 8].copy_from_slice(&at.to_le_bytes());
        // The gap up to the section's page-aligned start is written as zeros before it.
        let (mut section, section_end) = flyrecord(at as usize, b.cpus, clock);
        let gap = (at - end) as usize;
        section.splice(0..0, core::iter::repeat_n(0, gap));
        sections.push(section);
        end = section_end;
    }
    Layout {
        header: h,
        sections,
        len: end,
    }
}

/// Writes a complete trace.dat: header, then each CPU's pages. `system` names the events'
/// system (`hyp` for hyptrace's hypervisor: trace-cmd prints it with `-F system:event` and
/// `--stat`); `clock` names the trace clock (`mono` makes trace-cmd print seconds).
///
/// The one-buffer, one-system case of [`write_trace`]. Returns the bytes written.
///
/// # Errors
/// [`WriteError::PartialPage`] when a CPU's data is not whole pages (nothing is written);
/// [`WriteError::Sink`] when the sink fails.
pub fn write_trace_dat<S: Sink>(
    sink: &mut S,
    system: &str,
    events: &[EventDesc],
    cpus: &[CpuData],
    clock: &str,
) -> Result<u64, WriteError<S::Error>> {
    write_trace(
        sink,
        &[System {
            name: system,
            events,
        }],
        &[Buffer { name: "", cpus }],
        clock,
    )
}

/// Writes a complete trace.dat of several event systems and several buffers: `buffers[0]`
/// is the top-level buffer, the others instances that trace-cmd reports (and KernelShark
/// opens as streams) by name. Offsets are computed first, so the file is written strictly
/// sequentially. Returns the bytes written.
///
/// # Errors
/// [`WriteError::NoBuffer`] for an empty `buffers`, [`WriteError::BufferCpus`] when the
/// buffers' CPU counts differ (trace-cmd gives every instance the file's CPU count),
/// [`WriteError::PartialPage`] when a CPU's data is not whole pages (nothing is written in
/// these cases); [`WriteError::Sink`] when the sink fails.
pub fn write_trace<S: Sink>(
    sink: &mut S,
    systems: &[System],
    buffers: &[Buffer],
    clock: &str,
) -> Result<u64, WriteError<S::Error>> {
    write(sink, systems, buffers, clock, None)
}

/// [`write_trace`], and the formats of `hyp_printk`'s call sites: the file's ftrace events
/// section holds the `ftrace:bprint` format (`hyptrace_abi::printk::write_format`), its
/// kallsyms section names each site's address after its location, and its printk formats
/// section maps each address to its format, so trace-cmd prints the `bprint` records of the
/// buffers as `LOCATION: TEXT`. The sites may come in any order; the sections list them by
/// address. An empty `printk` still writes the `bprint` format.
///
/// # Errors
/// Those of [`write_trace`], and [`WriteError::BadPrintkFormat`] for a site the sections
/// cannot carry (a quote, backslash or control character in its format; an empty location,
/// or one with a blank, or starting with `$`) or an address given twice; nothing is written
/// then.
pub fn write_trace_with_printk<S: Sink>(
    sink: &mut S,
    systems: &[System],
    buffers: &[Buffer],
    clock: &str,
    printk: &[PrintkFormat],
) -> Result<u64, WriteError<S::Error>> {
    write(sink, systems, buffers, clock, Some(printk))
}

fn write<S: Sink>(
    sink: &mut S,
    systems: &[System],
    buffers: &[Buffer],
    clock: &str,
    printk: Option<&[PrintkFormat]>,
) -> Result<u64, WriteError<S::Error>> {
    let top = buffers.first().ok_or(WriteError::NoBuffer)?;
    for (buffer, b) in buffers.iter().enumerate() {
        if b.cpus.len() != top.cpus.len() {
            return Err(WriteError::BufferCpus {
                buffer,
                cpus: b.cpus.len(),
                expected: top.cpus.len(),
            });
        }
        if let Some(cpu) = b.cpus.iter().position(|c| c.pages.len() % PAGE_SIZE != 0) {
            return Err(WriteError::PartialPage { cpu });
        }
    }
    let mut sites = printk.map(<[PrintkFormat]>::to_vec);
    if let Some(sites) = &mut sites {
        sites.sort_by_key(|p| p.addr);
        for p in sites.iter() {
            check_printk(p).map_err(|why| WriteError::BadPrintkFormat { addr: p.addr, why })?;
        }
        if let Some(w) = sites.windows(2).find(|w| w[0].addr == w[1].addr) {
            return Err(WriteError::BadPrintkFormat {
                addr: w[0].addr,
                why: "is given twice",
            });
        }
    }
    let l = layout(systems, buffers, clock, sites.as_deref());
    sink.write_all(&l.header).map_err(WriteError::Sink)?;
    for data in top.cpus {
        sink.write_all(data.pages).map_err(WriteError::Sink)?;
    }
    for (b, section) in buffers[1..].iter().zip(&l.sections) {
        sink.write_all(section).map_err(WriteError::Sink)?;
        for data in b.cpus {
            sink.write_all(data.pages).map_err(WriteError::Sink)?;
        }
    }
    Ok(l.len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyptrace_abi::events;

    fn page_with(records: &[u8], ts: u64) -> Vec<u8> {
        let mut p = vec![0u8; PAGE_SIZE];
        p[..8].copy_from_slice(&ts.to_le_bytes());
        p[8..16].copy_from_slice(&(records.len() as u64).to_le_bytes());
        p[16..16 + records.len()].copy_from_slice(records);
        p
    }

    #[test]
    fn layout_offsets_are_page_aligned_and_in_bounds() {
        // hyp_enter as a compact record: type_len 1 (4 payload bytes), delta 0, id 1.
        let rec = [1u8, 0, 0, 0, 1, 0, 0, 0];
        let p0 = page_with(&rec, 1_000);
        let mut p1 = page_with(&rec, 2_000);
        p1.extend(page_with(&rec, 3_000));
        let cpus = [
            CpuData {
                pages: &p0,
                stats: CpuStats::default(),
            },
            CpuData {
                pages: &[],
                stats: CpuStats::default(),
            },
            CpuData {
                pages: &p1,
                stats: CpuStats::default(),
            },
        ];
        let mut file = Vec::new();
        write_trace_dat(&mut file, events::SYSTEM, events::ALL, &cpus, "mono").unwrap();
        let fly = file.windows(10).position(|w| w == b"flyrecord\0").unwrap() + 10;
        let entry = |cpu: usize| {
            let at = fly + 16 * cpu;
            (
                u64::from_le_bytes(file[at..at + 8].try_into().unwrap()) as usize,
                u64::from_le_bytes(file[at + 8..at + 16].try_into().unwrap()) as usize,
            )
        };
        let (o0, s0) = entry(0);
        let (o1, s1) = entry(1);
        let (o2, s2) = entry(2);
        assert_eq!((s0, o1, s1, s2), (PAGE_SIZE, 0, 0, 2 * PAGE_SIZE));
        assert_eq!(o0 % PAGE_SIZE, 0);
        assert_eq!(o2, o0 + PAGE_SIZE);
        assert_eq!(o2 + s2, file.len());
        assert_eq!(&file[o2..o2 + PAGE_SIZE], &p1[..PAGE_SIZE]);
        assert!(file.starts_with(&[0x17, 0x08, 0x44, b't']));
    }

    #[test]
    fn partial_pages_are_refused() {
        let half = vec![0u8; PAGE_SIZE / 2];
        let cpus = [CpuData {
            pages: &half,
            stats: CpuStats::default(),
        }];
        let mut file = Vec::new();
        assert_eq!(
            write_trace_dat(&mut file, events::SYSTEM, events::ALL, &cpus, "mono"),
            Err(WriteError::PartialPage { cpu: 0 })
        );
        assert!(file.is_empty(), "nothing written on refusal");
    }

    #[test]
    fn cpustat_matches_ftrace_layout() {
        let s = CpuStats {
            entries: 10,
            overrun: 2,
            read: 8,
            bytes: 4096,
            oldest_ts: 1_500_000_000,
            now_ts: 2_000_001_000,
        };
        assert_eq!(
            cpustat_text(3, &s),
            "CPU: 3\nentries: 10\noverrun: 2\ncommit overrun: 0\nbytes: 4096\n\
             oldest event ts:     1.500000\nnow ts:     2.000001\ndropped events: 0\nread events: 8\n"
        );
    }
}
