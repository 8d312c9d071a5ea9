//! Unit tests of the writer, swap, footers and error paths, on heap pages.

use super::*;
use crate::desc::LINK_FLAGS;
use core::ptr::NonNull;
use hyptrace_abi::page::{
    record::{header, MAX_DELTA, TIME_EXTEND},
    FOOTER_COMMIT, FOOTER_HEAD, FOOTER_OFFSET, FOOTER_READER, HEADER_SIZE, PAGE_SIZE,
};
use std::alloc::{alloc_zeroed, Layout};

/// A test page: a pointer with the provenance of its allocation (no integer casts, so the
/// tests run under Miri with `-Zmiri-strict-provenance`).
type Page = NonNull<u8>;

/// A loaded ring on leaked, 4096-aligned heap pages. `pages[0]` is the initial reader page.
struct Fixture {
    ring: &'static RingBuffer<'static>,
    pages: Vec<Page>,
}

fn new_page() -> Page {
    let layout = Layout::from_size_align(PAGE_SIZE, PAGE_SIZE).unwrap();
    // SAFETY: non-zero size; the page is leaked on purpose (tests only).
    let p = unsafe { alloc_zeroed(layout) };
    NonNull::new(p).expect("allocation failed")
}

fn fixture(nr_pages: usize) -> Fixture {
    let descs: &'static [PageDesc] =
        Box::leak((0..nr_pages + 1).map(|_| PageDesc::new()).collect());
    let ring: &'static RingBuffer<'static> = Box::leak(Box::new(RingBuffer::new()));
    let pages: Vec<Page> = (0..=nr_pages).map(|_| new_page()).collect();
    // SAFETY: leaked, aligned, distinct pages that live for the rest of the test process.
    unsafe { ring.load(descs, pages[0], pages[1..].iter().copied()) }.unwrap();
    ring.enable().unwrap();
    Fixture { ring, pages }
}

fn read_u32(page: Page, data_off: usize) -> u32 {
    // SAFETY: tests read their own heap pages while no writer runs; in bounds and aligned.
    unsafe { page.add(HEADER_SIZE + data_off).cast::<u32>().read() }
}
fn read_u64_at(page: Page, off: usize) -> u64 {
    // SAFETY: as above; `off` is 8-aligned within the page.
    unsafe { page.add(off).cast::<u64>().read() }
}
fn commit(page: Page) -> u64 {
    read_u64_at(page, 8)
}
fn time_stamp(page: Page) -> u64 {
    read_u64_at(page, 0)
}
fn writer_status(page: Page) -> u32 {
    // SAFETY: as above.
    unsafe { page.add(FOOTER_OFFSET).cast::<u32>().read() }
}
fn reader_status(page: Page) -> u32 {
    // SAFETY: as above.
    unsafe { page.add(FOOTER_OFFSET + 4).cast::<u32>().read() }
}
fn footer_stat(page: Page, i: usize) -> u64 {
    read_u64_at(page, FOOTER_OFFSET + 8 + 8 * i)
}

#[test]
fn compact_records_for_small_payloads() {
    let f = fixture(2);
    let p = f.pages[1];
    assert!(f.ring.write(1000, &[1, 2, 3, 4, 5, 6, 7, 8]));
    assert_eq!(time_stamp(p), 1000);
    assert_eq!(read_u32(p, 0), header(2, 0));
    assert_eq!(commit(p), 12);
    assert!(f.ring.write(1010, &[9; 8]));
    assert_eq!(read_u32(p, 12), header(2, 10));
    assert_eq!(read_u32(p, 16), u32::from_le_bytes([9; 4]));
    assert_eq!(commit(p), 24);
}

#[test]
fn compact_form_ends_at_112_bytes() {
    let f = fixture(2);
    let p = f.pages[1];
    assert!(f.ring.write(5, &[0xab; 112]));
    assert_eq!(read_u32(p, 0), header(28, 0));
    assert_eq!(commit(p), 116);
    assert!(f.ring.write(6, &[0xcd; 113]));
    // type_len 0, length word = rounded payload + 4.
    assert_eq!(read_u32(p, 116), header(0, 1));
    assert_eq!(read_u32(p, 120), 116 + 4);
    assert_eq!(commit(p), 116 + 8 + 116);
    assert!(f.ring.write(7, &[1; 200]));
    assert_eq!(read_u32(p, 240), header(0, 1));
    assert_eq!(read_u32(p, 244), 204);
}

