//! What the hypervisor learns from the DTB at boot, kept for the rest of its life.

use core::ops::Range;

use hyp::cpus::CpuPower;
use hyp::dtb::Machine;
use hyp::memmap::{DTB_BASE, HYP_BASE, HYP_SIZE};
use hyp::tracing::memory_rules::MemoryRules;
use hyp::tracing::{TracingService, TracingStorage};
use spin::Once;

static MACHINE: Once<Machine> = Once::new();
static RULES: Once<MemoryRules> = Once::new();

/// Power state of every CPU.
pub static POWER: CpuPower = CpuPower::new();

/// The tracing service's descriptor pool and scratch space (all zero: in BSS).
static TRACING_STORAGE: TracingStorage = TracingStorage::new();

/// The tracing service: per-CPU writers, event flags, clock.
pub static TRACING: TracingService = TracingService::new(&TRACING_STORAGE);

/// Which memory the host may name in a pack: its RAM bank minus the hypervisor's region.
pub fn memory_rules() -> &'static MemoryRules {
    RULES.call_once(|| MemoryRules {
        ram: platform().ram.clone(),
        hyp: HYP_REGION,
    })
}

/// The hypervisor's private region (image, stacks, pools).
pub const HYP_REGION: Range<u64> = HYP_BASE..HYP_BASE + HYP_SIZE;

/// The machine description; only valid after [`discover`] ran on the boot CPU.
pub fn platform() -> &'static Machine {
    MACHINE
        .get()
        .unwrap_or_else(|| super::fatal::fatal(format_args!("platform used before discovery")))
}

/// Reads the DTB QEMU placed at the start of RAM. `boot_mpidr` is the boot CPU's MPIDR.
pub fn discover(boot_mpidr: u64) -> Result<&'static Machine, &'static str> {
    // SAFETY: for an ELF boot QEMU places the DTB at DTB_BASE, in RAM that nothing writes while
    // the boot CPU reads it (the host does not run yet); `from_dtb_ptr` reads the 40-byte header
    // first and rejects memory without the FDT magic.
    let machine = unsafe { Machine::from_dtb_ptr(DTB_BASE as *const u8, boot_mpidr, HYP_BASE) }
        .map_err(|e| e.description())?;
    if machine.ram.end < HYP_BASE + HYP_SIZE {
        return Err("RAM ends inside the hypervisor's region: give QEMU more memory");
    }
    Ok(MACHINE.call_once(|| machine))
}
