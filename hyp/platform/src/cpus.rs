//! The CPUs of the machine: their MPIDRs (from the DTB), numbered the way both images number
//! them (the boot CPU first, then DTB order; the numbering of CPU arguments in the ABI).
//!
//! The table is built once by the boot CPU and read-only afterwards.

use core::fmt;

use crate::memmap::MAX_CPUS;

/// The affinity fields of MPIDR_EL1 (Aff3, Aff2, Aff1, Aff0); PSCI target IDs use this format.
pub const MPIDR_AFFINITY_MASK: u64 = 0xff_00ff_ffff;

/// Why a CPU table could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpuTableError {
    /// The DTB lists no CPU.
    NoCpus,
    /// The DTB lists more CPUs than [`MAX_CPUS`].
    TooMany(usize),
    /// Two CPUs share an MPIDR.
    Duplicate(u64),
    /// A CPU's `reg` has bits outside the affinity fields.
    BadMpidr(u64),
    /// The boot CPU's MPIDR is not among the listed CPUs.
    NoBootCpu(u64),
}

/// The CPUs discovered at boot, indexed 0..count in DTB order (the boot CPU need not be 0).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpuTable {
    mpidrs: [u64; MAX_CPUS],
    count: usize,
}

impl CpuTable {
    /// Builds the table from the MPIDR values of the DTB's `/cpus/cpu@N` nodes.
    pub fn new(mpidrs: impl IntoIterator<Item = u64>) -> Result<Self, CpuTableError> {
        let mut table = Self {
            mpidrs: [0; MAX_CPUS],
            count: 0,
        };
        for mpidr in mpidrs {
            if mpidr & !MPIDR_AFFINITY_MASK != 0 {
                return Err(CpuTableError::BadMpidr(mpidr));
            }
            if table.index_of(mpidr).is_some() {
                return Err(CpuTableError::Duplicate(mpidr));
            }
            if table.count == MAX_CPUS {
                return Err(CpuTableError::TooMany(table.count + 1));
            }
            table.mpidrs[table.count] = mpidr;
            table.count += 1;
        }
        if table.count == 0 {
            return Err(CpuTableError::NoCpus);
        }
        Ok(table)
    }

    /// Builds the table with the boot CPU as index 0 and the others in DTB order: the same
    /// numbering Linux uses for logical CPUs, and the one both hyptrace images use for CPU
    /// arguments (the pack's `cpu`, `swap_reader(cpu)`, ...).
    pub fn new_boot_first(
        mpidrs: impl IntoIterator<Item = u64>,
        boot_mpidr: u64,
    ) -> Result<Self, CpuTableError> {
        let mut table = Self::new(mpidrs)?;
        let boot = table
            .index_of(boot_mpidr)
            .ok_or(CpuTableError::NoBootCpu(boot_mpidr & MPIDR_AFFINITY_MASK))?;
        // Rotating the prefix 0..=boot right by one moves the boot CPU to the front and keeps
        // the others in DTB order.
        table.mpidrs[..=boot].rotate_right(1);
        Ok(table)
    }

    /// Number of CPUs.
    pub fn count(&self) -> usize {
        self.count
    }

    /// The index of the CPU whose affinity fields equal those of `mpidr`.
    pub fn index_of(&self, mpidr: u64) -> Option<usize> {
        let affinity = mpidr & MPIDR_AFFINITY_MASK;
        self.mpidrs[..self.count]
            .iter()
            .position(|m| *m == affinity)
    }

    /// The MPIDR affinity of CPU `index`.
    pub fn mpidr(&self, index: usize) -> Option<u64> {
        self.mpidrs[..self.count].get(index).copied()
    }
}

impl fmt::Display for CpuTableError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoCpus => f.write_str("the DTB lists no CPU"),
            Self::TooMany(n) => write!(f, "the DTB lists {n} CPUs, more than {MAX_CPUS}"),
            Self::Duplicate(m) => write!(f, "two CPUs share MPIDR {m:#x}"),
            Self::BadMpidr(m) => write!(f, "CPU reg {m:#x} has bits outside the affinity fields"),
            Self::NoBootCpu(m) => write!(f, "the boot CPU (MPIDR {m:#x}) is not in the DTB"),
        }
    }
}

impl core::error::Error for CpuTableError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_from_dtb_order() {
        let t = CpuTable::new([0, 1, 2, 3]).unwrap();
        assert_eq!(t.count(), 4);
        assert_eq!(t.index_of(2), Some(2));
        // Bits outside the affinity fields (e.g. MPIDR_EL1.U, bit 31 RES1) are ignored.
        assert_eq!(t.index_of(0x8000_0003), Some(3));
        assert_eq!(t.index_of(4), None);
        assert_eq!(t.mpidr(1), Some(1));
        assert_eq!(t.mpidr(4), None);
    }

    #[test]
    fn boot_cpu_comes_first_others_keep_dtb_order() {
        let t = CpuTable::new_boot_first([0x100, 0x101, 0x102, 0x103], 0x8000_0102).unwrap();
        assert_eq!(
            (0..4).map(|i| t.mpidr(i).unwrap()).collect::<Vec<_>>(),
            [0x102, 0x100, 0x101, 0x103]
        );
        let t = CpuTable::new_boot_first([0, 1], 0).unwrap();
        assert_eq!(t.mpidr(0), Some(0));
        assert_eq!(
            CpuTable::new_boot_first([0, 1], 7),
            Err(CpuTableError::NoBootCpu(7))
        );
    }

    #[test]
    fn table_errors() {
        assert_eq!(CpuTable::new([]), Err(CpuTableError::NoCpus));
        assert_eq!(CpuTable::new([0, 0]), Err(CpuTableError::Duplicate(0)));
        assert_eq!(
            CpuTable::new(0..(MAX_CPUS as u64 + 1)),
            Err(CpuTableError::TooMany(MAX_CPUS + 1))
        );
        assert_eq!(
            CpuTable::new([1 << 50]),
            Err(CpuTableError::BadMpidr(1 << 50))
        );
    }
}
