//! The control path: load, enable and disable, reset, teardown, `swap_reader` and
//! `update_footers`.
//!
//! Any CPU may call these, concurrently with the writer. They serialise among themselves with
//! the buffer's control lock, which the writer never takes; they keep the writer out, when
//! they must, with the status handshake (`disable_locked`).

use core::ptr::NonNull;

use hyptrace_abi::page::{FOOTER_COMMIT, FOOTER_HEAD, FOOTER_READER, PAGE_SIZE};

use crate::desc::{link, link_index, link_tag, PageDesc, LINK_HEAD, MAX_RING_PAGES};
use crate::sync::{self, Ordering};
use crate::writer::WriterState;
use crate::{status, RingBuffer, RingCounters, RingError};

/// How many times [`RingBuffer::swap_reader`] retries its compare-and-swap.
pub const SWAP_ATTEMPTS: u32 = 8;
/// How many full walks of the ring a head search makes before giving up.
pub const HEAD_SEARCH_ATTEMPTS: u32 = 16;

/// Result of [`RingBuffer::swap_reader`], on the writer's side of the address space.
///
/// A hypervisor answers the host with `hyptrace_abi::SwapResult`, whose `reader_page` is the
/// host's address of the page: the one the host named for descriptor
/// [`reader_index`](Self::reader_index) in its pack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Swap {
    /// Whether pages were swapped. `false` when the writer is still on the reader page: the
    /// reader keeps its page and should read up to the page's `commit` again later.
    pub swapped: bool,
    /// The (new) reader page.
    pub reader_page: NonNull<u8>,
    /// Its descriptor index: 0 for the reader page given to `load`, `n` for the `n`-th ring
    /// page (1-based, in `load`'s order).
    pub reader_index: usize,
    /// Events lost to overwrite since the previous swap (0 when not swapped).
    pub lost: u64,
}

// SAFETY: `Swap` is plain data: the page pointer is only a value here (dereferencing it needs
// `unsafe` and the reader's own right to the page), so sending or sharing it is harmless.
unsafe impl Send for Swap {}
// SAFETY: as for `Send`; `Swap` has no interior mutability.
unsafe impl Sync for Swap {}

/// Control state, behind the control lock.
#[derive(Debug)]
pub(crate) struct Control<'a> {
    pub(crate) descs: &'a [PageDesc],
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

impl Control<'_> {
    /// Whether a ring is loaded.
    pub(crate) fn loaded(&self) -> bool {
        self.loaded
    }

    /// Descriptor index of the reader page.
    pub(crate) fn reader(&self) -> usize {
        self.reader
    }

    pub(crate) const fn new() -> Self {
        Self {
            descs: &[],
            loaded: false,
            reader: 0,
            head_hint: 0,
            footer_head: 0,
            last_overrun: 0,
        }
    }
}

impl<'a> RingBuffer<'a> {
    /// Loads the buffer: descriptor `0` becomes the reader page, `1..=n` the ring pages in
    /// the order given. The buffer stays non-writable until [`enable`](Self::enable).
    ///
    /// # Errors
    /// [`RingError::AlreadyLoaded`]; [`RingError::TooFewPages`] for fewer than two ring
    /// pages; [`RingError::TooManyPages`] if `descs` is too short (it needs `n + 1` entries)
    /// or `n` exceeds [`MAX_RING_PAGES`]; [`RingError::PageMisaligned`] for a page that is
    /// not 4096-aligned. On error nothing is written to any page.
    ///
    /// # Safety
    /// Every pointer (reader and ring pages) must point to a distinct 4096-byte page that
    /// stays valid for reads and writes until [`teardown`](Self::teardown) returns, and that
    /// Rust code accesses only through the page layout's atomics or raw reads (the reader, or
    /// a reader on another side of a hypervisor following the reader protocol, is fine).
    /// `descs` must not be in memory the reader can write.
    pub unsafe fn load(
        &self,
        descs: &'a [PageDesc],
        reader_page: NonNull<u8>,
        ring_pages: impl IntoIterator<Item = NonNull<u8>>,
    ) -> Result<(), RingError> {
        let mut ctl = self.control.0.lock();
        if ctl.loaded {
            return Err(RingError::AlreadyLoaded);
        }
        let aligned = |p: NonNull<u8>| p.addr().get().is_multiple_of(PAGE_SIZE);
        if descs.is_empty() {
            return Err(RingError::TooManyPages);
        }
        if !aligned(reader_page) {
            return Err(RingError::PageMisaligned);
        }
        let mut n = 0usize;
        for page in ring_pages {
            if !aligned(page) {
                return Err(RingError::PageMisaligned);
            }
            n += 1;
            if n > MAX_RING_PAGES {
                return Err(RingError::TooManyPages);
            }
            let d = descs.get(n).ok_or(RingError::TooManyPages)?;
            // Relaxed: published to the writer by `enable`'s Release store, to control
            // operations by the lock.
            d.page.store(page.as_ptr(), Ordering::Relaxed);
        }
        if n < 2 {
            return Err(RingError::TooFewPages);
        }
        descs[0].page.store(reader_page.as_ptr(), Ordering::Relaxed);
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
            tail_page: descs[first].page_ptr(),
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

    /// Makes the buffer writable.
    ///
    /// # Errors
    /// [`RingError::NotLoaded`].
    pub fn enable(&self) -> Result<(), RingError> {
        let ctl = self.control.0.lock();
        if !ctl.loaded {
            return Err(RingError::NotLoaded);
        }
        // Relaxed: a hint. A writer may see the old value for a moment after `enable` and
        // drop an event, just as it may still see NONWRITABLE for a moment.
        self.hot.0.stop.store(false, Ordering::Relaxed);
        // Release: pairs with the writer's Acquire compare-and-swap in `reserve`, which then
        // sees the ring laid out by `load`/`reset`. Failure (already WRITABLE or WRITING)
        // means it is enabled already.
        let _ = self.hot.0.status.compare_exchange(
            status::NONWRITABLE,
            status::WRITABLE,
            Ordering::Release,
            Ordering::Relaxed,
        );
        drop(ctl);
        Ok(())
    }

    /// Makes the buffer non-writable, waiting for a write in flight to finish. When it
    /// returns no write touches the pages until the next `enable`. Returns whether the buffer
    /// was enabled.
    ///
    /// # Errors
    /// [`RingError::NotLoaded`].
    pub fn disable(&self) -> Result<bool, RingError> {
        let ctl = self.control.0.lock();
        if !ctl.loaded {
            return Err(RingError::NotLoaded);
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
                status::WRITABLE,
                status::NONWRITABLE,
                Ordering::Acquire,
                Ordering::Acquire,
            ) {
                Ok(_) => return true,
                Err(status::WRITING) => sync::spin_loop(),
                Err(_) => return false,
            }
        }
    }

