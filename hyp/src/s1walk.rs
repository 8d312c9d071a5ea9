//! Which level of the host's own stage-1 walk met a stage-2 fault (`ESR_EL2.ISS.S1PTW`).
//!
//! When the host's stage-1 table walk reads a descriptor from memory stage 2 refuses (a table
//! the host placed in hypervisor memory, say), the hypervisor hands the host a synchronous
//! external abort on translation table walk, whose fault status names the stage-1 level of
//! the lookup (Arm ARM D17.2.40, DFSC 0b0101LL). The stage-2 syndrome gives the level of the
//! stage-2 fault, not that one, so [`faulting_level`] repeats the host's walk in software: it
//! follows the host's tables from TTBRn_EL1 until the descriptor address falls in the page
//! stage 2 refused (HPFAR_EL2), reading each descriptor through the caller's `read`.
//!
//! Only the 4 KiB granule with 48-bit addresses is followed (what hyptrace's host and most
//! Linux hosts use; not TCR_EL1.DS); for another granule, or when the host's tables changed
//! under the walk, the answer is `None` and the
//! caller reports the walk's first level. Nothing here trusts what it reads: at most four
//! descriptors are read, and only through `read`, which refuses what is not host RAM.

use crate::abi::page::PAGE_SIZE_U64;

/// The host's translation registers the walk needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostTranslation {
    /// TCR_EL1.
    pub tcr: u64,
    /// TTBR0_EL1.
    pub ttbr0: u64,
    /// TTBR1_EL1.
    pub ttbr1: u64,
}

/// Output-address bits of a descriptor or TTBR (4 KiB granule, 48-bit addresses).
const ADDRESS_MASK: u64 = 0x0000_ffff_ffff_f000;
/// BADDR of a TTBR: bits 47:1 (the start-level table may be smaller than a page).
const TTBR_BADDR_MASK: u64 = 0x0000_ffff_ffff_fffe;
/// Descriptor bits 1:0 of a table descriptor at levels 0-2.
const TABLE: u64 = 0b11;

impl HostTranslation {
    /// The walk's parameters for `va`: (TTBR, input-address size), or `None` for a granule
    /// other than 4 KiB or a size out of range.
    fn walk_for(&self, va: u64) -> Option<(u64, u32)> {
        // TCR_EL1.DS (FEAT_LPA2): 52-bit addresses, other descriptor and TTBR layouts.
        if self.tcr & (1 << 59) != 0 {
            return None;
        }
        let upper = va & (1 << 55) != 0;
        let (ttbr, tnsz, four_k) = if upper {
            // TG1 = 0b10: 4 KiB.
            (
                self.ttbr1,
                (self.tcr >> 16) & 0x3f,
                (self.tcr >> 30) & 3 == 0b10,
            )
        } else {
            // TG0 = 0b00: 4 KiB.
            (self.ttbr0, self.tcr & 0x3f, (self.tcr >> 14) & 3 == 0b00)
        };
        let bits = 64 - tnsz as u32;
        (four_k && (25..=48).contains(&bits)).then_some((ttbr, bits))
    }

    /// The level the walk for `va` starts at (4 KiB granule: 9 address bits per level above
    /// the 12-bit page offset), or `None` as for [`faulting_level`].
    pub fn start_level(&self, va: u64) -> Option<u8> {
        let (_, bits) = self.walk_for(va)?;
        Some((4 - (bits - 12).div_ceil(9)) as u8)
    }
}

