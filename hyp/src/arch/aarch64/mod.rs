//! Everything of the EL2 image that touches assembly or system registers.

mod boot;
mod console;
mod entry;
mod fatal;
#[cfg(feature = "fault-injection")]
mod fault_injection;
mod firmware;
mod mmu;
mod platform;
mod regs;
mod trap;
mod vectors;
