//! EL2 entry points: the boot CPU's `_start` and the secondaries' `_secondary_entry`.
//!
//! Each sets its stack (one slot per CPU index, above a guard gap), selects SP_EL2, and calls
//! into Rust. The boot CPU also clears BSS first. Secondary CPUs receive their CPU index in X0:
//! it is the context ID the hypervisor passed to the firmware's CPU_ON.

use hyp::memmap::{HYP_STACK_GUARD, HYP_STACK_SIZE, MAX_CPUS};

core::arch::global_asm!(
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

    .pushsection .text.entry, "ax"
    .global _start
_start:
    msr     daifset, #0xf
    msr     spsel, #1
    // Clear BSS (the linker aligns both ends to 16 bytes).
    adrp    x9, __bss_start
    add     x9, x9, :lo12:__bss_start
    adrp    x10, __bss_end
    add     x10, x10, :lo12:__bss_end
0:  cmp     x9, x10
    b.hs    1f
    stp     xzr, xzr, [x9], #16
    b       0b
1:  mov     x0, #0          // the boot CPU is index 0
    set_cpu_stack
    bl      {boot_main}
    b       9f

    .global _secondary_entry
_secondary_entry:
    msr     daifset, #0xf
    msr     spsel, #1
    // X0 = CPU index from our own CPU_ON (0 too: the boot CPU may be turned off and on).
    cmp     x0, #{max_cpus}
    b.hs    8f
    set_cpu_stack
    bl      {secondary_main}
    b       9f
8:  // Impossible index: report it from the unused gap below slot 0's stack.
    adrp    x9, __stacks_start
    add     x9, x9, :lo12:__stacks_start
    add     x9, x9, #{guard}
    mov     sp, x9
    bl      {bad_index}
9:  wfe
    b       9b
    .popsection
    "#,
    max_cpus = const MAX_CPUS,
    guard = const HYP_STACK_GUARD,
    bad_index = sym super::boot::bad_secondary_index,
    stride = const HYP_STACK_GUARD + HYP_STACK_SIZE,
    boot_main = sym super::boot::boot_main,
    secondary_main = sym super::boot::secondary_main,
);
