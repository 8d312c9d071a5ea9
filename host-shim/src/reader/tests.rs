//! Reader tests: the decoder on hand-built pages, page export, and the hypervisor's real ring
//! writer read back through [`CpuReader`] (so every page the writer produces is decoded here).

use super::*;
use hyptrace_abi::page::{
    record::{header, PADDING, TIME_EXTEND, TIME_STAMP},
    COMMIT_MISSED_EVENTS, COMMIT_MISSED_STORED, FOOTER_COMMIT,
};
use hyptrace_ring::{PageDesc, RingBuffer, MAX_PAYLOAD};
use proptest::prelude::*;
use std::alloc::{alloc_zeroed, Layout};
use std::vec::Vec;

/// Builds a page from header values and record words.
fn page_of(ts: u64, words: &[u32]) -> PageBuf {
    let mut p = PageBuf::zeroed();
    p.0[0..8].copy_from_slice(&ts.to_le_bytes());
    p.0[8..16].copy_from_slice(&((words.len() * 4) as u64).to_le_bytes());
    for (i, w) in words.iter().enumerate() {
        p.0[16 + 4 * i..20 + 4 * i].copy_from_slice(&w.to_le_bytes());
    }
    p
}

#[test]
fn decodes_every_record_kind() {
    let p = page_of(
        1000,
        &[
            header(2, 0), // compact, 8 bytes
            0x0403_0201,
            0x0807_0605,
            header(0, 5), // length word form, 4 bytes
            8,
            0xaabb_ccdd,
            header(TIME_EXTEND, 3), // +(2 << 27 | 3)
            2,
            header(1, 0),
            7,
            header(PADDING, 1), // discarded record of 4 + 12 bytes, delta ignored
            12,
            0,
            0,
            header(TIME_STAMP, 9), // absolute (1 << 27 | 9)
            1,
            header(1, 1),
            9,
        ],
    );
    let v = p.view();
    assert_eq!(v.time_stamp(), 1000);
    assert_eq!(v.missed(), Missed::None);
    let recs: Vec<_> = v.records().map(|r| r.unwrap()).collect();
    assert_eq!(recs.len(), 7);
    assert_eq!(recs[4], (40, Record::Padding { len: 16 }));
    let ev: Vec<_> = v.events().map(|e| e.unwrap()).collect();
    assert_eq!(
        ev,
        vec![
            Event {
                ts: 1000,
                payload: &[1, 2, 3, 4, 5, 6, 7, 8]
            },
            Event {
                ts: 1005,
                payload: &[0xdd, 0xcc, 0xbb, 0xaa]
            },
            Event {
                ts: 1005 + (2 << 27) + 3,
                payload: &[7, 0, 0, 0]
            },
            Event {
                ts: (1 << 27) + 9 + 1,
                payload: &[9, 0, 0, 0]
            },
        ]
    );
}

#[test]
fn padding_with_zero_delta_ends_the_page() {
    let p = page_of(5, &[header(1, 0), 1, header(PADDING, 0), 0xffff_ffff, 77]);
    let ev: Vec<_> = p.view().events().collect();
    assert_eq!(ev.len(), 1);
}

#[test]
fn length_word_rounds_to_four() {
    // A pKVM-style unrounded length (7 + 4): the next record starts at the rounded offset.
    let mut p = page_of(
        0,
        &[header(0, 0), 11, 0x0403_0201, 0x0007_0605, header(1, 2), 3],
    );
    let ev: Vec<_> = p.view().events().map(|e| e.unwrap()).collect();
    assert_eq!(ev[0].payload, &[1, 2, 3, 4, 5, 6, 7]);
    assert_eq!(ev[1].ts, 2);
    // Bad commit: beyond the page's data area.
    p.0[8..16].copy_from_slice(&4090u64.to_le_bytes());
    assert_eq!(
        p.view().events().collect::<Vec<_>>(),
        vec![Err(DecodeError::BadCommit)]
    );
}

