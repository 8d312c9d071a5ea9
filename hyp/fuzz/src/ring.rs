//! `ring`: one [`RingBuffer`] under a random interleaving of writes (any size, any
//! timestamp: small steps, steps that need a TIME_EXTEND, steps beyond 59 bits, steps
//! backwards), discarded reservations, swaps, footer updates, resets, enable/disable,
//! teardown-and-reload and a hostile reader scribbling over the page it holds.
//!
//! A model keeps every event written since the last reset or load. A reader follows the
//! reader protocol (read the reader page up to its `commit`, again after a swap that did not
//! swap) and decodes what it gets with `hyptrace-tracedat`'s page decoder. Checked after every
//! step:
//!
//! - a write succeeds exactly when the model says the buffer is writable and the payload fits;
//! - the events read are the ones written, in order, each with its payload and its timestamp
//!   (raised to the previous one when it went backwards); the events skipped between two reads
//!   are exactly the ones the swaps reported lost;
//! - `update_footers` reports the entries written and an overrun at least the losses reported;
//! - at the end, after a final drain: read + lost == written, and the overrun is the losses.

use std::ptr::NonNull;

use arbitrary::{Arbitrary, Unstructured};
use hyptrace_abi::page::PAGE_SIZE;
use hyptrace_ring::{PageDesc, RingBuffer, RingError, MAX_PAYLOAD};
use hyptrace_tracedat::page::{PageView, Record, Records};

/// Ring pages at most (the reader page comes on top).
const MAX_RING_PAGES: usize = 8;

#[repr(C, align(4096))]
struct Page([u8; PAGE_SIZE]);

/// How the timestamp of a write moves.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Step {
    /// A few ns: a delta in the record header.
    Small(u8),
    /// Up to 2^32 ns: beyond the 27-bit delta, a TIME_EXTEND.
    Medium(u32),
    /// Any step: beyond 59 bits the writer starts a new page.
    Large(u64),
    /// Backwards: clamped to the previous timestamp.
    Back(u32),
}

#[derive(Arbitrary, Debug)]
enum Op {
    Write {
        len: u16,
        step: Step,
    },
    /// `4 * (count % 16)` writes of `len` bytes: enough to go round a small ring.
    Burst {
        count: u8,
        len: u16,
        step: Step,
    },
    /// Reserve and drop without commit: nothing is written.
    Discard {
        len: u16,
        step: Step,
    },
    Swap,
    Footers,
    Reset,
    Enable,
    Disable,
    /// Teardown, then load the same pages again.
    Reload,
    /// The reader writes over the page it holds (any offset, header and footer included).
    Scribble {
        offset: u16,
        value: u64,
    },
}

#[derive(Arbitrary, Debug)]
struct Input {
    ring_pages: u8,
    ops: Vec<Op>,
}

/// What was written, one entry per committed event.
#[derive(Clone, Copy, Debug)]
struct Written {
    seq: u64,
    len: usize,
    ts: u64,
}

/// Longest payload the target asks for (some beyond what the writer accepts).
const MAX_LEN: usize = MAX_PAYLOAD + 64;

/// Pseudo-random bytes that payloads are cut from.
fn noise() -> &'static [u8] {
    static NOISE: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    NOISE.get_or_init(|| {
        let mut x = 0x5eed_u64;
        (0..4096 + MAX_LEN)
            .map(|_| {
                // splitmix64's step.
                x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
                let mut z = x;
                z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
                (z ^ (z >> 31)) as u8
            })
            .collect()
    })
}

/// The payload of event `seq` of length `len`: cut from [`noise`] at an offset that moves
/// with `seq` (events less than 4096 apart never share it), the first 8 bytes also holding
/// `seq` itself. A copy, not a loop: this runs for every byte the fuzzer writes, under
/// coverage instrumentation.
fn pattern(seq: u64, len: usize, out: &mut [u8]) {
    let at = (seq.wrapping_mul(97) % 4096) as usize;
    out[..len].copy_from_slice(&noise()[at..at + len]);
    if len >= 8 {
        let mixed = u64::from_le_bytes(out[..8].try_into().expect("8 bytes")) ^ seq;
        out[..8].copy_from_slice(&mixed.to_le_bytes());
    }
}

