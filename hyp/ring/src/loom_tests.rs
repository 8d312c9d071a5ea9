//! Loom models of the real ring code (pages of 24 bytes, two ring pages).
//!
//! Run with:
//! `RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test -p hyptrace-ring --release --lib`
//!
//! Every data word of a page is a loom cell, so a reader that reads a word the writer has not
//! published (or a writer that writes after teardown returned) is reported as a data race.

use super::*;
use core::ptr::NonNull;
use hyptrace_abi::page::FOOTER_HEAD;
use loom::thread;

/// Payload size of every modelled event: 8 bytes (a 12-byte record, two per page).
const LEN: usize = 8;

struct Model {
    ring: &'static RingBuffer<'static>,
    pages: Vec<NonNull<u8>>,
}

fn model(nr_pages: usize) -> Model {
    let descs: &'static [PageDesc] = Box::leak((0..=nr_pages).map(|_| PageDesc::new()).collect());
    let ring: &'static RingBuffer<'static> = Box::leak(Box::new(RingBuffer::new()));
    let pages: Vec<NonNull<u8>> = (0..=nr_pages)
        .map(|_| NonNull::from(Box::leak(Box::new(LoomPage::new()))).cast())
        .collect();
    // SAFETY: leaked, 4096-aligned `LoomPage`s that outlive the model.
    unsafe { ring.load(descs, pages[0], pages[1..].iter().copied()) }.unwrap();
    ring.enable().unwrap();
    Model { ring, pages }
}

fn page(p: NonNull<u8>) -> &'static LoomPage {
    // SAFETY: pages come from `model`, which leaked them.
    unsafe { p.cast::<LoomPage>().as_ref() }
}

fn word(p: &LoomPage, off: usize) -> u32 {
    // SAFETY: loom checks this read against the writer's writes.
    p.data[off / 4].with(|w| unsafe { *w })
}

fn payload(seq: u32) -> [u8; LEN] {
    let mut b = [0u8; LEN];
    b[..4].copy_from_slice(&seq.to_le_bytes());
    b[4..].copy_from_slice(&(!seq).to_le_bytes());
    b
}

/// The host's side of the protocol, on modelled pages.
struct Reader {
    page: NonNull<u8>,
    off: usize,
    ts: u64,
    /// (sequence number, events reported lost just before it)
    got: Vec<(u32, u64)>,
    pending_lost: u64,
    lost: u64,
}

impl Reader {
    fn new(reader_page: NonNull<u8>) -> Self {
        Self {
            page: reader_page,
            off: 0,
            ts: 0,
            got: Vec::new(),
            pending_lost: 0,
            lost: 0,
        }
    }

    /// Reads what is committed on the current page. Returns whether the writer has left it.
    fn read_page(&mut self) -> bool {
        let p = page(self.page);
        // Acquire: pairs with the writer's Release store of 0 when it leaves the page; after
        // it, the commit load below sees the page's final length.
        let left = p.footer.writer_status.load(Ordering::Acquire) == 0;
        // Acquire: pairs with the Release store of `commit` in `Reservation::commit`.
        let c = p.header.commit.load(Ordering::Acquire) as usize;
        if self.off == 0 && c > 0 {
            self.ts = p.header.time_stamp.load(Ordering::Relaxed);
        }
        while self.off < c {
            let h = word(p, self.off);
            assert_eq!(h & 31, (LEN / 4) as u32, "unexpected record type");
            self.ts += u64::from(h >> 5);
            let seq = word(p, self.off + 4);
            assert_eq!(word(p, self.off + 8), !seq, "torn payload");
            assert_eq!(self.ts, u64::from(seq), "wrong timestamp");
            self.got.push((seq, self.pending_lost));
            self.pending_lost = 0;
            self.off += 4 + LEN;
        }
        left
    }

    /// One polling step: read, and swap only once the writer has left the page.
    fn step(&mut self, ring: &RingBuffer<'_>) {
        if !self.read_page() {
            return;
        }
        let s = ring.swap_reader().unwrap();
        if s.swapped {
            self.page = s.reader_page;
            self.off = 0;
            self.pending_lost += s.lost;
            self.lost += s.lost;
        } else {
            assert_eq!(s.lost, 0);
        }
    }

