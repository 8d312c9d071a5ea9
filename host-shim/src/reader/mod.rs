//! The host's view of a hyptrace ring buffer: page decoding, consuming and peeking reads,
//! per-CPU statistics, and pages ready for trace.dat.
//!
//! The hypervisor writes; the host reads the *reader page* of each CPU and asks the
//! hypervisor to swap it with the oldest ring page when it has read everything. The reader
//! protocol (docs/ring-buffer.md):
//!
//! 1. Load the reader page's footer `writer_status` (Acquire), then `commit` (Acquire), and
//!    copy the records below `commit` into private memory. Decode only the copy.
//! 2. If `writer_status` showed COMMIT, the writer is still on this page: come back later.
//!    Otherwise the `commit` just loaded is final; once its records are consumed, swap.
//! 3. `swap_reader` returns the new reader page and the number of events lost since the
//!    previous swap; the lost count goes into the next exported page's `commit` flags.
//!
//! [`CpuReader`] implements this over two traits: [`RingControl`] (the swap and footer
//! hypercalls) and [`PageMemory`] (where the host sees a page).

#[cfg(test)]
mod tests;

/// The page decoder: `hyptrace_tracedat::page`, re-exported beside the reader that uses it.
pub use hyptrace_tracedat::page::{
    decode_record, export_page, DecodeError, Event, Events, Missed, PageBuf, PageView, Record,
    Records,
};

use core::ptr::NonNull;
use core::sync::atomic::Ordering;
use hyptrace_abi::page::{
    PageFooter, PageHeader, DATA_SIZE, FOOTER_OFFSET, HEADER_SIZE, PAGE_SIZE,
};
use hyptrace_abi::{HypError, SwapResult};

/// The hypervisor's control calls for one buffer, as the host issues them.
pub trait RingControl {
    /// Swaps `cpu`'s reader page with its head page.
    fn swap_reader(&mut self, cpu: u32) -> Result<SwapResult, HypError>;
    /// Refreshes `cpu`'s footers (HEAD flag, reader-page statistics).
    fn update_footers(&mut self, cpu: u32) -> Result<(), HypError>;
}

/// Where the host sees a ring page.
///
/// # Safety
/// A returned pointer must be 8-aligned and valid for reads of [`PAGE_SIZE`] bytes for as
/// long as the reader uses it, and the page must be written only by the hypervisor's writer
/// (following the commit protocol) or not at all while it is the reader page.
pub unsafe trait PageMemory {
    /// The page at host address `va`, or `None` if it is not one of this buffer's pages.
    fn page(&self, va: u64) -> Option<NonNull<u8>>;
}

/// [`PageMemory`] for an identity-mapped host: the address is the pointer.
#[derive(Clone, Copy, Debug)]
pub struct IdentityMemory(());

impl IdentityMemory {
    /// # Safety
    /// Every address the hypervisor returns from `swap_reader` (and the initial reader page
    /// given to [`CpuReader::new`]) must be a page of this buffer, mapped at that address
    /// with the guarantees [`PageMemory`] requires.
    pub const unsafe fn new() -> Self {
        Self(())
    }
}

// SAFETY: `IdentityMemory::new`'s contract transfers the obligation to its creator.
unsafe impl PageMemory for IdentityMemory {
    fn page(&self, va: u64) -> Option<NonNull<u8>> {
        let addr = usize::try_from(va).ok()?;
        if addr % PAGE_SIZE != 0 {
            return None;
        }
        NonNull::new(addr as *mut u8)
    }
}

/// Per-CPU statistics as the host sees them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuStats {
    /// Events written (reader-page footer, after `update_footers`).
    pub entries: u64,
    /// Tail moves (reader-page footer).
    pub pages_touched: u64,
    /// Events lost to overwrite so far: the writer's live count, which `update_footers` writes
    /// into the reader-page footer. Once the reader has drained a stopped writer it equals
    /// [`lost`](Self::lost).
    pub overrun: u64,
    /// Events this reader consumed.
    pub read: u64,
    /// Events reported lost to this reader (sum of the swaps' counts).
    pub lost: u64,
    /// Pages whose committed data did not decode (the rest of such a page is skipped).
    pub bad_pages: u64,
}

/// An event read by [`CpuReader`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadEvent<'a> {
    /// Absolute timestamp (ns).
    pub ts: u64,
    /// Payload, padded with zeros to a multiple of 4.
    pub payload: &'a [u8],
    /// Events lost right before this one (reported by the swap that led to it).
    pub lost_before: u64,
}

/// What [`CpuReader::read_page`] exported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExportedPage {
    /// Events on the page.
    pub events: u64,
    /// Events lost before the page (also encoded in its `commit`).
    pub missed: u64,
}

