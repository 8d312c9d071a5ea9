//! The host's EL1 MMU: built by the boot CPU with the MMU off, turned on by every CPU before
//! it relies on memory (see [`host_shim::mmu`] for what is mapped).

use aarch64_cpu::registers::{Readable, ID_AA64MMFR0_EL1};
use host_shim::mmu::{HostLayout, HostMap, HostTablePool};
use hyptrace_platform::dtb::Machine;
use hyptrace_platform::memmap::HOST_BASE;
use hyptrace_platform::mmu::MmuConfig;

use super::semihosting;

/// The host map's tables (BSS).
static mut TABLE_POOL: HostTablePool = HostTablePool::new();

/// What `__el1_mmu_on` writes: set by [`boot_early`] with the MMU off, so it is in memory for
/// the CPUs that read it with their MMU off, and never written again.
#[no_mangle]
static mut HOST_MMU_CONFIG: MmuConfig = MmuConfig {
    mair: 0,
    tcr: 0,
    ttbr0: 0,
    sctlr: 0,
};

/// Semihosting exit status when the host's map cannot be built (as for any failed boot).
const EXIT_BOOT_FAILED: u32 = 7;

/// The host's `.text` (see `linker/host-shim.ld`).
fn text() -> core::ops::Range<u64> {
    extern "C" {
        static __text_start: u8;
        static __text_end: u8;
    }
    // Only the symbols' addresses are used.
    (&raw const __text_start) as u64..(&raw const __text_end) as u64
}

/// Builds the host map with the MMU off (no locks, no heap) from the DTB at `dtb`, and records
/// the registers that turn it on. Called once, by the boot CPU, from `_start`.
pub extern "C" fn boot_early(dtb: u64) {
    // SAFETY: the hypervisor passes the address of QEMU's DTB, which nothing modifies; the
    // header is checked before the blob's size is trusted.
    let machine =
        unsafe { Machine::from_dtb_ptr(dtb as *const u8, super::cpu::mpidr(), HOST_BASE) };
    let Ok(machine) = machine else {
        // No console yet: the boot CPU reads the DTB again after the MMU is on and says why.
        semihosting::exit(EXIT_BOOT_FAILED)
    };
    let layout = HostLayout {
        ram: machine.ram.clone(),
        text: text(),
    };
    // SAFETY: only the boot CPU runs, once, before anything else uses the pool.
    let pool = unsafe { &mut *core::ptr::addr_of_mut!(TABLE_POOL) };
    let Ok(map) = HostMap::new(pool, &layout) else {
        semihosting::exit(EXIT_BOOT_FAILED)
    };
    let config = map.mmu_config(ID_AA64MMFR0_EL1.get() & 0xf);
    // The tables stay in TABLE_POOL for good; the map is never changed after boot.
    core::mem::forget(map);
    // SAFETY: as above; written once with the MMU off.
    unsafe { core::ptr::addr_of_mut!(HOST_MMU_CONFIG).write(config) };
}

core::arch::global_asm!(
    hyptrace_platform::mmu_on_asm!(),
    r#"
    // Turns this CPU's EL1 MMU and caches on with HOST_MMU_CONFIG. Uses x9-x11, no stack.
    .pushsection .text.entry, "ax"
    .global __el1_mmu_on
__el1_mmu_on:
    mmu_on  HOST_MMU_CONFIG, el1, vmalle1
    ret
    .popsection
    "#
);