#[test]
fn payload_is_padded_with_zeros_to_four_bytes() {
    let f = fixture(2);
    let p = f.pages[1];
    // Dirty the page first: padding must be zeroed, not left over.
    // SAFETY: test-owned page, no writer running.
    unsafe { core::ptr::write_bytes(p.as_ptr().add(HEADER_SIZE), 0xff, 64) };
    assert!(f.ring.write(1, b"abcdefg"));
    assert_eq!(read_u32(p, 0), header(2, 0));
    assert_eq!(read_u32(p, 4), u32::from_le_bytes(*b"abcd"));
    assert_eq!(read_u32(p, 8), u32::from_le_bytes([b'e', b'f', b'g', 0]));
    assert_eq!(commit(p), 12);
}

#[test]
fn zero_length_payload_is_one_zero_word() {
    let f = fixture(2);
    let p = f.pages[1];
    // SAFETY: test-owned page, no writer running.
    unsafe { core::ptr::write_bytes(p.as_ptr().add(HEADER_SIZE), 0xff, 16) };
    assert!(f.ring.write(3, &[]));
    assert_eq!(read_u32(p, 0), header(1, 0));
    assert_eq!(read_u32(p, 4), 0);
    assert_eq!(commit(p), 8);
}

#[test]
fn time_extend_only_when_delta_exceeds_27_bits() {
    let f = fixture(2);
    let p = f.pages[1];
    assert!(f.ring.write(100, &[0; 4]));
    assert!(f.ring.write(100 + MAX_DELTA, &[0; 4]));
    assert_eq!(read_u32(p, 8), header(1, MAX_DELTA as u32));
    let base = 100 + MAX_DELTA;
    let delta = (5u64 << 27) | 7; // needs 30 bits
    assert!(f.ring.write(base + delta, &[0; 4]));
    assert_eq!(read_u32(p, 16), header(TIME_EXTEND, 7));
    assert_eq!(read_u32(p, 20), 5);
    assert_eq!(read_u32(p, 24), header(1, 0));
    assert_eq!(commit(p), 32);
}

#[test]
fn first_event_of_a_page_uses_page_time_stamp() {
    let f = fixture(2);
    let p = f.pages[1];
    // An enormous first timestamp needs no extend: it is the page's time_stamp.
    assert!(f.ring.write(u64::MAX / 2, &[0; 4]));
    assert_eq!(time_stamp(p), u64::MAX / 2);
    assert_eq!(read_u32(p, 0), header(1, 0));
}

#[test]
fn delta_beyond_59_bits_starts_a_new_page() {
    let f = fixture(3);
    assert!(f.ring.write(1, &[0; 4]));
    assert!(f.ring.write(1 + (1 << 60), &[0; 4]));
    assert_eq!(commit(f.pages[1]), 8);
    assert_eq!(time_stamp(f.pages[2]), 1 + (1 << 60));
    assert_eq!(read_u32(f.pages[2], 0), header(1, 0));
}

#[test]
fn time_going_backwards_is_clamped() {
    let f = fixture(2);
    let p = f.pages[1];
    assert!(f.ring.write(500, &[0; 4]));
    let r = f.ring.reserve(400, 4).unwrap();
    assert_eq!(r.timestamp(), 500);
    r.commit();
    assert_eq!(read_u32(p, 8), header(1, 0));
}

#[test]
fn oversized_payload_is_refused() {
    let f = fixture(2);
    assert!(f.ring.reserve(1, MAX_PAYLOAD + 1).is_none());
    assert_eq!(MAX_PAYLOAD, 4032);
    // The largest payload fits even behind a TIME_EXTEND on a non-empty page.
    assert!(f.ring.write(1, &[1; 4]));
    assert!(f.ring.write(1 << 40, &vec![2; MAX_PAYLOAD]));
    assert!(f.ring.write(1 << 41, &vec![3; MAX_PAYLOAD]));
    assert_eq!(f.ring.stats().entries, 3);
}

#[test]
fn reservation_bounds_and_discard() {
    let f = fixture(2);
    let p = f.pages[1];
    let mut r = f.ring.reserve(10, 6).unwrap();
    assert_eq!(r.len(), 6);
    assert!(!r.is_empty());
    assert!(!r.write_at(4, &[0; 3]));
    assert!(!r.write_at(usize::MAX, &[0; 2]));
    assert!(r.write_at(2, &[7; 4]));
    // A second writer is refused while one is in flight.
    assert!(f.ring.reserve(11, 4).is_none());
    drop(r);
    assert_eq!(commit(p), 0);
    assert_eq!(f.ring.stats().entries, 0);
    // The status was released: writing works again, at the same place.
    assert!(f.ring.write(12, &[1; 4]));
    assert_eq!(commit(p), 8);
}

