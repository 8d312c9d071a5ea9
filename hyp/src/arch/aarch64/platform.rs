//! What the hypervisor learns from the DTB at boot, kept for the rest of its life.

use core::ops::Range;

use hyp::cpus::CpuPower;
use hyp::dtb::Machine;
use hyp::memmap::{DTB_BASE, HYP_BASE, HYP_SIZE};
use hyp::stage2::{Stage2Pool, Stage2Tables};
use hyp::tracing::memory_rules::MemoryRules;
use hyp::tracing::{TracingService, TracingStorage};
use spin::Once;

use super::mmu::El2HostMemory;

static MACHINE: Once<Machine> = Once::new();
static RULES: Once<MemoryRules> = Once::new();

/// Power state of every CPU.
pub static POWER: CpuPower = CpuPower::new();

/// The tracing service's descriptor pool and scratch space (all zero: in BSS).
static TRACING_STORAGE: TracingStorage = TracingStorage::new();

/// The tracing service: per-CPU writers, event flags, clock. It reaches host pages only
/// through the EL2 tables, while they are shared.
pub static TRACING: TracingService = TracingService::new(&TRACING_STORAGE, &El2HostMemory);

/// Where `hyp_printk!` writes: the tracing service, on the calling CPU's ring, with the
/// trace clock's counter.
pub static PRINTK_SINK: hyp::printk::Sink = hyp::printk::Sink {
    tracing: &TRACING,
    cpu: super::regs::cpu_index,
    counter: super::trap::counter,
};

/// Which memory the host may name in a pack: its RAM bank minus the hypervisor's region.
pub fn memory_rules() -> &'static MemoryRules {
    RULES.call_once(|| MemoryRules {
        ram: platform().ram.clone(),
        hyp: HYP_REGION,
    })
}

/// The hypervisor's private region (image, stacks, pools).
pub const HYP_REGION: Range<u64> = HYP_BASE..HYP_BASE + HYP_SIZE;

/// The pool of the host's stage-2 tables (BSS).
static mut STAGE2_POOL: Stage2Pool = Stage2Pool::new();

/// Root of the host's stage-2 tables, for VTTBR_EL2: set once by the boot CPU before any
/// other CPU runs; the tables never change afterwards.
static STAGE2_ROOT: Once<u64> = Once::new();

/// Builds the stage-2 tables for the discovered machine; returns the root for VTTBR_EL2.
/// Called once, by the boot CPU with its MMU and caches on, before any secondary CPU runs.
pub fn build_stage2() -> Result<u64, &'static str> {
    // SAFETY: only the boot CPU runs (secondaries start later, through the host's CPU_ON),
    // once, so nothing else uses the pool while the tables are written.
    let pool = unsafe { &mut *core::ptr::addr_of_mut!(STAGE2_POOL) };
    // The host needs only its console: every other device stays unmapped (some, like
    // fw_cfg's DMA interface and the GIC ITS, write memory behind stage 2's back).
    let tables = Stage2Tables::build(pool, &platform().ram, &HYP_REGION, &[platform().uart])
        .map_err(|_| "RAM cannot be described by the stage-2 tables")?;
    let root = tables.root_address();
    // The tables stay in the pool for good and are never changed: the map is not needed
    // again (and aarch64-paging's Mapping is never marked live, so forgetting it is sound).
    core::mem::forget(tables);
    // SAFETY: a barrier: table writes complete before any CPU's table walker uses them.
    unsafe { core::arch::asm!("dsb ishst", options(nostack)) };
    Ok(*STAGE2_ROOT.call_once(|| root))
}

/// Address of the level-1 stage-2 table (valid once [`build_stage2`] ran).
pub fn stage2_root() -> u64 {
    *STAGE2_ROOT
        .get()
        .unwrap_or_else(|| super::fatal::fatal(format_args!("stage 2 used before it was built")))
}

/// The machine description; only valid after [`discover`] ran on the boot CPU.
pub fn platform() -> &'static Machine {
    MACHINE
        .get()
        .unwrap_or_else(|| super::fatal::fatal(format_args!("platform used before discovery")))
}

/// Reads the DTB QEMU placed at the start of RAM. `boot_mpidr` is the boot CPU's MPIDR.
pub fn discover(boot_mpidr: u64) -> Result<&'static Machine, &'static str> {
    // SAFETY: for an ELF boot QEMU places the DTB at DTB_BASE, in RAM that nothing writes while
    // the boot CPU reads it (the host does not run yet) and that the boot map maps read-only
    // until `finish_boot_map`; `from_dtb_ptr` reads the 40-byte header first, rejects memory
    // without the FDT magic and caps the size at the DTB window.
    let machine = unsafe { Machine::from_dtb_ptr(DTB_BASE as *const u8, boot_mpidr, HYP_BASE) }
        .map_err(|e| e.description())?;
    if machine.ram.end < HYP_BASE + HYP_SIZE {
        return Err("RAM ends inside the hypervisor's region: give QEMU more memory");
    }
    Ok(MACHINE.call_once(|| machine))
}
