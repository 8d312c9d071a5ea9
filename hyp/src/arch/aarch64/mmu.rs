//! EL2 stage 1 on this CPU: the tables' home, the early build, turning the MMU on, and the
//! host-page mapper the tracing service uses.
//!
//! Boot order (boot CPU): `_start` puts SCTLR_EL2 in a known MMU-off state, cleans and
//! invalidates the hypervisor's region from the data cache, invalidates the EL2 TLB, clears BSS
//! and calls [`boot_early`], which builds the boot map into [`TABLE_POOL`] with the MMU still
//! off, then `__el2_mmu_on` turns the MMU and caches on from [`EL2_MMU_CONFIG`]. Every other
//! CPU (and a CPU turned off and on again) runs `__el2_mmu_on` first thing in
//! `_secondary_entry`, before it touches its stack. See `docs/architecture.md`.
//!
//! The MMU-off part is the only Rust that runs on Device memory: it uses no exclusive or
//! atomic read-modify-write instruction (aarch64-paging writes descriptors with plain
//! store-release; the map's "live" counter is bumped only after the MMU is on).

use core::ops::Range;

use aarch64_cpu::registers::{Readable, ID_AA64MMFR0_EL1};
use hyp::abi::page::PAGE_SIZE_U64 as PAGE_SIZE;
use hyp::abi::HypError;
use hyp::el2_map::{El2Map, ImageLayout, MmuConfig, StackArea, TablePool, TlbMaintenance};
use hyp::memmap::{
    DTB_BASE, DTB_RESERVED, HYP_EMERGENCY_SLOT_SHIFT, HYP_STACK_GUARD, HYP_STACK_SIZE,
};
use hyp::tracing::host_memory::HostMemory;
use hyp::uart::QEMU_VIRT_UART;
use spin::{Mutex, Once};

/// The pool every EL2 page table comes from (BSS, inside the hypervisor's region).
static mut TABLE_POOL: TablePool = TablePool::new();

/// What `__el2_mmu_on` writes: set by [`boot_early`] with the MMU off (so it is in memory for
/// CPUs that read it with their MMU off) and never written again.
#[no_mangle]
static mut EL2_MMU_CONFIG: MmuConfig = MmuConfig {
    mair: 0,
    tcr: 0,
    ttbr0: 0,
    sctlr: 0,
};

/// The boot map between [`boot_early`] (MMU off, where no lock may be taken) and
/// [`take_boot_map`].
static mut BOOT_MAP: Option<El2Map<'static>> = None;

/// The live EL2 tables, behind a lock once the MMU is on.
static EL2_MAP: Once<Mutex<El2Map<'static>>> = Once::new();

/// Where the linker placed the image's parts (see `linker/hyp.ld`).
pub fn image_layout() -> ImageLayout {
    extern "C" {
        static __text_start: u8;
        static __text_end: u8;
        static __rodata_start: u8;
        static __rodata_end: u8;
        static __data_start: u8;
        static __data_end: u8;
        static __stacks_start: u8;
        static __stacks_end: u8;
        static __emergency_stacks_start: u8;
        static __emergency_stacks_end: u8;
    }
    let addr = |p: *const u8| p as u64;
    // Only the symbols' addresses are used.
    ImageLayout {
        text: addr(&raw const __text_start)..addr(&raw const __text_end),
        rodata: addr(&raw const __rodata_start)..addr(&raw const __rodata_end),
        data: addr(&raw const __data_start)..addr(&raw const __data_end),
        stacks: StackArea {
            slots: addr(&raw const __stacks_start)..addr(&raw const __stacks_end),
            stack_size: HYP_STACK_SIZE,
            guard_size: HYP_STACK_GUARD,
        },
        emergency_stacks: StackArea {
            slots: addr(&raw const __emergency_stacks_start)
                ..addr(&raw const __emergency_stacks_end),
            stack_size: (1 << HYP_EMERGENCY_SLOT_SHIFT) - HYP_STACK_GUARD,
            guard_size: HYP_STACK_GUARD,
        },
    }
}

/// The window QEMU puts the DTB in; mapped read-only until the boot CPU has read it.
const DTB_WINDOW: Range<u64> = DTB_BASE..DTB_BASE + DTB_RESERVED;