/// The model and the reader's state.
struct Harness<'a> {
    ring: &'a RingBuffer<'a>,
    descs: &'a [PageDesc],
    ptrs: Vec<NonNull<u8>>,
    /// Events written since the last reset/load.
    written: Vec<Written>,
    /// Sequence numbers are unique over the whole input.
    next_seq: u64,
    /// The writer's last committed timestamp (the clamp), as the model sees it.
    last_ts: u64,
    /// The timestamp the next write asks for.
    clock: u64,
    enabled: bool,
    /// Index into `written` of the next event the reader expects.
    next_read: usize,
    /// Losses reported by swaps and not yet accounted to a read event.
    pending_lost: u64,
    /// Losses reported since the last reset/load.
    lost: u64,
    /// The reader page and how far it has been read: (data offset, running time).
    reader: Option<(NonNull<u8>, usize, u64)>,
    /// The reader wrote over the page it held and forgot it (see `scribble`): the next event
    /// it reads may come after events it will never see, so it finds its place by payload.
    resync: bool,
    /// Events neither read nor reported lost: on pages the reader forgot.
    forgotten: usize,
}

impl<'a> Harness<'a> {
    fn load(&mut self) {
        // SAFETY: `ptrs` are distinct live 4096-aligned pages owned by `run`, accessed only
        // through the ring and the reader below (raw reads and writes of the reader page)
        // until the ring is torn down at the end of `run`.
        unsafe {
            self.ring
                .load(self.descs, self.ptrs[0], self.ptrs[1..].iter().copied())
        }
        .expect("load of valid pages");
        self.emptied();
        self.enabled = false;
    }

    /// After a load or reset: nothing written, nothing to read.
    fn emptied(&mut self) {
        self.written.clear();
        self.resync = false;
        self.forgotten = 0;
        self.next_read = 0;
        self.last_ts = 0;
        self.pending_lost = 0;
        self.lost = 0;
        self.reader = None;
    }

    fn step(&mut self, step: Step) -> u64 {
        self.clock = match step {
            Step::Small(d) => self.clock.saturating_add(u64::from(d)),
            Step::Medium(d) => self.clock.saturating_add(u64::from(d)),
            Step::Large(d) => self.clock.saturating_add(d),
            Step::Back(d) => self.clock.saturating_sub(u64::from(d)),
        };
        self.clock
    }

    fn write(&mut self, len: usize, step: Step) {
        let ts = self.step(step);
        let seq = self.next_seq;
        self.next_seq += 1;
        let mut payload = vec![0u8; len];
        pattern(seq, len, &mut payload);
        let ok = self.ring.write(ts, &payload);
        let expected = self.enabled && len <= MAX_PAYLOAD;
        assert_eq!(
            ok, expected,
            "write of {len} bytes (enabled: {})",
            self.enabled
        );
        if ok {
            self.last_ts = self.last_ts.max(ts);
            self.written.push(Written {
                seq,
                len,
                ts: self.last_ts,
            });
        }
    }

    fn discard(&mut self, len: usize, step: Step) {
        let ts = self.step(step);
        let r = self.ring.reserve(ts, len);
        assert_eq!(r.is_some(), self.enabled && len <= MAX_PAYLOAD, "reserve");
        if let Some(r) = r {
            assert_eq!(r.timestamp(), self.last_ts.max(ts), "reserved timestamp");
        }
    }

