//! The single external writer of an ftrace ring buffer, for code that runs where the buffer's
//! reader does not: a hypervisor writing pages its host reads.
//!
//! This is the writer side of Android's gen-1 pKVM "ext" ring buffer (`ring_buffer_ext.h`):
//! the host allocates the pages and reads them in the ftrace binary format (so trace-cmd
//! reads them too); the writer fills them, and answers two requests of the reader:
//! [`swap_reader`](RingBuffer::swap_reader) (give me the oldest unread page) and
//! [`update_footers`](RingBuffer::update_footers) (refresh the statistics in the reader
//! page's footer). Only overwrite mode exists: when the writer catches the reader it drops
//! the oldest page and counts its events as lost.
//!
//! The crate is `no_std`, allocates nothing and depends on [`hyptrace_abi`] (the page layout)
//! and `spin` only. Its control state (tail, head, write index, counters, page links) lives in
//! writer memory: in the [`RingBuffer`] value and in the [`PageDesc`] array the caller
//! supplies from a private pool. The shared pages are written, never read, so nothing a
//! reader stores in them can change where or how much the writer writes.
//!
//! Who may call what:
//! - [`RingBuffer::reserve`] / [`RingBuffer::write`], and [`RingBuffer::batch`] for several
//!   events under one status handshake: the CPU that owns the buffer. They never block and
//!   never wait. Two concurrent callers are harmless: one of them drops its event.
//! - [`RingBuffer::swap_reader`], [`RingBuffer::update_footers`], [`RingBuffer::reset`],
//!   [`RingBuffer::enable`], [`RingBuffer::disable`], [`RingBuffer::load`],
//!   [`RingBuffer::teardown`]: any CPU, concurrently with the writer. They serialise among
//!   themselves with a per-buffer lock; the writer never takes it.
//!
//! Modules by concern: [`desc`] (descriptors and their link words), the writer path
//! (`reserve`, `commit`, the page move), the control path (load, enable, swap, footers,
//! teardown), [`clock`] and [`clock_banks`] (counter-to-nanosecond conversion and its
//! lock-free publication). `docs/ring-buffer.md` in the repository describes the page format,
//! the algorithms and every memory ordering.
//!
//! # Example
//!
//! A writer over three pages (one reader page, two ring pages), and a reader taking the first
//! page back:
//!
//! ```
//! use core::ptr::NonNull;
//! use hyptrace_abi::page::{PageHeader, PAGE_SIZE};
//! use hyptrace_ring::{PageDesc, RingBuffer};
//!
//! #[repr(C, align(4096))]
//! struct Page([u8; PAGE_SIZE]);
//!
//! let mut pages: Vec<Box<Page>> = (0..3).map(|_| Box::new(Page([0; PAGE_SIZE]))).collect();
//! let addrs: Vec<NonNull<u8>> =
//!     pages.iter_mut().map(|p| NonNull::from(&mut p.0).cast()).collect();
//! let descs: Vec<PageDesc> = (0..3).map(|_| PageDesc::new()).collect();
//! let ring = RingBuffer::new();
//!
//! // SAFETY: three distinct, live, 4096-aligned pages, used only through the ring (and the
//! // reader below) until `teardown`; the descriptors are ours alone.
//! unsafe { ring.load(&descs, addrs[0], addrs[1..].iter().copied())? };
//! ring.enable()?;
//! assert!(ring.write(1_000, b"hello"));
//!
//! // The reader: swap the reader page with the head, which holds our event.
//! let swap = ring.swap_reader()?;
//! assert!(swap.swapped);
//! assert_eq!(swap.lost, 0);
//! // SAFETY: the swapped-out page is the reader's now; the header is two atomics.
//! let header = unsafe { &*swap.reader_page.as_ptr().cast::<PageHeader>() };
//! assert_eq!(header.commit.load(core::sync::atomic::Ordering::Acquire), 12);
//! ring.teardown()?;
//! # Ok::<(), hyptrace_ring::RingError>(())
//! ```

