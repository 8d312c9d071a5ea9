//! The EL2 exception vector table (see [`hyp::trap_frame`]).

use hyp::memmap::MAX_CPUS;

/// Bytes of each CPU's emergency stack: where an exception taken at EL2 itself (always fatal)
/// is reported, so that a stack overflow into the guard page does not fault again.
const EMERGENCY_STACK_SHIFT: u32 = 13;

/// One emergency stack per CPU (the vector slots index it with `TPIDR_EL2 & 7`).
#[repr(C, align(16))]
pub struct EmergencyStacks([[u8; 1 << EMERGENCY_STACK_SHIFT]; MAX_CPUS]);
const _: () = assert!(MAX_CPUS == 8, "the vector slots mask the CPU index with 7");

/// Memory of [`EmergencyStacks`] (referenced by the vector table only).
pub static mut EMERGENCY_STACKS: EmergencyStacks =
    EmergencyStacks([[0; 1 << EMERGENCY_STACK_SHIFT]; MAX_CPUS]);

hyp::exception_vectors!(
    "__hyp_vectors",
    "el2",
    super::trap::hyp_trap,
    emergency_stacks = EMERGENCY_STACKS,
    EMERGENCY_STACK_SHIFT
);

/// Address of the vector table, for VBAR_EL2.
pub fn vector_table_address() -> u64 {
    extern "C" {
        static __hyp_vectors: u8;
    }
    // Only the address is taken; the table is code and is never read as data.
    core::ptr::addr_of!(__hyp_vectors) as u64
}
