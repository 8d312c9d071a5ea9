//! hyptrace's host library: the portable part of the EL1 host shim.
//!
//! - [`reader`]: decoding ring-buffer pages and consuming them through the hypervisor.
//! - [`harness`]: the in-QEMU test harness's bookkeeping and output format.
//! - [`rng`]: the seeded generator of randomized tests.

#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod harness;
pub mod reader;
pub mod rng;
