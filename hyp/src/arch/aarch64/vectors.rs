//! The EL2 exception vector table (see [`hyp::trap_frame`]).

hyp::exception_vectors!("__hyp_vectors", "el2", super::trap::hyp_trap);

/// Address of the vector table, for VBAR_EL2.
pub fn vector_table_address() -> u64 {
    extern "C" {
        static __hyp_vectors: u8;
    }
    // Only the address is taken; the table is code and is never read as data.
    core::ptr::addr_of!(__hyp_vectors) as u64
}
