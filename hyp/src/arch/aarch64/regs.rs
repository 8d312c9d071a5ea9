//! EL2 system-register set-up and the drop to EL1.

use aarch64_cpu::asm::barrier;
use aarch64_cpu::registers::*;
use hyp::memmap::{HYP_STACK_GUARD, HYP_STACK_SIZE};

/// CPTR_EL2 for a non-VHE hypervisor: RES1 bits 13:12 and 9:0 set, TFP (bit 10) clear so
/// neither EL2 nor the host traps on FP/SIMD, TTA and TCPAC clear.
const CPTR_EL2_RES1_NO_TRAPS: u64 = 0x33ff;

/// SCTLR_EL1 with its RES1 bits and the MMU, caches and alignment checks off: the host shim
/// starts like a kernel entered by a boot loader.
const SCTLR_EL1_RESET: u64 = 0x30d0_0800;

/// Configures this CPU's EL2 state. Called on every CPU before it first enters EL1.
pub fn init_el2(cpu_index: usize, vectors: u64) {
    // Vectors first, so any trap enabled below has somewhere to go.
    VBAR_EL2.set(vectors);
    barrier::isb(barrier::SY);
    TPIDR_EL2.set(cpu_index as u64);
    // The host may read the physical counter and timer; its virtual counter equals the
    // physical one, so host and hypervisor timestamps share one timeline.
    CNTHCTL_EL2.write(CNTHCTL_EL2::EL1PCEN::SET + CNTHCTL_EL2::EL1PCTEN::SET);
    CNTVOFF_EL2.set(0);
    CPTR_EL2.set(CPTR_EL2_RES1_NO_TRAPS);
    // What the host reads as MIDR/MPIDR at EL1 comes from these (UNKNOWN at reset).
    let midr = MIDR_EL1.get();
    // SAFETY: writing VPIDR_EL2 only changes what EL1 reads as MIDR_EL1 (aarch64-cpu has no
    // accessor for it).
    unsafe { core::arch::asm!("msr vpidr_el2, {}", in(reg) midr, options(nomem, nostack)) };
    VMPIDR_EL2.set(MPIDR_EL1.get());
    // EL1 is AArch64; trap SMC so the host never reaches the firmware's PSCI directly.
    HCR_EL2.write(HCR_EL2::RW::EL1IsAarch64 + HCR_EL2::TSC::EnableTrapEl1SmcToEl2);
    barrier::isb(barrier::SY);
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