#[test]
fn decode_errors_stop_iteration() {
    // Compact record cut by commit.
    let mut p = page_of(0, &[header(1, 0), 1, header(3, 0), 1]);
    assert_eq!(
        p.view().records().last(),
        Some(Err(DecodeError::Truncated { offset: 8 }))
    );
    // Length word smaller than itself.
    p = page_of(0, &[header(0, 0), 3]);
    assert_eq!(
        p.view().records().next(),
        Some(Err(DecodeError::BadLength { offset: 0 }))
    );
    // Length word running past commit, extend without its second word, huge padding.
    for words in [
        &[header(0, 0), 400, 0][..],
        &[header(TIME_EXTEND, 0)][..],
        &[header(TIME_STAMP, 0)][..],
        &[header(PADDING, 1), u32::MAX][..],
        &[header(PADDING, 1)][..],
    ] {
        let p = page_of(0, words);
        let r: Vec<_> = p.view().records().collect();
        assert_eq!(r.len(), 1);
        assert!(r[0].is_err(), "{words:x?}");
    }
}

proptest! {
    #[test]
    fn decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..4200),
                            ts in any::<u64>()) {
        let v = PageView::new(&bytes);
        for e in v.events() { let _ = e; }
        for r in Records::new(&bytes, ts) { let _ = r; }
    }
}

#[test]
fn export_sets_missed_flags_and_zeroes_the_footer() {
    let mut src = page_of(50, &[header(1, 0), 1, header(1, 4), 2, header(1, 4), 3]);
    src.0[FOOTER_OFFSET..].fill(0xee);
    src.0[40..48].fill(0x77); // stale bytes beyond commit
    let mut out = PageBuf::zeroed();
    let c = export_page(&src, 0, 24, 50, 0, &mut out);
    assert_eq!(c, 24);
    assert!(out.0[40..].iter().all(|&b| b == 0));
    assert_eq!(out.view().missed(), Missed::None);

    let c = export_page(&src, 8, 24, 50, 42, &mut out);
    assert_eq!(c, 16 | COMMIT_MISSED_EVENTS | COMMIT_MISSED_STORED);
    let v = out.view();
    assert_eq!(v.commit(), 16);
    assert_eq!(v.missed(), Missed::Count(42));
    assert_eq!(v.time_stamp(), 50);
    let ev: Vec<_> = v.events().map(|e| e.unwrap().ts).collect();
    assert_eq!(ev, vec![54, 58]);
    assert!(out.0[16 + 16 + 8..].iter().all(|&b| b == 0));

    // A full ftrace page leaves no room for the count: only bit 31.
    let full = PageBuf([0; PAGE_SIZE]);
    let c = export_page(&full, 0, 4076, 0, 3, &mut out);
    assert_eq!(c, 4076 | COMMIT_MISSED_EVENTS);
    assert_eq!(out.view().missed(), Missed::Unknown);
}

// ------------------------------------------------------------------------------------------
// The real writer, read back through CpuReader.
// ------------------------------------------------------------------------------------------

struct Direct(&'static RingBuffer<'static>);

impl RingControl for Direct {
    fn swap_reader(&mut self, cpu: u32) -> Result<SwapResult, HypError> {
        assert_eq!(cpu, 3);
        let s = self.0.swap_reader()?;
        Ok(SwapResult {
            swapped: s.swapped,
            // The reader reaches pages through `IdentityMemory`: expose the provenance.
            reader_page: s.reader_page.as_ptr().expose_provenance() as u64,
            lost: s.lost,
        })
    }

    fn update_footers(&mut self, _cpu: u32) -> Result<(), HypError> {
        Ok(self.0.update_footers().map(drop)?)
    }
}

type Reader = CpuReader<Direct, IdentityMemory>;

fn new_page() -> NonNull<u8> {
    let layout = Layout::from_size_align(PAGE_SIZE, PAGE_SIZE).unwrap();
    // SAFETY: non-zero size; leaked on purpose (tests only).
    let p = unsafe { alloc_zeroed(layout) };
    NonNull::new(p).expect("allocation failed")
}

