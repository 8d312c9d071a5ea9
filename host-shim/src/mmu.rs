//! The host's own stage-1 identity map at EL1, as a Linux host would have one: RAM Normal
//! write-back inner shareable (so the ring pages it shares with the hypervisor are cacheable on
//! both sides, as the orderings in `docs/ring-buffer.md` assume), the console Device-nGnRE,
//! the host's code read-only and executable, everything else never executable.
//!
//! The hypervisor's region stays mapped here, like all of RAM in a Linux host's linear map: it
//! is stage 2 that refuses the host's accesses to it. Likewise every address outside RAM in
//! the 39-bit space is mapped as Device-nGnRE, never executable: the devices stage 2 hides
//! from the host (the GIC, fw_cfg, virtio) and addresses with nothing behind them. So any
//! host access the isolation tests probe passes the host's own stage 1 and meets stage 2,
//! which is what they test; Device memory is never accessed speculatively, so the mapping
//! invites no stray accesses.
//! Built with `aarch64-paging` over a small [`TablePool`]; the arch layer writes the registers
//! ([`MmuConfig`]) on every CPU before it relies on memory.

use core::ops::Range;

use aarch64_paging::descriptor::{El1Attributes, PhysicalAddress};
use aarch64_paging::paging::{Constraints, El1And0, MemoryRegion, VaRange};
use aarch64_paging::{MapError, Mapping};
use hyptrace_platform::mmu::MmuConfig;
use hyptrace_platform::table_pool::{PoolTranslation, TablePool};

/// Tables the host map needs: root, a level-2 table per GiB (MMIO and RAM, RAM up to 4 GiB),
/// a level-3 table for the console and one per 2 MiB of the host's code.
pub const HOST_TABLE_PAGES: usize = 16;

/// The host map's table pool.
pub type HostTablePool = TablePool<El1Attributes, HOST_TABLE_PAGES>;

/// SCTLR_EL1 RES1 bits: 11, 20, 22, 23, 28, 29.
pub const SCTLR_EL1_RES1: u64 = 0x30d0_0800;
/// SCTLR_EL1 while the host runs: MMU (M), alignment checks (A), data and instruction caches
/// (C, I), SP alignment checks at EL1 and EL0 (SA, SA0), write-implies-never-execute (WXN).
pub const SCTLR_EL1_ON: u64 =
    SCTLR_EL1_RES1 | 1 | (1 << 1) | (1 << 2) | (1 << 3) | (1 << 4) | (1 << 12) | (1 << 19);

/// MAIR_EL1: the hypervisor's attribute indexes (0 Device-nGnRE, 1 Normal write-back RWA).
pub const MAIR_EL1: u64 = hyptrace_platform::mmu::MAIR;

/// TCR_EL1 for a 39-bit TTBR0 identity map with `pa_range` from `ID_AA64MMFR0_EL1`: T0SZ 25,
/// inner-shareable write-back walks, 4 KiB granule, no TTBR1 walks (EPD1; T1SZ 25 and
/// TG1 = 4 KiB so the unused half is still described by legal values), IPS the physical
/// address size capped at 48 bits.
pub const fn tcr_el1(pa_range: u64) -> u64 {
    let ips = if pa_range & 0xf > 0b101 {
        0b101
    } else {
        pa_range & 0xf
    };
    const T0SZ: u64 = 25;
    const IRGN0_WBWA: u64 = 0b01 << 8;
    const ORGN0_WBWA: u64 = 0b01 << 10;
    const SH0_INNER: u64 = 0b11 << 12;
    const T1SZ: u64 = 25 << 16;
    const EPD1: u64 = 1 << 23;
    const TG1_4K: u64 = 0b10 << 30;
    T0SZ | IRGN0_WBWA | ORGN0_WBWA | SH0_INNER | T1SZ | EPD1 | TG1_4K | (ips << 32)
}

const LEAF: El1Attributes = El1Attributes::VALID.union(El1Attributes::ACCESSED);
const NORMAL: El1Attributes = LEAF
    .union(El1Attributes::ATTRIBUTE_INDEX_1)
    .union(El1Attributes::INNER_SHAREABLE)
    .union(El1Attributes::UXN);
/// The host's code: read-only, executable at EL1 only.
const TEXT: El1Attributes = NORMAL.union(El1Attributes::READ_ONLY);
/// RAM: read-write, never executable.
const DATA: El1Attributes = NORMAL.union(El1Attributes::PXN);
/// Everything outside RAM, the console included: Device-nGnRE, never executable.
const DEVICE: El1Attributes = LEAF
    .union(El1Attributes::ATTRIBUTE_INDEX_0)
    .union(El1Attributes::PXN)
    .union(El1Attributes::UXN);

/// What the host map covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostLayout {
    /// The RAM bank.
    pub ram: Range<u64>,
    /// The host's `.text` (page-aligned, inside `ram`).
    pub text: Range<u64>,
}