    /// Swaps and reads what the reader page has; returns whether pages were swapped.
    fn swap(&mut self) -> bool {
        // What the writer added to the reader page first: once swapped it is the writer's.
        self.read();
        let swap = self.ring.swap_reader().expect("swap of a loaded ring");
        if swap.swapped {
            self.pending_lost += swap.lost;
            self.lost += swap.lost;
            self.reader = Some((swap.reader_page, 0, 0));
        } else {
            assert_eq!(swap.lost, 0, "a swap that did not swap lost events");
        }
        let index = swap.reader_index;
        assert!(index < self.ptrs.len(), "reader index {index}");
        assert_eq!(
            swap.reader_page, self.ptrs[index],
            "reader page and index disagree"
        );
        self.read();
        swap.swapped
    }

    /// Reads the reader page from where the reader stopped up to its `commit`.
    fn read(&mut self) {
        let Some((page, off, ts)) = self.reader else {
            return;
        };
        let mut copy = Box::new(Page([0; PAGE_SIZE]));
        // SAFETY: the reader page is the reader's (the writer never writes a page once it is
        // not its tail, and this single thread is not writing now); it is a live page.
        unsafe { std::ptr::copy_nonoverlapping(page.as_ptr(), copy.0.as_mut_ptr(), PAGE_SIZE) };
        let view = PageView::new(&copy.0);
        let data = view.data().expect("the writer's commit is within the page");
        assert!(
            off <= data.len(),
            "commit went backwards: {off} > {}",
            data.len()
        );
        let start_ts = if off == 0 { view.time_stamp() } else { ts };
        let mut records = Records::starting_at(data, off, start_ts);
        for rec in records.by_ref() {
            let (at, rec) = rec.unwrap_or_else(|e| panic!("page does not decode: {e}"));
            let Record::Data { ts, payload } = rec else {
                continue;
            };
            self.next_read +=
                usize::try_from(std::mem::take(&mut self.pending_lost)).expect("lost count fits");
            let expected = |w: &Written| {
                let mut want = vec![0u8; w.len.next_multiple_of(4).max(4)];
                pattern(w.seq, w.len, &mut want);
                want
            };
            if self.resync {
                // After a forgotten page: the first event from here on that is this one. It
                // must exist (nothing is invented, nothing reordered), and the ones skipped
                // were on the forgotten page. Events shorter than 8 bytes do not carry their
                // sequence number: while another later event would match as well, the next
                // event is placed the same way.
                let rest = &self.written[self.next_read.min(self.written.len())..];
                let matches = |w: &Written| w.ts == ts && expected(w) == payload;
                let found = rest.iter().position(matches).unwrap_or_else(|| {
                    panic!(
                        "after a forgotten page, an event at offset {at} that was not written next"
                    )
                });
                self.resync = rest[found + 1..].iter().any(matches);
                self.forgotten += found;
                self.next_read += found;
            }
            let Some(w) = self.written.get(self.next_read).copied() else {
                panic!(
                    "read an event at offset {at} beyond the {} written (lost {})",
                    self.written.len(),
                    self.lost
                );
            };
            assert_eq!(ts, w.ts, "timestamp of event {}", w.seq);
            assert_eq!(payload, &expected(&w)[..], "payload of event {}", w.seq);
            self.next_read += 1;
        }
        self.reader = Some((page, records.offset(), records.ts()));
    }

    fn scribble(&mut self, offset: usize, value: u64) {
        let Some((page, ..)) = self.reader else {
            return;
        };
        let at = offset % (PAGE_SIZE - 7);
        // SAFETY: the reader page is the reader's own to write (the host may write it at any
        // time); `at + 8 <= PAGE_SIZE`. The reader stops reading it: what it holds now is no
        // longer what the writer wrote.
        unsafe {
            std::ptr::copy_nonoverlapping(value.to_le_bytes().as_ptr(), page.as_ptr().add(at), 8)
        };
        // A reader that wrote over its page cannot read it: it forgets it, and the events the
        // writer may still add to it (it may be on the reader page) are neither read nor
        // lost. Every other check goes on; the next event read is found by its payload.
        self.reader = None;
        self.resync = true;
    }