#[test]
fn writes_refused_unless_loaded_and_enabled() {
    let ring = RingBuffer::new();
    assert!(!ring.write(1, &[0; 4]));
    assert_eq!(ring.enable(), Err(RingError::NotLoaded));
    assert_eq!(ring.disable(), Err(RingError::NotLoaded));
    assert_eq!(ring.swap_reader(), Err(RingError::NotLoaded));
    assert_eq!(ring.update_footers(), Err(RingError::NotLoaded));
    assert_eq!(ring.reset(), Err(RingError::NotLoaded));
    assert_eq!(ring.teardown(), Err(RingError::NotLoaded));
    assert_eq!(ring.reader_page(), None);
    let f = fixture(2);
    assert_eq!(f.ring.disable(), Ok(true));
    assert!(!f.ring.is_enabled());
    assert!(!f.ring.write(1, &[0; 4]));
    assert_eq!(f.ring.disable(), Ok(false));
    f.ring.enable().unwrap();
    f.ring.enable().unwrap();
    assert!(f.ring.write(1, &[0; 4]));
}

#[test]
fn load_errors() {
    let descs: &'static [PageDesc] = Box::leak((0..4).map(|_| PageDesc::new()).collect());
    let ring = RingBuffer::new();
    let pages: Vec<Page> = (0..4).map(|_| new_page()).collect();
    let off_page = |p: Page, by: usize| NonNull::new(p.as_ptr().wrapping_add(by)).unwrap();
    // SAFETY: every call passes leaked, 4096-aligned test pages (or rejected addresses).
    unsafe {
        assert_eq!(
            ring.load(descs, pages[0], [pages[1]]),
            Err(RingError::TooFewPages)
        );
        assert_eq!(
            ring.load(&descs[..2], pages[0], pages[1..3].iter().copied()),
            Err(RingError::TooManyPages)
        );
        assert_eq!(
            ring.load(&[], pages[0], pages[1..3].iter().copied()),
            Err(RingError::TooManyPages)
        );
        assert_eq!(
            ring.load(descs, off_page(pages[0], 8), pages[1..3].iter().copied()),
            Err(RingError::PageMisaligned)
        );
        assert_eq!(
            ring.load(descs, pages[0], [pages[1], off_page(pages[2], 4096 + 1)]),
            Err(RingError::PageMisaligned)
        );
        // More descriptors than needed is fine.
        ring.load(descs, pages[0], pages[1..3].iter().copied())
            .unwrap();
        assert_eq!(ring.nr_pages(), 2);
        assert_eq!(
            ring.load(descs, pages[0], pages[1..3].iter().copied()),
            Err(RingError::AlreadyLoaded)
        );
    }
}

#[test]
fn initial_footers() {
    let f = fixture(3);
    assert_eq!(reader_status(f.pages[0]), FOOTER_READER);
    assert_eq!(reader_status(f.pages[1]), FOOTER_HEAD);
    assert_eq!(writer_status(f.pages[1]), FOOTER_COMMIT);
    assert_eq!(reader_status(f.pages[2]), 0);
    assert_eq!(writer_status(f.pages[2]), 0);
    assert_eq!(f.ring.reader_page(), Some(f.pages[0]));
}

/// Events of `len` payload bytes per page: (CAPACITY / record size).
fn per_page(len: usize) -> usize {
    CAPACITY / event_size(len)
}

#[test]
fn tail_moves_when_the_page_is_full() {
    let f = fixture(3);
    let n = per_page(16); // 202
    for i in 0..n {
        assert!(f.ring.write(i as u64, &[1; 16]));
    }
    assert_eq!(commit(f.pages[1]), (n * 20) as u64);
    assert_eq!(f.ring.stats().pages_touched, 0);
    assert!(f.ring.write(n as u64, &[2; 16]));
    assert_eq!(commit(f.pages[2]), 20);
    assert_eq!(time_stamp(f.pages[2]), n as u64);
    assert_eq!(writer_status(f.pages[1]), 0);
    assert_eq!(writer_status(f.pages[2]), FOOTER_COMMIT);
    assert_eq!(
        f.ring.stats(),
        RingCounters {
            entries: n as u64 + 1,
            overrun: 0,
            pages_touched: 1
        }
    );
}

