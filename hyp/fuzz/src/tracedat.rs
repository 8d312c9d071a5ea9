//! `tracedat`: the trace.dat reader and `cargo xtask report`'s decoder
//! ([`hyptrace_tracedat::report::Report`]) on arbitrary files.
//!
//! Two kinds of input:
//! - bytes that start like a trace.dat (the magic) are the file itself: the seed corpus holds
//!   real recordings, and files trace-cmd 3.1.6 made of one (`convert` to a zstd-compressed
//!   version 7, a `split` part), which libFuzzer mutates;
//! - anything else describes a file: per-CPU pages of fuzz-chosen timestamps, `commit` words
//!   and record bytes, event formats (hyptrace's, or texts with fuzz patches), a clock, and
//!   byte patches over the file [`write_trace_dat`] makes of them. So most inputs are
//!   well-formed containers whose pages and formats are hostile.
//!
//! Checked: nothing panics; decoding ends (libFuzzer's `-timeout` catches a loop); every
//! decode is bounded by the file: at most one event line per 4 bytes of page data plus one
//! loss marker per page, and every page error names a page the file has. Memory is bounded by
//! libFuzzer's `-rss_limit_mb` and `-malloc_limit_mb` (`cargo xtask fuzz` sets both).

use arbitrary::{Arbitrary, Unstructured};
use hyptrace_abi::event_format::EventDesc;
use hyptrace_abi::events;
use hyptrace_tracedat::format::MAGIC;
use hyptrace_tracedat::report::{Report, Selection};
use hyptrace_tracedat::{write_trace_dat, CpuData, CpuStats, PAGE_SIZE};

/// One page of a described file.
#[derive(Arbitrary, Debug)]
struct Page {
    time_stamp: u64,
    /// `commit` as stored (flags included); `None`: the length of `data`.
    commit: Option<u64>,
    data: Vec<u8>,
}

#[derive(Arbitrary, Debug)]
struct Cpu {
    pages: Vec<Page>,
    stats: (u64, u64, u64),
}

#[derive(Arbitrary, Debug)]
struct Described {
    cpus: Vec<Cpu>,
    /// Which of hyptrace's events the file describes (bit i: event i).
    events: u8,
    clock: u8,
    /// (offset, byte) written over the file.
    patches: Vec<(u32, u8)>,
    /// Restrict the report to these CPUs and events (indexes).
    cpu_filter: Vec<u8>,
    event_filter: Vec<u8>,
}

impl Described {
    fn file(&self) -> Vec<u8> {
        let pages: Vec<Vec<u8>> = self
            .cpus
            .iter()
            .map(|c| {
                let mut bytes = vec![0u8; c.pages.len() * PAGE_SIZE];
                for (page, out) in c.pages.iter().zip(bytes.chunks_exact_mut(PAGE_SIZE)) {
                    let data = &page.data[..page.data.len().min(PAGE_SIZE - 16)];
                    out[..8].copy_from_slice(&page.time_stamp.to_le_bytes());
                    let commit = page.commit.unwrap_or(data.len() as u64);
                    out[8..16].copy_from_slice(&commit.to_le_bytes());
                    out[16..16 + data.len()].copy_from_slice(data);
                }
                bytes
            })
            .collect();
        let cpus: Vec<CpuData<'_>> = self
            .cpus
            .iter()
            .zip(&pages)
            .map(|(c, pages)| CpuData {
                pages,
                stats: CpuStats {
                    entries: c.stats.0,
                    overrun: c.stats.1,
                    read: c.stats.2,
                    bytes: pages.len() as u64,
                    ..CpuStats::default()
                },
            })
            .collect();
        let described: Vec<EventDesc> = events::ALL
            .iter()
            .enumerate()
            .filter(|(i, _)| self.events & (1 << i) != 0)
            .map(|(_, e)| *e)
            .collect();
        let clock = ["mono", "boot", "local", "counter", "x86-tsc"][usize::from(self.clock) % 5];
        let mut file = Vec::new();
        write_trace_dat(&mut file, events::SYSTEM, &described, &cpus, clock)
            .expect("writing to a Vec");
        for &(at, byte) in &self.patches {
            let len = file.len();
            if len > 0 {
                file[at as usize % len] = byte;
            }
        }
        file
    }
}

/// Decodes `file` with every selection the input asks for and checks the bounds.
fn report(file: &[u8], cpu_filter: &[u8], event_filter: &[u8]) {
    let Ok(report) = Report::new(file) else {
        return;
    };
    let cpus = report.file.cpus;
    let page_size = report.file.page_size.max(1);
    let all = Selection::default();
    let chosen = Selection {
        cpus: cpu_filter
            .iter()
            .map(|&c| usize::from(c) % cpus.max(1))
            .collect(),
        events: event_filter
            .iter()
            .filter_map(|&i| {
                report
                    .file
                    .events
                    .get(usize::from(i) % report.file.events.len().max(1))
            })
            .map(|e| e.name.clone())
            .collect(),
    };
    for sel in [&all, &chosen] {
        if report.check(sel).is_err() {
            continue;
        }
        // Every buffer's pages (inflated, for a compressed file): each may print lines.
        let cpu_data = |c: usize| {
            (0..report.file.buffer_count())
                .map(|b| {
                    report
                        .file
                        .pages_of(report.file.buffer_cpu_data(b, c))
                        .len()
                })
                .sum::<usize>()
        };
        let data: usize = (0..cpus).map(cpu_data).sum();
        let pages = data.div_ceil(page_size);
        let bound = report.header_lines().len() + data / 4 + pages;
        let mut lines = 0usize;
        let summary = report.for_each_line(sel, |line| {
            lines += 1;
            assert!(line.len() < 1 << 16, "a line of {} bytes", line.len());
            true
        });
        assert!(lines <= bound, "{lines} lines from {data} bytes of pages");
        assert_eq!(summary.cpus.len(), cpus);
        for e in &summary.page_errors {
            assert!(e.cpu < cpus, "page error on CPU {}", e.cpu);
            let own = cpu_data(e.cpu).div_ceil(page_size);
            assert!(
                e.page < own,
                "page error on page {} of CPU {}'s {own}",
                e.page,
                e.cpu
            );
            let _ = e.to_string();
        }
        let _ = summary.problems();
        let _ = report.file.stat_text();
        // A consumer that stops early (a closed pipe) gets no more lines.
        let stop_after = lines / 2;
        let mut seen = 0usize;
        report.for_each_line(sel, |_| {
            seen += 1;
            seen <= stop_after
        });
        assert_eq!(
            seen,
            (stop_after + 1).min(lines),
            "lines after the sink said stop"
        );
    }
}

/// What `data` is to this target.
pub fn describe(data: &[u8]) -> String {
    if data.starts_with(&MAGIC) {
        return format!("a trace.dat of {} bytes", data.len());
    }
    match Described::arbitrary_take_rest(Unstructured::new(data)) {
        Ok(d) => format!("{d:#?}"),
        Err(e) => format!("no input ({e})"),
    }
}

/// Runs one input.
pub fn run(data: &[u8]) {
    if data.starts_with(&MAGIC) {
        report(data, &[0], &[0]);
        return;
    }
    let Ok(described) = Described::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let file = described.file();
    report(&file, &described.cpu_filter, &described.event_filter);
}