/// A consuming reader of one CPU's buffer.
#[derive(Debug)]
pub struct CpuReader<C, M> {
    cpu: u32,
    ctl: C,
    mem: M,
    page_va: u64,
    /// Private copy of the reader page; bytes `[0, copied)` of its data are valid.
    buf: PageBuf,
    copied: usize,
    /// Data offset of the next unread record; `ts` is the running time there.
    off: usize,
    ts: u64,
    /// The writer had left the page when `copied` was last loaded.
    left: bool,
    pending_lost: u64,
    read: u64,
    lost: u64,
    bad_pages: u64,
}

/// Position of the next data record: (record offset, size, timestamp, payload range).
#[derive(Clone, Copy)]
struct NextData {
    size: usize,
    ts: u64,
    payload: (usize, usize),
}

impl<C: RingControl, M: PageMemory> CpuReader<C, M> {
    /// A reader of `cpu` whose current reader page is at `reader_page_va` (the pack's).
    pub fn new(cpu: u32, reader_page_va: u64, ctl: C, mem: M) -> Self {
        Self {
            cpu,
            ctl,
            mem,
            page_va: reader_page_va,
            buf: PageBuf::zeroed(),
            copied: 0,
            off: 0,
            ts: 0,
            left: false,
            pending_lost: 0,
            read: 0,
            lost: 0,
            bad_pages: 0,
        }
    }

    /// The CPU this reader reads.
    pub fn cpu(&self) -> u32 {
        self.cpu
    }

    /// The control interface (e.g. to issue a reset).
    pub fn control(&mut self) -> &mut C {
        &mut self.ctl
    }

    /// Host address of the current reader page.
    pub fn reader_page(&self) -> u64 {
        self.page_va
    }

    fn page_ptr(&self) -> Result<NonNull<u8>, HypError> {
        self.mem.page(self.page_va).ok_or(HypError::InvalidArgument)
    }

    /// Step 1 of the protocol: copy what is newly committed on the reader page.
    fn refresh(&mut self) -> Result<(), HypError> {
        let p = self.page_ptr()?;
        // SAFETY: `PageMemory` guarantees an 8-aligned page readable for PAGE_SIZE bytes;
        // footer and header are atomics at offsets 4064 and 0.
        let (footer, header) = unsafe {
            (
                &*(p.as_ptr().add(FOOTER_OFFSET) as *const PageFooter),
                &*(p.as_ptr() as *const PageHeader),
            )
        };
        // Acquire: pairs with the writer's Release store of 0 when it leaves the page, so
        // the `commit` loaded next is then the page's final one.
        let left = footer.writer_status.load(Ordering::Acquire) == 0;
        // Acquire: pairs with the writer's Release store of `commit` after the payload.
        let commit = ((header.commit.load(Ordering::Acquire)
            & hyptrace_abi::page::COMMIT_LENGTH_MASK) as usize)
            .min(DATA_SIZE);
        if commit > self.copied {
            if self.copied == 0 {
                // Relaxed: written before the first commit, ordered by the Acquire above.
                let ts = header.time_stamp.load(Ordering::Relaxed);
                self.buf.0[0..8].copy_from_slice(&ts.to_le_bytes());
                self.ts = ts;
            }
            // SAFETY: bytes below `commit` are published and no longer written (the writer
            // only appends above `commit` on the reader page); the range is inside the page.
            unsafe {
                core::ptr::copy_nonoverlapping(
                    p.as_ptr().add(HEADER_SIZE + self.copied),
                    self.buf.0.as_mut_ptr().add(HEADER_SIZE + self.copied),
                    commit - self.copied,
                );
            }
            self.copied = commit;
            self.buf.0[8..16].copy_from_slice(&(commit as u64).to_le_bytes());
        }
        self.left = left;
        Ok(())
    }

    /// Makes sure an unread record is available, swapping pages as needed. Returns false
    /// when there is nothing to read right now.
    fn fill(&mut self) -> Result<bool, HypError> {
        for _ in 0..4 {
            if self.off < self.copied {
                return Ok(true);
            }
            self.refresh()?;
            if self.off < self.copied {
                return Ok(true);
            }
            if !self.left {
                return Ok(false);
            }
            let s = self.ctl.swap_reader(self.cpu)?;
            if !s.swapped {
                return Ok(false);
            }
            self.page_va = s.reader_page;
            self.copied = 0;
            self.off = 0;
            self.left = false;
            self.lost += s.lost;
            self.pending_lost += s.lost;
        }
        // Several empty pages in a row: try again on the next call.
        Ok(self.off < self.copied)
    }

