//! How the tracing service reaches host pages: mapped into the hypervisor only while shared.
//!
//! The hypervisor does not map host RAM (see [`crate::el2_map`]). `load_tracing` maps the pack
//! read-only while it copies it and unmaps it before returning; it maps the ring pages
//! read-write once they are validated and shared, and `teardown_tracing` unmaps them before
//! they are the host's again. The service does that through this trait, so it runs unchanged
//! over the real EL2 tables, over tables in ordinary memory in tests, or over memory that is
//! simply always there ([`IdentityMapped`]).

use core::ops::Range;
use core::ptr::NonNull;

use crate::abi::HypError;
use crate::el2_map::{El2Map, El2MapError};

/// Maps and unmaps host pages at EL2, at their own (physical) address.
pub trait HostMemory: Sync {
    /// Maps the page-aligned range `range`, writable or read-only, never executable.
    /// Fails with [`HypError::NoMemory`] when the hypervisor has no table left for it, with
    /// nothing mapped.
    fn map(&self, range: Range<u64>, writable: bool) -> Result<(), HypError>;

    /// Unmaps `range`; when this returns no CPU can reach it any more (TLBs invalidated).
    fn unmap(&self, range: Range<u64>);
}

/// The pointer through which the hypervisor reaches the page at host address `pa` once a
/// [`HostMemory`] has mapped it: the same address (every `HostMemory` maps host pages at their
/// own address, and `TracingService::load`'s contract says that address is host memory), with
/// the provenance host memory has in this address space. `None` for address 0, which no host
/// RAM has.
pub fn host_pointer(pa: u64) -> Option<NonNull<u8>> {
    NonNull::new(core::ptr::with_exposed_provenance_mut(pa as usize))
}

/// Host memory that is always accessible at its own address (host tests; a system without
/// EL2 tables). Mapping and unmapping do nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct IdentityMapped;

impl HostMemory for IdentityMapped {
    fn map(&self, _range: Range<u64>, _writable: bool) -> Result<(), HypError> {
        Ok(())
    }

    fn unmap(&self, _range: Range<u64>) {}
}

impl From<El2MapError> for HypError {
    fn from(e: El2MapError) -> Self {
        match e {
            El2MapError::OutOfTables => HypError::NoMemory,
            // The service maps only pages the memory rules accepted: a refusal here means the
            // range is one the hypervisor will not map (its own image), or aarch64-paging
            // refused the update.
            El2MapError::BadRange(_) | El2MapError::Paging(_) => HypError::InvalidArgument,
        }
    }
}

impl HostMemory for spin::Mutex<El2Map<'_>> {
    fn map(&self, range: Range<u64>, writable: bool) -> Result<(), HypError> {
        Ok(self.lock().map_host(&range, writable)?)
    }

    fn unmap(&self, range: Range<u64>) {
        // Unmapping a range the service mapped cannot fail: its tables exist and it is not
        // the image. A failure is a hypervisor bug, and leaving the page mapped is not safe.
        if let Err(e) = self.lock().unmap(&range) {
            panic!(
                "unmapping host pages {:#x}..{:#x}: {e}",
                range.start, range.end
            );
        }
    }
}

/// Maps `pages` (page addresses, in any order) writable, in runs of adjacent pages; on failure
/// unmaps what it mapped and returns the error.
pub fn map_pages(memory: &dyn HostMemory, pages: &[u64]) -> Result<(), HypError> {
    let mut mapped = 0;
    for run in runs(pages) {
        if let Err(e) = memory.map(run.clone(), true) {
            unmap_pages(memory, &pages[..mapped]);
            return Err(e);
        }
        mapped += ((run.end - run.start) / crate::abi::page::PAGE_SIZE_U64) as usize;
    }
    Ok(())
}

/// Unmaps `pages`, in runs of adjacent pages.
pub fn unmap_pages(memory: &dyn HostMemory, pages: &[u64]) {
    for run in runs(pages) {
        memory.unmap(run);
    }
}

/// Consecutive entries of `pages` that are adjacent pages, as ranges (in order, covering every
/// entry once).
fn runs(pages: &[u64]) -> impl Iterator<Item = Range<u64>> + '_ {
    use crate::abi::page::PAGE_SIZE_U64 as PAGE_SIZE;
    let mut i = 0;
    core::iter::from_fn(move || {
        let start = *pages.get(i)?;
        let mut end = start + PAGE_SIZE;
        i += 1;
        while pages.get(i) == Some(&end) {
            end += PAGE_SIZE;
            i += 1;
        }
        Some(start..end)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_join_adjacent_pages_only() {
        let pages = [0x1000, 0x2000, 0x3000, 0x8000, 0x7000, 0x9000];
        let r: Vec<_> = runs(&pages).collect();
        assert_eq!(
            r,
            [
                0x1000..0x4000,
                0x8000..0x9000,
                0x7000..0x8000,
                0x9000..0xa000
            ]
        );
        assert_eq!(runs(&[]).count(), 0);
    }
}