#[test]
fn overwrite_counts_exactly_the_pushed_page() {
    let f = fixture(2);
    let n = per_page(16) as u64;
    // Page 1 full, page 2 full, then one more event overwrites page 1.
    for i in 0..2 * n {
        assert!(f.ring.write(i, &[1; 16]));
    }
    assert_eq!(f.ring.stats().overrun, 0);
    assert!(f.ring.write(2 * n, &[1; 16]));
    assert_eq!(f.ring.stats().overrun, n);
    assert_eq!(commit(f.pages[1]), 20);
    // The head is now page 2: a swap gets it and reports the loss.
    let s = f.ring.swap_reader().unwrap();
    assert!(s.swapped);
    assert_eq!(s.reader_page, f.pages[2]);
    assert_eq!(s.lost, n);
    assert_eq!(reader_status(f.pages[2]), FOOTER_READER);
    assert_eq!(footer_stat(f.pages[2], 0), 2 * n + 1);
    assert_eq!(footer_stat(f.pages[2], 1), 2);
    assert_eq!(footer_stat(f.pages[2], 2), n);
    // Next loss is counted from this swap on.
    let s = f.ring.swap_reader().unwrap();
    assert_eq!(s.lost, 0);
}

#[test]
fn swap_while_writer_on_head_then_on_reader_page() {
    let f = fixture(3);
    assert!(f.ring.write(1, &[1; 8]));
    // The writer is on the head page: swapping takes it anyway.
    let s = f.ring.swap_reader().unwrap();
    assert_eq!((s.swapped, s.reader_page, s.lost), (true, f.pages[1], 0));
    assert_eq!(reader_status(f.pages[1]), FOOTER_READER);
    assert_eq!(writer_status(f.pages[1]), FOOTER_COMMIT);
    assert_eq!(reader_status(f.pages[0]), 0);
    assert_eq!(reader_status(f.pages[2]), FOOTER_HEAD);
    // The writer keeps writing on what is now the reader page.
    assert!(f.ring.write(2, &[2; 8]));
    assert_eq!(commit(f.pages[1]), 24);
    // While it is there, no swap happens.
    let s = f.ring.swap_reader().unwrap();
    assert_eq!((s.swapped, s.reader_page), (false, f.pages[1]));
    // Fill the page: the writer leaves to page 2 (the new head) without pushing it.
    let n = per_page(8) as u64;
    for i in 2..=n {
        assert!(f.ring.write(2 + i, &[3; 8]));
    }
    assert_eq!(writer_status(f.pages[1]), 0);
    assert_eq!(commit(f.pages[2]), 12);
    assert_eq!(f.ring.stats().overrun, 0);
    let s = f.ring.swap_reader().unwrap();
    assert_eq!((s.swapped, s.reader_page, s.lost), (true, f.pages[2], 0));
}

#[test]
fn old_reader_page_rejoins_the_ring_empty() {
    let f = fixture(2);
    let n = per_page(16) as u64;
    for i in 0..n {
        f.ring.write(i, &[1; 16]);
    }
    // Reader takes page 1 (writer still there), the writer moves on to page 2.
    assert!(f.ring.swap_reader().unwrap().swapped);
    let mut t = n;
    for _ in 0..n {
        f.ring.write(t, &[1; 16]);
        t += 1;
    }
    // Page 2 is full; the next page is page 0 (old reader), whose entries must not count.
    f.ring.write(t, &[1; 16]);
    t += 1;
    assert_eq!(f.ring.stats().overrun, 0);
    assert_eq!(commit(f.pages[0]), 20);
    // Filling page 0 then pushes page 2, the head: n events lost.
    for _ in 1..n {
        f.ring.write(t, &[1; 16]);
        t += 1;
    }
    f.ring.write(t, &[1; 16]);
    assert_eq!(f.ring.stats().overrun, n);
    let s = f.ring.swap_reader().unwrap();
    assert_eq!(s.lost, n);
    assert_eq!(s.reader_page, f.pages[0]);
}

