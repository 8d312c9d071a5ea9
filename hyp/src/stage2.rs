//! The host's stage-2 translation: an identity map of what the host may touch, built with
//! `aarch64-paging` into tables the hypervisor owns.
//!
//! Layout (4 KiB granule, 39-bit IPA, translation starting at level 1, as [`VTCR_EL2`]
//! describes): RAM as Normal write-back memory in 2 MiB blocks, without the hypervisor's private
//! region, so any host access there faults to EL2. Of the MMIO space only the device pages the
//! host needs are mapped: on QEMU `virt` the UART. Devices that can write memory on the host's
//! behalf — fw_cfg's DMA interface, the GIC ITS and redistributors with their in-memory
//! tables, virtio — stay unmapped, since their writes would bypass stage 2. Everything else is
//! unmapped. Plain computation over a [`TablePool`]; the arch layer builds it once at boot with
//! the EL2 MMU and caches on (so the table walker, whose walks VTCR_EL2 makes inner-shareable
//! write-back, reads what was written without cleaning), points VTTBR_EL2 at it and sets
//! HCR_EL2.VM. The tables never change afterwards.

use core::ops::Range;

use aarch64_paging::descriptor::{PhysicalAddress, Stage2Attributes};
use aarch64_paging::paging::{Constraints, MemoryRegion, Stage2};
use aarch64_paging::Mapping;

use crate::table_pool::{leaf_attributes, PoolTranslation, TablePool};

/// VTCR_EL2: RES1 bit 31, PS = 40-bit PA (0b010), TG0 = 4 KiB, SH0 = inner shareable,
/// ORGN0 = IRGN0 = write-back, SL0 = start at level 1, T0SZ = 25 (39-bit IPA).
pub const VTCR_EL2: u64 = 0x8002_3559;

/// Bytes a level-1 entry maps.
pub const L1_SIZE: u64 = 1 << 30;
/// Bytes a level-2 entry maps.
pub const L2_SIZE: u64 = 1 << 21;
/// Highest IPA + 1 the tables cover (39 bits).
pub const IPA_LIMIT: u64 = 1 << 39;
/// Most GiB of RAM the tables can describe (one level-2 table each, see [`STAGE2_TABLE_PAGES`]).
pub const MAX_RAM_GIB: usize = 4;

/// Most device pages the host may be given.
pub const MAX_DEVICES: usize = 4;

/// Tables the stage-2 map needs at most: the root, a level-2 table per GiB of RAM and for the
/// MMIO GiB, and a level-3 table per device page (each may sit in a 2 MiB block of its own).
pub const STAGE2_TABLE_PAGES: usize = 1 + MAX_RAM_GIB + 1 + MAX_DEVICES;

/// The stage-2 tables' pool (a `static` of it lives in BSS).
pub type Stage2Pool = TablePool<Stage2Attributes, STAGE2_TABLE_PAGES>;

/// Host RAM: Normal, inner and outer write-back, inner shareable, read-write, executable.
const NORMAL: Stage2Attributes = Stage2Attributes::VALID
    .union(Stage2Attributes::MEMATTR_NORMAL_INNER_WB)
    .union(Stage2Attributes::MEMATTR_NORMAL_OUTER_WB)
    .union(Stage2Attributes::S2AP_ACCESS_RW)
    .union(Stage2Attributes::SH_INNER)
    .union(Stage2Attributes::ACCESS_FLAG);
/// A device page: Device-nGnRE, read-write, never executable.
const DEVICE: Stage2Attributes = Stage2Attributes::VALID
    .union(Stage2Attributes::MEMATTR_DEVICE_nGnRE)
    .union(Stage2Attributes::S2AP_ACCESS_RW)
    .union(Stage2Attributes::ACCESS_FLAG)
    .union(Stage2Attributes::XN);
/// The memory-type bits of a stage-2 descriptor (MemAttr[3:0]).
const MEMATTR_MASK: usize = 0b1111 << 2;

/// Why the tables could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage2Error {
    /// RAM overlaps the MMIO GiB, extends past the IPA space or spans more than
    /// [`MAX_RAM_GIB`] GiB.
    RamLayout,
    /// RAM or the hypervisor region is not 2 MiB aligned.
    Alignment,
    /// A device page is misaligned or not below RAM's first GiB, or there are more than
    /// [`MAX_DEVICES`].
    DeviceLayout,
}

/// How the host sees one address through stage 2.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Not mapped: a host access faults to the hypervisor.
    None,
    /// Normal memory, read/write/execute.
    Normal,
    /// Device memory, read/write, never executable.
    Device,
}

/// The host's stage-2 tables.
pub struct Stage2Tables<'a> {
    mapping: Mapping<PoolTranslation<'a, Stage2Attributes, STAGE2_TABLE_PAGES>, Stage2>,
}