    /// Disables the buffer (waiting for a write in flight), refreshes the footers a last time
    /// and forgets pages and descriptors. After it returns no write touches the pages and the
    /// caller may unpin them and reuse the descriptors.
    ///
    /// # Errors
    /// [`RingError::NotLoaded`].
    pub fn teardown(&self) -> Result<(), RingError> {
        let mut ctl = self.control.0.lock();
        if !ctl.loaded {
            return Err(RingError::NotLoaded);
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
    /// current reader page stays the reader page (emptied too).
    ///
    /// # Errors
    /// [`RingError::NotLoaded`].
    pub fn reset(&self) -> Result<(), RingError> {
        let mut ctl = self.control.0.lock();
        if !ctl.loaded {
            return Err(RingError::NotLoaded);
        }
        let was = self.disable_locked();
        let reader = ctl.reader;
        // SAFETY: lock held and status NONWRITABLE after the handshake.
        unsafe { self.init_layout(&mut ctl, reader) };
        if was {
            // Relaxed: ordered before the Release store below.
            self.hot.0.stop.store(false, Ordering::Relaxed);
            // Release: pairs with the writer's Acquire entry, which sees the new layout.
            self.hot.0.status.store(status::WRITABLE, Ordering::Release);
        }
        drop(ctl);
        Ok(())
    }

    /// Finds the link that carries HEAD: returns (predecessor index, link value). Spins a
    /// bounded number of full walks while the writer is moving the head.
    fn find_head(&self, ctl: &mut Control<'a>) -> Result<(usize, u64), RingError> {
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
        Err(RingError::Busy)
    }

    /// Swaps the reader page with the head page (the oldest unread ring page).
    ///
    /// The old head becomes the reader page: its footer gets READER and the statistics
    /// (entries, pages_touched, and the overrun snapshot). [`Swap::lost`] is the number of
    /// events overwritten since the previous swap. If the writer is still on the reader
    /// page nothing is swapped (`swapped == false`).
    ///
    /// # Errors
    /// [`RingError::NotLoaded`];
    /// [`RingError::Busy`] when the retry budget ran out.
    pub fn swap_reader(&self) -> Result<Swap, RingError> {
        let mut ctl = self.control.0.lock();
        self.swap_locked(&mut ctl, SWAP_ATTEMPTS)
    }

    pub(crate) fn swap_locked(
        &self,
        ctl: &mut Control<'a>,
        attempts: u32,
    ) -> Result<Swap, RingError> {
        if !ctl.loaded {
            return Err(RingError::NotLoaded);
        }
        let descs = ctl.descs;
        let r = ctl.reader;
        // Acquire: pairs with the writer's Release store of `tail` in `move_tail`: if the
        // writer has left the reader page, its last writes there are visible.
        if self.shared.0.tail.load(Ordering::Acquire) == r {
            return Ok(Swap {
                swapped: false,
                reader_page: descs[r].page_nonnull(),
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
                reader_page: descs[head].page_nonnull(),
                reader_index: head,
                lost,
            });
        }
        Err(RingError::Busy)
    }

    /// Refreshes the footers without moving pages: moves the HEAD flag to the current head
    /// page and writes the live counters (entries, pages_touched and overrun) into the reader
    /// page's footer, as Android's gen-1 hypervisor does. [`swap_reader`](Self::swap_reader)
    /// writes the overrun it took its lost count from, so right after a swap the footer's
    /// overrun is the one that count is based on; after `update_footers` it is the current
    /// one, which is what a poll wants. Returns the current counters.
    ///
    /// # Errors
    /// [`RingError::NotLoaded`], [`RingError::Busy`] when the head search ran out of
    /// retries.
    pub fn update_footers(&self) -> Result<RingCounters, RingError> {
        let mut ctl = self.control.0.lock();
        if !ctl.loaded {
            return Err(RingError::NotLoaded);
        }
        self.update_footers_locked(&mut ctl)
    }

    fn update_footers_locked(&self, ctl: &mut Control<'a>) -> Result<RingCounters, RingError> {
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
        f.stats.overrun.store(stats.overrun, Ordering::Relaxed);
        Ok(stats)
    }

    /// Address of the current reader page, or `None` when not loaded.
    pub fn reader_page(&self) -> Option<NonNull<u8>> {
        let ctl = self.control.0.lock();
        ctl.loaded.then(|| ctl.descs[ctl.reader].page_nonnull())
    }

    /// Number of ring pages (reader page excluded), 0 when not loaded.
    pub fn nr_pages(&self) -> usize {
        let ctl = self.control.0.lock();
        ctl.descs.len().saturating_sub(1)
    }
}
