//! Assembly shared by both images' entry code (only expanded inside the aarch64 images).

/// Expands to the text of an assembler macro, `dcache_clean_invalidate start, end`: cleans and
/// invalidates the data cache by virtual address to the point of coherency for every line of
/// `[start, end)` (registers; line size from CTR_EL0.DminLine), then completes it with
/// `DSB SY`. Clobbers x11-x13 and `start`.
///
/// Run first thing by a CPU that boots with its MMU off and is about to write memory with
/// non-cacheable stores: a boot loader running with caches on may have left lines for the
/// image, which would otherwise be written back over the MMU-off writes, or read instead of
/// them once caches are on.
#[macro_export]
macro_rules! dcache_clean_invalidate_asm {
    () => {
        r#"
    .macro dcache_clean_invalidate start, end
    mrs     x11, ctr_el0
    ubfx    x11, x11, #16, #4
    mov     x12, #4
    lsl     x12, x12, x11
    sub     x13, x12, #1
    bic     \start, \start, x13
10: dc      civac, \start
    add     \start, \start, x12
    cmp     \start, \end
    b.lo    10b
    dsb     sy
    .endm
"#
    };
}