    /// After the writer stopped: read everything that is left.
    fn drain(&mut self, ring: &RingBuffer<'_>) {
        for _ in 0..8 {
            self.read_page();
            let s = ring.swap_reader().unwrap();
            if !s.swapped {
                self.read_page();
                return;
            }
            self.page = s.reader_page;
            self.off = 0;
            self.pending_lost += s.lost;
            self.lost += s.lost;
        }
        panic!("drain did not converge");
    }

    /// In order, nothing duplicated, and every gap is exactly the loss reported before it.
    fn check(&self, written: u32) {
        let mut expect = 1u64;
        for &(seq, lost) in &self.got {
            assert_eq!(
                u64::from(seq),
                expect + lost,
                "gap differs from reported loss"
            );
            expect = u64::from(seq) + 1;
        }
        assert_eq!(
            self.got.len() as u64 + self.lost + self.pending_lost,
            u64::from(written),
            "read + lost != written"
        );
    }
}

fn builder() -> loom::model::Builder {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(4);
    b
}

/// The host reusing the pages after teardown: writes every data word (loom reports a race
/// with any write of the writer not ordered before it).
fn scribble(m: &Model) {
    for &a in &m.pages {
        for w in &page(a).data {
            // SAFETY: loom checks this write against the writer's.
            w.with_mut(|p| unsafe { *p = 0xdead_beef });
        }
    }
}

/// After a reset raced `written` (the writes that succeeded, in order): the buffer holds
/// exactly the events committed after the reset, a suffix of them, and reports no loss.
fn check_after_reset(ring: &RingBuffer<'_>, written: &[u32]) {
    let entries = ring.stats().entries as usize;
    let mut reader = Reader::new(ring.reader_page().unwrap());
    reader.drain(ring);
    assert_eq!(reader.lost, 0);
    assert_eq!(reader.got.len(), entries);
    let got: Vec<u32> = reader.got.iter().map(|&(s, _)| s).collect();
    assert_eq!(got[..], written[written.len() - entries..]);
}

/// A writer that pushes the head (5 events on 2 pages of 2) against a reader that swaps.
#[test]
fn writer_against_swap_reader() {
    builder().check(|| {
        let m = model(2);
        let ring = m.ring;
        let writer = thread::spawn(move || {
            for seq in 1..=5u32 {
                assert!(ring.write(u64::from(seq), &payload(seq)));
            }
        });
        let mut reader = Reader::new(m.pages[0]);
        reader.step(ring);
        reader.step(ring);
        writer.join().unwrap();
        reader.drain(ring);
        reader.check(5);
        assert_eq!(reader.lost, ring.stats().overrun);
    });
}

/// Teardown against a writer: once teardown returns, the host may reuse the pages; any later
/// write would race with the host's writes below.
#[test]
fn writer_against_teardown() {
    builder().check(|| {
        let m = model(2);
        let ring = m.ring;
        let writer = thread::spawn(move || {
            let mut n = 0;
            for seq in 1..=3u32 {
                n += u32::from(ring.write(u64::from(seq), &payload(seq)));
            }
            n
        });
        ring.teardown().unwrap();
        scribble(&m);
        let n = writer.join().unwrap();
        assert!(n <= 3);
        assert!(!ring.write(9, &payload(9)));
    });
}

/// Reset against a writer: afterwards the buffer holds exactly the events committed after the
/// reset, in order, and nothing is reported lost.
#[test]
fn writer_against_reset() {
    builder().check(|| {
        let m = model(2);
        let ring = m.ring;
        let writer = thread::spawn(move || {
            // Writes during the reset are refused (the buffer is briefly non-writable).
            (1..=3u32)
                .filter(|&seq| ring.write(u64::from(seq), &payload(seq)))
                .collect::<Vec<u32>>()
        });
        ring.reset().unwrap();
        check_after_reset(ring, &writer.join().unwrap());
    });
}

