//! The trap frame and the exception vector table shared by both images.
//!
//! [`exception_vectors!`](crate::exception_vectors) emits a 16-slot AArch64 vector table for
//! EL2 (hypervisor) or EL1 (host shim). Every slot saves the full general-purpose state into a
//! [`TrapFrame`] on the current stack and calls a Rust handler with the slot number; whatever the
//! handler leaves in the frame is restored before `eret`. That is how hypercall results reach
//! the caller's X0..X3, and how ELR is stepped over a trapped instruction.

/// The state saved on every exception.
#[repr(C)]
#[derive(Debug)]
pub struct TrapFrame {
    /// X0..X30 of the interrupted context.
    pub x: [u64; 31],
    /// ELR_ELx: where `eret` returns.
    pub elr: u64,
    /// SPSR_ELx: the interrupted PSTATE.
    pub spsr: u64,
    /// Keeps the frame a multiple of 16 bytes.
    pub reserved: u64,
}

/// Bytes of a [`TrapFrame`] (a multiple of 16, as SP alignment requires).
pub const TRAP_FRAME_SIZE: usize = core::mem::size_of::<TrapFrame>();
const _: () = assert!(TRAP_FRAME_SIZE == 272 && TRAP_FRAME_SIZE.is_multiple_of(16));
const _: () = assert!(core::mem::offset_of!(TrapFrame, elr) == 248);
const _: () = assert!(core::mem::offset_of!(TrapFrame, spsr) == 256);

/// Emits an exception vector table named `$table` for exception level `$el` (`"el2"` or
/// `"el1"`), whose slots call `$handler: extern "C" fn(slot: u64, frame: &mut TrapFrame)`.
/// Only for aarch64 images.
///
/// With `emergency_stacks = SYMBOL, SHIFT`, the eight slots for exceptions taken from the
/// current exception level (fatal in the hypervisor) first switch to an emergency stack:
/// CPU `TPIDR_ELx & 7` gets the `1 << SHIFT` bytes at `SYMBOL + n << SHIFT`, so a stack overflow
/// into a guard page is reported instead of faulting again on the frame push. Those slots use
/// SP_EL0 as scratch (they never return to the interrupted context).
#[macro_export]
macro_rules! exception_vectors {
    ($table:literal, $el:literal, $handler:path) => {
        $crate::exception_vectors!(@emit $table, $el, $handler, 0, $handler, 0);
    };
    ($table:literal, $el:literal, $handler:path, emergency_stacks = $stacks:path, $shift:expr) => {
        $crate::exception_vectors!(@emit $table, $el, $handler, 1, $stacks, $shift);
    };
    (@emit $table:literal, $el:literal, $handler:path, $emergency:expr, $stacks:path, $shift:expr) => {
        core::arch::global_asm!(
            concat!(
                r#"
    .macro vector_slot index
    .balign 0x80
    .if {emergency} && (\index < 8)
    msr     sp_el0, x0
    mrs     x0, tpidr_"#, $el, r#"
    and     x0, x0, #7
    add     x0, x0, #1
    lsl     x0, x0, #{shift}
    mov     sp, x0
    adrp    x0, {stacks}
    add     x0, x0, :lo12:{stacks}
    add     sp, sp, x0
    mrs     x0, sp_el0
    .endif
    sub     sp, sp, #{frame}
    stp     x0, x1, [sp, #0]
    mov     x0, #\index
    b       "#, $table, r#"_common
    .endm

    .pushsection .text.vectors, "ax"
    .balign 0x800
    .global "#, $table, r#"
"#, $table, r#":
    vector_slot 0
    vector_slot 1
    vector_slot 2
    vector_slot 3
    vector_slot 4
    vector_slot 5
    vector_slot 6
    vector_slot 7
    vector_slot 8
    vector_slot 9
    vector_slot 10
    vector_slot 11
    vector_slot 12
    vector_slot 13
    vector_slot 14
    vector_slot 15
    .purgem vector_slot

"#, $table, r#"_common:
    stp     x2, x3, [sp, #16]
    stp     x4, x5, [sp, #32]
    stp     x6, x7, [sp, #48]
    stp     x8, x9, [sp, #64]
    stp     x10, x11, [sp, #80]
    stp     x12, x13, [sp, #96]
    stp     x14, x15, [sp, #112]
    stp     x16, x17, [sp, #128]
    stp     x18, x19, [sp, #144]
    stp     x20, x21, [sp, #160]
    stp     x22, x23, [sp, #176]
    stp     x24, x25, [sp, #192]
    stp     x26, x27, [sp, #208]
    stp     x28, x29, [sp, #224]
    mrs     x1, elr_"#, $el, r#"
    mrs     x2, spsr_"#, $el, r#"
    stp     x30, x1, [sp, #240]
    str     x2, [sp, #256]
    mov     x1, sp
    bl      {handler}
    ldr     x2, [sp, #256]
    ldp     x30, x1, [sp, #240]
    msr     elr_"#, $el, r#", x1
    msr     spsr_"#, $el, r#", x2
    ldp     x2, x3, [sp, #16]
    ldp     x4, x5, [sp, #32]
    ldp     x6, x7, [sp, #48]
    ldp     x8, x9, [sp, #64]
    ldp     x10, x11, [sp, #80]
    ldp     x12, x13, [sp, #96]
    ldp     x14, x15, [sp, #112]
    ldp     x16, x17, [sp, #128]
    ldp     x18, x19, [sp, #144]
    ldp     x20, x21, [sp, #160]
    ldp     x22, x23, [sp, #176]
    ldp     x24, x25, [sp, #192]
    ldp     x26, x27, [sp, #208]
    ldp     x28, x29, [sp, #224]
    ldp     x0, x1, [sp, #0]
    add     sp, sp, #{frame}
    eret
    .popsection
"#
            ),
            frame = const $crate::trap_frame::TRAP_FRAME_SIZE,
            handler = sym $handler,
            emergency = const $emergency,
            stacks = sym $stacks,
            shift = const $shift,
        );
    };
}