#[test]
fn update_footers_moves_head_flag_and_stats() {
    let f = fixture(2);
    let n = per_page(16) as u64;
    for i in 0..2 * n + 1 {
        f.ring.write(i, &[1; 16]);
    }
    // The writer pushed the head to page 2; the footer still says page 1.
    assert_eq!(reader_status(f.pages[1]), FOOTER_HEAD);
    let st = f.ring.update_footers().unwrap();
    assert_eq!(st.entries, 2 * n + 1);
    assert_eq!(reader_status(f.pages[1]), 0);
    assert_eq!(reader_status(f.pages[2]), FOOTER_HEAD);
    assert_eq!(footer_stat(f.pages[0], 0), 2 * n + 1);
    assert_eq!(footer_stat(f.pages[0], 1), 2);
    // Overrun in the footer is the live value, as in the gen-1 hypervisor: one page of `n`
    // events was pushed.
    assert_eq!(st.overrun, n);
    assert_eq!(footer_stat(f.pages[0], 2), n);
    // A swap writes into its new reader page the overrun its lost count was taken from.
    let s = f.ring.swap_reader().unwrap();
    assert_eq!((s.swapped, s.lost), (true, n));
    assert_eq!(footer_stat(s.reader_page, 2), n);
}

#[test]
fn reset_empties_without_teardown() {
    let f = fixture(3);
    for i in 0..1000 {
        f.ring.write(i, &[1; 16]);
    }
    let s = f.ring.swap_reader().unwrap();
    f.ring.reset().unwrap();
    assert!(f.ring.is_enabled());
    assert_eq!(f.ring.stats(), RingCounters::default());
    assert_eq!(f.ring.reader_page(), Some(s.reader_page));
    for &p in &f.pages {
        assert_eq!(commit(p), 0);
    }
    // First event after the reset: absolute time in the page header, delta 0.
    assert!(f.ring.write(5, &[1; 4]));
    let s2 = f.ring.swap_reader().unwrap();
    assert_eq!(s2.lost, 0);
    assert_eq!(time_stamp(s2.reader_page), 5);
    assert_eq!(read_u32(s2.reader_page, 0), header(1, 0));
    // Reset of a disabled buffer keeps it disabled.
    f.ring.disable().unwrap();
    f.ring.reset().unwrap();
    assert!(!f.ring.is_enabled());
}

#[test]
fn teardown_stops_everything_and_allows_reload() {
    let f = fixture(2);
    f.ring.write(1, &[1; 4]);
    f.ring.teardown().unwrap();
    assert!(!f.ring.write(2, &[1; 4]));
    assert_eq!(f.ring.swap_reader(), Err(RingError::NotLoaded));
    assert_eq!(f.ring.enable(), Err(RingError::NotLoaded));
    assert_eq!(f.ring.nr_pages(), 0);
    // Final footer update ran: entries in the reader page footer.
    assert_eq!(footer_stat(f.pages[0], 0), 1);
    let descs: &'static [PageDesc] = Box::leak((0..3).map(|_| PageDesc::new()).collect());
    // SAFETY: the fixture's leaked pages, no longer used by the torn-down ring.
    unsafe { f.ring.load(descs, f.pages[2], [f.pages[0], f.pages[1]]) }.unwrap();
    f.ring.enable().unwrap();
    assert!(f.ring.write(3, &[1; 4]));
    assert_eq!(commit(f.pages[0]), 8);
}

#[test]
fn busy_when_no_head_can_be_found() {
    let f = fixture(3);
    {
        let ctl = f.ring.control.0.lock();
        for d in ctl.descs {
            let l = d.link.load(Ordering::Relaxed);
            d.link.store(l & !LINK_FLAGS, Ordering::Relaxed);
        }
    }
    assert_eq!(f.ring.swap_reader(), Err(RingError::Busy));
    assert_eq!(f.ring.update_footers(), Err(RingError::Busy));
}

#[test]
fn success_on_the_last_attempt_is_success() {
    let f = fixture(2);
    f.ring.write(1, &[1; 4]);
    let mut ctl = f.ring.control.0.lock();
    assert_eq!(f.ring.swap_locked(&mut ctl, 0), Err(RingError::Busy));
    let s = f.ring.swap_locked(&mut ctl, 1).unwrap();
    assert!(s.swapped);
}

