//! Writer cost per event against the floor (timestamp read + copying the same bytes).
//!
//! `cargo bench -p hyptrace-ring --bench ring`. Prints a table; asserts nothing about speed.
//!
//! Method (docs/ring-buffer.md, "Benchmark"): a 1 MiB ring (256 ring pages), 2 M events per
//! run, after one warm-up pass that wraps the ring (steady-state overwrite). For each payload
//! size the three loops run alternately (floor, writer, writer + reader, floor, ...), five
//! rounds; the table shows the median and the range of ns/event. Timestamps come from RDTSC
//! on x86_64 (the same source in every loop), a monotonic clock elsewhere.
//!
//! - floor: read the timestamp, store it (8 bytes) and the payload into a 1 MiB byte ring.
//! - writer: `RingBuffer::write(timestamp, payload)`.
//! - writer + reader: the same, while another thread swaps the reader page in a loop and
//!   copies each page's committed bytes out (the OS places it on the other core; it is not
//!   pinned).

mod common;

use common::{floor_buffer, ring, RING_PAGES};
use hyptrace_abi::page::{PageHeader, HEADER_SIZE, PAGE_SIZE};
use hyptrace_ring::{RingBuffer, RingError};
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};

fn floor<const N: usize>(buf: &mut [u8], payload: &[u8; N]) -> f64 {
    common::floor(buf, payload, EVENTS)
}

fn writer<const N: usize>(ring: &RingBuffer<'_>, payload: &[u8; N]) -> f64 {
    common::writer(ring, payload, EVENTS)
}

const EVENTS: u64 = 2_000_000;
const ROUNDS: usize = 5;

/// Swaps and copies pages until `stop`; returns (swaps, events lost).
fn reader(ring: &RingBuffer<'_>, stop: &AtomicBool) -> (u64, u64) {
    let mut copy = vec![0u8; PAGE_SIZE];
    let (mut swaps, mut lost) = (0, 0);
    while !stop.load(Ordering::Relaxed) {
        // Busy (the retry budget ran out while the writer kept moving the head, e.g. when
        // this thread was descheduled mid-swap) is an answer, not a failure: try again.
        let s = match ring.swap_reader() {
            Ok(s) => s,
            Err(RingError::Busy) => continue,
            Err(e) => panic!("swap_reader: {e}"),
        };
        if !s.swapped {
            std::hint::spin_loop();
            continue;
        }
        swaps += 1;
        lost += s.lost;
        // SAFETY: the reader page is ours until the next swap; the header is two atomics.
        let h = unsafe { s.reader_page.cast::<PageHeader>().as_ref() };
        let c = (h.commit.load(Ordering::Acquire) as usize).min(PAGE_SIZE - HEADER_SIZE);
        // SAFETY: bytes below `commit` are published and not written again while this is
        // the reader page (except appends above `commit` if the writer is still on it).
        unsafe {
            std::ptr::copy_nonoverlapping(
                s.reader_page.as_ptr().add(HEADER_SIZE),
                copy.as_mut_ptr(),
                c,
            )
        };
        black_box(&copy);
    }
    (swaps, lost)
}

fn writer_with_reader<const N: usize>(ring: &RingBuffer<'_>, payload: &[u8; N]) -> (f64, u64) {
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let h = s.spawn(|| reader(ring, &stop));
        // Let the reader start spinning first.
        std::thread::sleep(std::time::Duration::from_millis(2));
        let ns = writer(ring, payload);
        stop.store(true, Ordering::Relaxed);
        let (swaps, _lost) = h.join().unwrap();
        (ns, swaps)
    })
}

struct Summary {
    median: f64,
    min: f64,
    max: f64,
}

fn summary(mut v: Vec<f64>) -> Summary {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    Summary {
        median: v[v.len() / 2],
        min: v[0],
        max: v[v.len() - 1],
    }
}

fn fmt(s: &Summary) -> String {
    format!("{:6.2} [{:6.2}..{:6.2}]", s.median, s.min, s.max)
}

fn case<const N: usize>() {
    let payload = [0x5au8; N];
    let ring_alone = ring();
    let ring_shared = ring();
    let mut buf = floor_buffer();
    // Warm up: wrap both rings once, touch the floor buffer.
    writer(ring_alone, &payload);
    writer(ring_shared, &payload);
    floor(&mut buf, &payload);
    let (mut f, mut w, mut c) = (vec![], vec![], vec![]);
    let mut swaps = 0;
    for _ in 0..ROUNDS {
        f.push(floor(&mut buf, &payload));
        w.push(writer(ring_alone, &payload));
        let (ns, s) = writer_with_reader(ring_shared, &payload);
        c.push(ns);
        swaps += s;
    }
    let (f, w, c) = (summary(f), summary(w), summary(c));
    let st = ring_shared.stats();
    println!(
        "{:>7} | {} | {} | {:5.2}x | {} | {:5.2}x | {:>8} {:>12}",
        N,
        fmt(&f),
        fmt(&w),
        w.median / f.median,
        fmt(&c),
        c.median / f.median,
        swaps,
        st.overrun,
    );
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this too: keep it short.
    println!(
        "hyptrace ring writer: ns/event, median [min..max] of {ROUNDS} alternating runs of \
         {EVENTS} events, {RING_PAGES} ring pages; clock: {}",
        common::CLOCK
    );
    println!(
        "{:>7} | {:^24} | {:^24} | {:^6} | {:^24} | {:^6} | {:>8} {:>12}",
        "payload",
        "floor (ts + copy)",
        "writer alone",
        "ratio",
        "writer + swapping reader",
        "ratio",
        "swaps",
        "overrun"
    );
    case::<8>();
    case::<16>();
    case::<64>();
    case::<200>();
}
