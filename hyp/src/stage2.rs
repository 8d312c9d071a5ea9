//! The host's stage-2 translation: an identity map of what the host may touch, built into
//! tables the hypervisor owns.
//!
//! Layout (4 KiB granule, 39-bit IPA, translation starting at level 1, as
//! [`VTCR_EL2`] describes): every GiB of RAM gets a level-2 table of 2 MiB normal-memory
//! blocks, with the blocks of the hypervisor's private region left invalid, so any host access
//! there faults to EL2. Of the MMIO space only the device pages the host needs are mapped
//! (through a level-2 and a level-3 table): on QEMU `virt` the UART. Devices that can write
//! memory on the host's behalf — fw_cfg's DMA interface, the GIC ITS and redistributors with
//! their in-memory tables, virtio — stay unmapped, since their writes would bypass stage 2.
//! Everything else is unmapped. Pure computation over caller-provided tables, tested on
//! the development machine; the arch layer points VTTBR_EL2 at them and sets HCR_EL2.VM.

use core::ops::Range;

/// VTCR_EL2: RES1 bit 31, PS = 40-bit PA (0b010), TG0 = 4 KiB, SH0 = inner shareable,
/// ORGN0 = IRGN0 = write-back, SL0 = start at level 1, T0SZ = 25 (39-bit IPA).
pub const VTCR_EL2: u64 = 0x8002_3559;

/// Bytes a level-1 entry maps.
pub const L1_SIZE: u64 = 1 << 30;
/// Bytes a level-2 entry maps.
pub const L2_SIZE: u64 = 1 << 21;
/// Highest IPA + 1 the tables cover (39 bits).
pub const IPA_LIMIT: u64 = 1 << 39;
/// Most GiB of RAM the tables can describe (one level-2 table each).
pub const MAX_RAM_GIB: usize = 4;

const VALID_BLOCK: u64 = 0b01;
const VALID_TABLE: u64 = 0b11;
/// A level-3 descriptor's type bits (the same value as a table descriptor's).
const VALID_PAGE: u64 = 0b11;
const MEMATTR_NORMAL_WB: u64 = 0b1111 << 2;
const MEMATTR_DEVICE_NGNRE: u64 = 0b0001 << 2;
const S2AP_RW: u64 = 0b11 << 6;
const SH_INNER: u64 = 0b11 << 8;
const AF: u64 = 1 << 10;
const XN: u64 = 1 << 54;
const OUTPUT_MASK: u64 = 0x0000_ffff_ffff_f000;

/// Descriptor of a normal-memory block at `pa`.
const fn normal_block(pa: u64) -> u64 {
    pa | VALID_BLOCK | MEMATTR_NORMAL_WB | S2AP_RW | SH_INNER | AF
}

/// Descriptor of a device page at `pa` (never executable).
const fn device_page(pa: u64) -> u64 {
    pa | VALID_PAGE | MEMATTR_DEVICE_NGNRE | S2AP_RW | AF | XN
}

/// Stage-2 tables: one level-1 table, a level-2 table per GiB of RAM, and a level-2 plus a
/// level-3 table for the device pages of the first GiB.
#[repr(C, align(4096))]
pub struct Stage2Tables {
    l1: [u64; 512],
    l2: [[u64; 512]; MAX_RAM_GIB],
    mmio_l2: [u64; 512],
    mmio_l3: [u64; 512],
}

/// Why the tables could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage2Error {
    /// RAM overlaps the MMIO GiB, extends past the IPA space or needs more than
    /// [`MAX_RAM_GIB`] level-2 tables.
    RamLayout,
    /// RAM or the hypervisor region is not 2 MiB aligned.
    Alignment,
    /// A device page is misaligned, outside the first GiB, or not in the same 2 MiB block as
    /// the other device pages.
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

impl Default for Stage2Tables {
    fn default() -> Self {
        Self::new()
    }
}

impl Stage2Tables {
    /// Empty tables (nothing mapped).
    pub const fn new() -> Self {
        Self {
            l1: [0; 512],
            l2: [[0; 512]; MAX_RAM_GIB],
            mmio_l2: [0; 512],
            mmio_l3: [0; 512],
        }
    }

    /// Fills the tables for a host with `ram`, excluding `hyp`, and the 4 KiB device pages
    /// `devices` (all in one 2 MiB block of the first GiB). `pa_of` gives the physical address
    /// of a table (the hypervisor runs with its MMU off, so it is the table's address).
    pub fn build(
        &mut self,
        ram: &Range<u64>,
        hyp: &Range<u64>,
        devices: &[u64],
        pa_of: impl Fn(&[u64; 512]) -> u64,
    ) -> Result<(), Stage2Error> {
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
        let first_gib = (ram.start / L1_SIZE) as usize;
        let last_gib = ((ram.end - 1) / L1_SIZE) as usize;
        if last_gib - first_gib >= MAX_RAM_GIB {
            return Err(Stage2Error::RamLayout);
        }
        let device_block = devices.first().map(|d| d / L2_SIZE);
        if devices
            .iter()
            .any(|d| !d.is_multiple_of(4096) || *d >= L1_SIZE || Some(d / L2_SIZE) != device_block)
        {
            return Err(Stage2Error::DeviceLayout);
        }
        *self = Self::new();
        // GiB 0: only the listed device pages.
        if let Some(block) = device_block {
            for d in devices {
                self.mmio_l3[((d % L2_SIZE) / 4096) as usize] = device_page(*d);
            }
            self.mmio_l2[block as usize] = (pa_of(&self.mmio_l3) & OUTPUT_MASK) | VALID_TABLE;
            self.l1[0] = (pa_of(&self.mmio_l2) & OUTPUT_MASK) | VALID_TABLE;
        }
        for gib in first_gib..=last_gib {
            let table = &mut self.l2[gib - first_gib];
            for (i, entry) in table.iter_mut().enumerate() {
                let pa = gib as u64 * L1_SIZE + i as u64 * L2_SIZE;
                let block = pa..pa + L2_SIZE;
                let in_ram = ram.start <= block.start && block.end <= ram.end;
                let in_hyp = block.start < hyp.end && hyp.start < block.end;
                *entry = if in_ram && !in_hyp {
                    normal_block(pa)
                } else {
                    0
                };
            }
            self.l1[gib] = (pa_of(table) & OUTPUT_MASK) | VALID_TABLE;
        }
        Ok(())
    }

