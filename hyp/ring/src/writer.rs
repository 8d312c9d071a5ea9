//! The writer path: [`RingBuffer::reserve`], [`Reservation::commit`], and the page move.
//!
//! Only the CPU that owns the buffer runs this code. It never blocks: it takes the writer
//! status with one compare-and-swap per [`Batch`] (a single [`RingBuffer::reserve`] is a
//! batch of one), writes the record header, and on a full page moves the tail, pushing the
//! head (and dropping the oldest page) if it caught the reader. The events of a batch pay no
//! read-modify-write and no barrier beyond the Release store that publishes each commit.

use core::marker::PhantomData;

use hyptrace_abi::page::{record, FOOTER_COMMIT};

use crate::desc::{link, link_index, link_tag, PageDesc, LINK_HEAD, LINK_UPDATE};
use crate::page_io::PageRef;
use crate::sync::{self, Ordering};
use crate::{status, RingBuffer, CAPACITY};

/// Largest payload [`RingBuffer::reserve`] accepts: what always fits in an empty page even
/// behind a TIME_EXTEND (8) and with a length word (4 + 4). 4032 bytes.
pub const MAX_PAYLOAD: usize = CAPACITY - record::EXTEND_SIZE - 8;

/// Writer-private state; only the holder of the WRITING status (or a control operation that
/// has made the buffer NONWRITABLE under the control lock) touches it.
#[derive(Debug)]
pub(crate) struct WriterState<'a> {
    pub(crate) descs: &'a [PageDesc],
    pub(crate) tail: usize,
    pub(crate) tail_page: *mut u8,
    /// Bytes used in the tail page.
    pub(crate) write: usize,
    /// The writer's event count (`Hot::entries`) when the tail page got its first event:
    /// the page's own count is the difference, taken when the tail moves on, so an event
    /// pays no per-page counter.
    pub(crate) tail_first_entry: u64,
    pub(crate) last_ts: u64,
    pub(crate) overrun: u64,
    pub(crate) pages_touched: u64,
}

impl WriterState<'_> {
    sync::const_unless_loom! {
        pub(crate) fn new() -> Self {
            Self {
                descs: &[],
                tail: 0,
                tail_page: core::ptr::null_mut(),
                write: 0,
                tail_first_entry: 0,
                last_ts: 0,
                overrun: 0,
                pages_touched: 0,
            }
        }
    }
}

/// A reserved, not yet committed event. Fill the payload with [`write_at`](Self::write_at)
/// and publish it with [`commit`](Self::commit); dropping it discards the event.
///
/// While it exists the buffer's status is WRITING: disable and teardown wait for it. It is
/// bound to the thread (CPU) that reserved it: it is neither `Send` nor `Sync`. One taken
/// from a [`Batch`] borrows the batch, which keeps the status until it is dropped.
///
/// ```
/// # use core::ptr::NonNull;
/// # use hyptrace_ring::{PageDesc, RingBuffer};
/// # #[repr(C, align(4096))] struct Page([u8; 4096]);
/// # let mut pages: Vec<Box<Page>> = (0..3).map(|_| Box::new(Page([0; 4096]))).collect();
/// # let addrs: Vec<NonNull<u8>> = pages.iter_mut().map(|p| NonNull::from(&mut p.0).cast()).collect();
/// # let descs: Vec<PageDesc> = (0..3).map(|_| PageDesc::new()).collect();
/// # let ring = RingBuffer::new();
/// # // SAFETY: live, distinct, aligned pages, used only through the ring.
/// # unsafe { ring.load(&descs, addrs[0], addrs[1..].iter().copied()) }.unwrap();
/// # ring.enable().unwrap();
/// // An event of two fields, written in place with no intermediate buffer.
/// let mut r = ring.reserve(42, 12).expect("enabled, and 12 bytes fit");
/// assert!(r.write_at(0, &7u32.to_le_bytes()));
/// assert!(r.write_at(4, &0xdead_beef_u64.to_le_bytes()));
/// assert!(!r.write_at(8, &[0; 8]), "past the reserved length: refused");
/// r.commit();
/// assert_eq!(ring.stats().entries, 1);
/// ```
#[derive(Debug)]
#[must_use = "an uncommitted reservation discards the event"]
pub struct Reservation<'r, 'a> {
    ring: &'r RingBuffer<'a>,
    page: PageRef,
    payload: usize,
    len: usize,
    end: usize,
    ts: u64,
    /// Whether this reservation took the status itself (and gives it back when it ends), or
    /// belongs to a [`Batch`], which does.
    releases: bool,
}

