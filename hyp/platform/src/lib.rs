//! The machine both hyptrace images run on: what the EL2 hypervisor (`hyp`) and the EL1 host
//! (`host-shim`) share about QEMU `virt` on aarch64, without either depending on the other.
//!
//! - [`memmap`]: the physical memory map (also read by the build scripts, for the linker).
//! - [`uart`]: the PL011 console both images print through.
//! - [`dtb`]: CPUs, RAM and the console from the devicetree; [`cpus`]: the CPU table.
//! - [`esr`]: exception-syndrome decoding for fault reports.
//! - [`trap_frame`]: the trap frame and the vector-table macro.
//! - [`boot_asm`]: entry assembly (cache maintenance before the MMU is on, MMU on);
//!   [`mmu`]: the attributes and register values it uses.
//! - [`table_pool`]: a fixed pool of page tables for aarch64-paging, for code without a heap.
//!
//! Everything is plain Rust (assembly only as text for `global_asm!`), tested on the
//! development machine. This crate is part of the hyptrace system, not a library for other
//! projects: it is not meant for publication.

#![cfg_attr(not(test), no_std)]

pub mod boot_asm;
pub mod cpus;
pub mod dtb;
pub mod esr;
/// The physical memory map, shared by both images and the linker scripts.
pub mod memmap;
pub mod mmu;
pub mod table_pool;
pub mod trap_frame;
pub mod uart;
