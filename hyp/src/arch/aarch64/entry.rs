//! EL2 entry points: the boot CPU's `_start` and the secondaries' `_secondary_entry`, and
//! `__el2_mmu_on`, which both run before Rust relies on memory.
//!
//! Each CPU puts SCTLR_EL2 in a known MMU-off state and points VBAR_EL2 and TPIDR_EL2 at its
//! vectors and index first, so even a fault this early is reported. The boot CPU then cleans
//! and invalidates the hypervisor's region from the data cache (a boot loader running with
//! caches on may have left lines for it, which would otherwise be written back over what is
//! written with the MMU off, or be read instead of it once caches are on), clears BSS, builds
//! the boot map in Rust with the MMU off (`boot_early`) and turns the MMU on. Secondary CPUs
//! receive their CPU index in X0 (the context ID the hypervisor passed to the firmware's
//! CPU_ON) and turn the MMU on with the same tables before touching their stack.

use hyp::el2_map::SCTLR_EL2_RES1;
use hyp::memmap::{HYP_STACK_GUARD, HYP_STACK_SIZE, MAX_CPUS};

core::arch::global_asm!(
    hyptrace_platform::dcache_clean_invalidate_asm!(),
    hyptrace_platform::mmu_on_asm!(),
    r#"
    // SP = __stacks_start + (x0 + 1) * stride, for CPU index x0.
    .macro set_cpu_stack
    adrp    x9, __stacks_start
    add     x9, x9, :lo12:__stacks_start
    add     x10, x0, #1
    mov     x11, #{stride}
    madd    x9, x10, x11, x9
    mov     sp, x9
    mov     x29, xzr
    mov     x30, xzr
    .endm

    // Known EL2 state before any memory access: MMU, caches and alignment checks off,
    // little-endian; vectors installed; TPIDR_EL2 = CPU index (x0).
    .macro early_el2_state
    msr     daifset, #0xf
    msr     spsel, #1
    movz    x9, #{sctlr_lo}
    movk    x9, #{sctlr_hi}, lsl #16
    msr     sctlr_el2, x9
    adrp    x9, __hyp_vectors
    add     x9, x9, :lo12:__hyp_vectors
    msr     vbar_el2, x9
    msr     tpidr_el2, x0
    isb
    .endm

    .pushsection .text.entry, "ax"
    .global _start
_start:
    mov     x0, #0          // the boot CPU is index 0
    early_el2_state
    // Clean and invalidate [__hyp_start, __hyp_image_end) before the first write below.
    adrp    x9, __hyp_start
    add     x9, x9, :lo12:__hyp_start
    adrp    x10, __hyp_image_end
    add     x10, x10, :lo12:__hyp_image_end
    dcache_clean_invalidate x9, x10
    // Clear BSS (the linker aligns both ends to 16 bytes).
    adrp    x9, __bss_start
    add     x9, x9, :lo12:__bss_start
    adrp    x10, __bss_end
    add     x10, x10, :lo12:__bss_end
1:  cmp     x9, x10
    b.hs    2f
    stp     xzr, xzr, [x9], #16
    b       1b
2:  mov     x0, #0
    set_cpu_stack
    bl      {boot_early}
    bl      __el2_mmu_on
    mov     x0, #0
    set_cpu_stack
    bl      {boot_main}
    b       9f

    .global _secondary_entry
_secondary_entry:
    // X0 = CPU index from our own CPU_ON (0 too: the boot CPU may be turned off and on).
    early_el2_state
    cmp     x0, #{max_cpus}
    b.hs    8f
    bl      __el2_mmu_on
    set_cpu_stack
    bl      {secondary_main}
    b       9f
8:  // Impossible index: report it on a stack of its own.
    msr     tpidr_el2, xzr
    bl      __el2_mmu_on
    adrp    x9, {bad_index_stack}
    add     x9, x9, :lo12:{bad_index_stack}
    add     x9, x9, #{bad_index_stack_size}
    mov     sp, x9
    bl      {bad_index}
9:  wfe
    b       9b

    // Turns this CPU's EL2 MMU and caches on with the tables and registers in
    // EL2_MMU_CONFIG (written by the boot CPU with its MMU off, so in memory). Uses x9-x11
    // and no stack (`hyp::mmu_on_asm`).
    .global __el2_mmu_on
__el2_mmu_on:
    mmu_on  EL2_MMU_CONFIG, el2, alle2
    ret
    .popsection
    "#,
    max_cpus = const MAX_CPUS,
    sctlr_lo = const SCTLR_EL2_RES1 & 0xffff,
    sctlr_hi = const SCTLR_EL2_RES1 >> 16,
    bad_index = sym super::boot::bad_secondary_index,
    bad_index_stack = sym super::boot::BAD_INDEX_STACK,
    bad_index_stack_size = const super::boot::BAD_INDEX_STACK_SIZE,
    stride = const HYP_STACK_GUARD + HYP_STACK_SIZE,
    boot_early = sym super::mmu::boot_early,
    boot_main = sym super::boot::boot_main,
    secondary_main = sym super::boot::secondary_main,
);
