//! Writer cost per event against the floor (timestamp read + copying the same bytes).
//!
//! `cargo bench -p hyp --bench ring`. Prints a table; asserts nothing about speed.
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

use hyp::abi::page::{PageHeader, PAGE_SIZE};
use hyp::ring::{PageDesc, RingBuffer};
use std::alloc::{alloc_zeroed, Layout};
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

const RING_PAGES: usize = 256;
const EVENTS: u64 = 2_000_000;
const ROUNDS: usize = 5;

#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn now() -> u64 {
    // SAFETY: RDTSC has no preconditions on x86_64.
    #[allow(unused_unsafe)]
    unsafe {
        core::arch::x86_64::_rdtsc()
    }
}

#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
fn now() -> u64 {
    use std::sync::OnceLock;
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

fn page() -> usize {
    let layout = Layout::from_size_align(PAGE_SIZE, PAGE_SIZE).unwrap();
    // SAFETY: non-zero size; the bench leaks its pages.
    let p = unsafe { alloc_zeroed(layout) };
    assert!(!p.is_null());
    p as usize
}

fn ring() -> &'static RingBuffer<'static> {
    let descs: &'static [PageDesc] = Box::leak((0..=RING_PAGES).map(|_| PageDesc::new()).collect());
    let ring: &'static RingBuffer<'static> = Box::leak(Box::new(RingBuffer::new()));
    let pages: Vec<usize> = (0..=RING_PAGES).map(|_| page()).collect();
    // SAFETY: leaked, aligned, distinct pages that live until the process ends.
    unsafe { ring.load(descs, pages[0], pages[1..].iter().copied()) }.unwrap();
    ring.enable().unwrap();
    ring
}

fn floor<const N: usize>(buf: &mut [u8], payload: &[u8; N]) -> f64 {
    let len = buf.len();
    let t0 = Instant::now();
    let mut off = 0;
    for _ in 0..EVENTS {
        let ts = now();
        if off + 8 + N > len {
            off = 0;
        }
        buf[off..off + 8].copy_from_slice(&ts.to_le_bytes());
        let p = black_box(*payload);
        buf[off + 8..off + 8 + N].copy_from_slice(&p);
        off += 8 + N;
    }
    black_box(&buf);
    t0.elapsed().as_nanos() as f64 / EVENTS as f64
}

fn writer<const N: usize>(ring: &RingBuffer<'_>, payload: &[u8; N]) -> f64 {
    let t0 = Instant::now();
    for _ in 0..EVENTS {
        let p = black_box(*payload);
        ring.write(now(), &p);
    }
    t0.elapsed().as_nanos() as f64 / EVENTS as f64
}

/// Swaps and copies pages until `stop`; returns (swaps, events lost).
fn reader(ring: &RingBuffer<'_>, stop: &AtomicBool) -> (u64, u64) {
    let mut copy = vec![0u8; PAGE_SIZE];
    let (mut swaps, mut lost) = (0, 0);
    while !stop.load(Ordering::Relaxed) {
        // Busy (the retry budget ran out while the writer kept moving the head, e.g. when
        // this thread was descheduled mid-swap) is an answer, not a failure: try again.
        let s = match ring.swap_reader() {
            Ok(s) => s,
            Err(hyp::abi::HypError::Busy) => continue,
            Err(e) => panic!("swap_reader: {e}"),
        };
        if !s.swapped {
            std::hint::spin_loop();
            continue;
        }
        swaps += 1;
        lost += s.lost;
        // SAFETY: the reader page is ours until the next swap; the header is two atomics.
        let h = unsafe { &*(s.reader_page as *const PageHeader) };
        let c = (h.commit.load(Ordering::Acquire) as usize).min(PAGE_SIZE - 16);
        // SAFETY: bytes below `commit` are published and not written again while this is
        // the reader page (except appends above `commit` if the writer is still on it).
        unsafe {
            std::ptr::copy_nonoverlapping((s.reader_page + 16) as *const u8, copy.as_mut_ptr(), c)
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
    let mut buf = vec![0u8; RING_PAGES * PAGE_SIZE];
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
        if cfg!(target_arch = "x86_64") {
            "RDTSC"
        } else {
            "Instant"
        }
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
