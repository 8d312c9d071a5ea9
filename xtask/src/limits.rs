//! What `--buffer-size-kb` can really be, computed before QEMU starts.
//!
//! Three limits bound a recording's buffers, and a request past any of them used to fail
//! inside the guest with an error code (`load_tracing: pack size ... (-7)`, `OutOfPages`):
//! - the pack the host hands to `load_tracing` (16 bytes, then per CPU 24 bytes and 8 per
//!   page, page-rounded) must fit the hypervisor's private copy, `MAX_PACK_SIZE` (1 MiB);
//! - every CPU's ring pages and reader page must fit the hypervisor's descriptor pool,
//!   `MAX_LOAD_PAGES`;
//! - the host's page pool (the guest's 1 GiB above the hypervisor, the DTB and the host
//!   image: `memmap::HOST_POOL_BASE`) must hold the hypervisor's buffer, the host's own
//!   buffer and its descriptors when it records its events, the pack while it is loaded, and
//!   room to store drained pages: per CPU and buffer, one ring's worth that the final drain
//!   needs and as much again for the polls (each store gets at most 65,536 pages).
//!
//! The page count for a size is the guest's own (`host_shim::trace_buffer::ring_pages_for`):
//! whole pages of 4048 data bytes, at least two, so every size is rounded up.

use hyptrace_abi::limits::{MAX_LOAD_PAGES, MAX_PACK_SIZE};
use hyptrace_abi::pack::{PAGE_VA_SIZE, RING_PACK_HEADER_SIZE, TRACE_PACK_HEADER_SIZE};
use hyptrace_abi::page::{DATA_SIZE, PAGE_SIZE};
use hyptrace_platform::memmap::{HOST_POOL_BASE, RAM_BASE};
use hyptrace_ring::DESC_SIZE;

/// The most pages one store of drained pages gets (`host-shim/src/record.rs`).
pub const STORE_MAX_PAGES: u64 = 1 << 16;

/// The guest's RAM (`-m 1G`, [`crate::qemu`]), bytes.
pub const GUEST_RAM: u64 = 1 << 30;

/// Pages of the host's page pool.
pub const fn pool_pages() -> u64 {
    (RAM_BASE + GUEST_RAM - HOST_POOL_BASE) / PAGE_SIZE as u64
}

/// Ring pages per CPU for `kb` KiB, as the guest rounds it.
pub fn ring_pages(kb: u64) -> u64 {
    host_shim::trace_buffer::ring_pages_for((kb * 1024) as usize) as u64
}

/// The pack's size for `cpus` CPUs of `n` ring pages, page-rounded as the host sends it.
pub fn pack_bytes(cpus: u64, n: u64) -> u64 {
    let per_cpu = RING_PACK_HEADER_SIZE as u64 + (n + 1) * PAGE_VA_SIZE as u64;
    (TRACE_PACK_HEADER_SIZE as u64 + cpus * per_cpu).next_multiple_of(PAGE_SIZE as u64)
}

/// Which limit `kb` KiB per CPU on `cpus` CPUs passes, or the first it breaks.
pub fn check(cpus: u64, kb: u64, host_events: bool) -> Result<(), String> {
    let n = ring_pages(kb);
    let pack = pack_bytes(cpus, n);
    if pack > MAX_PACK_SIZE {
        return Err(format!(
            "its pack would be {pack} bytes, above the hypervisor's {MAX_PACK_SIZE}"
        ));
    }
    let pages = cpus * (n + 1);
    if pages > MAX_LOAD_PAGES as u64 {
        return Err(format!(
            "{pages} ring and reader pages, above the hypervisor's descriptor pool of \
             {MAX_LOAD_PAGES}"
        ));
    }
    let buffers = if host_events { 2 } else { 1 };
    let descs = if host_events {
        cpus * ((n + 1) * DESC_SIZE as u64).div_ceil(PAGE_SIZE as u64)
    } else {
        0
    };
    // The buffers and the host's descriptors stay allocated; the pack is freed after the
    // load. What is left is split into one store per CPU and buffer, as the guest does it
    // (`record.rs`: 16 pages kept back, at most 65,536 per store). Each keeps a ring's worth
    // (ring, reader page, one more) for the final drain; require as much again for the
    // polls, or the recording would stop almost as soon as it began.
    let held = buffers * cpus * (n + 1) + descs;
    let pool = pool_pages();
    let store = (pool.saturating_sub(held) / (cpus * buffers))
        .saturating_sub(16)
        .min(STORE_MAX_PAGES);
    if pack / PAGE_SIZE as u64 + held > pool || store < 2 * (n + 2) {
        return Err(format!(
            "the host's {pool} pages of memory would hold the buffers ({held} pages) but leave \
             {store} pages per CPU and buffer to store drained pages, less than two rings' worth \
             ({})",
            2 * (n + 2)
        ));
    }
    Ok(())
}

/// The largest `--buffer-size-kb` [`check`] accepts on `cpus` CPUs (every smaller size
/// passes too: each limit grows with the size).
pub fn max_kb(cpus: u64, host_events: bool) -> u64 {
    let (mut lo, mut hi) = (1u64, crate::cli::MAX_BUFFER_KB);
    if check(cpus, hi, host_events).is_ok() {
        return hi;
    }
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if check(cpus, mid, host_events).is_ok() {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    lo
}

/// `--buffer-size-kb` checked for `cpus` CPUs: an error naming the limit and the largest
/// size that works, or a note of how the size rounds.
pub fn buffer_note(cpus: u16, kb: u64, host_events: bool) -> Result<String, String> {
    let cpus64 = u64::from(cpus);
    if let Err(why) = check(cpus64, kb, host_events) {
        return Err(format!(
            "--buffer-size-kb {kb} is too large for {cpus} CPU{}{}: {why}; the largest that \
             fits is {}",
            if cpus == 1 { "" } else { "s" },
            if host_events { " with host events" } else { "" },
            max_kb(cpus64, host_events)
        ));
    }
    let n = ring_pages(kb);
    Ok(format!(
        "buffer: {kb} KiB per CPU is {n} ring pages of {DATA_SIZE} event bytes ({:.1} KiB of \
         events, rounded up to whole pages, at least 2)",
        (n * DATA_SIZE as u64) as f64 / 1024.0
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sizes_users_tried_are_judged_before_qemu() {
        // Both failed inside the guest before (pack too large, then out of pages).
        for kb in [131_072, 262_144] {
            let e = buffer_note(4, kb, true).unwrap_err();
            assert!(e.contains("too large for 4 CPUs") && e.contains("the largest that fits"));
        }
        // 3 KiB is accepted and said to round up to the two-page minimum.
        let note = buffer_note(4, 3, true).unwrap();
        assert!(
            note.contains("2 ring pages") && note.contains("rounded up"),
            "{note}"
        );
        assert!(buffer_note(4, 64, true).is_ok());
    }

    #[test]
    fn the_maximum_is_the_boundary() {
        for (cpus, host) in [(1, false), (4, true), (4, false), (8, true)] {
            let max = max_kb(cpus, host);
            assert!(check(cpus, max, host).is_ok());
            if max < crate::cli::MAX_BUFFER_KB {
                assert!(check(cpus, max + 1, host).is_err(), "{cpus} CPUs: {max}");
            }
        }
        // The pack: 4 CPUs of 32,000 ring pages need 4 * (24 + 32,001 * 8) + 16 bytes.
        assert_eq!(
            pack_bytes(4, 32_000),
            (16u64 + 4 * (24 + 32_001 * 8)).next_multiple_of(4096)
        );
        assert_eq!(pool_pages(), (992u64 << 20) / 4096);
    }
}
