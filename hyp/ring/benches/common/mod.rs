//! Loops shared by the `ring` and `native` benches, so both measure the same floor and the
//! same writer call.
//!
//! Timestamps come from RDTSC on x86_64 (the same source in the floor and the writer), a
//! monotonic clock elsewhere; each loop is timed with [`Instant`] (clock_gettime MONOTONIC on
//! Linux) around the whole loop.

// Each bench uses a subset of these loops.
#![allow(dead_code)]

use hyptrace_abi::page::PAGE_SIZE;
use hyptrace_ring::{PageDesc, RingBuffer};
use std::alloc::{alloc_zeroed, Layout};
use std::hint::black_box;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

/// Ring pages of every ring the benches build (1 MiB, plus the reader page).
pub const RING_PAGES: usize = 256;

/// The name of the clock [`now`] reads.
pub const CLOCK: &str = if cfg!(target_arch = "x86_64") {
    "RDTSC"
} else {
    "Instant"
};

/// The writer's timestamp.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub fn now() -> u64 {
    // SAFETY: RDTSC has no preconditions on x86_64.
    #[allow(unused_unsafe)]
    unsafe {
        core::arch::x86_64::_rdtsc()
    }
}

/// The writer's timestamp.
#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
pub fn now() -> u64 {
    use std::sync::OnceLock;
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

fn page() -> NonNull<u8> {
    let layout = Layout::from_size_align(PAGE_SIZE, PAGE_SIZE).unwrap();
    // SAFETY: non-zero size; the bench leaks its pages.
    let p = unsafe { alloc_zeroed(layout) };
    NonNull::new(p).expect("allocation failed")
}

/// A loaded, enabled ring of [`RING_PAGES`] pages that lives until the process ends.
pub fn ring() -> &'static RingBuffer<'static> {
    let descs: &'static [PageDesc] = Box::leak((0..=RING_PAGES).map(|_| PageDesc::new()).collect());
    let ring: &'static RingBuffer<'static> = Box::leak(Box::new(RingBuffer::new()));
    let pages: Vec<NonNull<u8>> = (0..=RING_PAGES).map(|_| page()).collect();
    // SAFETY: leaked, aligned, distinct pages that live until the process ends.
    unsafe { ring.load(descs, pages[0], pages[1..].iter().copied()) }.unwrap();
    ring.enable().unwrap();
    ring
}

/// A byte ring as large as [`ring`]'s data, for [`floor`].
pub fn floor_buffer() -> Vec<u8> {
    vec![0u8; RING_PAGES * PAGE_SIZE]
}

/// The floor: read the timestamp, store it (8 bytes) and the payload into a byte ring.
/// Returns ns/event over `events` iterations.
pub fn floor<const N: usize>(buf: &mut [u8], payload: &[u8; N], events: u64) -> f64 {
    let len = buf.len();
    let t0 = Instant::now();
    let mut off = 0;
    for _ in 0..events {
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
    t0.elapsed().as_nanos() as f64 / events as f64
}

/// hyptrace's writer: `RingBuffer::write(timestamp, payload)`, the code the hypervisor runs
/// at EL2. Returns ns/event over `events` iterations.
pub fn writer<const N: usize>(ring: &RingBuffer<'_>, payload: &[u8; N], events: u64) -> f64 {
    let t0 = Instant::now();
    for _ in 0..events {
        let p = black_box(*payload);
        ring.write(now(), &p);
    }
    t0.elapsed().as_nanos() as f64 / events as f64
}

/// Events per batch in [`writer_batch`]: what one trap writes (hyp_enter, the trap's own
/// event, hyp_exit).
pub const BATCH: u64 = 3;

/// hyptrace's writer in batches of [`BATCH`] events under one status handshake
/// (`RingBuffer::batch`), each event with its own timestamp. Returns ns/event over `events`
/// iterations (rounded down to whole batches).
pub fn writer_batch<const N: usize>(ring: &RingBuffer<'_>, payload: &[u8; N], events: u64) -> f64 {
    let batches = events / BATCH;
    let t0 = Instant::now();
    for _ in 0..batches {
        if let Some(mut b) = ring.batch() {
            for _ in 0..BATCH {
                let p = black_box(*payload);
                b.write(now(), &p);
            }
        }
    }
    t0.elapsed().as_nanos() as f64 / (batches * BATCH) as f64
}

/// The floor plus the one locked instruction the writer's protocol needs per event: an
/// uncontended compare-and-swap of a status word before the stores (Acquire, as
/// `RingBuffer::reserve` takes WRITING) and a Release store after them (as `commit` gives
/// it back). Not a writer: it isolates the cost of the status handshake on this CPU.
pub fn floor_cas<const N: usize>(buf: &mut [u8], payload: &[u8; N], events: u64) -> f64 {
    let status = AtomicU32::new(0);
    let len = buf.len();
    let t0 = Instant::now();
    let mut off = 0;
    for _ in 0..events {
        // As in `writer`: the timestamp is read first, then the status is taken.
        let ts = now();
        if status
            .compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            continue;
        }
        if off + 8 + N > len {
            off = 0;
        }
        buf[off..off + 8].copy_from_slice(&ts.to_le_bytes());
        let p = black_box(*payload);
        buf[off + 8..off + 8 + N].copy_from_slice(&p);
        off += 8 + N;
        status.store(0, Ordering::Release);
    }
    black_box(&buf);
    t0.elapsed().as_nanos() as f64 / events as f64
}
