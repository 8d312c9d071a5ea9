//! Everything of the EL1 image that touches assembly or system registers.

pub mod boot;
pub mod calls;
pub mod console;
pub mod cpu;
mod entry;
pub mod exceptions;
mod heap;
mod mmu;
pub mod semihosting;
pub mod smp;
