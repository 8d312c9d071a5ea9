//! Assembly shared by both images' entry code (only expanded inside the aarch64 images).
//! Each macro expands to the text of an assembler `.macro`, to be passed to `global_asm!`
//! before the code that uses it.

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

/// Expands to the text of an assembler macro, `mmu_on config, el, tlbi_all`: turns this CPU's
/// MMU and caches on at exception level `el` (`el2` or `el1`) with the four words at symbol
/// `config` (a [`crate::mmu::MmuConfig`]: MAIR, TCR, TTBR0, SCTLR), written with the MMU
/// off so they are in memory. `tlbi_all` is the local TLB invalidation of that regime
/// (`alle2`, `vmalle1`). Uses x9-x11 and no stack.
///
/// The translation registers take effect at the next context synchronization (`ISB`); no
/// stale translation (from reset or a previous life of this CPU) or instruction-cache line
/// survives into the MMU-on world (`TLBI`, `IC IALLU`, completed by `DSB NSH`, then `ISB`);
/// the SCTLR write is a context-changing write, so the final `ISB` makes every later
/// instruction run with the MMU and caches on.
#[macro_export]
macro_rules! mmu_on_asm {
    () => {
        r#"
    .macro mmu_on config, el, tlbi_all
    adrp    x9, \config
    add     x9, x9, :lo12:\config
    ldp     x10, x11, [x9]
    msr     mair_\el, x10
    msr     tcr_\el, x11
    ldr     x10, [x9, #16]
    msr     ttbr0_\el, x10
    isb
    tlbi    \tlbi_all
    ic      iallu
    dsb     nsh
    isb
    ldr     x11, [x9, #24]
    msr     sctlr_\el, x11
    isb
    .endm
"#
    };
}