impl Reservation<'_, '_> {
    /// Requested payload length.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the payload is empty (a zero-length event is stored as 4 zero bytes).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The event's timestamp (the caller's, raised to the previous one if it went backwards).
    pub fn timestamp(&self) -> u64 {
        self.ts
    }

    /// Copies `bytes` into the payload at `offset`. Returns false (and writes nothing) if
    /// that would run past [`len`](Self::len). Bytes never written keep whatever the page
    /// held, except the padding up to the next multiple of 4, which is zero.
    #[inline(always)]
    pub fn write_at(&mut self, offset: usize, bytes: &[u8]) -> bool {
        match offset.checked_add(bytes.len()) {
            Some(end) if end <= self.len => {
                // The payload starts word-aligned (records are 4-aligned), so a word-aligned
                // `offset` (a constant at most call sites) gets word stores.
                debug_assert!(self.payload.is_multiple_of(4));
                if offset.is_multiple_of(4) {
                    self.page.write_aligned(self.payload + offset, bytes);
                } else {
                    self.page.write_bytes(self.payload + offset, bytes);
                }
                true
            }
            _ => false,
        }
    }

    /// Publishes the event: the page's `commit` becomes visible to the reader only now.
    #[inline(always)]
    pub fn commit(self) {
        let ring = self.ring;
        // Release: pairs with the reader's Acquire load of `commit`, so a reader that sees
        // the new length also sees the header words and payload written before it.
        self.page
            .header()
            .commit
            .store(self.end as u64, Ordering::Release);
        let cell = ring.hot.0.writer.get_mut();
        // SAFETY: this reservation holds the WRITING status (taken in `reserve`), which gives
        // exclusive access to the writer state until `drop` below releases it.
        let st = unsafe { cell.deref() };
        st.write = self.end;
        st.last_ts = self.ts;
        // Relaxed, load and store rather than an atomic add (only this writer stores it, and
        // the status excludes other writers): a statistic that footer updates read under no
        // ordering requirement.
        let entries = ring.hot.0.entries.load(Ordering::Relaxed);
        ring.hot.0.entries.store(entries + 1, Ordering::Relaxed);
        drop(cell);
        // `self` drops here and releases WRITING (unless a batch holds it).
    }
}

impl Drop for Reservation<'_, '_> {
    #[inline(always)]
    fn drop(&mut self) {
        if self.releases {
            self.ring.release();
        }
    }
}

/// The writer status held for several events: one compare-and-swap for all of them.
///
/// Take it with [`RingBuffer::batch`], write with [`reserve`](Self::reserve) or
/// [`write`](Self::write), drop it to let control operations in. While it exists the status
/// is WRITING, so `disable`, `reset` and `teardown` wait for it (and `swap_reader`, which
/// never waits for the writer, goes on): keep it for a bounded run of events, such as those
/// one exception writes, and never across a call that may run one of those control
/// operations on the same buffer, which would wait for it forever. A control operation that
/// waits raises the stop flag, which every event of a batch checks: the batch then refuses
/// its further events, so the wait lasts at most one event.
///
/// It is bound to the thread (CPU) that took it: it is neither `Send` nor `Sync`.
///
/// ```
/// # use core::ptr::NonNull;
/// # use hyptrace_ring::{PageDesc, RingBuffer};
/// # #[repr(C, align(4096))] struct Page([u8; 4096]);
/// # let mut pages: Vec<Box<Page>> = (0..3).map(|_| Box::new(Page([0; 4096]))).collect();
/// # let addrs: Vec<NonNull<u8>> = pages.iter_mut().map(|p| NonNull::from(&mut p.0).cast()).collect();
/// # let descs: Vec<PageDesc> = (0..3).map(|_| PageDesc::new()).collect();
/// # let ring = RingBuffer::new();
/// # // SAFETY: live, distinct, aligned pages, used only through the ring.
/// # unsafe { ring.load(&descs, addrs[0], addrs[1..].iter().copied()) }.unwrap();
/// # ring.enable().unwrap();
/// // The three events of one trap, under one status handshake.
/// let mut batch = ring.batch().expect("enabled");
/// assert!(batch.write(100, b"enter"));
/// let mut r = batch.reserve(110, 8).expect("8 bytes fit");
/// assert!(r.write_at(0, &0x1234_u64.to_le_bytes()));
/// r.commit();
/// assert!(batch.write(120, b"exit"));
/// drop(batch);
/// assert_eq!(ring.stats().entries, 3);
/// assert!(ring.disable()?, "the batch is over: disable does not wait");
/// assert!(ring.batch().is_none(), "disabled");
/// # Ok::<(), hyptrace_ring::RingError>(())
/// ```
#[derive(Debug)]
#[must_use = "a batch keeps control operations waiting until it is dropped"]
pub struct Batch<'r, 'a> {
    ring: &'r RingBuffer<'a>,
    /// Bound to the CPU that took the status.
    _not_send: PhantomData<*mut ()>,
}