/// The level of the stage-1 lookup for `va` whose descriptor lies in the page at
/// `fault_page` (from HPFAR_EL2), following the host's tables through `read` (the 8-byte
/// word at a physical address, `None` if the hypervisor will not read it).
pub fn faulting_level(
    host: &HostTranslation,
    va: u64,
    fault_page: u64,
    mut read: impl FnMut(u64) -> Option<u64>,
) -> Option<u8> {
    let (ttbr, bits) = host.walk_for(va)?;
    let start = host.start_level(va)?;
    let fault_page = fault_page & !(PAGE_SIZE_U64 - 1);
    let mut table = ttbr & TTBR_BADDR_MASK;
    for level in start..=3 {
        let shift = 12 + 9 * (3 - u32::from(level));
        let width = if level == start { bits - shift } else { 9 };
        let index = (va >> shift) & ((1 << width) - 1);
        let entry = table.checked_add(index * 8)?;
        if entry & !(PAGE_SIZE_U64 - 1) == fault_page {
            return Some(level);
        }
        if level == 3 {
            return None;
        }
        let desc = read(entry)?;
        if desc & 0b11 != TABLE {
            // A block or an invalid entry: this walk would not have read further.
            return None;
        }
        table = desc & ADDRESS_MASK;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// hyptrace's host: 39-bit TTBR0, 4 KiB granule, TTBR1 walks off (TG1 4 KiB, T1SZ 25).
    const TCR: u64 = 25 | (25 << 16) | (0b10 << 30);

    fn host(root: u64) -> HostTranslation {
        HostTranslation {
            tcr: TCR,
            ttbr0: root | (7 << 48),
            ttbr1: 0,
        }
    }

    #[test]
    fn start_levels_follow_the_input_size() {
        let t = |tnsz: u64| HostTranslation {
            tcr: tnsz,
            ttbr0: 0,
            ttbr1: 0,
        };
        assert_eq!(t(16).start_level(0), Some(0), "48 bits");
        assert_eq!(t(25).start_level(0), Some(1), "39 bits");
        assert_eq!(t(30).start_level(0), Some(1), "34 bits");
        assert_eq!(t(34).start_level(0), Some(2), "30 bits");
        assert_eq!(t(39).start_level(0), Some(2), "25 bits");
        assert_eq!(t(12).start_level(0), None, "52 bits: not followed");
        let sixteen_k = HostTranslation {
            tcr: 25 | (0b10 << 14),
            ttbr0: 0,
            ttbr1: 0,
        };
        assert_eq!(sixteen_k.start_level(0), None);
        let lpa2 = HostTranslation {
            tcr: 16 | (1 << 59),
            ttbr0: 0,
            ttbr1: 0,
        };
        assert_eq!(lpa2.start_level(0), None, "TCR_EL1.DS");
    }

    #[test]
    fn the_level_is_where_the_walk_enters_the_refused_page() {
        // Root at 0x4010_0000; its entry 511 points to a level-2 table at 0x4020_0000 (the
        // hypervisor's page), which the walk must not read.
        let va = 0x7f_c000_1000;
        let mut mem = HashMap::new();
        mem.insert(0x4010_0000 + 511 * 8, 0x4020_0000 | TABLE);
        let read = |pa: u64| {
            assert_ne!(pa & !0xfff, 0x4020_0000, "read the refused page");
            mem.get(&pa).copied()
        };
        let h = host(0x4010_0000);
        assert_eq!(faulting_level(&h, va, 0x4020_0000, read), Some(2));
        // The root itself refused: level 1, nothing read.
        assert_eq!(faulting_level(&h, va, 0x4010_0000, |_| None), Some(1));
    }

    #[test]
    fn a_level_3_table_and_walks_that_do_not_reach_the_page() {
        let va = 0x4000_5000;
        let mut mem = HashMap::new();
        mem.insert(0x5000_0000 + 8, 0x5000_1000 | TABLE);
        mem.insert(0x5000_1000, 0x6000_0000 | TABLE);
        let h = host(0x5000_0000);
        let read = |pa: u64| mem.get(&pa).copied();
        assert_eq!(faulting_level(&h, va, 0x6000_0000, read), Some(3));
        // The refused page is nowhere on the walk.
        assert_eq!(faulting_level(&h, va, 0x7000_0000, read), None);
        // A block at level 2 ends the walk.
        let mut blocks = mem.clone();
        blocks.insert(0x5000_1000, 0x4000_0000 | 0b01);
        assert_eq!(
            faulting_level(&h, va, 0x6000_0000, |pa| blocks.get(&pa).copied()),
            None
        );
        // A descriptor the hypervisor will not read ends it too.
        assert_eq!(faulting_level(&h, va, 0x6000_0000, |_| None), None);
    }

    #[test]
    fn upper_addresses_walk_ttbr1() {
        let h = HostTranslation {
            tcr: 16 | (16 << 16) | (0b10 << 30),
            ttbr0: 0x1000_0000,
            ttbr1: 0x2000_0000,
        };
        assert_eq!(
            faulting_level(&h, 0xffff_0000_0000_0000, 0x2000_0000, |_| None),
            Some(0)
        );
        assert_eq!(
            faulting_level(&h, 0x0000_0000_0000_0000, 0x1000_0000, |_| None),
            Some(0)
        );
    }
}
