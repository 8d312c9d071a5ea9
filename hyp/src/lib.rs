//! hyptrace's hypervisor library: everything of the EL2 hypervisor that is plain Rust.
//!
//! It builds for the bare-metal aarch64 targets (linked into the `hyp` image) and for the
//! development machine, where `cargo test -p hyp` runs its unit, property and model-checking
//! tests. Nothing here touches a system register or contains assembly: that lives in the
//! binary's `arch` module.
//!
//! - [`abi`]: the contract with the host (hypercall IDs, errors, page and pack layouts).
//! - [`ring`]: the single external writer of the per-CPU ring buffers.
//! - [`clock`]: counter-to-nanosecond conversion with host-provided parameters.
//! - [`tracing`]: the tracing service behind the tracing hypercalls.
//! - [`hypercall`]: decoding and dispatch of host hypercalls.
//! - [`psci`]: the PSCI relay decisions for trapped host SMCs.
//! - [`inject`]: handing an exception the hypervisor trapped back to the host's vectors.
//! - [`el2_map`]: the hypervisor's own stage-1 tables: what EL2 maps, with which permissions.
//! - [`table_pool`]: a fixed pool of page tables for aarch64-paging, for code without a heap.
//! - [`fgt`]: the fine-grained trap registers' values for a hypervisor that traps nothing.
//! - [`stage2`]: the host's stage-2 identity map, without the hypervisor's memory.
//! - [`cpus`]: the CPU table discovered from the DTB and per-CPU power state.
//! - [`dtb`]: reading CPUs, RAM and the console from the devicetree.
//! - [`memmap`]: the physical memory map shared with the host image.
//! - [`esr`]: exception-syndrome decoding for fault reports.
//! - [`uart`]: the PL011 console both images print through.
//! - [`boot_asm`]: entry assembly both images share (cache maintenance before the MMU is on).
//! - [`trap_frame`]: the trap frame and the vector-table macro both images use.

#![cfg_attr(not(test), no_std)]

/// The contract with the host: the `hyptrace-abi` crate (`hyp/abi`).
pub use hyptrace_abi as abi;
pub mod boot_asm;
pub mod clock;
pub mod cpus;
pub mod dtb;
pub mod el2_map;
pub mod esr;
pub mod fgt;
// The service and the dispatcher keep their state in `static`s, whose `const` constructors
// do not exist under loom; the loom build checks the `ring` protocols only.
#[cfg(not(loom))]
pub mod hypercall;
pub mod inject;
/// The physical memory map, shared with the host image and the linker scripts.
pub mod memmap;
pub mod psci;
pub mod ring;
pub mod stage2;
pub mod table_pool;
#[cfg(not(loom))]
pub mod tracing;
pub mod trap_frame;
pub mod uart;