    /// Physical address for VTTBR_EL2 (VMID 0), given the level-1 table's address.
    pub fn root(&self) -> &[u64; 512] {
        &self.l1
    }

    /// Walks the tables for `ipa` (level-2 tables found by position, as `build` laid them
    /// out). For tests and diagnostics.
    pub fn access(&self, ipa: u64) -> Access {
        if ipa >= IPA_LIMIT {
            return Access::None;
        }
        let gib = (ipa / L1_SIZE) as usize;
        if self.l1[gib] & 0b11 != VALID_TABLE {
            return Access::None;
        }
        let l2 = if gib == 0 {
            &self.mmio_l2
        } else {
            // RAM tables are laid out from the first GiB that has one (GiB 0 is MMIO).
            let first = self.l1[1..]
                .iter()
                .position(|e| e & 0b11 == VALID_TABLE)
                .unwrap_or(0)
                + 1;
            &self.l2[gib - first]
        };
        let l2e = l2[((ipa % L1_SIZE) / L2_SIZE) as usize];
        let leaf = match l2e & 0b11 {
            VALID_BLOCK => l2e,
            VALID_TABLE if gib == 0 => self.mmio_l3[((ipa % L2_SIZE) / 4096) as usize],
            _ => return Access::None,
        };
        if leaf & 0b1 == 0 {
            Access::None
        } else if leaf & (0b1111 << 2) == MEMATTR_NORMAL_WB {
            Access::Normal
        } else {
            Access::Device
        }
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

    fn built(ram: Range<u64>) -> Box<Stage2Tables> {
        let mut t = Box::new(Stage2Tables::new());
        t.build(&ram, &HYP, &[0x0900_0000], |table| table.as_ptr() as u64)
            .unwrap();
        t
    }

    #[test]
    fn host_sees_ram_and_mmio_but_not_the_hypervisor() {
        let t = built(RAM);
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
        let t = built(RAM);
        let l1 = t.root();
        assert_eq!(l1[0] & OUTPUT_MASK, t.mmio_l2.as_ptr() as u64);
        let uart_l2 = t.mmio_l2[0x0900_0000 / L2_SIZE as usize];
        assert_eq!(uart_l2 & OUTPUT_MASK, t.mmio_l3.as_ptr() as u64);
        assert_eq!(
            t.mmio_l3[0], 0x0040_0000_0900_04c7,
            "device page, AF, RW, XN"
        );
        assert_eq!(l1[1] & 0b11, VALID_TABLE);
        assert_eq!(l1[1] & OUTPUT_MASK, t.l2[0].as_ptr() as u64 & OUTPUT_MASK);
        assert_eq!(
            t.l2[0][0],
            0x4000_0000 | 0x7fd,
            "normal WB block, inner shareable, AF, RW"
        );
        assert!(l1[2..].iter().all(|e| *e == 0));
    }

    #[test]
    fn bigger_ram_spans_several_tables() {
        let t = built(0x4000_0000..0x1_4000_0000);
        assert_eq!(t.access(0x1_3fff_ffff), Access::Normal);
        assert_eq!(t.access(0x1_4000_0000), Access::None);
        assert_eq!(t.access(0x4020_0000), Access::None);
    }

    #[test]
    fn bad_layouts_are_refused() {
        let mut t = Box::new(Stage2Tables::new());
        let pa = |l2: &[u64; 512]| l2.as_ptr() as u64;
        let uart = [0x0900_0000];
        let misaligned = 0x4000_1000..0x8000_0000;
        assert_eq!(
            t.build(&misaligned, &HYP, &uart, pa),
            Err(Stage2Error::Alignment)
        );
        assert_eq!(
            t.build(&(0..0x8000_0000), &HYP, &uart, pa),
            Err(Stage2Error::RamLayout)
        );
        let five_gib = 0x4000_0000..0x1_8000_0000;
        assert_eq!(
            t.build(&five_gib, &HYP, &uart, pa),
            Err(Stage2Error::RamLayout)
        );
        for devices in [
            &[0x0900_0008][..],
            &[0x4000_0000],
            &[0x0900_0000, 0x0a00_0000],
        ] {
            let r = t.build(&RAM, &HYP, devices, pa);
            assert_eq!(r, Err(Stage2Error::DeviceLayout), "{devices:x?}");
        }
        t.build(&RAM, &HYP, &[], pa).unwrap();
        assert_eq!(
            t.access(0x0900_0000),
            Access::None,
            "no devices: nothing in GiB 0"
        );
        assert_eq!(t.access(0x4100_0000), Access::Normal);
    }

    #[test]
    fn fault_ipa_from_observed_registers() {
        // QEMU 7.2: a load from 0x4100_0040 gave HPFAR_EL2 0x41_0000 and FAR 0x4100_0040.
        assert_eq!(fault_ipa(0x41_0000, 0x4100_0040), 0x4100_0040);
    }
}
