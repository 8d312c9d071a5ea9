// The physical memory map of a hyptrace system on QEMU `virt`, defined once.
//
// This file holds only constants so that the build scripts of `hyp` and `host-shim` can
// `include!` it and generate the linker scripts' address symbols from the same numbers the Rust
// code uses. Edit it and both images move together.

/// Start of RAM on QEMU `virt` (the only address besides flash that QEMU promises).
pub const RAM_BASE: u64 = 0x4000_0000;

/// QEMU places the generated DTB at the start of RAM for an ELF boot; it is at most 1 MiB.
pub const DTB_BASE: u64 = RAM_BASE;

/// Bytes reserved for the DTB. QEMU only places the DTB if it fits below the lowest image
/// address, so the hypervisor is linked above this window.
pub const DTB_RESERVED: u64 = 0x20_0000;

/// Base of the hypervisor's private region: image, per-CPU stacks and private pools.
pub const HYP_BASE: u64 = RAM_BASE + DTB_RESERVED;

/// Size of the hypervisor's private region. Nothing in it is ever given to the host.
pub const HYP_SIZE: u64 = 0xE0_0000;

/// Base of the host-shim image; also its boot CPU's entry point.
pub const HOST_BASE: u64 = HYP_BASE + HYP_SIZE;

/// Room for the host-shim image, its stacks and its heap.
pub const HOST_IMAGE_SIZE: u64 = 0x100_0000;

/// Start of the host's page pool (ring-buffer pages, packs): from here to the end of RAM.
pub const HOST_POOL_BASE: u64 = HOST_BASE + HOST_IMAGE_SIZE;

/// Most CPUs hyptrace supports (per-CPU stacks and state are sized by it).
pub const MAX_CPUS: usize = 8;

/// Stack bytes per CPU at EL2.
pub const HYP_STACK_SIZE: u64 = 0x8000;

/// Guard below every EL2 stack: never mapped at EL2, so an overflow faults instead of running
/// into the neighbouring stack.
pub const HYP_STACK_GUARD: u64 = 0x1000;

/// log2 of the bytes of each CPU's emergency-stack slot: a guard page of [`HYP_STACK_GUARD`]
/// bytes below the emergency stack that exceptions taken at EL2 are reported on. A power of
/// two, so the vector slots find a CPU's stack with a shift.
pub const HYP_EMERGENCY_SLOT_SHIFT: u32 = 14;
