//! The EL2 exception vector table (see [`hyp::trap_frame`]).

use hyp::memmap::{HYP_EMERGENCY_SLOT_SHIFT, MAX_CPUS};

// The vector slots find CPU n's emergency stack top at `__emergency_stacks_start + (n + 1) <<
// HYP_EMERGENCY_SLOT_SHIFT`, with n = TPIDR_EL2 & 7 (see `linker/hyp.ld`).
const _: () = assert!(MAX_CPUS == 8, "the vector slots mask the CPU index with 7");

extern "C" {
    static __emergency_stacks_start: u8;
}

hyptrace_platform::exception_vectors!(
    "__hyp_vectors",
    "el2",
    super::trap::hyp_trap,
    emergency_stacks = __emergency_stacks_start,
    HYP_EMERGENCY_SLOT_SHIFT
);

/// Address of the vector table, for VBAR_EL2.
pub fn vector_table_address() -> u64 {
    extern "C" {
        static __hyp_vectors: u8;
    }
    // Only the address is taken; the table is code and is never read as data.
    core::ptr::addr_of!(__hyp_vectors) as u64
}
