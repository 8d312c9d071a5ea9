//! EL2 system-register set-up and the drop to EL1.

use aarch64_cpu::asm::barrier;
use aarch64_cpu::registers::*;
use hyp::memmap::{HYP_STACK_GUARD, HYP_STACK_SIZE};

/// CPTR_EL2 for a non-VHE hypervisor: only the RES1 bits (13, 9, 7:0). TFP (10), TZ (8),
/// TSM (12), TTA (20), TAM (30) and TCPAC (31) clear: neither FP/SIMD, SVE, SME, trace nor
/// activity-monitor accesses of the host trap to EL2.
const CPTR_EL2_RES1_NO_TRAPS: u64 = 0x22ff;

/// SCTLR_EL1 with its RES1 bits and the MMU, caches and alignment checks off: the host shim
/// starts like a kernel entered by a boot loader.
const SCTLR_EL1_RESET: u64 = 0x30d0_0800;

/// HCR_EL2.APK (bit 40) and HCR_EL2.API (bit 41): pointer-authentication key registers and
/// instructions do not trap.
const HCR_EL2_APK_API: u64 = (1 << 40) | (1 << 41);

/// Reads a 4-bit ID register field.
fn id_field(value: u64, shift: u32) -> u64 {
    (value >> shift) & 0xf
}

/// Writes a system register by its encoded name (for registers the assembler only knows with
/// extra target features, or aarch64-cpu does not model).
macro_rules! write_sysreg {
    ($name:literal, $value:expr) => {
        // SAFETY: every use below writes an EL2 control register that only affects what the
        // host may do at EL1/EL0 (trap and length controls), checked against the ID registers
        // first, before any host code runs on this CPU.
        unsafe {
            core::arch::asm!(concat!("msr ", $name, ", {}"), in(reg) $value, options(nomem, nostack))
        }
    };
}

/// Configures this CPU's EL2 state. Called on every CPU before it first enters EL1.
///
/// Every EL2 control register the host's behaviour depends on is written explicitly: on
/// hardware most of them are UNKNOWN at reset (QEMU zeroes them, which would hide a missing
/// write).
pub fn init_el2(cpu_index: usize, vectors: u64) {
    // Vectors first, so any trap enabled below has somewhere to go.
    VBAR_EL2.set(vectors);
    barrier::isb(barrier::SY);
    TPIDR_EL2.set(cpu_index as u64);
    // SCTLR_EL2 was set by `__el2_mmu_on` (MMU, caches, alignment checks, WXN) and stays.
    // The host may read the physical counter and timer; its virtual counter equals the
    // physical one, so host and hypervisor timestamps share one timeline.
    CNTHCTL_EL2.write(CNTHCTL_EL2::EL1PCEN::SET + CNTHCTL_EL2::EL1PCTEN::SET);
    CNTVOFF_EL2.set(0);
    CPTR_EL2.set(CPTR_EL2_RES1_NO_TRAPS);
    // No trap of debug, PMU or trace accesses; every PMU counter belongs to the host
    // (HPMN = PMCR_EL0.N), and none counts at EL2 where the PMU can prohibit it
    // (`hyp::mdcr`).
    let pmcr: u64;
    // SAFETY: reading PMCR_EL0 at EL2 has no side effect.
    unsafe { core::arch::asm!("mrs {}, pmcr_el0", out(reg) pmcr, options(nomem, nostack)) };
    MDCR_EL2.set(hyp::mdcr::mdcr_el2(pmcr, ID_AA64DFR0_EL1.get()));
    write_sysreg!("hstr_el2", 0u64);
    VTTBR_EL2.set(0);
    let pfr0 = ID_AA64PFR0_EL1.get();
    let pfr1 = ID_AA64PFR1_EL1.get();
    if id_field(pfr0, 32) != 0 {
        // SVE: the host may use the largest vector length (ZCR_EL2.LEN saturates).
        write_sysreg!("S3_4_C1_C2_0", 0xfu64);
    }
    if id_field(pfr1, 24) != 0 {
        // SME: largest streaming vector length; FA64 and ZT0 untrapped where implemented.
        let smfr0: u64;
        // SAFETY: reading ID_AA64SMFR0_EL1 (S3_0_C0_C4_5) has no side effect; it exists
        // because ID_AA64PFR1_EL1.SME says SME is implemented.
        unsafe {
            core::arch::asm!("mrs {}, S3_0_C0_C4_5", out(reg) smfr0, options(nomem, nostack))
        };
        let fa64 = smfr0 & (1 << 63);
        let ezt0 = if id_field(pfr1, 24) >= 2 { 1 << 30 } else { 0 };
        write_sysreg!("S3_4_C1_C2_6", fa64 | ezt0 | 0xf);
    }
    if id_field(ID_AA64MMFR1_EL1.get(), 40) != 0 {
        // FEAT_HCX: no extra traps.
        write_sysreg!("S3_4_C1_C2_2", 0u64);
    }
    // What the host reads as MIDR/MPIDR at EL1 comes from these (UNKNOWN at reset).
    let midr = MIDR_EL1.get();
    write_sysreg!("vpidr_el2", midr);
    VMPIDR_EL2.set(MPIDR_EL1.get());
    // EL1 is AArch64; trap SMC so the host never reaches the firmware's PSCI directly;
    // pointer authentication is the host's own business.
    HCR_EL2.write(HCR_EL2::RW::EL1IsAarch64 + HCR_EL2::TSC::EnableTrapEl1SmcToEl2);
    if has_pointer_auth() {
        HCR_EL2.set(HCR_EL2.get() | HCR_EL2_APK_API);
    }
    init_fine_grained_traps();
    barrier::isb(barrier::SY);
}

