//! The external writer of one CPU's ftrace ring buffer (gen-1 pKVM "ext" ring buffer).
//!
//! A [`RingBuffer`] writes ftrace-format pages that the host allocated and reads. Its control
//! state (tail, head, write index, counters, page links) lives in hypervisor memory: in the
//! `RingBuffer` value itself and in the [`PageDesc`] array the caller supplies from a private
//! pool. The shared pages are written, never read, so nothing the host stores in them can
//! change where or how much the writer writes.
//!
//! Who may call what:
//! - [`RingBuffer::reserve`] / [`RingBuffer::write`]: the CPU that owns the buffer. They never
//!   block and never wait. Two concurrent callers are harmless: one of them drops its event.
//! - [`RingBuffer::swap_reader`], [`RingBuffer::update_footers`], [`RingBuffer::reset`],
//!   [`RingBuffer::enable`], [`RingBuffer::disable`], [`RingBuffer::load`],
//!   [`RingBuffer::teardown`]: any CPU, concurrently with the writer. They serialise among
//!   themselves with a per-buffer lock; the writer never takes it.
//!
//! `docs/ring-buffer.md` describes the page format, the algorithms and every memory ordering.

// The `drop(cell)` calls end the access to the writer state explicitly: a no-op with `core`
// cells, the end of the tracked access under loom.
#![allow(clippy::drop_non_drop)]

use crate::abi::page::{
    record, FOOTER_COMMIT, FOOTER_HEAD, FOOTER_READER, PAGE_SIZE, WRITER_NONWRITABLE,
    WRITER_WRITABLE, WRITER_WRITING,
};
use crate::abi::HypError;

pub mod clock_banks;
pub(crate) mod page_io;
pub(crate) mod sync;

#[cfg(loom)]
pub use page_io::LoomPage;

use page_io::PageRef;
use sync::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Mutex, Ordering, UnsafeCell};

#[cfg(all(test, not(loom)))]
mod tests;

#[cfg(all(test, loom))]
mod loom_tests;

/// Bytes of record data per page the writer uses: [`DATA_SIZE`](crate::abi::page::DATA_SIZE)
/// (4048). Under `--cfg loom` pages are tiny (24 bytes) so a handful of events fills them.
#[cfg(not(loom))]
pub const CAPACITY: usize = crate::abi::page::DATA_SIZE;
/// Bytes of record data per page the writer uses (loom models use tiny pages).
#[cfg(loom)]
pub const CAPACITY: usize = 24;

/// Largest payload [`RingBuffer::reserve`] accepts: what always fits in an empty page even
/// behind a TIME_EXTEND (8) and with a length word (4 + 4). 4032 bytes.
pub const MAX_PAYLOAD: usize = CAPACITY - record::EXTEND_SIZE - 8;

/// Most ring pages per CPU (the link word keeps 30 bits of descriptor index).
pub const MAX_RING_PAGES: usize = (1 << 30) - 2;

/// How many times [`RingBuffer::swap_reader`] retries its compare-and-swap.
pub const SWAP_ATTEMPTS: u32 = 8;
/// How many full walks of the ring a head search makes before giving up.
pub const HEAD_SEARCH_ATTEMPTS: u32 = 16;

// Link word: bits 0..1 flags, 2..31 descriptor index, 32..63 tag (incremented on every write
// so a compare-and-swap never succeeds on a stale value that happens to look the same).
const LINK_HEAD: u64 = 1;
const LINK_UPDATE: u64 = 2;
#[cfg(all(test, not(loom)))]
const LINK_FLAGS: u64 = 3;

#[inline(always)]
const fn link(index: usize, flags: u64, tag: u32) -> u64 {
    ((tag as u64) << 32) | ((index as u64) << 2) | flags
}

#[inline(always)]
const fn link_index(l: u64) -> usize {
    ((l as u32) >> 2) as usize
}

#[inline(always)]
const fn link_tag(l: u64) -> u32 {
    (l >> 32) as u32
}

