//! A writer and its reader on pages in ordinary memory, and the pages as a trace.dat.
//!
//! `cargo run -p hyptrace-ring --example roundtrip [-- OUTPUT]` (default
//! `target/roundtrip.dat`), then `trace-cmd report OUTPUT`.
//!
//! 1. The "host" allocates a reader page and four ring pages; the "hypervisor" keeps the
//!    descriptors and loads the ring.
//! 2. The writer writes 1,000 `selftest` events, more than four pages hold, so the oldest pages
//!    are overwritten and counted as lost.
//! 3. The reader swaps pages until the writer's page is the reader page, exporting each page
//!    the way the kernel's `ring_buffer_read_page` does (the lost count in `commit`).
//! 4. `hyptrace-tracedat` writes the pages with hyptrace's event formats; reading the file back
//!    checks that every event the reader got is there, in order.

use std::ptr::NonNull;

use hyptrace_abi::event_format::Event;
use hyptrace_abi::events::{self, Selftest};
use hyptrace_abi::page::PAGE_SIZE;
use hyptrace_ring::{PageDesc, RingBuffer};
use hyptrace_tracedat::page::{export_page, PageBuf, PageView};
use hyptrace_tracedat::{write_trace_dat, CpuData, CpuStats, IoSink, TraceFile};

/// Ring pages (the reader page excluded).
const RING_PAGES: usize = 4;
/// Events written: 1,000 records of 24 bytes, about six pages, so the oldest pages of the
/// four are overwritten.
const EVENTS: u64 = 1_000;

#[repr(C, align(4096))]
struct Page([u8; PAGE_SIZE]);

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let output = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "target/roundtrip.dat".into());

    // The host's pages and the writer's descriptors.
    let mut pages: Vec<Box<Page>> = (0..=RING_PAGES)
        .map(|_| Box::new(Page([0; PAGE_SIZE])))
        .collect();
    let ptrs: Vec<NonNull<u8>> = pages
        .iter_mut()
        .map(|p| NonNull::from(&mut p.0).cast())
        .collect();
    let descs: Vec<PageDesc> = (0..=RING_PAGES).map(|_| PageDesc::new()).collect();
    let ring = RingBuffer::new();
    // SAFETY: distinct, live, 4096-aligned pages, used only through the ring and the reader
    // protocol below until `teardown`; `pages` outlives the ring's use of them.
    unsafe { ring.load(&descs, ptrs[0], ptrs[1..].iter().copied()) }?;
    ring.enable()?;

    // The writer: one event per microsecond, each with its own sequence number.
    let mut buf = [0u8; Selftest::PAYLOAD_LEN];
    for seq in 0..EVENTS {
        let e = Selftest {
            seq,
            payload: events::selftest_payload(seq),
        };
        e.encode(&mut buf);
        assert!(ring.write(1_000_000 + seq * 1_000, &buf));
    }
    // Stop writing: every page's `commit` is final now.
    ring.disable()?;

    // The reader: swap until nothing more comes, exporting each page it got.
    let mut data = Vec::new();
    let mut lost_total = 0;
    let mut pending_lost = 0;
    let mut copy = PageBuf::default();
    let mut out = PageBuf::default();
    loop {
        let swap = ring.swap_reader()?;
        if !swap.swapped {
            break;
        }
        // SAFETY: the swapped-out page is the reader's until the next swap, and the writer
        // is disabled, so nothing writes it while it is copied.
        let page = unsafe { std::slice::from_raw_parts(swap.reader_page.as_ptr(), PAGE_SIZE) };
        copy.0.copy_from_slice(page);
        let view = PageView::new(&copy.0);
        let commit = view.commit();
        // Events lost before this page are reported with the next exported page, as the
        // kernel's reader does; an empty page carries them on.
        pending_lost += swap.lost;
        if commit == 0 {
            continue;
        }
        lost_total += pending_lost;
        export_page(&copy, 0, commit, view.time_stamp(), pending_lost, &mut out);
        pending_lost = 0;
        data.extend_from_slice(&out.0);
    }
    let stats = ring.stats();
    ring.teardown()?;

    // Read back: the events on the exported pages, in order, are the ones not lost.
    let mut read = 0u64;
    for page in data.chunks_exact(PAGE_SIZE) {
        for event in PageView::new(page).events() {
            let event = event?;
            // `seq` is the first field, right after the 2-byte `common_type` (packed).
            let at = hyptrace_abi::event_format::COMMON_SIZE;
            let seq = u64::from_le_bytes(event.payload[at..at + 8].try_into()?);
            assert_eq!(seq, lost_total + read, "events out of order");
            read += 1;
        }
    }
    assert_eq!(pending_lost, 0, "a loss after the last page");
    assert_eq!(read + lost_total, EVENTS);
    assert_eq!(stats.overrun, lost_total);

    let cpus = [CpuData {
        pages: &data,
        stats: CpuStats {
            read,
            overrun: lost_total,
            bytes: data.len() as u64,
            ..CpuStats::default()
        },
    }];
    let file = std::fs::File::create(&output)?;
    write_trace_dat(
        &mut IoSink(std::io::BufWriter::new(file)),
        events::SYSTEM,
        events::ALL,
        &cpus,
        "mono",
    )?;
    let bytes = std::fs::read(&output)?;
    let parsed = TraceFile::parse(&bytes)?;
    assert_eq!(parsed.cpu_data[0].size, data.len() as u64);
    println!("roundtrip: written={EVENTS} lost={lost_total} read={read} file={output}");
    Ok(())
}