    /// Finds the next data record, consuming the non-data records before it.
    fn next_data(&mut self) -> Result<Option<NextData>, HypError> {
        loop {
            if !self.fill()? {
                return Ok(None);
            }
            let data = &self.buf.0[HEADER_SIZE..HEADER_SIZE + self.copied];
            match decode_record(data, self.off, self.ts) {
                Ok((Record::Data { ts, payload }, size, _)) => {
                    let start = payload.as_ptr() as usize - data.as_ptr() as usize;
                    return Ok(Some(NextData {
                        size,
                        ts,
                        payload: (start, start + payload.len()),
                    }));
                }
                Ok((_, size, ts)) => {
                    self.off += size;
                    self.ts = ts;
                }
                Err(_) => {
                    // Corrupt data: skip the rest of the page.
                    self.bad_pages += 1;
                    self.off = self.copied;
                }
            }
        }
    }

    fn event(&self, n: NextData, lost_before: u64) -> ReadEvent<'_> {
        ReadEvent {
            ts: n.ts,
            payload: &self.buf.0[HEADER_SIZE + n.payload.0..HEADER_SIZE + n.payload.1],
            lost_before,
        }
    }

    /// Reads and consumes the next event; `None` when nothing is available now.
    pub fn read_event(&mut self) -> Result<Option<ReadEvent<'_>>, HypError> {
        let Some(n) = self.next_data()? else {
            return Ok(None);
        };
        self.off += n.size;
        self.ts = n.ts;
        self.read += 1;
        let lost = core::mem::take(&mut self.pending_lost);
        Ok(Some(self.event(n, lost)))
    }

    /// Returns the next event without consuming it (a later `read_event` returns it again).
    /// It may swap pages to find one: swapping loses nothing.
    pub fn peek_event(&mut self) -> Result<Option<ReadEvent<'_>>, HypError> {
        let Some(n) = self.next_data()? else {
            return Ok(None);
        };
        let lost = self.pending_lost;
        Ok(Some(self.event(n, lost)))
    }

    /// Non-consuming iteration over the unread events already copied from the reader page
    /// (no hypercall, no swap).
    pub fn peek_page(&self) -> Events<'_> {
        Records::starting_at(
            &self.buf.0[HEADER_SIZE..HEADER_SIZE + self.copied],
            self.off,
            self.ts,
        )
        .events()
    }

    /// Consumes every unread event of the reader page and writes them to `out` as a
    /// trace.dat-ready page (footer zeroed, missed-events flags set when a loss precedes it).
    /// `None` when nothing is available now.
    pub fn read_page(&mut self, out: &mut PageBuf) -> Result<Option<ExportedPage>, HypError> {
        // Skip leading non-data records and swap as needed.
        if self.next_data()?.is_none() {
            return Ok(None);
        }
        let data = &self.buf.0[HEADER_SIZE..HEADER_SIZE + self.copied];
        let mut recs = Records::starting_at(data, self.off, self.ts);
        let mut events = 0;
        for r in recs.by_ref() {
            match r {
                Ok((_, Record::Data { .. })) => events += 1,
                Ok(_) => {}
                Err(_) => {
                    // Export the good prefix, skip the rest of the page.
                    self.bad_pages += 1;
                    break;
                }
            }
        }
        let (end, ts) = (recs.offset().min(self.copied), recs.ts());
        let missed = core::mem::take(&mut self.pending_lost);
        export_page(&self.buf, self.off, end, self.ts, missed, out);
        self.off = self.copied;
        self.ts = ts;
        self.read += events;
        Ok(Some(ExportedPage { events, missed }))
    }

    /// Refreshes the footers through the hypervisor and returns the statistics.
    pub fn stats(&mut self) -> Result<CpuStats, HypError> {
        self.ctl.update_footers(self.cpu)?;
        let p = self.page_ptr()?;
        // SAFETY: `PageMemory` guarantees the page; the footer is atomics at offset 4064.
        let footer = unsafe { &*(p.as_ptr().add(FOOTER_OFFSET) as *const PageFooter) };
        // Relaxed: written by the footer update that has returned to us.
        Ok(CpuStats {
            entries: footer.stats.entries.load(Ordering::Relaxed),
            pages_touched: footer.stats.pages_touched.load(Ordering::Relaxed),
            overrun: footer.stats.overrun.load(Ordering::Relaxed),
            read: self.read,
            lost: self.lost,
            bad_pages: self.bad_pages,
        })
    }

    /// Forgets the reading position and counters; call after the buffer was reset.
    pub fn after_reset(&mut self) {
        self.copied = 0;
        self.off = 0;
        self.ts = 0;
        self.left = false;
        self.pending_lost = 0;
        self.read = 0;
        self.lost = 0;
    }
}