/// With FEAT_FGT the fine-grained trap registers exist and reset to UNKNOWN values: write
/// the values [`hyp::fgt::trap_nothing`] computes from this CPU's ID registers.
fn init_fine_grained_traps() {
    let mmfr3: u64;
    // SAFETY: reading ID_AA64MMFR3_EL1 (S3_0_C0_C7_3) has no side effect; it reads as zero on
    // CPUs that predate it.
    unsafe { core::arch::asm!("mrs {}, S3_0_C0_C7_3", out(reg) mmfr3, options(nomem, nostack)) };
    let ids = hyp::fgt::IdRegs {
        mmfr0: ID_AA64MMFR0_EL1.get(),
        mmfr3,
        pfr0: ID_AA64PFR0_EL1.get(),
        pfr1: ID_AA64PFR1_EL1.get(),
        isar1: ID_AA64ISAR1_EL1.get(),
        dfr0: ID_AA64DFR0_EL1.get(),
    };
    let Some(v) = hyp::fgt::trap_nothing(&ids) else {
        return;
    };
    write_sysreg!("S3_4_C1_C1_4", v.hfgrtr); // HFGRTR_EL2
    write_sysreg!("S3_4_C1_C1_5", v.hfgwtr); // HFGWTR_EL2
    write_sysreg!("S3_4_C1_C1_6", v.hfgitr); // HFGITR_EL2
    write_sysreg!("S3_4_C3_C1_4", v.hdfgrtr); // HDFGRTR_EL2
    write_sysreg!("S3_4_C3_C1_5", v.hdfgwtr); // HDFGWTR_EL2
    if let Some(hafgrtr) = v.hafgrtr {
        write_sysreg!("S3_4_C3_C1_6", hafgrtr); // HAFGRTR_EL2
    }
}

