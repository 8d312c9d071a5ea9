//! EL1 entry points: `_start` for the boot CPU (X0 = DTB address, from the hypervisor) and
//! `_secondary_start` for CPUs started with PSCI CPU_ON (X0 = the context ID, which the host
//! sets to the address of the CPU's [`BootBlock`](super::smp::BootBlock), whose first word is
//! the stack top). Both turn the EL1 MMU on (`__el1_mmu_on`, [`super::mmu`]) before Rust
//! relies on memory.

core::arch::global_asm!(
    hyptrace_platform::dcache_clean_invalidate_asm!(),
    r#"
    .section .text.entry, "ax"
    .global _start
_start:
    msr     daifset, #0xf
    mov     x19, x0
    // MMU-off writes follow (BSS, the page tables, HOST_MMU_CONFIG): no stale cache line of
    // the image may survive them (see `hyptrace_platform::dcache_clean_invalidate_asm`).
    adrp    x9, __host_start
    add     x9, x9, :lo12:__host_start
    adrp    x10, __host_image_end
    add     x10, x10, :lo12:__host_image_end
    dcache_clean_invalidate x9, x10
    adrp    x9, __bss_start
    add     x9, x9, :lo12:__bss_start
    adrp    x10, __bss_end
    add     x10, x10, :lo12:__bss_end
0:  cmp     x9, x10
    b.hs    1f
    stp     xzr, xzr, [x9], #16
    b       0b
1:  adrp    x9, {boot_stack}
    add     x9, x9, :lo12:{boot_stack}
    add     x9, x9, #{boot_stack_size}
    mov     sp, x9
    mov     x0, x19
    mov     x29, xzr
    mov     x30, xzr
    // Build the host map with the MMU off, then turn it on before Rust relies on memory.
    bl      {boot_early}
    bl      __el1_mmu_on
    mov     x0, x19
    bl      {boot_main}
2:  wfe
    b       2b

    .global _secondary_start
_secondary_start:
    msr     daifset, #0xf
    // MMU and caches on first (x0 survives): the boot block was written with caches on.
    bl      __el1_mmu_on
    ldr     x9, [x0]
    mov     sp, x9
    mov     x29, xzr
    mov     x30, xzr
    bl      {secondary_main}
3:  wfe
    b       3b
    "#,
    boot_stack = sym super::boot::BOOT_STACK,
    boot_stack_size = const super::boot::BOOT_STACK_SIZE,
    boot_main = sym super::boot::boot_main,
    boot_early = sym super::mmu::boot_early,
    secondary_main = sym super::smp::secondary_main,
);
