//! The hyptrace EL2 hypervisor image.
//!
//! Boot flow (see `docs/architecture.md`): the boot CPU enters at `_start` at EL2, clears BSS,
//! discovers CPUs, RAM and the console from the DTB QEMU placed at the start of RAM, configures
//! EL2 (vectors, traps, timers, FP) and drops to the host shim at EL1. Secondary CPUs enter at
//! `_secondary_entry` when the host's CPU_ON is relayed, configure EL2 the same way and drop to
//! the host's requested entry point. From then on the hypervisor only runs when the host traps
//! (HVC, SMC) — everything it decides is in the portable `hyp` library; this binary is the
//! aarch64 shell around it.
//!
//! On any other target the binary is an empty program, so `cargo test`/`clippy` of the
//! workspace on the development machine still build it.

#![cfg_attr(all(target_arch = "aarch64", target_os = "none"), no_std, no_main)]

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
#[path = "arch/aarch64/mod.rs"]
mod arch;

#[cfg(not(all(target_arch = "aarch64", target_os = "none")))]
fn main() {
    eprintln!("hyp is a bare-metal EL2 image: build it with `cargo xtask build`");
}
