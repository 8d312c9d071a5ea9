//! Small register accessors the host needs.

use aarch64_cpu::asm::barrier;
use aarch64_cpu::registers::*;

/// The exception level this code runs at (CurrentEL.EL).
pub fn current_el() -> u64 {
    CurrentEL.read(CurrentEL::EL)
}

/// MPIDR_EL1's affinity fields (what the hypervisor put in VMPIDR_EL2).
pub fn mpidr() -> u64 {
    MPIDR_EL1.get() & hyp::cpus::MPIDR_AFFINITY_MASK
}

/// This CPU's index (set in TPIDR_EL1 when the CPU started).
pub fn index() -> usize {
    TPIDR_EL1.get() as usize
}

/// Records this CPU's index.
pub fn set_index(index: usize) {
    TPIDR_EL1.set(index as u64);
}

/// The physical counter, ordered after earlier instructions.
pub fn counter() -> u64 {
    barrier::isb(barrier::SY);
    CNTPCT_EL0.get()
}

/// Counter frequency in Hz.
pub fn counter_frequency() -> u64 {
    CNTFRQ_EL0.get()
}

/// Counter ticks in `ms` milliseconds.
pub fn ticks_per_ms(ms: u64) -> u64 {
    counter_frequency() / 1000 * ms
}

/// Converts counter ticks to nanoseconds (for printed figures only).
pub fn ticks_to_ns(ticks: u64) -> u64 {
    ((ticks as u128 * 1_000_000_000) / counter_frequency().max(1) as u128) as u64
}