/// update_footers against a writer that pushes the head: never busy for long, never wrong.
#[test]
fn writer_against_update_footers() {
    builder().check(|| {
        let m = model(2);
        let ring = m.ring;
        let writer = thread::spawn(move || {
            for seq in 1..=5u32 {
                assert!(ring.write(u64::from(seq), &payload(seq)));
            }
        });
        let st = ring.update_footers().unwrap();
        assert!(st.entries <= 5);
        writer.join().unwrap();
        ring.update_footers().unwrap();
        let heads = m
            .pages
            .iter()
            .filter(|&&a| page(a).footer.reader_status.load(Ordering::Relaxed) == FOOTER_HEAD)
            .count();
        assert_eq!(heads, 1);
        let mut reader = Reader::new(m.pages[0]);
        reader.drain(ring);
        reader.check(5);
    });
}

/// The flight recorder's freeze against a writer: when `freeze` says the writer stopped,
/// reading every word of the pages it lists races with no write, and no write starts after
/// freeze returned. (When the bounded wait ran out the writer may go on for a while, since
/// `stop` is only a hint: the recorder then reads none of that ring's pages.)
#[test]
fn writer_against_freeze() {
    builder().check(|| {
        let m = model(3);
        let ring = m.ring;
        let writer = thread::spawn(move || {
            let mut n = 0;
            for seq in 1..=5u32 {
                n += u32::from(ring.write(u64::from(seq), &payload(seq)));
            }
            n
        });
        let mut frozen = ring
            .freeze(tries(2))
            .expect("loaded, and nothing else takes the lock");
        frozen.wait_for_writer(tries(2));
        let pages: Vec<_> = frozen.pages().collect();
        assert_eq!(pages.len(), 3, "every ring page, not the reader page");
        if frozen.writer_stopped() {
            for p in pages {
                for off in (0..CAPACITY).step_by(4) {
                    let _ = word(page(p), off);
                }
            }
        }
        drop(frozen);
        let n = writer.join().unwrap();
        assert!(n <= 5);
        assert!(
            !ring.write(9, &payload(9)),
            "a frozen ring stays non-writable"
        );
    });
}

/// Writes `1..=last` in batches of `per_batch` events (one status handshake each), as the
/// hypervisor writes the events of one exception. Returns the sequence numbers written.
fn write_batches(ring: &RingBuffer<'_>, last: u32, per_batch: u32) -> Vec<u32> {
    let mut written = Vec::new();
    let mut seq = 1;
    while seq <= last {
        if let Some(mut b) = ring.batch() {
            for s in seq..(seq + per_batch).min(last + 1) {
                if b.write(u64::from(s), &payload(s)) {
                    written.push(s);
                }
            }
        }
        seq += per_batch;
    }
    written
}

/// A batch of five events that pushes the head, against a reader that swaps: swaps go on
/// while the batch holds the status, and order and loss accounting stay exact.
#[test]
fn batch_against_swap_reader() {
    builder().check(|| {
        let m = model(2);
        let ring = m.ring;
        let writer = thread::spawn(move || write_batches(ring, 5, 5).len());
        let mut reader = Reader::new(m.pages[0]);
        reader.step(ring);
        reader.step(ring);
        assert_eq!(writer.join().unwrap(), 5, "nothing waits for a batch here");
        reader.drain(ring);
        reader.check(5);
        assert_eq!(reader.lost, ring.stats().overrun);
    });
}

/// Teardown against batches of two: once teardown returns no event of any batch touches the
/// pages, even one that began before it (the host's writes below would race with it).
#[test]
fn batch_against_teardown() {
    builder().check(|| {
        let m = model(2);
        let ring = m.ring;
        let writer = thread::spawn(move || write_batches(ring, 4, 2));
        ring.teardown().unwrap();
        scribble(&m);
        assert!(writer.join().unwrap().len() <= 4);
        assert!(ring.batch().is_none(), "torn down: no batch");
    });
}

/// Reset against batches of two: afterwards the buffer holds exactly the events committed
/// after the reset, and a batch the reset's stop flag cut short writes none of its rest.
#[test]
fn batch_against_reset() {
    builder().check(|| {
        let m = model(2);
        let ring = m.ring;
        let writer = thread::spawn(move || write_batches(ring, 4, 2));
        ring.reset().unwrap();
        check_after_reset(ring, &writer.join().unwrap());
    });
}