/// Turns on the host's stage-2 translation on this CPU with the tables at `root` (VMID 0).
/// The tables must be complete and visible (the caller issued `dsb ishst` after writing
/// them).
pub fn enable_stage2(root: u64) {
    VTCR_EL2.set(hyp::stage2::VTCR_EL2);
    VTTBR_EL2.set(root);
    barrier::isb(barrier::SY);
    // SAFETY: invalidating stage-1+2 TLB entries of the current VMID only drops cached
    // translations; the barriers order it before HCR_EL2.VM takes effect.
    unsafe {
        core::arch::asm!("tlbi vmalls12e1", "dsb ish", "isb", options(nostack));
    }
    HCR_EL2.set(HCR_EL2.get() | (1 << 0));
    barrier::isb(barrier::SY);
}

/// Whether any pointer-authentication algorithm is implemented (ID_AA64ISAR1_EL1 APA, API,
/// GPA, GPI; ID_AA64ISAR2_EL1 APA3, GPA3).
fn has_pointer_auth() -> bool {
    let isar1 = ID_AA64ISAR1_EL1.get();
    let isar2: u64;
    // SAFETY: reading ID_AA64ISAR2_EL1 (S3_0_C0_C6_2) has no side effect; it reads as zero
    // on CPUs that predate it.
    unsafe { core::arch::asm!("mrs {}, S3_0_C0_C6_2", out(reg) isar2, options(nomem, nostack)) };
    [4, 8, 24, 28].iter().any(|s| id_field(isar1, *s) != 0)
        || [8, 12].iter().any(|s| id_field(isar2, *s) != 0)
}

/// This CPU's index, as stored in TPIDR_EL2 by [`init_el2`].
pub fn cpu_index() -> usize {
    TPIDR_EL2.get() as usize
}

/// Top of CPU `index`'s EL2 stack (see the `.stacks` section in `linker/hyp.ld`).
pub fn stack_top(index: usize) -> u64 {
    extern "C" {
        static __stacks_start: u8;
    }
    // Only the symbol's address is used.
    let start = core::ptr::addr_of!(__stacks_start) as u64;
    start + (index as u64 + 1) * (HYP_STACK_GUARD + HYP_STACK_SIZE)
}

/// Leaves EL2 for the host: EL1h with interrupts masked, MMU off, FP/SIMD enabled, X0 = `arg`
/// and every other general-purpose register zero (nothing of the hypervisor leaks). SP_EL2 is
/// reset to the top of this CPU's stack, where every later trap frame starts.
pub fn drop_to_el1(entry: u64, arg: u64) -> ! {
    let sp = stack_top(cpu_index());
    SCTLR_EL1.set(SCTLR_EL1_RESET);
    CPACR_EL1.write(CPACR_EL1::FPEN::TrapNothing);
    SPSR_EL2.write(
        SPSR_EL2::D::Masked
            + SPSR_EL2::A::Masked
            + SPSR_EL2::I::Masked
            + SPSR_EL2::F::Masked
            + SPSR_EL2::M::EL1h,
    );
    ELR_EL2.set(entry);
    barrier::isb(barrier::SY);
    // SAFETY: ELR_EL2/SPSR_EL2 were just set to a valid EL1h return; `eret` leaves EL2 and
    // never comes back to this frame, so abandoning the Rust stack by resetting SP is sound.
    unsafe {
        core::arch::asm!(
            "mov sp, {sp}",
            "mov x1, xzr", "mov x2, xzr", "mov x3, xzr", "mov x4, xzr", "mov x5, xzr",
            "mov x6, xzr", "mov x7, xzr", "mov x8, xzr", "mov x9, xzr", "mov x10, xzr",
            "mov x11, xzr", "mov x12, xzr", "mov x13, xzr", "mov x14, xzr", "mov x15, xzr",
            "mov x16, xzr", "mov x17, xzr", "mov x18, xzr", "mov x19, xzr", "mov x20, xzr",
            "mov x21, xzr", "mov x22, xzr", "mov x23, xzr", "mov x24, xzr", "mov x25, xzr",
            "mov x26, xzr", "mov x27, xzr", "mov x28, xzr", "mov x29, xzr", "mov x30, xzr",
            "eret",
            sp = in(reg) sp,
            in("x0") arg,
            options(noreturn),
        )
    }
}
