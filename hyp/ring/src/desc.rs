//! Page descriptors: the writer-private description of one page of a ring.
//!
//! The ring's order lives in the descriptors' link words, never in the shared pages: a reader
//! that scribbles over its pages cannot redirect the writer. A link word holds the next
//! page's descriptor index and two flags, HEAD (the next page is the oldest unread one) and
//! UPDATE (the writer is pushing the head past it):
//!
//! ```text
//! bits 63..32  tag    incremented on every store, so a compare-and-swap never succeeds
//!                     on a stale value that happens to look the same (no ABA)
//! bits 31..2   index  of the next page's descriptor
//! bits  1..0   flags  HEAD = 1, UPDATE = 2
//! ```

use crate::page_io::PageRef;
use crate::sync::{self, AtomicPtr, AtomicU32, AtomicU64, Ordering};

/// Most ring pages per CPU (the link word keeps 30 bits of descriptor index).
pub const MAX_RING_PAGES: usize = (1 << 30) - 2;

pub(crate) const LINK_HEAD: u64 = 1;
pub(crate) const LINK_UPDATE: u64 = 2;
#[cfg(all(test, not(loom)))]
pub(crate) const LINK_FLAGS: u64 = 3;

#[inline(always)]
pub(crate) const fn link(index: usize, flags: u64, tag: u32) -> u64 {
    ((tag as u64) << 32) | ((index as u64) << 2) | flags
}

#[inline(always)]
pub(crate) const fn link_index(l: u64) -> usize {
    ((l as u32) >> 2) as usize
}

#[inline(always)]
pub(crate) const fn link_tag(l: u64) -> u32 {
    (l >> 32) as u32
}

/// Writer-private descriptor of one page of a ring: where the page is, which page follows
/// it (with the HEAD / UPDATE flags), and how many events it holds.
///
/// [`RingBuffer::load`](crate::RingBuffer::load) takes `nr_pages + 1` of them (ring pages
/// plus the reader page) from memory the reader cannot write, e.g. a static pool;
/// [`DESC_SIZE`] bytes each.
///
/// ```
/// use hyptrace_ring::PageDesc;
///
/// // A pool for up to 63 ring pages, in a static: no allocation needed.
/// static POOL: [PageDesc; 64] = [const { PageDesc::new() }; 64];
/// assert_eq!(POOL.len(), 64);
/// ```
#[derive(Debug)]
pub struct PageDesc {
    /// Next page's index, flags and tag.
    pub(crate) link: AtomicU64,
    /// The page.
    pub(crate) page: AtomicPtr<u8>,
    /// Events on the page, stored by the writer when it leaves the page.
    pub(crate) entries: AtomicU32,
}

/// Size of one [`PageDesc`] (to size descriptor pools).
pub const DESC_SIZE: usize = core::mem::size_of::<PageDesc>();

impl PageDesc {
    sync::const_unless_loom! {
        /// An unused descriptor (usable in a `static` pool).
        pub fn new() -> Self {
            Self {
                link: AtomicU64::new(0),
                page: AtomicPtr::new(core::ptr::null_mut()),
                entries: AtomicU32::new(0),
            }
        }
    }

    #[inline(always)]
    pub(crate) fn page_ptr(&self) -> *mut u8 {
        // Relaxed: `page` is stored only by `load`, under the control lock and before the
        // status Release store that lets a writer in (or the lock release), so Relaxed reads
        // by a writer or lock holder see it.
        self.page.load(Ordering::Relaxed)
    }

    /// The page of a descriptor in a loaded ring.
    pub(crate) fn page_nonnull(&self) -> core::ptr::NonNull<u8> {
        let p = self.page_ptr();
        debug_assert!(!p.is_null());
        // SAFETY: descriptors in a loaded ring hold pointers `load` took from `NonNull`s.
        unsafe { core::ptr::NonNull::new_unchecked(p) }
    }

    #[inline(always)]
    pub(crate) fn page_ref(&self) -> PageRef {
        // SAFETY: descriptors in a loaded ring only hold page pointers accepted by
        // `RingBuffer::load`, whose contract makes them valid pages while loaded.
        unsafe { PageRef::new(self.page_ptr()) }
    }
}

impl Default for PageDesc {
    fn default() -> Self {
        Self::new()
    }
}