/// A loaded, enabled ring on leaked heap pages and a reader for it (as CPU 3).
fn setup(nr_pages: usize) -> (&'static RingBuffer<'static>, Reader) {
    let descs: &'static [PageDesc] = Box::leak((0..=nr_pages).map(|_| PageDesc::new()).collect());
    let ring: &'static RingBuffer<'static> = Box::leak(Box::new(RingBuffer::new()));
    let pages: Vec<NonNull<u8>> = (0..=nr_pages).map(|_| new_page()).collect();
    // SAFETY: leaked, aligned, distinct pages that live for the rest of the process.
    unsafe { ring.load(descs, pages[0], pages[1..].iter().copied()) }.unwrap();
    ring.enable().unwrap();
    // SAFETY: the ring only returns the pages above, which the host side maps 1:1.
    let mem = unsafe { IdentityMemory::new() };
    let reader = CpuReader::new(
        3,
        pages[0].as_ptr().expose_provenance() as u64,
        Direct(ring),
        mem,
    );
    (ring, reader)
}

fn payload_of(seq: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (seq.wrapping_mul(31).wrapping_add(i as u64 * 7) % 251) as u8 + 1)
        .collect()
}

fn rounded(len: usize) -> usize {
    if len == 0 {
        4
    } else {
        (len + 3) & !3
    }
}

/// The reference model: what was written since the last reset, and where the reader is.
#[derive(Default)]
struct Model {
    written: Vec<(u64, usize)>, // (ts, len); payload derived from the index
    next: usize,
    ts: u64,
    lost: u64,
}

impl Model {
    /// Checks one event the reader returned against the model.
    fn check(&mut self, ts: u64, payload: &[u8], lost_before: u64) {
        let i = self.next + lost_before as usize;
        assert!(i < self.written.len(), "reader returned an unwritten event");
        let (wts, len) = self.written[i];
        assert_eq!(ts, wts, "event {i}: timestamp");
        assert_eq!(payload.len(), rounded(len), "event {i}: length");
        assert_eq!(&payload[..len], &payload_of(i as u64, len)[..], "event {i}");
        assert!(payload[len..].iter().all(|&b| b == 0), "event {i}: padding");
        self.lost += lost_before;
        self.next = i + 1;
    }
}

fn read_one(r: &mut Reader, m: &mut Model) -> bool {
    match r.read_event().unwrap() {
        Some(e) => {
            m.check(e.ts, e.payload, e.lost_before);
            true
        }
        None => false,
    }
}

fn read_page(r: &mut Reader, m: &mut Model) -> bool {
    let mut out = PageBuf::zeroed();
    let Some(info) = r.read_page(&mut out).unwrap() else {
        return false;
    };
    let v = out.view();
    let expect = if info.missed > 0 {
        Missed::Count(info.missed)
    } else {
        Missed::None
    };
    assert_eq!(v.missed(), expect);
    assert!(v.commit() <= hyptrace_abi::page::DATA_SIZE);
    let mut n = 0;
    for (k, e) in v.events().enumerate() {
        let e = e.unwrap();
        m.check(e.ts, e.payload, if k == 0 { info.missed } else { 0 });
        n += 1;
    }
    assert_eq!(n, info.events);
    true
}

#[derive(Clone, Debug)]
enum Op {
    Write {
        len: usize,
        delta: u64,
    },
    /// Events written under one status handshake (`RingBuffer::batch`), with up to `reads`
    /// reads (and so swaps, which never wait for the writer) after each event, while the
    /// batch still holds the status.
    Batch {
        events: Vec<(usize, u64)>,
        reads: u8,
    },
    Read(u8),
    ReadPage,
    Peek,
    Footers,
    Reset,
}