/// Hypervisor-private descriptor of one page of a ring: where the page is, which page follows
/// it (with the HEAD / UPDATE flags), and how many events it holds.
///
/// The caller provides `nr_pages + 1` of them (ring pages plus the reader page) from memory
/// the host cannot write, e.g. a static pool; [`DESC_SIZE`] bytes each.
#[derive(Debug)]
pub struct PageDesc {
    /// Next page's index, flags and tag.
    link: AtomicU64,
    /// Page address.
    page: AtomicUsize,
    /// Events on the page, stored by the writer when it leaves the page.
    entries: AtomicU32,
}

/// Size of one [`PageDesc`] (export it to the host to size descriptor pools).
pub const DESC_SIZE: usize = core::mem::size_of::<PageDesc>();

impl PageDesc {
    sync::const_unless_loom! {
        /// An unused descriptor (usable in a `static` pool).
        pub fn new() -> Self {
            Self {
                link: AtomicU64::new(0),
                page: AtomicUsize::new(0),
                entries: AtomicU32::new(0),
            }
        }
    }

    #[inline(always)]
    fn page_ref(&self) -> PageRef {
        // SAFETY: descriptors in a loaded ring only hold page addresses accepted by
        // `RingBuffer::load`, whose contract makes them valid pages while loaded. The
        // ordering: `page` is stored only by `load`, under the control lock and before the
        // status release store that lets a writer in (or the lock release), so Relaxed reads
        // by a writer or lock holder see it.
        unsafe { PageRef::new(self.page.load(Ordering::Relaxed)) }
    }
}

impl Default for PageDesc {
    fn default() -> Self {
        Self::new()
    }
}

/// Counters of a ring, as kept by the writer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RingStats {
    /// Events written since load or reset.
    pub entries: u64,
    /// Events lost to overwrite since load or reset (current value, not the swap snapshot).
    pub overrun: u64,
    /// Tail moves since load or reset.
    pub pages_touched: u64,
}

/// Result of [`RingBuffer::swap_reader`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Swap {
    /// Whether pages were swapped. `false` when the writer is still on the reader page: the
    /// reader keeps its page and should read up to the page's `commit` again later.
    pub swapped: bool,
    /// Address of the (new) reader page.
    pub reader_page: usize,
    /// Descriptor index of the reader page (0..=nr_pages).
    pub reader_index: usize,
    /// Events lost to overwrite since the previous swap (0 when not swapped).
    pub lost: u64,
}

/// Writer-private state; only the holder of the WRITING status (or a control operation that
/// has made the buffer NONWRITABLE under the control lock) touches it.
#[derive(Debug)]
struct WriterState<'a> {
    descs: &'a [PageDesc],
    tail: usize,
    tail_page: usize,
    /// Bytes used in the tail page.
    write: usize,
    tail_entries: u32,
    last_ts: u64,
    entries: u64,
    overrun: u64,
    pages_touched: u64,
}

impl WriterState<'_> {
    sync::const_unless_loom! {
        fn new() -> Self {
            Self {
                descs: &[],
                tail: 0,
                tail_page: 0,
                write: 0,
                tail_entries: 0,
                last_ts: 0,
                entries: 0,
                overrun: 0,
                pages_touched: 0,
            }
        }
    }
}

/// Control state, behind the control lock.
#[derive(Debug)]
struct Control<'a> {
    descs: &'a [PageDesc],
    loaded: bool,
    reader: usize,
    /// A ring page at or before the head (ideally its predecessor): where head searches
    /// start.
    head_hint: usize,
    /// The page whose footer carries HEAD.
    footer_head: usize,
    /// Overrun reported up to the previous swap.
    last_overrun: u64,
}

/// Keeps what it holds on its own cache line(s).
#[derive(Debug)]
#[repr(align(64))]
struct CacheLine<T>(T);

/// Hot writer fields: one line the writer owns.
#[derive(Debug)]
struct Hot<'a> {
    status: AtomicU32,
    /// Set while a control operation waits for the writer to leave: the writer does not
    /// start new writes, so a writer in a tight loop cannot starve disable/reset/teardown.
    /// Liveness only: safety comes from the `status` handshake alone.
    stop: AtomicBool,
    writer: UnsafeCell<WriterState<'a>>,
    /// Copy of `WriterState::entries` for readers of the statistics.
    entries: AtomicU64,
}

