//! Which physical pages the host may name in a pack, and in which order the rules are checked.
//!
//! Every address in a pack is hostile input. A page is acceptable only if it is page-aligned,
//! lies wholly inside host RAM (which excludes MMIO by construction), does not touch the
//! hypervisor's region and is not part of the pack itself; that it is named only once across
//! all CPUs is checked by the ownership table ([`super::ownership`]).
//! All bounds are computed with checked arithmetic: an address near `u64::MAX` is rejected,
//! never wrapped.

use core::ops::Range;

use crate::abi::limits::MAX_PACK_SIZE;
use crate::abi::page::PAGE_SIZE_U64 as PAGE_SIZE;
use crate::abi::HypError;

/// The memory facts validation needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoryRules {
    /// RAM the host owns: the machine's RAM bank (the hypervisor's region is excluded by
    /// [`Self::hyp`]).
    pub ram: Range<u64>,
    /// The hypervisor's private region.
    pub hyp: Range<u64>,
}

fn overlaps(a: &Range<u64>, b: &Range<u64>) -> bool {
    a.start < b.end && b.start < a.end
}

impl MemoryRules {
    /// The byte range `[start, start + len)`, or `None` if it wraps.
    fn span(start: u64, len: u64) -> Option<Range<u64>> {
        Some(start..start.checked_add(len)?)
    }

    /// Checks the pack's own location and size (before anything is read from it).
    pub fn check_pack(&self, pack_pa: u64, size: u64) -> Result<Range<u64>, HypError> {
        if !pack_pa.is_multiple_of(PAGE_SIZE) {
            return Err(HypError::PackMisaligned);
        }
        if size == 0 || !size.is_multiple_of(PAGE_SIZE) || size > MAX_PACK_SIZE {
            return Err(HypError::PackSize);
        }
        let span = Self::span(pack_pa, size).ok_or(HypError::PageNotRam)?;
        self.check_range(&span)?;
        Ok(span)
    }

    /// Checks one page named in a pack located at `pack`.
    pub fn check_page(&self, page: u64, pack: &Range<u64>) -> Result<(), HypError> {
        if !page.is_multiple_of(PAGE_SIZE) {
            return Err(HypError::PageMisaligned);
        }
        let span = Self::span(page, PAGE_SIZE).ok_or(HypError::PageNotRam)?;
        self.check_range(&span)?;
        if overlaps(&span, pack) {
            return Err(HypError::PageDuplicate);
        }
        Ok(())
    }

    fn check_range(&self, span: &Range<u64>) -> Result<(), HypError> {
        if overlaps(span, &self.hyp) {
            return Err(HypError::PageInHyp);
        }
        if span.start < self.ram.start || span.end > self.ram.end {
            return Err(HypError::PageNotRam);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> MemoryRules {
        MemoryRules {
            ram: 0x4000_0000..0x8000_0000,
            hyp: 0x4020_0000..0x4100_0000,
        }
    }

    #[test]
    fn pack_location() {
        let r = rules();
        assert_eq!(
            r.check_pack(0x4200_0000, 0x1000),
            Ok(0x4200_0000..0x4200_1000)
        );
        assert_eq!(
            r.check_pack(0x4200_0008, 0x1000),
            Err(HypError::PackMisaligned)
        );
        assert_eq!(r.check_pack(0x4200_0000, 0), Err(HypError::PackSize));
        assert_eq!(r.check_pack(0x4200_0000, 0x800), Err(HypError::PackSize));
        assert_eq!(
            r.check_pack(0x4200_0000, MAX_PACK_SIZE + 0x1000),
            Err(HypError::PackSize)
        );
        assert_eq!(r.check_pack(0x4020_0000, 0x1000), Err(HypError::PageInHyp));
        // Starts below the hypervisor and runs into it.
        assert_eq!(r.check_pack(0x401f_f000, 0x2000), Err(HypError::PageInHyp));
        assert_eq!(r.check_pack(0x0900_0000, 0x1000), Err(HypError::PageNotRam));
        assert_eq!(r.check_pack(0x7fff_f000, 0x2000), Err(HypError::PageNotRam));
        assert_eq!(r.check_pack(!0xfff_u64, 0x2000), Err(HypError::PageNotRam));
    }

    #[test]
    fn pages() {
        let r = rules();
        let pack = 0x4200_0000..0x4200_2000;
        assert_eq!(r.check_page(0x4300_0000, &pack), Ok(()));
        assert_eq!(
            r.check_page(0x4300_0004, &pack),
            Err(HypError::PageMisaligned)
        );
        assert_eq!(
            r.check_page(0x0800_0000, &pack),
            Err(HypError::PageNotRam),
            "MMIO"
        );
        assert_eq!(
            r.check_page(0x8000_0000, &pack),
            Err(HypError::PageNotRam),
            "past RAM"
        );
        assert_eq!(r.check_page(0x40ff_f000, &pack), Err(HypError::PageInHyp));
        assert_eq!(r.check_page(0x4020_0000, &pack), Err(HypError::PageInHyp));
        assert_eq!(
            r.check_page(0x4200_1000, &pack),
            Err(HypError::PageDuplicate),
            "in the pack"
        );
        assert_eq!(r.check_page(!0xfff_u64, &pack), Err(HypError::PageNotRam));
    }
}