fn op() -> impl Strategy<Value = Op> {
    let len = prop_oneof![
        4 => 0usize..=16,
        2 => 17usize..=112,
        1 => 113usize..=300,
        1 => Just(MAX_PAYLOAD),
        1 => 0usize..=MAX_PAYLOAD,
    ];
    let delta = prop_oneof![
        6 => 0u64..1000,
        2 => ((1u64 << 27) - 2)..((1u64 << 27) + 2),
        2 => 0u64..(1u64 << 40),
        1 => Just((1u64 << 59) + 5),
    ];
    let batch = (
        proptest::collection::vec((len.clone(), delta.clone()), 1..8),
        0u8..4,
    )
        .prop_map(|(events, reads)| Op::Batch { events, reads });
    prop_oneof![
        30 => (len, delta).prop_map(|(len, delta)| Op::Write { len, delta }),
        6 => batch,
        6 => any::<u8>().prop_map(|n| Op::Read(n % 40)),
        2 => Just(Op::ReadPage),
        2 => Just(Op::Peek),
        2 => Just(Op::Footers),
        1 => Just(Op::Reset),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Random writes (one at a time or in batches), reads, page exports, peeks, footer
    /// updates and resets against the model: the reader gets exactly the written events in order minus what is reported
    /// lost, and read + lost never exceeds written (and equals it once drained).
    #[test]
    fn reader_matches_model(nr_pages in 2usize..5,
                            ops in proptest::collection::vec(op(), 1..300)) {
        let (ring, mut r) = setup(nr_pages);
        let mut m = Model::default();
        for op in ops {
            match op {
                Op::Write { len, delta } => {
                    let delta = if m.ts > (1 << 62) { 1 } else { delta };
                    m.ts += delta;
                    let seq = m.written.len() as u64;
                    prop_assert!(ring.write(m.ts, &payload_of(seq, len)));
                    m.written.push((m.ts, len));
                }
                Op::Batch { events, reads } => {
                    let mut batch = ring.batch().expect("enabled, and no write in flight");
                    for (len, delta) in events {
                        let delta = if m.ts > (1 << 62) { 1 } else { delta };
                        m.ts += delta;
                        let seq = m.written.len() as u64;
                        prop_assert!(batch.write(m.ts, &payload_of(seq, len)));
                        m.written.push((m.ts, len));
                        prop_assert!(ring.batch().is_none(), "one batch at a time");
                        for _ in 0..reads {
                            if !read_one(&mut r, &mut m) {
                                break;
                            }
                        }
                    }
                }
                Op::Read(n) => {
                    for _ in 0..n {
                        if !read_one(&mut r, &mut m) {
                            break;
                        }
                    }
                }
                Op::ReadPage => {
                    read_page(&mut r, &mut m);
                }
                Op::Peek => {
                    let peeked = r.peek_event().unwrap()
                        .map(|e| (e.ts, e.payload.to_vec(), e.lost_before));
                    let again: Vec<_> = r.peek_page().map(|e| e.unwrap().ts).collect();
                    let read = r.read_event().unwrap()
                        .map(|e| (e.ts, e.payload.to_vec(), e.lost_before));
                    prop_assert_eq!(&peeked, &read);
                    if let Some((ts, p, lost)) = read {
                        prop_assert_eq!(again.first(), Some(&ts));
                        m.check(ts, &p, lost);
                    }
                }
                Op::Footers => {
                    let s = r.stats().unwrap();
                    prop_assert_eq!(s.entries, m.written.len() as u64);
                    // The footer's overrun is the writer's live count (update_footers writes
                    // it, as in gen 1); what was reported lost so far cannot exceed it.
                    prop_assert_eq!(s.overrun, ring.stats().overrun);
                    prop_assert!(s.lost <= s.overrun);
                    prop_assert_eq!(s.read, m.next as u64 - m.lost);
                    prop_assert_eq!(s.bad_pages, 0);
                }
                Op::Reset => {
                    ring.reset().unwrap();
                    r.after_reset();
                    m = Model { ts: m.ts, ..Model::default() };
                }
            }
            let s = ring.stats();
            prop_assert_eq!(s.entries, m.written.len() as u64);
            prop_assert!(m.next as u64 <= s.entries);
        }
        while read_one(&mut r, &mut m) {}
        let s = r.stats().unwrap();
        prop_assert_eq!(s.read + s.lost, m.written.len() as u64);
        prop_assert_eq!(m.next, m.written.len());
        prop_assert_eq!(s.lost, ring.stats().overrun);
        prop_assert_eq!(s.bad_pages, 0);
    }
}

#[test]
fn reader_waits_while_the_writer_is_on_its_page() {
    let (ring, mut r) = setup(2);
    assert!(r.read_event().unwrap().is_none());
    assert!(ring.write(10, b"abcd"));
    let e = r.read_event().unwrap().unwrap();
    assert_eq!((e.ts, e.payload, e.lost_before), (10, &b"abcd"[..], 0));
    // The writer is still on this page (footer COMMIT): no swap, nothing to read.
    // SAFETY: reading the footer of a page this test owns.
    let ws = unsafe { *((r.reader_page() as usize + FOOTER_OFFSET) as *const u32) };
    assert_eq!(ws, FOOTER_COMMIT);
    assert!(r.read_event().unwrap().is_none());
    assert!(ring.write(11, b"efgh"));
    assert_eq!(r.read_event().unwrap().unwrap().payload, b"efgh");
}

#[test]
fn unknown_reader_page_is_an_error() {
    struct NoPages;
    // SAFETY: returns no pages at all.
    unsafe impl PageMemory for NoPages {
        fn page(&self, _va: u64) -> Option<NonNull<u8>> {
            None
        }
    }
    let (ring, _) = setup(2);
    let mut r = CpuReader::new(3, 0x1000, Direct(ring), NoPages);
    assert_eq!(r.read_event(), Err(HypError::InvalidArgument));
    // SAFETY: only asked about addresses, never dereferenced here.
    let id = unsafe { IdentityMemory::new() };
    assert!(id.page(0x1001).is_none());
    assert!(id.page(0).is_none());
}

#[test]
fn control_errors_propagate() {
    let (ring, mut r) = setup(2);
    ring.write(1, &[1; 4]);
    r.read_event().unwrap();
    ring.write(2, &[1; 4]);
    ring.teardown().unwrap();
    // The writer's last page is still readable; then the swap reports NotLoaded.
    assert!(r.read_event().unwrap().is_some());
    ring.enable().unwrap_err();
    // Writer left? No: teardown leaves COMMIT on its tail; the reader does not swap.
    assert_eq!(r.read_event().unwrap(), None);
    assert_eq!(r.stats(), Err(HypError::NotLoaded));
}

#[test]
fn concurrent_writer_and_reader() {
    // A writer thread and a reader thread on the real ring: the reader sees every event in
    // order, each gap exactly the reported loss, and read + lost == written at the end.
    let (ring, mut r) = setup(3);
    let total = 200_000u64;
    let done = std::sync::atomic::AtomicBool::new(false);
    let mut got = 0u64;
    let mut lost = 0u64;
    let mut next = 0u64;
    std::thread::scope(|s| {
        s.spawn(|| {
            for seq in 0..total {
                let len = 8 + (seq % 5) as usize * 12;
                let mut p = payload_of(seq, len);
                p[..8].copy_from_slice(&seq.to_le_bytes());
                assert!(ring.write(seq, &p));
            }
            done.store(true, std::sync::atomic::Ordering::Release);
        });
        loop {
            let finished = done.load(std::sync::atomic::Ordering::Acquire);
            match r.read_event().unwrap() {
                Some(e) => {
                    let seq = u64::from_le_bytes(e.payload[..8].try_into().unwrap());
                    assert_eq!(seq, next + e.lost_before, "gap != reported loss");
                    assert_eq!(e.ts, seq);
                    let len = 8 + (seq % 5) as usize * 12;
                    assert_eq!(&e.payload[8..len], &payload_of(seq, len)[8..]);
                    lost += e.lost_before;
                    got += 1;
                    next = seq + 1;
                }
                None if finished => break,
                None => std::hint::spin_loop(),
            }
        }
    });
    while let Some(e) = r.read_event().unwrap() {
        let seq = u64::from_le_bytes(e.payload[..8].try_into().unwrap());
        assert_eq!(seq, next + e.lost_before);
        lost += e.lost_before;
        got += 1;
        next = seq + 1;
    }
    let s = r.stats().unwrap();
    assert_eq!(next, total);
    assert_eq!(got + lost, total);
    assert_eq!((s.read, s.lost, s.entries), (got, lost, total));
    assert_eq!(s.bad_pages, 0);
}
