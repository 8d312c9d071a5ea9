//! hyptrace's host library: the portable part of the EL1 host shim.
//!
//! - [`reader`]: decoding ring-buffer pages and consuming them through the hypervisor.
//! - [`harness`]: the in-QEMU test harness's bookkeeping and output format.

#![cfg_attr(not(test), no_std)]

pub mod harness;
pub mod reader;