#[test]
fn host_scribbles_cannot_steer_the_writer() {
    // Two rings fed the same events; the host scribbles over every page of one of them
    // (headers, footers, data) between writes. The writer's output must land at the same
    // offsets with the same bytes as in the clean ring.
    let clean = fixture(3);
    let dirty = fixture(3);
    let mut t = 0;
    for round in 0..600u64 {
        for &p in &dirty.pages {
            // SAFETY: test-owned pages; no writer runs during the scribble.
            unsafe {
                core::ptr::write_bytes(p.as_ptr().add(8), 0xee, 8);
                core::ptr::write_bytes(p.as_ptr().add(FOOTER_OFFSET), 0x5a, 32);
            }
        }
        let len = (round % 40) as usize;
        t += round * 1000;
        assert!(clean.ring.write(t, &vec![round as u8; len]));
        assert!(dirty.ring.write(t, &vec![round as u8; len]));
        // Compare the record just written, located through the clean ring's commit.
        for (i, &p) in clean.pages.iter().enumerate() {
            let c = commit(p) as usize;
            if writer_status(p) == FOOTER_COMMIT {
                let q = dirty.pages[i];
                assert_eq!(commit(q), c as u64);
                assert_eq!(time_stamp(q), time_stamp(p));
                for off in (0..c).step_by(4) {
                    assert_eq!(read_u32(q, off), read_u32(p, off), "round {round}");
                }
            }
        }
    }
    assert_eq!(clean.ring.stats(), dirty.ring.stats());
    assert_eq!(
        clean.ring.swap_reader().unwrap().lost,
        dirty.ring.swap_reader().unwrap().lost
    );
}

#[test]
fn desc_size_is_small() {
    assert_eq!(DESC_SIZE, 24);
    assert_eq!(event_size(0), 8);
    assert_eq!(event_size(16), 20);
    assert_eq!(event_size(113), 124);
}

#[test]
fn concurrent_writer_and_swapper_conserve_events() {
    concurrent_swaps(3);
}

#[test]
fn swap_keeps_up_with_a_large_full_ring() {
    // Many pages, steady-state overwrite: the swap must keep finding the head (the bench
    // once hit Busy here when head searches started a whole lap away; this test does not
    // reproduce that reliably, the bench does).
    concurrent_swaps(256);
}

fn concurrent_swaps(nr_pages: usize) {
    let total = 2_000 * nr_pages as u64 + 300_000;
    // Smoke test on real threads (the loom model is the thorough one): every event is either
    // on a page the reader got, or reported lost; a swap never runs out of retries.
    use std::sync::atomic::AtomicBool;
    let f = fixture(nr_pages);
    let done = AtomicBool::new(false);
    let started = AtomicBool::new(false);
    let (lost, swaps) = std::thread::scope(|s| {
        let h = s.spawn(|| {
            let mut lost = 0;
            let mut swaps = 0;
            while !done.load(Ordering::Acquire) {
                let r = f.ring.swap_reader().unwrap();
                started.store(true, Ordering::Release);
                lost += r.lost;
                swaps += u64::from(r.swapped);
            }
            (lost, swaps)
        });
        while !started.load(Ordering::Acquire) {
            std::hint::spin_loop();
        }
        for i in 0..total {
            assert!(f.ring.write(i, &i.to_le_bytes()));
        }
        done.store(true, Ordering::Release);
        h.join().unwrap()
    });
    let final_lost = f.ring.swap_reader().unwrap().lost;
    assert!(swaps > 0);
    assert_eq!(lost + final_lost, f.ring.stats().overrun);
}

/// The events of `pages` in order, decoded with the ABI's page decoder: (ts, first payload
/// word).
fn events_in(pages: impl Iterator<Item = Page>) -> Vec<(u64, u64)> {
    use hyptrace_abi::page::decode::PageView;
    let mut out = Vec::new();
    for p in pages {
        // SAFETY: a test page, whole, while no writer runs.
        let bytes = unsafe { core::slice::from_raw_parts(p.as_ptr(), PAGE_SIZE) };
        for e in PageView::new(bytes).events() {
            let e = e.unwrap();
            out.push((e.ts, u64::from_le_bytes(e.payload[..8].try_into().unwrap())));
        }
    }
    out
}

