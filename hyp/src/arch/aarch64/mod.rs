//! Everything of the EL2 image that touches assembly or system registers.

mod boot;
mod console;
mod entry;
mod fatal;
mod firmware;
mod platform;
mod regs;
mod trap;
mod vectors;