/// Fields the writer changes on page moves only and the control side reads.
#[derive(Debug)]
struct Shared {
    tail: AtomicUsize,
    overrun: AtomicU64,
    pages_touched: AtomicU64,
}

/// One CPU's ring buffer: a single external writer over host-provided pages.
///
/// Create it unloaded with [`RingBuffer::new`] (a `const fn`, so it can live in a per-CPU
/// static), [`load`](Self::load) it with pages and descriptors, [`enable`](Self::enable) it,
/// then write from its CPU with [`reserve`](Self::reserve) or [`write`](Self::write).
#[derive(Debug)]
pub struct RingBuffer<'a> {
    hot: CacheLine<Hot<'a>>,
    shared: CacheLine<Shared>,
    control: CacheLine<Mutex<Control<'a>>>,
}

// SAFETY: the writer state is only touched by whoever owns the WRITING status (at most one
// CPU, acquired by compare-and-swap) or by a control operation that holds the control lock
// and has made the status NONWRITABLE with the disable handshake, which excludes writers.
// Everything else is atomics or behind the lock.
unsafe impl Sync for RingBuffer<'_> {}
// SAFETY: the buffer holds shared references to `Sync` descriptors and plain data; moving it
// between threads moves no thread-bound state.
unsafe impl Send for RingBuffer<'_> {}

/// A reserved, not yet committed event. Fill the payload with [`write_at`](Self::write_at)
/// and publish it with [`commit`](Self::commit); dropping it discards the event.
///
/// While it exists the buffer's status is WRITING: disable and teardown wait for it.
#[derive(Debug)]
#[must_use = "an uncommitted reservation discards the event"]
pub struct Reservation<'r, 'a> {
    ring: &'r RingBuffer<'a>,
    page: PageRef,
    payload: usize,
    len: usize,
    end: usize,
    ts: u64,
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
        st.tail_entries += 1;
        st.last_ts = self.ts;
        st.entries += 1;
        // Relaxed: a statistic; footer updates read it under no ordering requirement.
        ring.hot.0.entries.store(st.entries, Ordering::Relaxed);
        drop(cell);
        // `self` drops here and releases WRITING.
    }
}

