//! What hyptrace needs from a devicetree: CPUs, the RAM bank, the console UART.
//!
//! Both images call [`Machine::from_dtb`] on the DTB QEMU generates, so CPU numbering and the
//! memory layout agree between hypervisor and host. Parsing is done by the `fdt` crate.

use core::ops::Range;

use crate::cpus::{CpuTable, CpuTableError};
use crate::memmap::DTB_RESERVED;

/// Largest DTB accepted: the window the memory map reserves for it.
pub const MAX_DTB_SIZE: usize = DTB_RESERVED as usize;

/// Facts about the machine, read from its DTB.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Machine {
    /// CPUs, boot CPU first, then DTB order.
    pub cpus: CpuTable,
    /// The RAM bank that contains `anchor` (the caller's own image).
    pub ram: Range<u64>,
    /// Base address of the PL011 console.
    pub uart: u64,
}

/// Why a DTB could not be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DtbError {
    /// Bad magic, truncated, or otherwise unparsable.
    Invalid,
    /// The `/cpus` node is unusable.
    Cpus(CpuTableError),
    /// No memory bank contains the anchor address.
    NoRam,
    /// No `arm,pl011` node with a `reg`.
    NoUart,
}

impl DtbError {
    /// What went wrong, for boot messages.
    pub const fn description(self) -> &'static str {
        match self {
            Self::Invalid => "no valid DTB (bad magic or truncated)",
            Self::Cpus(_) => "the DTB's /cpus node is unusable (no CPUs, too many, or no boot CPU)",
            Self::NoRam => "no DTB memory bank contains this image",
            Self::NoUart => "the DTB has no PL011 UART",
        }
    }
}

impl Machine {
    /// Reads the machine description from `dtb`. `boot_mpidr` is the boot CPU's MPIDR and
    /// `anchor` an address the RAM bank must contain.
    pub fn from_dtb(dtb: &[u8], boot_mpidr: u64, anchor: u64) -> Result<Self, DtbError> {
        let fdt = fdt::Fdt::new(dtb).map_err(|_| DtbError::Invalid)?;
        // fdt 0.1.5 panics instead of failing when these nodes are missing: check first.
        if fdt.find_node("/cpus").is_none() {
            return Err(DtbError::Cpus(CpuTableError::NoCpus));
        }
        if fdt.find_node("/memory").is_none() {
            return Err(DtbError::NoRam);
        }
        let cpus =
            CpuTable::new_boot_first(fdt.cpus().map(|cpu| cpu.ids().first() as u64), boot_mpidr)
                .map_err(DtbError::Cpus)?;
        let ram = fdt
            .memory()
            .regions()
            .filter_map(|r| {
                let start = r.starting_address as u64;
                Some(start..start.checked_add(r.size? as u64)?)
            })
            .find(|bank| bank.contains(&anchor))
            .ok_or(DtbError::NoRam)?;
        let uart = fdt
            .find_compatible(&["arm,pl011"])
            .and_then(|node| node.reg())
            .and_then(|mut regs| regs.next())
            .ok_or(DtbError::NoUart)?
            .starting_address as u64;
        Ok(Self { cpus, ram, uart })
    }

    /// Reads the machine description from a DTB in memory.
    ///
    /// # Safety
    ///
    /// `dtb` must point to at least 40 readable bytes, and, if they start with the FDT magic,
    /// to `min(totalsize, MAX_DTB_SIZE)` readable bytes unchanged for the duration of the call.
    pub unsafe fn from_dtb_ptr(
        dtb: *const u8,
        boot_mpidr: u64,
        anchor: u64,
    ) -> Result<Self, DtbError> {
        // SAFETY: the caller guarantees the 40-byte header is readable.
        let header = unsafe { core::slice::from_raw_parts(dtb, 40) };
        if header[..4] != [0xd0, 0x0d, 0xfe, 0xed] {
            return Err(DtbError::Invalid);
        }
        let total = u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as usize;
        if total > MAX_DTB_SIZE {
            return Err(DtbError::Invalid);
        }
        // SAFETY: the caller guarantees `totalsize` bytes are readable and stable.
        let blob = unsafe { core::slice::from_raw_parts(dtb, total.max(40)) };
        Self::from_dtb(blob, boot_mpidr, anchor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memmap::{HOST_BASE, HYP_BASE};

    const SMP4: &[u8] = include_bytes!("../testdata/qemu-virt-7.2-smp4.dtb");
    const SMP1: &[u8] = include_bytes!("../testdata/qemu-virt-7.2-smp1.dtb");

    #[test]
    fn qemu_virt_smp4() {
        let m = Machine::from_dtb(SMP4, 0, HYP_BASE).unwrap();
        assert_eq!(m.cpus.count(), 4);
        assert_eq!(
            (0..4).map(|i| m.cpus.mpidr(i).unwrap()).collect::<Vec<_>>(),
            [0, 1, 2, 3]
        );
        assert_eq!(m.ram, 0x4000_0000..0x8000_0000, "-m 1G at 0x4000_0000");
        assert_eq!(m.uart, 0x0900_0000);
        // The host finds the same bank from its own image address.
        assert_eq!(Machine::from_dtb(SMP4, 0, HOST_BASE).unwrap(), m);
    }

    #[test]
    fn qemu_virt_smp1() {
        let m = Machine::from_dtb(SMP1, 0, HYP_BASE).unwrap();
        assert_eq!(m.cpus.count(), 1);
    }

    #[test]
    fn boot_cpu_other_than_zero_comes_first() {
        let m = Machine::from_dtb(SMP4, 2, HYP_BASE).unwrap();
        assert_eq!(m.cpus.mpidr(0), Some(2));
        assert_eq!(m.cpus.mpidr(1), Some(0));
    }

    #[test]
    fn errors() {
        assert_eq!(
            Machine::from_dtb(&SMP4[..100], 0, HYP_BASE),
            Err(DtbError::Invalid)
        );
        assert_eq!(
            Machine::from_dtb(&[0; 64], 0, HYP_BASE),
            Err(DtbError::Invalid)
        );
        assert_eq!(Machine::from_dtb(SMP4, 0, 0x1000), Err(DtbError::NoRam));
        assert_eq!(
            Machine::from_dtb(SMP4, 9, HYP_BASE),
            Err(DtbError::Cpus(CpuTableError::NoBootCpu(9)))
        );
    }

    #[test]
    fn from_pointer_reads_header_size() {
        // SAFETY: SMP4 is a complete DTB in static memory.
        let m = unsafe { Machine::from_dtb_ptr(SMP4.as_ptr(), 0, HYP_BASE) }.unwrap();
        assert_eq!(m.cpus.count(), 4);
        let junk = [0u8; 64];
        // SAFETY: 64 readable bytes; the magic check rejects them after the header.
        let rejected = unsafe { Machine::from_dtb_ptr(junk.as_ptr(), 0, HYP_BASE) };
        assert_eq!(rejected, Err(DtbError::Invalid));
    }
}