impl<'a> Batch<'_, 'a> {
    /// Reserves room for an event of `len` payload bytes at time `ts` (ns), as
    /// [`RingBuffer::reserve`] does, without another handshake.
    ///
    /// Returns `None` when `len` exceeds [`MAX_PAYLOAD`] or a control operation is waiting
    /// for the writer (the batch should then end: every further event is refused too, until
    /// a control operation clears the stop flag).
    #[inline(always)]
    pub fn reserve(&mut self, ts: u64, len: usize) -> Option<Reservation<'_, 'a>> {
        let ring = self.ring;
        // Relaxed: a liveness hint, as in `RingBuffer::reserve`; the batch's status
        // handshake is what keeps control operations out, and it holds until the drop.
        if ring.hot.0.stop.load(Ordering::Relaxed) {
            return None;
        }
        // SAFETY: this batch holds the WRITING status until it is dropped, which the
        // reservation's borrow of it prevents while the reservation lives.
        unsafe { ring.reserve_held(ts, len, false) }
    }

    /// Writes one event (`reserve` + copy + `commit`). Returns whether it was written.
    #[inline(always)]
    pub fn write(&mut self, ts: u64, payload: &[u8]) -> bool {
        commit_copy(self.reserve(ts, payload.len()), payload)
    }
}

impl Drop for Batch<'_, '_> {
    #[inline(always)]
    fn drop(&mut self) {
        self.ring.release();
    }
}

/// The `write` of a [`RingBuffer`] or a [`Batch`]: copies `payload` into the reservation (of
/// exactly its length) and commits it. Returns whether there was a reservation.
#[inline(always)]
fn commit_copy(reservation: Option<Reservation<'_, '_>>, payload: &[u8]) -> bool {
    match reservation {
        Some(mut r) => {
            r.write_at(0, payload);
            r.commit();
            true
        }
        None => false,
    }
}

#[inline(always)]
const fn rounded_payload(len: usize) -> usize {
    if len == 0 {
        4
    } else {
        (len + 3) & !3
    }
}

#[inline(always)]
const fn record_size(rounded: usize) -> usize {
    if rounded <= record::MAX_SMALL_DATA {
        record::HEADER + rounded
    } else {
        record::HEADER + 4 + rounded
    }
}

/// Bytes an event with this payload length occupies on a page (without a TIME_EXTEND).
///
/// ```
/// use hyptrace_ring::event_size;
///
/// assert_eq!(event_size(0), 8); // header word + one zero word
/// assert_eq!(event_size(5), 12); // header word + payload rounded up to 8
/// assert_eq!(event_size(200), 208); // header word + length word + 200
/// ```
pub const fn event_size(len: usize) -> usize {
    record_size(rounded_payload(len))
}

impl<'a> RingBuffer<'a> {
    /// Reserves room for an event of `len` payload bytes at time `ts` (ns).
    ///
    /// Returns `None` when the buffer is not writable (not loaded, disabled, or another write
    /// is in flight) or when `len` exceeds [`MAX_PAYLOAD`]. Otherwise it always succeeds: when
    /// the tail page is full it moves on, overwriting the oldest page if need be. It never
    /// blocks and never waits.
    ///
    /// Timestamps should not go backwards; one that does is raised to the previous one.
    #[inline(always)]
    pub fn reserve(&self, ts: u64, len: usize) -> Option<Reservation<'_, 'a>> {
        if len > MAX_PAYLOAD {
            return None;
        }
        if !self.acquire() {
            return None;
        }
        // SAFETY: `acquire` just took the WRITING status; the reservation gives it back.
        unsafe { self.reserve_held(ts, len, true) }
    }

    /// Takes the writer status for a [`Batch`] of events: one compare-and-swap for all of
    /// them instead of one each.
    ///
    /// Returns `None` when the buffer is not writable (not loaded, disabled, another write or
    /// batch in flight, or a control operation waiting). It never blocks and never waits.
    #[inline(always)]
    pub fn batch(&self) -> Option<Batch<'_, 'a>> {
        // Built only once the status is taken: a `Batch` gives it back when dropped.
        if !self.acquire() {
            return None;
        }
        Some(Batch {
            ring: self,
            _not_send: PhantomData,
        })
    }