impl Drop for Reservation<'_, '_> {
    #[inline(always)]
    fn drop(&mut self) {
        // Release: pairs with the Acquire compare-and-swap of the next writer entry and of
        // the disable handshake, which therefore see every write this event made.
        self.ring
            .hot
            .0
            .status
            .store(WRITER_WRITABLE, Ordering::Release);
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

/// Bytes an event with this payload length occupies (without a TIME_EXTEND).
pub const fn event_size(len: usize) -> usize {
    record_size(rounded_payload(len))
}

impl<'a> RingBuffer<'a> {
    sync::const_unless_loom! {
        /// An unloaded, non-writable buffer.
        pub fn new() -> Self {
            Self {
                hot: CacheLine(Hot {
                    status: AtomicU32::new(WRITER_NONWRITABLE),
                    stop: AtomicBool::new(false),
                    writer: UnsafeCell::new(WriterState::new()),
                    entries: AtomicU64::new(0),
                }),
                shared: CacheLine(Shared {
                    tail: AtomicUsize::new(0),
                    overrun: AtomicU64::new(0),
                    pages_touched: AtomicU64::new(0),
                }),
                control: CacheLine(Mutex::new(Control {
                    descs: &[],
                    loaded: false,
                    reader: 0,
                    head_hint: 0,
                    footer_head: 0,
                    last_overrun: 0,
                })),
            }
        }
    }

    // ----------------------------------------------------------------------------------
    // Writer side
    // ----------------------------------------------------------------------------------

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
        let hot = &self.hot.0;
        // Relaxed: a liveness hint (see `Hot::stop`); the compare-and-swap below decides.
        if hot.stop.load(Ordering::Relaxed) {
            return None;
        }
        // Acquire: pairs with the Release store of WRITABLE by `enable`/`reset` (the ring
        // they set up is visible) and by the previous writer's exit.
        if hot
            .status
            .compare_exchange(
                WRITER_WRITABLE,
                WRITER_WRITING,
                Ordering::Acquire,
                Ordering::Relaxed,
            )
            .is_err()
        {
            return None;
        }
        let cell = hot.writer.get_mut();
        // SAFETY: we just took the WRITING status, which excludes every other writer and
        // every control operation that touches the writer state (they first make the status
        // NONWRITABLE, which they cannot do while it is WRITING).
        let st = unsafe { cell.deref() };

        let ts = if ts < st.last_ts { st.last_ts } else { ts };
        let delta = ts - st.last_ts;
        let rounded = rounded_payload(len);
        let rec = record_size(rounded);
        let mut write = st.write;
        let mut extend = write != 0 && delta > record::MAX_DELTA;
        let need = rec + if extend { record::EXTEND_SIZE } else { 0 };
        if write + need > CAPACITY || (extend && delta > record::MAX_EXTEND_DELTA) {
            self.move_tail(st);
            write = 0;
            extend = false;
        }
        // SAFETY: `tail_page` was taken from a loaded descriptor (see `PageDesc::page_ref`).
        let page = unsafe { PageRef::new(st.tail_page) };
        let delta = if write == 0 {
            // First event of the page: the page timestamp carries the time, delta 0.
            // Relaxed: published by the Release store of `commit` in `commit`.
            page.header().time_stamp.store(ts, Ordering::Relaxed);
            0
        } else {
            delta
        };
        if extend {
            page.write_u32(
                write,
                record::header(record::TIME_EXTEND, (delta & record::MAX_DELTA) as u32),
            );
            page.write_u32(write + 4, (delta >> record::TIME_DELTA_BITS) as u32);
            write += record::EXTEND_SIZE;
        }
        let small = rounded <= record::MAX_SMALL_DATA;
        let payload = if small {
            // `extend` implies the data record's own delta is 0.
            let d = if extend { 0 } else { delta as u32 };
            page.write_u32(write, record::header((rounded / 4) as u32, d));
            write + 4
        } else {
            let d = if extend { 0 } else { delta as u32 };
            page.write_u32(write, record::header(0, d));
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
        })
    }

    /// Writes one event (`reserve` + copy + `commit`). Returns whether it was written.
    #[inline(always)]
    pub fn write(&self, ts: u64, payload: &[u8]) -> bool {
        match self.reserve(ts, payload.len()) {
            Some(mut r) => {
                r.write_at(0, payload);
                r.commit();
                true
            }
            None => false,
        }
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
        // Relaxed: read by this writer later (a push) or zeroed by a swap that is ordered
        // after our `tail` store below.
        descs[t].entries.store(st.tail_entries, Ordering::Relaxed);
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
        st.tail_page = descs[next].page.load(Ordering::Relaxed);
        st.write = 0;
        st.tail_entries = 0;
    }

    // ----------------------------------------------------------------------------------
    // Control side
    // ----------------------------------------------------------------------------------

