//! hyptrace's hypervisor library: everything of the EL2 hypervisor that is plain Rust.
//!
//! It builds for the bare-metal aarch64 targets (linked into the `hyp` image) and for the
//! development machine, where `cargo test -p hyp` runs its unit, property and model-checking
//! tests. Nothing here touches a system register or contains assembly: that lives in the
//! binary's `arch` module.
//!
//! - [`abi`]: the contract with the host (the `hyptrace-abi` crate).
//! - [`ring`]: the single external writer of the per-CPU ring buffers (the `hyptrace-ring`
//!   crate), with [`clock`], its counter-to-nanosecond conversion.
//! - [`tracing`]: the tracing service behind the tracing hypercalls; [`printk`] and
//!   [`hyp_printk!`]: formatted text in the trace, formatted by its reader.
//! - [`hypercall`]: decoding and dispatch of host hypercalls.
//! - [`psci`]: the PSCI relay decisions for trapped host SMCs.
//! - [`inject`]: handing an exception the hypervisor trapped back to the host's vectors;
//!   [`s1walk`]: which level of the host's stage-1 walk met a stage-2 fault.
//! - [`el2_map`]: the hypervisor's own stage-1 tables: what EL2 maps, with which permissions.
//! - [`fgt`]: the fine-grained trap registers' values for a hypervisor that traps nothing.
//! - [`mdcr`]: MDCR_EL2: the PMU is the host's, but does not count the hypervisor.
//! - [`stage2`]: the host's stage-2 identity map, without the hypervisor's memory.
//! - [`cpus`]: per-CPU power state (the CPU table comes from `hyptrace-platform`).
//!
//! The machine both images share (memory map, console, DTB, ESR decoding, trap frame, entry
//! assembly, table pool) is the `hyptrace-platform` crate, re-exported here under its module
//! names ([`memmap`], [`uart`], [`dtb`], [`esr`], [`trap_frame`], [`boot_asm`],
//! [`table_pool`]).

#![cfg_attr(not(test), no_std)]

/// The contract with the host: the `hyptrace-abi` crate (`hyp/abi`).
pub use hyptrace_abi as abi;
/// The ring-buffer writer: the `hyptrace-ring` crate (`hyp/ring`).
pub use hyptrace_ring as ring;
pub use hyptrace_ring::clock;

pub use hyptrace_platform::{boot_asm, dtb, esr, memmap, table_pool, trap_frame, uart};

pub mod cpus;
pub mod el2_map;
pub mod fgt;
pub mod hypercall;
pub mod inject;
pub mod mdcr;
pub mod printk;
pub mod psci;
pub mod s1walk;
pub mod stage2;
pub mod tracing;