impl<'a> Stage2Tables<'a> {
    /// Builds the tables for a host with `ram`, excluding `hyp`, and the 4 KiB device pages
    /// `devices` (below the first GiB), over `pool`.
    pub fn build(
        pool: &'a mut Stage2Pool,
        ram: &Range<u64>,
        hyp: &Range<u64>,
        devices: &[u64],
    ) -> Result<Self, Stage2Error> {
        let aligned = |a: u64| a.is_multiple_of(L2_SIZE);
        if ![ram.start, ram.end, hyp.start, hyp.end]
            .into_iter()
            .all(aligned)
        {
            return Err(Stage2Error::Alignment);
        }
        if ram.start < L1_SIZE || ram.end > IPA_LIMIT || ram.start >= ram.end {
            return Err(Stage2Error::RamLayout);
        }
        if (ram.end - 1) / L1_SIZE - ram.start / L1_SIZE >= MAX_RAM_GIB as u64 {
            return Err(Stage2Error::RamLayout);
        }
        if devices.len() > MAX_DEVICES
            || devices
                .iter()
                .any(|d| !d.is_multiple_of(4096) || *d >= L1_SIZE)
        {
            return Err(Stage2Error::DeviceLayout);
        }
        let mut tables = Self {
            mapping: Mapping::new(pool.translation(), 1, Stage2),
        };
        let below = ram.start..hyp.start.clamp(ram.start, ram.end);
        let above = hyp.end.clamp(ram.start, ram.end)..ram.end;
        for part in [below, above].iter().filter(|r| r.start < r.end) {
            tables.map(part, NORMAL, Constraints::empty());
        }
        for device in devices {
            tables.map(
                &(*device..device + 4096),
                DEVICE,
                Constraints::NO_BLOCK_MAPPINGS,
            );
        }
        Ok(tables)
    }

    fn map(&mut self, range: &Range<u64>, flags: Stage2Attributes, constraints: Constraints) {
        let region = MemoryRegion::new(range.start as usize, range.end as usize);
        // The ranges were checked above (aligned, inside the 39-bit IPA space) and the tables
        // are not live yet: aarch64-paging has no reason to refuse.
        self.mapping
            .map_range(
                &region,
                PhysicalAddress(range.start as usize),
                flags,
                constraints,
            )
            .expect("stage-2 ranges were checked before mapping");
    }

    /// Physical address of the level-1 table, for VTTBR_EL2 (VMID 0).
    pub fn root_address(&self) -> u64 {
        self.mapping.root_address().0 as u64
    }

    /// Walks the tables for `ipa`. For tests and diagnostics.
    pub fn access(&self, ipa: u64) -> Access {
        if ipa >= IPA_LIMIT {
            return Access::None;
        }
        match self.attributes(ipa) {
            None => Access::None,
            Some(a) if a.bits() & MEMATTR_MASK == NORMAL.bits() & MEMATTR_MASK => Access::Normal,
            Some(_) => Access::Device,
        }
    }

    /// The leaf attributes at `ipa` (the descriptor without its output address).
    fn attributes(&self, ipa: u64) -> Option<Stage2Attributes> {
        leaf_attributes(&self.mapping, ipa)
    }
}