// Library crates document how each public function fails and panics.
#![warn(clippy::missing_errors_doc, clippy::missing_panics_doc)]
#![cfg_attr(not(any(test, loom)), no_std)]
// The `drop(cell)` calls end the access to the writer state explicitly: a no-op with `core`
// cells, the end of the tracked access under loom.
#![allow(clippy::drop_non_drop)]

/// The README's example, compiled and run as a doctest.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

pub mod clock;
pub mod clock_banks;
mod control;
pub mod desc;
mod error;
pub mod floor;
mod freeze;
mod page_io;
mod status;
mod sync;
mod writer;

pub use control::{Swap, HEAD_SEARCH_ATTEMPTS, SWAP_ATTEMPTS};
pub use desc::{PageDesc, DESC_SIZE, MAX_RING_PAGES};
pub use error::RingError;
pub use freeze::{tries, FreezeError, Frozen};
#[cfg(loom)]
pub use page_io::LoomPage;
pub use writer::{event_size, Batch, Reservation, MAX_PAYLOAD};

/// The counters [`RingBuffer::stats`] and [`RingBuffer::update_footers`] return: the wire
/// type of the `update_footers` hypercall.
pub use hyptrace_abi::results::RingCounters;

use control::Control;
use sync::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Mutex, Ordering, UnsafeCell};
use writer::WriterState;

#[cfg(all(test, not(loom)))]
mod tests;

#[cfg(all(test, loom))]
mod loom_tests;

/// Bytes of record data per page the writer uses:
/// [`DATA_SIZE`](hyptrace_abi::page::DATA_SIZE) (4048). Under `--cfg loom` pages are tiny
/// (24 bytes) so a handful of events fills them.
#[cfg(not(loom))]
pub const CAPACITY: usize = hyptrace_abi::page::DATA_SIZE;
/// Bytes of record data per page the writer uses (loom models use tiny pages).
#[cfg(loom)]
pub const CAPACITY: usize = 24;

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

/// One CPU's ring buffer: a single external writer over pages a reader provided.
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
// Everything else is atomics or behind the lock. The page pointers it holds are to pages the
// `load` contract hands over to the ring for as long as it is loaded.
unsafe impl Sync for RingBuffer<'_> {}
// SAFETY: the buffer holds shared references to `Sync` descriptors, page pointers covered by
// `load`'s contract and plain data; moving it between threads moves no thread-bound state.
unsafe impl Send for RingBuffer<'_> {}

impl<'a> RingBuffer<'a> {
    sync::const_unless_loom! {
        /// An unloaded, non-writable buffer.
        pub fn new() -> Self {
            Self {
                hot: CacheLine(Hot {
                    status: AtomicU32::new(status::NONWRITABLE),
                    stop: AtomicBool::new(false),
                    writer: UnsafeCell::new(WriterState::new()),
                    entries: AtomicU64::new(0),
                }),
                shared: CacheLine(Shared {
                    tail: AtomicUsize::new(0),
                    overrun: AtomicU64::new(0),
                    pages_touched: AtomicU64::new(0),
                }),
                control: CacheLine(Mutex::new(Control::new())),
            }
        }
    }

    /// The writer's counters since load or reset. Callable from any CPU at any time.
    pub fn stats(&self) -> RingCounters {
        // Relaxed: statistics, no ordering needed between them.
        RingCounters {
            entries: self.hot.0.entries.load(Ordering::Relaxed),
            overrun: self.shared.0.overrun.load(Ordering::Relaxed),
            pages_touched: self.shared.0.pages_touched.load(Ordering::Relaxed),
        }
    }

    /// Whether the buffer is loaded and enabled (a write may be in flight).
    pub fn is_enabled(&self) -> bool {
        // Relaxed: a snapshot for diagnostics.
        self.hot.0.status.load(Ordering::Relaxed) != status::NONWRITABLE
    }
}

impl Default for RingBuffer<'_> {
    fn default() -> Self {
        Self::new()
    }
}
