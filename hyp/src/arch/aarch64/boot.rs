//! Boot of the boot CPU and of secondary CPUs, up to the drop into the host. Both run with
//! the EL2 MMU and caches on (see [`super::mmu`]).

use aarch64_cpu::registers::*;
use hyp::cpus::MPIDR_AFFINITY_MASK;
use hyp::memmap::{DTB_BASE, HOST_BASE};

use super::console::hyp_println;
use super::fatal::fatal;
use super::mmu::{finish_boot_map, take_boot_map};
use super::platform::{build_stage2, discover, platform, stage2_root, POWER};
use super::regs::{drop_to_el1, enable_stage2, init_el2};
use super::vectors::vector_table_address;

/// Bytes of the stack a CPU with an impossible index reports on.
pub const BAD_INDEX_STACK_SIZE: usize = 4096;

/// The stack of a CPU that entered with an impossible index (see `_secondary_entry`).
#[repr(C, align(16))]
pub struct BadIndexStack([u8; BAD_INDEX_STACK_SIZE]);

/// Memory of [`BadIndexStack`] (referenced by `_secondary_entry`).
pub static mut BAD_INDEX_STACK: BadIndexStack = BadIndexStack([0; BAD_INDEX_STACK_SIZE]);

/// Address of `_secondary_entry`, the EL2 entry the relay gives the firmware for CPU_ON.
pub fn secondary_entry_address() -> u64 {
    extern "C" {
        fn _secondary_entry();
    }
    _secondary_entry as *const () as u64
}

/// The boot CPU, on its own stack with BSS cleared and the MMU on.
pub extern "C" fn boot_main() -> ! {
    take_boot_map();
    init_el2(0, vector_table_address());
    let boot_mpidr = MPIDR_EL1.get() & MPIDR_AFFINITY_MASK;
    // The DTB is mapped read-only until `finish_boot_map`.
    let p = discover(boot_mpidr).unwrap_or_else(|why| fatal(format_args!("{why}")));
    // Maps the DTB's console (and moves CONSOLE there) and unmaps the DTB.
    finish_boot_map(p.uart).unwrap_or_else(|why| fatal(format_args!("{why}")));
    // Built with the MMU and caches on: the stage-2 walker reads the tables through the
    // same inner-shareable write-back caches (VTCR_EL2.IRGN0/ORGN0/SH0), so no cleaning is
    // needed for it to see them.
    let root = build_stage2().unwrap_or_else(|why| fatal(format_args!("{why}")));
    enable_stage2(root);
    hyp::printk::install(&super::platform::PRINTK_SINK);
    POWER.mark_on(0);
    hyp_println!(
        "hyptrace hypervisor at EL2: {} CPUs, RAM {:#x}..{:#x}, boot MPIDR {:#x}",
        p.cpus.count(),
        p.ram.start,
        p.ram.end,
        boot_mpidr
    );
    hyp_println!(
        "EL2 MMU on (SCTLR_EL2 {:#x}): caches, W^X, stack guards; no host RAM mapped",
        SCTLR_EL2.get()
    );
    hyp_println!(
        "stage 2 on: host sees RAM {:#x}..{:#x} except the hypervisor's {:#x}..{:#x}",
        p.ram.start,
        p.ram.end,
        super::platform::HYP_REGION.start,
        super::platform::HYP_REGION.end
    );
    hyp_println!("entering the host at {HOST_BASE:#x} (EL1) with the DTB at {DTB_BASE:#x}");
    drop_to_el1(HOST_BASE, DTB_BASE)
}

/// A CPU entered `_secondary_entry` with an index no CPU_ON of ours gives (running on
/// [`BAD_INDEX_STACK`]).
pub extern "C" fn bad_secondary_index(index: u64) -> ! {
    fatal(format_args!(
        "a CPU entered the hypervisor with impossible index {index}"
    ))
}

/// A secondary CPU started through the PSCI relay, MMU on; `index` is the context ID the
/// relay gave the firmware.
pub extern "C" fn secondary_main(index: u64) -> ! {
    let index = index as usize;
    init_el2(index, vector_table_address());
    enable_stage2(stage2_root());
    let expected = platform().cpus.mpidr(index);
    let actual = MPIDR_EL1.get() & MPIDR_AFFINITY_MASK;
    if expected != Some(actual) {
        fatal(format_args!(
            "CPU with MPIDR {actual:#x} started as index {index} (expected {expected:?})"
        ));
    }
    let Some(host) = POWER.take_host_entry(index) else {
        fatal(format_args!("CPU {index} started without a pending CPU_ON"))
    };
    drop_to_el1(host.entry, host.context_id)
}
