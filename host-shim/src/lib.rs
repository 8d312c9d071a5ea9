//! hyptrace's host library: the portable part of the EL1 host shim.
//!
//! - [`reader`]: decoding ring-buffer pages and consuming them through the hypervisor.
//! - [`harness`]: the in-QEMU test harness's bookkeeping and output format.
//! - [`mmu`]: the host's own EL1 identity map (RAM cacheable, code read-only, console device).
//! - [`page_pool`]: the host's page allocator for ring buffers and packs.
//! - [`rng`]: the seeded generator of randomized tests.
//! - [`trace_buffer`]: `ring_buffer_alloc_ext` and `trace_buffer_pack` for the hypervisor.
//! - the trace.dat writer is the `hyptrace-tracedat` crate (`host-shim/tracedat`).

#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod harness;
pub mod host_trace;
pub mod mmu;
pub mod page_pool;
pub mod reader;
pub mod rng;
pub mod trace_buffer;