/// Builds the boot map (the image, the early console, and the DTB read-only) with the MMU off
/// and records the registers that turn it on. Called once, by the boot CPU, from `_start`.
pub extern "C" fn boot_early() {
    // SAFETY: only the boot CPU runs, once, before anything else uses the pool or the map;
    // the pool is hypervisor memory nothing else refers to.
    let pool = unsafe { &mut *core::ptr::addr_of_mut!(TABLE_POOL) };
    // The early console (QEMU virt's PL011, where the console starts) is mapped so a fatal
    // report before the DTB is read still prints; `finish_boot_map` moves it.
    let early_console = QEMU_VIRT_UART as u64;
    let map = El2Map::boot(pool, &El2Tlb, &image_layout(), &[early_console])
        .and_then(|mut map| map.map_host(&DTB_WINDOW, false).map(|()| map));
    let Ok(map) = map else {
        // Nothing can be printed yet (no console, MMU off): end QEMU with the fatal status.
        super::fatal::exit_early()
    };
    let pa_range = ID_AA64MMFR0_EL1.get() & 0xf;
    // SAFETY: as above; written once with the MMU off, so the values are in memory for every
    // CPU that reads them with its MMU off.
    unsafe {
        core::ptr::addr_of_mut!(EL2_MMU_CONFIG).write(map.mmu_config(pa_range));
        core::ptr::addr_of_mut!(BOOT_MAP).write(Some(map));
    }
}

/// Moves the boot map behind its lock and marks it live: called by the boot CPU right after
/// its MMU came on, before any other CPU runs.
pub fn take_boot_map() {
    // SAFETY: only the boot CPU runs; `boot_early` wrote BOOT_MAP and nothing else touches it.
    let map = unsafe { core::ptr::addr_of_mut!(BOOT_MAP).replace(None) };
    let map = map.unwrap_or_else(|| super::fatal::fatal(format_args!("no boot map")));
    // From now on aarch64-paging does TLB maintenance on every change.
    map.mark_live();
    EL2_MAP.call_once(|| Mutex::new(map));
}

fn el2_map() -> &'static Mutex<El2Map<'static>> {
    EL2_MAP
        .get()
        .unwrap_or_else(|| super::fatal::fatal(format_args!("EL2 map used before boot")))
}

/// Maps the console the DTB names (Device-nGnRE) in place of the early one, and unmaps the
/// DTB window: the boot map's last changes, once the DTB has been read. No host RAM stays
/// mapped.
pub fn finish_boot_map(uart: u64) -> Result<(), &'static str> {
    let page = uart & !(PAGE_SIZE - 1);
    let early = QEMU_VIRT_UART as u64;
    let mut map = el2_map().lock();
    if page != early {
        map.map_device(page)
            .map_err(|_| "the console cannot be mapped at EL2")?;
    }
    map.unmap(&DTB_WINDOW)
        .map_err(|_| "the DTB window cannot be unmapped")?;
    if page != early {
        // The console moves before its old page goes.
        drop(map);
        // SAFETY: `page` was just mapped as device memory at its own address, for good.
        unsafe { super::console::CONSOLE.set_base(uart as usize) };
        el2_map()
            .lock()
            .unmap_device(early)
            .map_err(|_| "the early console cannot be unmapped")?;
    }
    Ok(())
}

/// The barriers and TLB invalidations of batched changes to the live EL2 map.
struct El2Tlb;

impl TlbMaintenance for El2Tlb {
    fn publish(&self) {
        // SAFETY: barriers only. DSB ISHST completes the descriptor stores for every table
        // walker in the inner-shareable domain; the ISB makes this CPU's later accesses use
        // them (Arm ARM D8.2.8, "Ordering of memory accesses from translation table walks").
        unsafe { core::arch::asm!("dsb ishst", "isb", options(nostack, preserves_flags)) };
    }

    fn invalidate_all(&self) {
        // SAFETY: TLB maintenance and barriers only. Break-before-make's last steps (Arm ARM
        // D8.16.1): the invalid descriptors are visible (DSB ISHST) before the broadcast
        // invalidation of every EL2 entry, which completes on every CPU (DSB ISH) before this
        // CPU goes on (ISB), so no CPU reaches the unmapped pages when this returns.
        unsafe {
            core::arch::asm!(
                "dsb ishst",
                "tlbi alle2is",
                "dsb ish",
                "isb",
                options(nostack, preserves_flags)
            )
        };
    }
}

/// The tracing service's view of host pages: mapped into the EL2 tables while shared.
pub struct El2HostMemory;

impl HostMemory for El2HostMemory {
    fn map(&self, range: Range<u64>, writable: bool) -> Result<(), HypError> {
        el2_map().map(range, writable)
    }

    fn unmap(&self, range: Range<u64>) {
        el2_map().unmap(range)
    }
}