    /// The writer's entry: the stop hint, then WRITABLE -> WRITING. Returns whether the
    /// status was taken.
    #[inline(always)]
    fn acquire(&self) -> bool {
        let hot = &self.hot.0;
        // Relaxed: a liveness hint (see `Hot::stop`); the compare-and-swap below decides.
        if hot.stop.load(Ordering::Relaxed) {
            return false;
        }
        // Acquire: pairs with the Release store of WRITABLE by `enable`/`reset` (the ring
        // they set up is visible) and by the previous writer's exit (`release`).
        hot.status
            .compare_exchange(
                status::WRITABLE,
                status::WRITING,
                Ordering::Acquire,
                Ordering::Relaxed,
            )
            .is_ok()
    }

    /// The writer's exit: WRITING -> WRITABLE.
    #[inline(always)]
    fn release(&self) {
        // Release: pairs with the Acquire compare-and-swap of the next writer entry
        // (`acquire`) and of the disable handshake, which therefore see every write the
        // events since `acquire` made.
        self.hot.0.status.store(status::WRITABLE, Ordering::Release);
    }

    /// The reservation proper, once the status is held.
    ///
    /// # Safety
    /// The caller holds the WRITING status (taken by `acquire` and not released), and no
    /// other reservation of this buffer is alive. With `releases` the reservation gives the
    /// status back when it ends (committed or dropped).
    #[inline(always)]
    unsafe fn reserve_held(
        &self,
        ts: u64,
        len: usize,
        releases: bool,
    ) -> Option<Reservation<'_, 'a>> {
        if len > MAX_PAYLOAD {
            if releases {
                self.release();
            }
            return None;
        }
        let cell = self.hot.0.writer.get_mut();
        // SAFETY: the caller holds the WRITING status, which excludes every other writer and
        // every control operation that touches the writer state (they first make the status
        // NONWRITABLE, which they cannot do while it is WRITING), and no other reservation
        // is alive.
        let st = unsafe { cell.deref() };

        let ts = if ts < st.last_ts { st.last_ts } else { ts };
        let delta = ts - st.last_ts;
        let rounded = rounded_payload(len);
        let rec = record_size(rounded);
        // The fast path, one test: the delta fits the record header, and the tail page has
        // events already and room for the record. Everything else (the first event of a page,
        // a TIME_EXTEND, a page move) is out of line, at most once per page or per long
        // pause.
        let room = st.write != 0 && st.write + rec <= CAPACITY;
        let (write, delta) = if delta <= record::MAX_DELTA && room {
            (st.write, delta as u32)
        } else {
            (self.reserve_slow(st, ts, delta, rec), 0)
        };
        // SAFETY: `tail_page` was taken from a loaded descriptor (see `PageDesc::page_ref`).
        let page = unsafe { PageRef::new(st.tail_page) };
        let payload = if rounded <= record::MAX_SMALL_DATA {
            page.write_u32(write, record::header((rounded / 4) as u32, delta));
            write + 4
        } else {
            page.write_u32(write, record::header(0, delta));
            page.write_u32(write + 4, (rounded + 4) as u32);
            write + 8
        };
        if rounded != len {
            // Zero the padding (and the whole word of a zero-length event).
            page.write_u32(payload + rounded - 4, 0);
        }
        drop(cell);
        Some(Reservation {
            ring: self,
            page,
            payload,
            len,
            end: payload + rounded,
            ts,
            releases,
        })
    }

    /// Writes one event (`reserve` + copy + `commit`). Returns whether it was written.
    #[inline(always)]
    pub fn write(&self, ts: u64, payload: &[u8]) -> bool {
        commit_copy(self.reserve(ts, payload.len()), payload)
    }