/// The faulting IPA of a stage-2 abort: HPFAR_EL2.FIPA (bits 43:4, the IPA's bits 51:12)
/// shifted into place, plus the page offset from FAR_EL2.
pub const fn fault_ipa(hpfar: u64, far: u64) -> u64 {
    ((hpfar & 0x0000_0fff_ffff_fff0) << 8) | (far & 0xfff)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RAM: Range<u64> = 0x4000_0000..0x8000_0000;
    const HYP: Range<u64> = 0x4020_0000..0x4100_0000;

    fn built(pool: &mut Stage2Pool, ram: Range<u64>) -> Stage2Tables<'_> {
        Stage2Tables::build(pool, &ram, &HYP, &[0x0900_0000]).unwrap()
    }

    #[test]
    fn host_sees_ram_and_mmio_but_not_the_hypervisor() {
        let mut pool = Box::new(Stage2Pool::new());
        let t = built(&mut pool, RAM);
        assert_eq!(t.access(0x0900_0000), Access::Device, "UART");
        assert_eq!(t.access(0x0900_0fff), Access::Device, "UART's last byte");
        assert_eq!(t.access(0x0900_1000), Access::None, "next page");
        assert_eq!(
            t.access(0x0902_0000),
            Access::None,
            "fw_cfg (DMA writes memory)"
        );
        assert_eq!(
            t.access(0x0808_0000),
            Access::None,
            "GIC ITS (writes tables in memory)"
        );
        assert_eq!(t.access(0x0800_0000), Access::None, "GIC distributor");
        assert_eq!(t.access(0x0a00_0000), Access::None, "virtio");
        assert_eq!(t.access(0x4000_0000), Access::Normal, "DTB");
        assert_eq!(t.access(0x401f_ffff), Access::Normal);
        assert_eq!(t.access(0x4020_0000), Access::None, "hypervisor image");
        assert_eq!(
            t.access(0x40ff_ffff),
            Access::None,
            "hypervisor's last byte"
        );
        assert_eq!(t.access(0x4100_0000), Access::Normal, "host image");
        assert_eq!(t.access(0x7fff_ffff), Access::Normal);
        assert_eq!(t.access(0x8000_0000), Access::None, "past RAM");
        assert_eq!(t.access(0x40_1000_0000), Access::None, "high PCIe");
        assert_eq!(t.access(u64::MAX), Access::None);
    }

    #[test]
    fn descriptors_are_what_the_architecture_wants() {
        let mut pool = Box::new(Stage2Pool::new());
        let t = built(&mut pool, RAM);
        assert_eq!(
            t.attributes(0x0900_0000).unwrap().bits(),
            0x0040_0000_0000_04c7,
            "device page, AF, RW, XN"
        );
        assert_eq!(
            t.attributes(0x4000_0000).unwrap().bits(),
            0x7fd,
            "normal WB block, inner shareable, AF, RW"
        );
        assert_eq!(t.root_address() % 4096, 0);
    }

    #[test]
    fn bigger_ram_spans_several_tables() {
        let mut pool = Box::new(Stage2Pool::new());
        let t = built(&mut pool, 0x4000_0000..0x1_4000_0000);
        assert_eq!(t.access(0x1_3fff_ffff), Access::Normal);
        assert_eq!(t.access(0x1_4000_0000), Access::None);
        assert_eq!(t.access(0x4020_0000), Access::None);
    }

    #[test]
    fn bad_layouts_are_refused() {
        let mut pool = Box::new(Stage2Pool::new());
        let uart = [0x0900_0000];
        let misaligned = 0x4000_1000..0x8000_0000;
        let build = |pool: &mut Stage2Pool, ram: &Range<u64>, devices: &[u64]| {
            Stage2Tables::build(pool, ram, &HYP, devices).map(|_| ())
        };
        assert_eq!(
            build(&mut pool, &misaligned, &uart),
            Err(Stage2Error::Alignment)
        );
        assert_eq!(
            build(&mut pool, &(0..0x8000_0000), &uart),
            Err(Stage2Error::RamLayout)
        );
        let five_gib = 0x4000_0000..0x1_8000_0000;
        assert_eq!(
            build(&mut pool, &five_gib, &uart),
            Err(Stage2Error::RamLayout)
        );
        for devices in [&[0x0900_0008][..], &[0x4000_0000]] {
            let r = build(&mut pool, &RAM, devices);
            assert_eq!(r, Err(Stage2Error::DeviceLayout), "{devices:x?}");
        }
    }

    #[test]
    fn without_devices_nothing_below_ram_is_mapped() {
        let mut pool = Box::new(Stage2Pool::new());
        let t = Stage2Tables::build(&mut pool, &RAM, &HYP, &[]).unwrap();
        assert_eq!(
            t.access(0x0900_0000),
            Access::None,
            "no devices: nothing in GiB 0"
        );
        assert_eq!(t.access(0x4100_0000), Access::Normal);
    }

    #[test]
    fn devices_in_different_blocks_are_mapped_each() {
        let mut pool = Box::new(Stage2Pool::new());
        let devices = [0x0900_0000, 0x0a00_0000];
        let t = Stage2Tables::build(&mut pool, &RAM, &HYP, &devices).unwrap();
        assert_eq!(t.access(0x0900_0000), Access::Device);
        assert_eq!(t.access(0x0a00_0000), Access::Device);
        assert_eq!(t.access(0x0a00_1000), Access::None);
    }

    #[test]
    fn the_largest_layout_fits_the_pool() {
        let mut pool = Box::new(Stage2Pool::new());
        // RAM over four GiBs (a level-2 table each) and devices in blocks of their own.
        let four_gib = 0x4020_0000..0x1_4000_0000;
        let hyp = 0x4040_0000..0x4100_0000;
        let devices = [0x0900_0000, 0x0a00_0000, 0x0c00_0000, 0x1000_0000];
        let t = Stage2Tables::build(&mut pool, &four_gib, &hyp, &devices).unwrap();
        assert_eq!(t.access(0x1_3fff_f000), Access::Normal);
        assert!(devices.iter().all(|d| t.access(*d) == Access::Device));
        let five = [
            0x0900_0000,
            0x0a00_0000,
            0x0c00_0000,
            0x1000_0000,
            0x2000_0000,
        ];
        let mut other = Box::new(Stage2Pool::new());
        let r = Stage2Tables::build(&mut other, &RAM, &HYP, &five).map(|_| ());
        assert_eq!(r, Err(Stage2Error::DeviceLayout));
    }

    #[test]
    fn fault_ipa_from_observed_registers() {
        // QEMU 7.2: a load from 0x4100_0040 gave HPFAR_EL2 0x41_0000 and FAR 0x4100_0040.
        assert_eq!(fault_ipa(0x41_0000, 0x4100_0040), 0x4100_0040);
    }
}
