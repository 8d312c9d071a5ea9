//! The tracing service: what `load_tracing` and the other tracing hypercalls do with the
//! host's packs and the per-CPU writers.

pub mod clock_banks;
pub mod memory_rules;
