//! The host's page allocator: 4 KiB pages from one physical range, tracked in a bitmap.
//!
//! Ring-buffer pages and packs come from here. Freed pages are reused, so load/teardown
//! cycles with different sizes do not leak. The allocator only hands out addresses; it never
//! touches the memory itself, which keeps it testable on the development machine.

use alloc::vec;
use alloc::vec::Vec;
use core::ops::Range;

/// Page size of the pool: the ABI's page.
pub use hyptrace_abi::page::PAGE_SIZE_U64 as PAGE_SIZE;

/// Why an allocation or free failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolError {
    /// Not enough free pages (contiguous ones, for [`PagePool::alloc_contiguous`]).
    Exhausted,
    /// Freeing an address that is not an allocated page of this pool.
    NotAllocated(u64),
}

/// A bitmap page allocator over `range` (page-aligned inward).
pub struct PagePool {
    base: u64,
    pages: usize,
    used: Vec<u64>,
    free: usize,
    /// Where the next search starts (pages are handed out roughly in order).
    hint: usize,
}

impl PagePool {
    /// A pool of every whole page inside `range`.
    pub fn new(range: Range<u64>) -> Self {
        let base = range.start.next_multiple_of(PAGE_SIZE);
        let end = range.end - range.end % PAGE_SIZE;
        let pages = end.saturating_sub(base) / PAGE_SIZE;
        let pages = pages as usize;
        Self {
            base,
            pages,
            used: vec![0; pages.div_ceil(64)],
            free: pages,
            hint: 0,
        }
    }

    /// Pages not allocated.
    pub fn free_pages(&self) -> usize {
        self.free
    }

    /// Pages in the pool.
    pub fn total_pages(&self) -> usize {
        self.pages
    }

    fn is_used(&self, i: usize) -> bool {
        self.used[i / 64] & (1 << (i % 64)) != 0
    }

    fn set(&mut self, i: usize, used: bool) {
        if used {
            self.used[i / 64] |= 1 << (i % 64);
        } else {
            self.used[i / 64] &= !(1 << (i % 64));
        }
    }

    /// Allocates one page; returns its physical address.
    pub fn alloc(&mut self) -> Result<u64, PoolError> {
        if self.free == 0 {
            return Err(PoolError::Exhausted);
        }
        for step in 0..self.pages {
            let i = (self.hint + step) % self.pages;
            if !self.is_used(i) {
                self.set(i, true);
                self.free -= 1;
                self.hint = (i + 1) % self.pages;
                return Ok(self.base + i as u64 * PAGE_SIZE);
            }
        }
        Err(PoolError::Exhausted)
    }

    /// Allocates `count` physically contiguous pages; returns the first address.
    pub fn alloc_contiguous(&mut self, count: usize) -> Result<u64, PoolError> {
        if count == 0 || count > self.free {
            return Err(PoolError::Exhausted);
        }
        let mut run = 0;
        for i in 0..self.pages {
            run = if self.is_used(i) { 0 } else { run + 1 };
            if run == count {
                let first = i + 1 - count;
                (first..=i).for_each(|p| self.set(p, true));
                self.free -= count;
                return Ok(self.base + first as u64 * PAGE_SIZE);
            }
        }
        Err(PoolError::Exhausted)
    }

    /// Returns a page to the pool.
    pub fn free(&mut self, addr: u64) -> Result<(), PoolError> {
        let index = addr
            .checked_sub(self.base)
            .filter(|off| off % PAGE_SIZE == 0)
            .map(|off| (off / PAGE_SIZE) as usize)
            .filter(|i| *i < self.pages && self.is_used(*i))
            .ok_or(PoolError::NotAllocated(addr))?;
        self.set(index, false);
        self.free += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocates_every_page_once_then_runs_out() {
        let mut pool = PagePool::new(0x1000..0x6000);
        assert_eq!(pool.total_pages(), 5);
        let mut got: Vec<u64> = (0..5).map(|_| pool.alloc().unwrap()).collect();
        got.sort();
        assert_eq!(got, [0x1000, 0x2000, 0x3000, 0x4000, 0x5000]);
        assert_eq!(pool.alloc(), Err(PoolError::Exhausted));
        pool.free(0x3000).unwrap();
        assert_eq!(pool.alloc(), Ok(0x3000));
    }

    #[test]
    fn unaligned_range_is_trimmed() {
        let pool = PagePool::new(0x1001..0x4fff);
        assert_eq!(pool.total_pages(), 2, "0x2000 and 0x3000 only");
    }

    #[test]
    fn bad_frees_are_refused() {
        let mut pool = PagePool::new(0x10000..0x20000);
        let a = pool.alloc().unwrap();
        assert_eq!(pool.free(a + 8), Err(PoolError::NotAllocated(a + 8)));
        assert_eq!(pool.free(0x0), Err(PoolError::NotAllocated(0)));
        assert_eq!(pool.free(0x20000), Err(PoolError::NotAllocated(0x20000)));
        pool.free(a).unwrap();
        assert_eq!(pool.free(a), Err(PoolError::NotAllocated(a)), "double free");
        assert_eq!(pool.free_pages(), 16);
    }

    #[test]
    fn contiguous_runs_skip_holes() {
        let mut pool = PagePool::new(0..0x8000);
        let a = pool.alloc().unwrap();
        let b = pool.alloc().unwrap();
        pool.free(a).unwrap();
        // Page 0 free, page 1 used: a run of 3 starts at page 2.
        assert_eq!(b, 0x1000);
        assert_eq!(pool.alloc_contiguous(3), Ok(0x2000));
        assert_eq!(pool.alloc_contiguous(4), Err(PoolError::Exhausted));
        assert_eq!(pool.alloc_contiguous(3), Ok(0x5000));
        assert_eq!(pool.alloc_contiguous(0), Err(PoolError::Exhausted));
    }
}