#[test]
fn freeze_stops_the_writer_and_lists_pages_oldest_first() {
    let f = fixture(4);
    for i in 0..1000u64 {
        assert!(f.ring.write(10 + i, &i.to_le_bytes()));
    }
    // Swap once so the reader page is a former ring page: it must not be listed.
    let swap = f.ring.swap_reader().unwrap();
    assert!(swap.swapped);
    for i in 1000..1100u64 {
        assert!(f.ring.write(10 + i, &i.to_le_bytes()));
    }
    let frozen = f.ring.freeze(tries(8)).expect("loaded and idle");
    assert!(frozen.writer_stopped());
    let pages: Vec<Page> = frozen.pages().collect();
    assert_eq!(pages.len(), 4, "every ring page, not the reader page");
    assert!(!pages.contains(&swap.reader_page));
    let events = events_in(pages.into_iter());
    // Consecutive values up to the last one written, timestamps in order.
    assert_eq!(events.last(), Some(&(1109, 1099)));
    for w in events.windows(2) {
        assert_eq!(w[1].1, w[0].1 + 1);
        assert!(w[1].0 >= w[0].0);
    }
    drop(frozen);
    assert!(
        !f.ring.write(5000, &[0; 8]),
        "a frozen ring stays non-writable"
    );
}

#[test]
fn freeze_gives_up_on_a_held_lock_and_an_unloaded_ring() {
    let f = fixture(2);
    let guard = f.ring.control.0.lock();
    let mut asked = 0;
    let busy = f.ring.freeze(|| {
        asked += 1;
        asked < 4
    });
    assert_eq!(busy.unwrap_err(), FreezeError::Busy);
    assert_eq!(
        asked, 4,
        "asked after each failed attempt, until it said no"
    );
    drop(guard);
    let writing = f.ring.reserve(1, 8).unwrap();
    let mut frozen = f.ring.freeze(tries(0)).expect("lock free now");
    assert!(!frozen.writer_stopped(), "a write in flight");
    assert!(
        !frozen.wait_for_writer(tries(4)),
        "the wait for the writer is bounded"
    );
    drop(frozen);
    let unloaded = RingBuffer::new();
    assert_eq!(
        unloaded.freeze(tries(4)).unwrap_err(),
        FreezeError::NotLoaded
    );
    drop(writing);
}

/// The flight recorder's case: a writer in a long batch when the ring freezes. The stop
/// hint ends the batch at its next event, and the wait sees the writer leave.
#[test]
fn a_batch_in_flight_ends_at_its_next_event_once_frozen() {
    let f = fixture(4);
    let mut batch = f.ring.batch().expect("enabled");
    assert!(batch.write(1, &[1; 8]));
    let mut frozen = f.ring.freeze(tries(0)).expect("lock free");
    assert!(!frozen.writer_stopped(), "the batch holds the handshake");
    assert!(!batch.write(2, &[2; 8]), "the batch sees the stop hint");
    drop(batch);
    assert!(frozen.wait_for_writer(tries(0)), "one attempt suffices now");
    let events = events_in(frozen.pages());
    assert_eq!(
        events.len(),
        1,
        "the event before the freeze, none after: {events:?}"
    );
}

#[test]
fn a_batch_excludes_other_writers_and_ends_on_a_waiting_control_operation() {
    let f = fixture(2);
    let ring = f.ring;
    let mut batch = ring.batch().unwrap();
    assert!(ring.batch().is_none(), "one batch at a time");
    assert!(
        ring.reserve(1, 4).is_none(),
        "and no single write beside it"
    );
    assert!(batch.write(1, b"abcd"));
    assert!(batch.reserve(2, MAX_PAYLOAD + 1).is_none(), "too long");
    assert!(
        batch.write(2, b"efgh"),
        "a refused event does not end the batch"
    );
    // A swap never waits for the writer: it goes on while the batch holds the status.
    let swap = ring.swap_reader().unwrap();
    assert!(
        swap.swapped,
        "the head (the writer's page) becomes the reader page"
    );
    std::thread::scope(|s| {
        let disable = s.spawn(|| ring.disable().unwrap());
        // The disable raises the stop flag, then waits: the batch sees the flag and refuses
        // its further events, and the disable returns once the batch is dropped.
        while batch.write(3, b"ijkl") {
            std::thread::yield_now();
        }
        assert!(
            !batch.write(4, b"mnop"),
            "the rest of the batch is refused too"
        );
        drop(batch);
        assert!(disable.join().unwrap(), "it was enabled");
    });
    let written = ring.stats().entries;
    assert!(written >= 2);
    assert!(ring.batch().is_none(), "disabled");
    // A refused batch must not give back a status it never took.
    assert!(
        !ring.is_enabled(),
        "a refused batch left the buffer disabled"
    );
    ring.enable().unwrap();
    assert!(ring.write(5, b"qrst"));
    assert_eq!(ring.stats().entries, written + 1);
}