    /// Loads the buffer: descriptor `0` becomes the reader page, `1..=n` the ring pages in
    /// the order given. The buffer stays non-writable until [`enable`](Self::enable).
    ///
    /// Errors: [`HypError::AlreadyLoaded`]; [`HypError::PackPageCount`] for fewer than two
    /// ring pages; [`HypError::NoMemory`] if `descs` is too short (it needs `n + 1` entries)
    /// or `n` exceeds [`MAX_RING_PAGES`]; [`HypError::PageMisaligned`] for an address that is
    /// 0 or not 4096-aligned. On error nothing is written to any page.
    ///
    /// # Safety
    /// Every address (reader and ring pages) must be the address, in this address space, of a
    /// distinct 4096-byte page that stays mapped readable and writable until
    /// [`teardown`](Self::teardown) returns, and that Rust code accesses only through the
    /// page layout's atomics or raw reads (the host, or a host-side reader following the
    /// reader protocol, is fine). `descs` must not be in memory the host can write.
    pub unsafe fn load(
        &self,
        descs: &'a [PageDesc],
        reader_page: usize,
        ring_pages: impl IntoIterator<Item = usize>,
    ) -> Result<(), HypError> {
        let mut ctl = self.control.0.lock();
        if ctl.loaded {
            return Err(HypError::AlreadyLoaded);
        }
        let aligned = |a: usize| a != 0 && a.is_multiple_of(PAGE_SIZE);
        if descs.is_empty() {
            return Err(HypError::NoMemory);
        }
        if !aligned(reader_page) {
            return Err(HypError::PageMisaligned);
        }
        let mut n = 0usize;
        for addr in ring_pages {
            if !aligned(addr) {
                return Err(HypError::PageMisaligned);
            }
            n += 1;
            if n > MAX_RING_PAGES {
                return Err(HypError::NoMemory);
            }
            let d = descs.get(n).ok_or(HypError::NoMemory)?;
            // Relaxed: published to the writer by `enable`'s Release store, to control
            // operations by the lock.
            d.page.store(addr, Ordering::Relaxed);
        }
        if n < 2 {
            return Err(HypError::PackPageCount);
        }
        descs[0].page.store(reader_page, Ordering::Relaxed);
        let descs = &descs[..n + 1];
        ctl.descs = descs;
        // SAFETY: not loaded, so the status is NONWRITABLE (only `enable` on a loaded buffer
        // sets WRITABLE) and we hold the lock: no writer and no control operation runs.
        unsafe { self.init_layout(&mut ctl, 0) };
        ctl.loaded = true;
        Ok(())
    }

    /// Lays out an empty ring around reader page `reader` and zeroes every counter.
    ///
    /// # Safety
    /// The caller holds the control lock and has made the status NONWRITABLE.
    unsafe fn init_layout(&self, ctl: &mut Control<'a>, reader: usize) {
        let descs = ctl.descs;
        let n = descs.len();
        let first = if reader == 0 { 1 } else { 0 };
        let mut last = first;
        for i in 0..n {
            let d = &descs[i];
            // Relaxed throughout: published by the lock release and the status Release
            // store of `enable`/`reset`.
            d.entries.store(0, Ordering::Relaxed);
            let p = d.page_ref();
            p.header().time_stamp.store(0, Ordering::Relaxed);
            p.header().commit.store(0, Ordering::Relaxed);
            p.footer().writer_status.store(0, Ordering::Relaxed);
            p.footer().reader_status.store(0, Ordering::Relaxed);
            p.footer().stats.entries.store(0, Ordering::Relaxed);
            p.footer().stats.pages_touched.store(0, Ordering::Relaxed);
            p.footer().stats.overrun.store(0, Ordering::Relaxed);
            if i == reader || i == first {
                continue;
            }
            descs[last].link.store(link(i, 0, 0), Ordering::Relaxed);
            last = i;
        }
        descs[last]
            .link
            .store(link(first, LINK_HEAD, 0), Ordering::Relaxed);
        descs[reader]
            .link
            .store(link(first, 0, 0), Ordering::Relaxed);
        let rp = descs[reader].page_ref();
        rp.footer()
            .reader_status
            .store(FOOTER_READER, Ordering::Relaxed);
        let fp = descs[first].page_ref();
        fp.footer()
            .reader_status
            .store(FOOTER_HEAD, Ordering::Relaxed);
        fp.footer()
            .writer_status
            .store(FOOTER_COMMIT, Ordering::Relaxed);

        let cell = self.hot.0.writer.get_mut();
        // SAFETY: the caller made the status NONWRITABLE under the lock: no writer runs.
        let st = unsafe { cell.deref() };
        *st = WriterState {
            descs,
            tail: first,
            tail_page: descs[first].page.load(Ordering::Relaxed),
            ..WriterState::new()
        };
        drop(cell);
        // Relaxed: no writer runs; `enable`'s Release store publishes these to it, the lock
        // publishes them to control operations.
        self.hot.0.entries.store(0, Ordering::Relaxed);
        self.shared.0.tail.store(first, Ordering::Relaxed);
        self.shared.0.overrun.store(0, Ordering::Relaxed);
        self.shared.0.pages_touched.store(0, Ordering::Relaxed);
        ctl.reader = reader;
        ctl.head_hint = first;
        ctl.footer_head = first;
        ctl.last_overrun = 0;
    }

