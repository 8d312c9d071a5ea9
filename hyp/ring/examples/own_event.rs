//! Your own events: defined outside hyptrace's crates, written by the same writer, printed by
//! trace-cmd with no plugin.
//!
//! `cargo run -p hyptrace-ring --example own_event [-- OUTPUT]` (default
//! `target/own_event.dat`), then `trace-cmd report OUTPUT`:
//!
//! ```text
//! <...>--1    [000]     0.000002: vcpu_exit:            vcpu=1 reason=0x16 elr=0xffff800008001234
//! ```
//!
//! `hyptrace_abi::define_events!` generates, for each event, a struct with its fields, an
//! `Event` implementation that encodes the payload (`common_type` first, fields packed in
//! order), and the format text tracefs would show; `hyptrace-tracedat` puts those formats in
//! the file, so trace-cmd and KernelShark decode and print the events.

use std::ptr::NonNull;

use hyptrace_abi::event_format::Event;
use hyptrace_abi::page::PAGE_SIZE;
use hyptrace_ring::{PageDesc, RingBuffer};
use hyptrace_tracedat::page::{export_page, PageBuf, PageView};
use hyptrace_tracedat::{write_trace_dat, CpuData, CpuStats, IoSink};

/// A hypervisor's own events, in a module of its own. IDs are the file's: unique per file.
mod demo_events {
    /// The event system the events appear under (`-F demo:vcpu_exit`).
    pub const SYSTEM: &str = "demo";

    hyptrace_abi::define_events! {
        /// A vCPU entered the guest.
        100 => vcpu_enter as VcpuEnter { vcpu: u32 }
            print "\"vcpu=%u\", REC->vcpu";
        /// A vCPU left the guest: the exception class and where it trapped.
        101 => vcpu_exit as VcpuExit { vcpu: u32, reason: u8, elr: u64 }
            print "\"vcpu=%u reason=0x%x elr=0x%llx\", REC->vcpu, REC->reason, REC->elr";
    }
}

use demo_events::{VcpuEnter, VcpuExit};

#[repr(C, align(4096))]
struct Page([u8; PAGE_SIZE]);

/// Encodes `e` and writes it at time `ts` (what an EL2 event macro does after its enable
/// check).
fn emit<E: Event>(ring: &RingBuffer<'_>, ts: u64, e: &E) -> bool {
    let mut buf = [0u8; 64];
    let payload = &mut buf[..E::PAYLOAD_LEN];
    e.encode(payload);
    ring.write(ts, payload)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let output = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "target/own_event.dat".into());
    let mut pages: Vec<Box<Page>> = (0..3).map(|_| Box::new(Page([0; PAGE_SIZE]))).collect();
    let ptrs: Vec<NonNull<u8>> = pages
        .iter_mut()
        .map(|p| NonNull::from(&mut p.0).cast())
        .collect();
    let descs: Vec<PageDesc> = (0..3).map(|_| PageDesc::new()).collect();
    let ring = RingBuffer::new();
    // SAFETY: distinct, live, 4096-aligned pages used only through the ring until teardown.
    unsafe { ring.load(&descs, ptrs[0], ptrs[1..].iter().copied()) }?;
    ring.enable()?;

    assert!(emit(&ring, 1_000, &VcpuEnter { vcpu: 1 }));
    let exit = VcpuExit {
        vcpu: 1,
        reason: 0x16,
        elr: 0xffff_8000_0800_1234,
    };
    assert!(emit(&ring, 2_000, &exit));
    ring.disable()?;

    // The one written page becomes the reader's with a swap; export it for the file.
    let swap = ring.swap_reader()?;
    assert!(swap.swapped);
    let mut copy = PageBuf::default();
    // SAFETY: the reader page is ours after the swap, and the writer is disabled.
    copy.0.copy_from_slice(unsafe {
        std::slice::from_raw_parts(swap.reader_page.as_ptr(), PAGE_SIZE)
    });
    let view = PageView::new(&copy.0);
    let mut out = PageBuf::default();
    export_page(&copy, 0, view.commit(), view.time_stamp(), 0, &mut out);
    ring.teardown()?;

    let cpus = [CpuData {
        pages: &out.0,
        stats: CpuStats {
            read: 2,
            bytes: PAGE_SIZE as u64,
            ..CpuStats::default()
        },
    }];
    let file = std::fs::File::create(&output)?;
    write_trace_dat(
        &mut IoSink(std::io::BufWriter::new(file)),
        demo_events::SYSTEM,
        demo_events::ALL,
        &cpus,
        "mono",
    )?;
    println!(
        "own_event: 2 events of system {} in {output}",
        demo_events::SYSTEM
    );
    Ok(())
}
