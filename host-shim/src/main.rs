//! The hyptrace EL1 host shim: a minimal "host kernel" for the hypervisor.
//!
//! It boots on the CPU the hypervisor drops to EL1, reads the DTB, brings every secondary CPU up
//! through PSCI (relayed by the hypervisor), and then either runs the in-QEMU test harness or the
//! default workload, as the semihosting command line says. Portable logic is in the
//! `host_shim` library; this binary is the aarch64 shell: entry, vectors, console, SMP and the
//! harness's test cases, which issue real HVCs and SMCs.
//!
//! On any other target the binary is an empty program, so workspace builds on the development
//! machine still succeed.

#![cfg_attr(all(target_arch = "aarch64", target_os = "none"), no_std, no_main)]

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
extern crate alloc;

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
#[path = "arch/aarch64/mod.rs"]
mod arch;

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod own_trace;

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod qemu_bench;

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod record;

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod soak;

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod suite;

#[cfg(not(all(target_arch = "aarch64", target_os = "none")))]
fn main() {
    eprintln!("host-shim is a bare-metal EL1 image: build it with `cargo xtask build`");
}