    /// Makes the buffer writable. Errors: [`HypError::NotLoaded`].
    pub fn enable(&self) -> Result<(), HypError> {
        let ctl = self.control.0.lock();
        if !ctl.loaded {
            return Err(HypError::NotLoaded);
        }
        // Relaxed: a hint. A writer may see the old value for a moment after `enable` and
        // drop an event, just as it may still see NONWRITABLE for a moment.
        self.hot.0.stop.store(false, Ordering::Relaxed);
        // Release: pairs with the writer's Acquire compare-and-swap in `reserve`, which then
        // sees the ring laid out by `load`/`reset`. Failure (already WRITABLE or WRITING)
        // means it is enabled already.
        let _ = self.hot.0.status.compare_exchange(
            WRITER_NONWRITABLE,
            WRITER_WRITABLE,
            Ordering::Release,
            Ordering::Relaxed,
        );
        drop(ctl);
        Ok(())
    }

    /// Makes the buffer non-writable, waiting for a write in flight to finish. When it
    /// returns no write touches the pages until the next `enable`. Returns whether the buffer
    /// was enabled. Errors: [`HypError::NotLoaded`].
    pub fn disable(&self) -> Result<bool, HypError> {
        let ctl = self.control.0.lock();
        if !ctl.loaded {
            return Err(HypError::NotLoaded);
        }
        let was = self.disable_locked();
        drop(ctl);
        Ok(was)
    }

    /// The disable handshake; the caller holds the control lock.
    fn disable_locked(&self) -> bool {
        // Relaxed: a liveness hint. Once the writer sees it, it starts no new write, so the
        // loop below waits for at most the write in flight. Cleared by `enable`/`reset`.
        self.hot.0.stop.store(true, Ordering::Relaxed);
        loop {
            // Acquire (success and failure): pairs with the writer's Release store of
            // WRITABLE on exit, so all its page writes happen before our return.
            match self.hot.0.status.compare_exchange(
                WRITER_WRITABLE,
                WRITER_NONWRITABLE,
                Ordering::Acquire,
                Ordering::Acquire,
            ) {
                Ok(_) => return true,
                Err(WRITER_WRITING) => sync::spin_loop(),
                Err(_) => return false,
            }
        }
    }

    /// Whether the buffer is loaded and enabled (a write may be in flight).
    pub fn is_enabled(&self) -> bool {
        // Relaxed: a snapshot for diagnostics.
        self.hot.0.status.load(Ordering::Relaxed) != WRITER_NONWRITABLE
    }

    /// Disables the buffer (waiting for a write in flight), refreshes the footers a last time
    /// and forgets pages and descriptors. After it returns no write touches the pages and the
    /// caller may unpin them and reuse the descriptors. Errors: [`HypError::NotLoaded`].
    pub fn teardown(&self) -> Result<(), HypError> {
        let mut ctl = self.control.0.lock();
        if !ctl.loaded {
            return Err(HypError::NotLoaded);
        }
        if self.disable_locked() {
            // Best effort: the writer is stopped, so the head search cannot be busy.
            let _ = self.update_footers_locked(&mut ctl);
        }
        let cell = self.hot.0.writer.get_mut();
        // SAFETY: status NONWRITABLE (handshake above) under the lock: no writer runs.
        let st = unsafe { cell.deref() };
        st.descs = &[];
        drop(cell);
        ctl.descs = &[];
        ctl.loaded = false;
        Ok(())
    }

    /// Empties the buffer without tearing it down: disables it (waiting for a write in
    /// flight), clears every page and counter, and re-enables it if it was enabled. The
    /// current reader page stays the reader page (emptied too). Errors:
    /// [`HypError::NotLoaded`].
    pub fn reset(&self) -> Result<(), HypError> {
        let mut ctl = self.control.0.lock();
        if !ctl.loaded {
            return Err(HypError::NotLoaded);
        }
        let was = self.disable_locked();
        let reader = ctl.reader;
        // SAFETY: lock held and status NONWRITABLE after the handshake.
        unsafe { self.init_layout(&mut ctl, reader) };
        if was {
            // Relaxed: ordered before the Release store below.
            self.hot.0.stop.store(false, Ordering::Relaxed);
            // Release: pairs with the writer's Acquire entry, which sees the new layout.
            self.hot.0.status.store(WRITER_WRITABLE, Ordering::Release);
        }
        drop(ctl);
        Ok(())
    }