    fn footers(&mut self) {
        let c = self
            .ring
            .update_footers()
            .expect("footers of a loaded ring");
        assert_eq!(c, self.ring.stats(), "footers and stats disagree");
        assert_eq!(c.entries, self.written.len() as u64, "entries");
        assert!(
            c.overrun >= self.lost,
            "overrun {} < lost {}",
            c.overrun,
            self.lost
        );
        assert!(
            c.overrun <= c.entries,
            "overrun {} > entries {}",
            c.overrun,
            c.entries
        );
    }

    /// Disables the writer and swaps until the writer's page is the reader's; then every event
    /// was read or reported lost.
    fn drain(&mut self) {
        self.ring.disable().expect("disable of a loaded ring");
        self.enabled = false;
        let bound = 2 * self.ptrs.len() + 2;
        let mut swaps = 0;
        while self.swap() {
            swaps += 1;
            assert!(swaps <= bound, "swapping a disabled ring never ends");
        }
        let accounted = self.next_read + self.pending_lost as usize;
        if self.resync {
            // Nothing placed for certain since the forgotten page: the rest was on it.
            assert!(
                accounted <= self.written.len(),
                "more read and lost than written"
            );
            self.forgotten += self.written.len() - accounted;
        } else {
            assert_eq!(
                accounted,
                self.written.len(),
                "read + lost != written (lost {}, forgotten {})",
                self.lost,
                self.forgotten
            );
        }
        assert_eq!(
            self.ring.stats().overrun,
            self.lost,
            "overrun != losses reported"
        );
    }
}

/// The structured input `data` decodes to.
pub fn describe(data: &[u8]) -> String {
    match Input::arbitrary_take_rest(Unstructured::new(data)) {
        Ok(input) => format!("{input:#?}"),
        Err(e) => format!("no input ({e})"),
    }
}

/// Runs one input.
pub fn run(data: &[u8]) {
    let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let ring_pages = 2 + usize::from(input.ring_pages) % (MAX_RING_PAGES - 1);
    let mut pages: Vec<Box<Page>> = (0..=ring_pages)
        .map(|_| Box::new(Page([0; PAGE_SIZE])))
        .collect();
    let ptrs: Vec<NonNull<u8>> = pages
        .iter_mut()
        .map(|p| NonNull::from(&mut p.0).cast())
        .collect();
    let descs: Vec<PageDesc> = (0..=ring_pages).map(|_| PageDesc::new()).collect();
    let ring = RingBuffer::new();
    let mut h = Harness {
        ring: &ring,
        descs: &descs,
        ptrs,
        written: Vec::new(),
        next_seq: 0,
        last_ts: 0,
        clock: 0,
        enabled: false,
        next_read: 0,
        pending_lost: 0,
        lost: 0,
        reader: None,
        resync: false,
        forgotten: 0,
    };
    h.load();
    for op in input.ops {
        match op {
            Op::Write { len, step } => h.write(usize::from(len) % MAX_LEN, step),
            Op::Burst { count, len, step } => {
                for _ in 0..4 * u32::from(count % 16) {
                    h.write(usize::from(len) % MAX_LEN, step);
                }
            }
            Op::Discard { len, step } => h.discard(usize::from(len) % MAX_LEN, step),
            Op::Swap => {
                h.swap();
            }
            Op::Footers => h.footers(),
            Op::Reset => {
                ring.reset().expect("reset of a loaded ring");
                h.emptied();
            }
            Op::Enable => {
                ring.enable().expect("enable of a loaded ring");
                h.enabled = true;
            }
            Op::Disable => {
                let was = ring.disable().expect("disable of a loaded ring");
                assert_eq!(was, h.enabled, "disable reports whether it was enabled");
                h.enabled = false;
            }
            Op::Reload => {
                ring.teardown().expect("teardown of a loaded ring");
                assert_eq!(ring.swap_reader(), Err(RingError::NotLoaded));
                assert!(!ring.write(0, &[0; 8]), "a torn-down ring takes no write");
                h.load();
            }
            Op::Scribble { offset, value } => h.scribble(usize::from(offset), value),
        }
    }
    h.drain();
    ring.teardown().expect("final teardown");
    drop(pages);
}
