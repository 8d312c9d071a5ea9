//! What both images need to turn their MMU on: the memory attributes they index and the
//! register values the MMU-on routine ([`mmu_on_asm!`](crate::mmu_on_asm)) writes.

/// MAIR attribute index of Device-nGnRE memory (MMIO).
pub const MAIR_INDEX_DEVICE: u64 = 0;
/// MAIR attribute index of Normal memory, inner and outer write-back, read- and
/// write-allocate, non-transient (RAM).
pub const MAIR_INDEX_NORMAL: u64 = 1;
/// MAIR_EL2 and MAIR_EL1: attribute 0 = Device-nGnRE (`0x04`), attribute 1 = Normal
/// write-back RWA (`0xff`).
pub const MAIR: u64 = 0x04 | (0xff << 8);

/// The register values that turn a CPU's MMU on, at EL2 or EL1: the `mmu_on_asm!` routine
/// writes them in this order (MAIR, TCR, TTBR0, then SCTLR). Its layout is part of that
/// routine's contract (it loads the fields by offset).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MmuConfig {
    /// MAIR_ELx.
    pub mair: u64,
    /// TCR_ELx.
    pub tcr: u64,
    /// TTBR0_ELx: the root table's physical address.
    pub ttbr0: u64,
    /// SCTLR_ELx.
    pub sctlr: u64,
}
const _: () = assert!(core::mem::size_of::<MmuConfig>() == 32);
const _: () = assert!(core::mem::offset_of!(MmuConfig, ttbr0) == 16);