    /// The writer's counters. Callable from any CPU at any time.
    pub fn stats(&self) -> RingStats {
        // Relaxed: statistics, no ordering needed between them.
        RingStats {
            entries: self.hot.0.entries.load(Ordering::Relaxed),
            overrun: self.shared.0.overrun.load(Ordering::Relaxed),
            pages_touched: self.shared.0.pages_touched.load(Ordering::Relaxed),
        }
    }

    /// Finds the link that carries HEAD: returns (predecessor index, link value). Spins a
    /// bounded number of full walks while the writer is moving the head.
    fn find_head(&self, ctl: &mut Control<'a>) -> Result<(usize, u64), HypError> {
        let descs = ctl.descs;
        let ring_pages = descs.len() - 1;
        for _ in 0..HEAD_SEARCH_ATTEMPTS {
            let mut p = ctl.head_hint;
            for _ in 0..ring_pages {
                // Acquire: pairs with the writer's Release store of HEAD in `move_tail`
                // (and with the swap's own CAS), so the overrun pushed before it is visible.
                let l = descs[p].link.load(Ordering::Acquire);
                if l & LINK_HEAD != 0 {
                    ctl.head_hint = p;
                    return Ok((p, l));
                }
                p = link_index(l);
            }
            // No HEAD seen: the writer is moving it (UPDATE) or it moved past us. Retry.
            sync::spin_loop();
        }
        Err(HypError::Busy)
    }

    /// Swaps the reader page with the head page (the oldest unread ring page).
    ///
    /// The old head becomes the reader page: its footer gets READER and the statistics
    /// (entries, pages_touched, and the overrun snapshot). [`Swap::lost`] is the number of
    /// events overwritten since the previous swap. If the writer is still on the reader
    /// page nothing is swapped (`swapped == false`). Errors: [`HypError::NotLoaded`];
    /// [`HypError::Busy`] when the retry budget ran out.
    pub fn swap_reader(&self) -> Result<Swap, HypError> {
        let mut ctl = self.control.0.lock();
        self.swap_locked(&mut ctl, SWAP_ATTEMPTS)
    }