/// The host map's reach: 39 bits (TCR_EL1.T0SZ 25).
const VA_LIMIT: u64 = 1 << 39;

/// The host's stage-1 tables.
pub struct HostMap<'a> {
    mapping: Mapping<PoolTranslation<'a, El1Attributes, HOST_TABLE_PAGES>, El1And0>,
}

impl<'a> HostMap<'a> {
    /// Builds the identity map of `layout` over `pool` (before the MMU is on: no TLB
    /// maintenance, no locks).
    pub fn new(pool: &'a mut HostTablePool, layout: &HostLayout) -> Result<Self, MapError> {
        let mut mapping =
            Mapping::with_asid_and_va_range(pool.translation(), 0, 1, El1And0, VaRange::Lower);
        let mut map = |range: &Range<u64>, flags, constraints| {
            let region = MemoryRegion::new(range.start as usize, range.end as usize);
            mapping.map_range(
                &region,
                PhysicalAddress(range.start as usize),
                flags,
                constraints,
            )
        };
        // Blocks where they fit: devices below and above RAM, RAM, then the code over it in
        // pages.
        map(&(0..layout.ram.start), DEVICE, Constraints::empty())?;
        map(&(layout.ram.end..VA_LIMIT), DEVICE, Constraints::empty())?;
        map(&layout.ram, DATA, Constraints::empty())?;
        map(&layout.text, TEXT, Constraints::NO_BLOCK_MAPPINGS)?;
        Ok(Self { mapping })
    }

    /// The register values that turn the MMU on with this map.
    pub fn mmu_config(&self, pa_range: u64) -> MmuConfig {
        MmuConfig {
            mair: MAIR_EL1,
            tcr: tcr_el1(pa_range),
            ttbr0: self.mapping.root_address().0 as u64,
            sctlr: SCTLR_EL1_ON,
        }
    }

    /// Tables taken from the pool.
    pub fn tables_in_use(&self) -> usize {
        self.mapping.translation().in_use()
    }

    /// The leaf attributes at `addr`, or `None` when it is unmapped.
    pub fn attributes(&self, addr: u64) -> Option<El1Attributes> {
        hyptrace_platform::table_pool::leaf_attributes(&self.mapping, addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> HostLayout {
        HostLayout {
            ram: 0x4000_0000..0x8000_0000,
            text: 0x4100_0000..0x4105_0000,
        }
    }

    #[test]
    fn ram_code_and_console_have_their_attributes() {
        let mut pool = Box::new(HostTablePool::new());
        let map = HostMap::new(&mut pool, &layout()).unwrap();
        let text = map.attributes(0x4100_4000).unwrap();
        assert!(text.contains(El1Attributes::READ_ONLY) && !text.contains(El1Attributes::PXN));
        for addr in [
            0x4000_0000,
            0x4020_0000,
            0x4105_0000,
            0x4200_0000,
            0x7fff_f000,
        ] {
            let a = map
                .attributes(addr)
                .unwrap_or_else(|| panic!("{addr:#x} unmapped"));
            assert!(!a.contains(El1Attributes::READ_ONLY), "{addr:#x} writable");
            assert!(
                a.contains(El1Attributes::PXN | El1Attributes::UXN),
                "{addr:#x} XN"
            );
            assert!(a.contains(El1Attributes::ATTRIBUTE_INDEX_1 | El1Attributes::INNER_SHAREABLE));
        }
        let uart = map.attributes(0x0900_0000).unwrap();
        assert_eq!(
            uart & El1Attributes::ATTRIBUTE_INDEX_MASK,
            El1Attributes::ATTRIBUTE_INDEX_0
        );
        assert!(uart.contains(El1Attributes::PXN | El1Attributes::UXN));
        // Every other address is a device to the host's stage 1 (stage 2 decides).
        for addr in [
            0x0900_1000,
            0x0800_0000,
            0x0,
            0x8000_0000,
            0x40_0000_0000,
            (1 << 39) - 8,
        ] {
            let a = map
                .attributes(addr)
                .unwrap_or_else(|| panic!("{addr:#x} unmapped"));
            assert_eq!(
                a & El1Attributes::ATTRIBUTE_INDEX_MASK,
                El1Attributes::ATTRIBUTE_INDEX_0
            );
        }
        assert_eq!(map.attributes(1 << 39), None, "beyond the 39-bit space");
        assert!(map.tables_in_use() <= HOST_TABLE_PAGES);
    }

    #[test]
    fn registers() {
        let tcr = tcr_el1(2);
        assert_eq!(tcr & 0x3f, 25);
        assert_eq!((tcr >> 32) & 0b111, 2);
        assert_ne!(tcr & (1 << 23), 0, "no TTBR1 walks");
        assert_eq!((tcr >> 16) & 0x3f, 25, "T1SZ in range");
        for bit in [0, 1, 2, 3, 12] {
            assert_ne!(SCTLR_EL1_ON & (1 << bit), 0, "SCTLR_EL1 bit {bit}");
        }
    }
}