    /// The reservation's rare cases, for a record of `rec` bytes at `ts`, `delta` after the
    /// previous event: a TIME_EXTEND before it when the delta does not fit the record header
    /// (and the extend fits the page), otherwise the first event of a page, which carries
    /// the time in the page header (after moving the tail when the page has events). Returns
    /// where the record goes; its own delta is then 0.
    #[cold]
    #[inline(never)]
    fn reserve_slow(&self, st: &mut WriterState<'a>, ts: u64, delta: u64, rec: usize) -> usize {
        let write = st.write;
        if write != 0
            && delta <= record::MAX_EXTEND_DELTA
            && write + record::EXTEND_SIZE + rec <= CAPACITY
        {
            // SAFETY: `tail_page` was taken from a loaded descriptor.
            let page = unsafe { PageRef::new(st.tail_page) };
            page.write_u32(
                write,
                record::header(record::TIME_EXTEND, (delta & record::MAX_DELTA) as u32),
            );
            page.write_u32(write + 4, (delta >> record::TIME_DELTA_BITS) as u32);
            return write + record::EXTEND_SIZE;
        }
        if write != 0 {
            self.move_tail(st);
        }
        // SAFETY: as above (`move_tail` took the new tail from a loaded descriptor).
        let page = unsafe { PageRef::new(st.tail_page) };
        // First event of the page: the page timestamp carries the time, delta 0.
        // Relaxed: published by the Release store of `commit` in `commit`.
        page.header().time_stamp.store(ts, Ordering::Relaxed);
        0
    }

    /// Moves the tail to the next page, pushing the head if the writer caught it.
    #[cold]
    #[inline(never)]
    fn move_tail(&self, st: &mut WriterState<'a>) {
        let descs = st.descs;
        let t = st.tail;
        let next = loop {
            // Acquire: pairs with the AcqRel compare-and-swap by which `swap_reader` puts
            // the old reader page in the head's place, so its reset descriptor is visible.
            let l = descs[t].link.load(Ordering::Acquire);
            let n = link_index(l);
            if l & LINK_HEAD == 0 {
                break n;
            }
            // The next page is the head: the ring is full, push the head one page on.
            let moving = link(n, LINK_UPDATE, link_tag(l).wrapping_add(1));
            // Acquire on success: pairs with the swap's AcqRel CAS that last wrote this
            // link. Failure means the reader swapped the head away meanwhile: reload.
            if descs[t]
                .link
                .compare_exchange(l, moving, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
            {
                continue;
            }
            // Relaxed: entries of a page are only written by this writer (on leaving), by
            // load/reset, or by a swap before its AcqRel CAS of the link this writer acquired
            // above, all ordered before this point.
            st.overrun += u64::from(descs[n].entries.load(Ordering::Relaxed));
            // Release: pairs with the Acquire load of `overrun` in `swap_reader`, which
            // happens after it has acquired the HEAD link stored just below.
            self.shared.0.overrun.store(st.overrun, Ordering::Release);
            // Relaxed: while `t`'s link is UPDATE nobody else writes `n`'s link.
            let nl = descs[n].link.load(Ordering::Relaxed);
            // Release: pairs with the Acquire loads of the head search, so a reader that
            // finds this HEAD also sees the overrun stored above.
            descs[n].link.store(
                link(link_index(nl), LINK_HEAD, link_tag(nl).wrapping_add(1)),
                Ordering::Release,
            );
            // Release: pairs with the head search's Acquire loads (the UPDATE is over).
            descs[t].link.store(
                link(n, 0, link_tag(moving).wrapping_add(1)),
                Ordering::Release,
            );
            break n;
        };
        // Relaxed: only this writer stores `entries` (the status excludes others).
        let entries = self.hot.0.entries.load(Ordering::Relaxed);
        // At most a page's worth of events (4048 / 8), so the difference fits.
        let tail_entries = (entries - st.tail_first_entry) as u32;
        // Relaxed: read by this writer later (a push) or zeroed by a swap that is ordered
        // after our `tail` store below.
        descs[t].entries.store(tail_entries, Ordering::Relaxed);
        let old = descs[t].page_ref();
        let new = descs[next].page_ref();
        // Relaxed: nobody may read a ring page the writer is about to fill; the reader gets
        // it only through a swap, ordered by the link and `tail` synchronisation.
        new.header().commit.store(0, Ordering::Relaxed);
        new.footer()
            .writer_status
            .store(FOOTER_COMMIT, Ordering::Relaxed);
        // Release: pairs with the Acquire load of `tail` in `swap_reader` (a swap that sees
        // the writer gone from the reader page also sees its final `commit`).
        self.shared.0.tail.store(next, Ordering::Release);
        // Release: pairs with the host reader's Acquire load of `writer_status`: once it
        // reads 0 here, the page's final `commit` (and `tail` above) are visible to it.
        old.footer().writer_status.store(0, Ordering::Release);
        st.pages_touched += 1;
        // Relaxed: a statistic.
        self.shared
            .0
            .pages_touched
            .store(st.pages_touched, Ordering::Relaxed);
        st.tail = next;
        st.tail_page = descs[next].page_ptr();
        st.write = 0;
        st.tail_first_entry = entries;
    }
}