    fn swap_locked(&self, ctl: &mut Control<'a>, attempts: u32) -> Result<Swap, HypError> {
        if !ctl.loaded {
            return Err(HypError::NotLoaded);
        }
        let descs = ctl.descs;
        let r = ctl.reader;
        // Acquire: pairs with the writer's Release store of `tail` in `move_tail`: if the
        // writer has left the reader page, its last writes there are visible.
        if self.shared.0.tail.load(Ordering::Acquire) == r {
            return Ok(Swap {
                swapped: false,
                reader_page: descs[r].page.load(Ordering::Relaxed),
                reader_index: r,
                lost: 0,
            });
        }
        for _ in 0..attempts {
            let (pred, pl) = self.find_head(ctl)?;
            let head = link_index(pl);
            // Relaxed: the index part of the head's link only changes under this lock.
            let head_next = link_index(descs[head].link.load(Ordering::Relaxed));
            let rl = descs[r].link.load(Ordering::Relaxed);
            // Relaxed: the reader page is ours; the CAS below publishes these (Release).
            descs[r].link.store(
                link(head_next, LINK_HEAD, link_tag(rl).wrapping_add(1)),
                Ordering::Relaxed,
            );
            descs[r].entries.store(0, Ordering::Relaxed);
            // Acquire: pairs with the writer's Release store of `overrun`; we acquired the
            // HEAD link stored after it, so this counts every page pushed before `head`
            // became the head. If the CAS below succeeds, `head` was not pushed (that needs
            // a CAS on the same link, and the tag rules out ABA), so it counts no more.
            let overrun = self.shared.0.overrun.load(Ordering::Acquire);
            // AcqRel: Release publishes the reader page's link/entries to the writer (pairs
            // with its Acquire link loads); Acquire pairs with the writer's Release stores.
            if descs[pred]
                .link
                .compare_exchange(
                    pl,
                    link(r, 0, link_tag(pl).wrapping_add(1)),
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                )
                .is_err()
            {
                continue;
            }
            let lost = overrun - ctl.last_overrun;
            ctl.last_overrun = overrun;
            ctl.reader = head;
            // The old reader page now precedes the head: the next search finds the head in
            // one step instead of walking a whole lap.
            ctl.head_hint = r;
            // Footers (Relaxed: the host reads them after the swap returns to it).
            let old = descs[r].page_ref();
            old.footer().reader_status.store(0, Ordering::Relaxed);
            if ctl.footer_head != head && ctl.footer_head != r {
                descs[ctl.footer_head]
                    .page_ref()
                    .footer()
                    .reader_status
                    .store(0, Ordering::Relaxed);
            }
            let np = descs[head].page_ref();
            np.footer()
                .reader_status
                .store(FOOTER_READER, Ordering::Relaxed);
            let stats = self.stats();
            let f = np.footer();
            f.stats.entries.store(stats.entries, Ordering::Relaxed);
            f.stats
                .pages_touched
                .store(stats.pages_touched, Ordering::Relaxed);
            f.stats.overrun.store(overrun, Ordering::Relaxed);
            descs[head_next]
                .page_ref()
                .footer()
                .reader_status
                .store(FOOTER_HEAD, Ordering::Relaxed);
            ctl.footer_head = head_next;
            return Ok(Swap {
                swapped: true,
                reader_page: descs[head].page.load(Ordering::Relaxed),
                reader_index: head,
                lost,
            });
        }
        Err(HypError::Busy)
    }

    /// Refreshes the footers without moving pages: moves the HEAD flag to the current head
    /// page and writes entries and pages_touched into the reader page's footer (overrun
    /// there stays the snapshot of the last swap). Returns the current counters.
    /// Errors: [`HypError::NotLoaded`], [`HypError::Busy`].
    pub fn update_footers(&self) -> Result<RingStats, HypError> {
        let mut ctl = self.control.0.lock();
        if !ctl.loaded {
            return Err(HypError::NotLoaded);
        }
        self.update_footers_locked(&mut ctl)
    }

    fn update_footers_locked(&self, ctl: &mut Control<'a>) -> Result<RingStats, HypError> {
        let descs = ctl.descs;
        let (_, l) = self.find_head(ctl)?;
        let head = link_index(l);
        // Footer stores are Relaxed: the host reads them after the call returns to it.
        if ctl.footer_head != head {
            if ctl.footer_head != ctl.reader {
                descs[ctl.footer_head]
                    .page_ref()
                    .footer()
                    .reader_status
                    .store(0, Ordering::Relaxed);
            }
            descs[head]
                .page_ref()
                .footer()
                .reader_status
                .store(FOOTER_HEAD, Ordering::Relaxed);
            ctl.footer_head = head;
        }
        let stats = self.stats();
        let f = descs[ctl.reader].page_ref();
        let f = f.footer();
        f.stats.entries.store(stats.entries, Ordering::Relaxed);
        f.stats
            .pages_touched
            .store(stats.pages_touched, Ordering::Relaxed);
        Ok(stats)
    }

    /// Address of the current reader page, or `None` when not loaded.
    pub fn reader_page(&self) -> Option<usize> {
        let ctl = self.control.0.lock();
        ctl.loaded
            .then(|| ctl.descs[ctl.reader].page.load(Ordering::Relaxed))
    }

    /// Number of ring pages (reader page excluded), 0 when not loaded.
    pub fn nr_pages(&self) -> usize {
        let ctl = self.control.0.lock();
        ctl.descs.len().saturating_sub(1)
    }
}

impl Default for RingBuffer<'_> {
    fn default() -> Self {
        Self::new()
    }
}
