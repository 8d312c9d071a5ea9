//! Small register accessors the host needs.

use aarch64_cpu::asm::barrier;
use aarch64_cpu::registers::*;

/// The exception level this code runs at (CurrentEL.EL).
pub fn current_el() -> u64 {
    CurrentEL.read(CurrentEL::EL)
}

/// MPIDR_EL1's affinity fields (what the hypervisor put in VMPIDR_EL2).
pub fn mpidr() -> u64 {
    MPIDR_EL1.get() & hyptrace_platform::cpus::MPIDR_AFFINITY_MASK
}

/// This CPU's index (set in TPIDR_EL1 when the CPU started).
pub fn index() -> usize {
    TPIDR_EL1.get() as usize
}

/// Records this CPU's index.
pub fn set_index(index: usize) {
    TPIDR_EL1.set(index as u64);
}

/// The physical counter, ordered after earlier instructions.
pub fn counter() -> u64 {
    barrier::isb(barrier::SY);
    CNTPCT_EL0.get()
}

/// Runs exactly `2 * n` instructions (`subs` and `b.ne`, `n` times; `n` at least 1): the
/// known-length loop that calibrates instruction counts under QEMU's `-icount`.
pub fn counted_loop(n: u64) {
    let n = n.max(1);
    // SAFETY: a loop on one register; no memory, no stack, no flags anyone reads after.
    unsafe {
        core::arch::asm!(
            "1: subs {n}, {n}, #1",
            "b.ne 1b",
            n = inout(reg) n => _,
            options(nomem, nostack),
        )
    };
}

/// Counter frequency in Hz.
pub fn counter_frequency() -> u64 {
    CNTFRQ_EL0.get()
}

/// Counter ticks in `ms` milliseconds.
pub fn ticks_per_ms(ms: u64) -> u64 {
    counter_frequency() / 1000 * ms
}

/// Converts counter ticks to nanoseconds (for printed figures only).
pub fn ticks_to_ns(ticks: u64) -> u64 {
    ((ticks as u128 * 1_000_000_000) / counter_frequency().max(1) as u128) as u64
}

/// The SVE vector length in bytes, read with RDVL, or `None` without SVE. Enables SVE at
/// EL1 (CPACR_EL1.ZEN) for the read and restores the previous setting.
pub fn sve_vector_length() -> Option<u64> {
    if (ID_AA64PFR0_EL1.get() >> 32) & 0xf == 0 {
        return None;
    }
    let saved = CPACR_EL1.get();
    CPACR_EL1.set(saved | (0b11 << 16));
    barrier::isb(barrier::SY);
    let vl: u64;
    // SAFETY: SVE is implemented (ID_AA64PFR0_EL1.SVE) and enabled at EL1 (ZEN) just above;
    // `rdvl x0, #1` (encoded, as the target lacks the `sve` feature) only writes X0.
    unsafe { core::arch::asm!(".inst 0x04bf5020", out("x0") vl, options(nomem, nostack)) };
    CPACR_EL1.set(saved);
    barrier::isb(barrier::SY);
    Some(vl)
}

/// Whether pointer authentication with a generic-key algorithm is implemented
/// (ID_AA64ISAR1_EL1.GPA or GPI, ID_AA64ISAR2_EL1.GPA3).
pub fn has_pointer_auth() -> bool {
    let isar1 = ID_AA64ISAR1_EL1.get();
    let isar2: u64;
    // SAFETY: reading ID_AA64ISAR2_EL1 (S3_0_C0_C6_2) has no side effect.
    unsafe { core::arch::asm!("mrs {}, S3_0_C0_C6_2", out(reg) isar2, options(nomem, nostack)) };
    (isar1 >> 24) & 0xf != 0 || (isar1 >> 28) & 0xf != 0 || (isar2 >> 8) & 0xf != 0
}

/// PACGA: the generic pointer-authentication code of `value` with modifier `modifier`.
pub fn pacga(value: u64, modifier: u64) -> u64 {
    let pac: u64;
    // SAFETY: only called when `has_pointer_auth`; `pacga x0, x1, x2` (encoded, as the target
    // lacks the `pauth` feature) reads X1, X2 and the generic key, and writes X0.
    unsafe {
        core::arch::asm!(
            ".inst 0x9ac23020",
            out("x0") pac,
            in("x1") value,
            in("x2") modifier,
            options(nomem, nostack)
        )
    };
    pac
}

/// Whether the host's own stage 1 translates `addr` for a read (`AT S1E1R`: PAR_EL1.F clear).
/// An abort at such an address came from the hypervisor's stage 2.
pub fn stage1_translates(addr: u64) -> bool {
    let par: u64;
    // SAFETY: an address translation only writes PAR_EL1 and accesses no memory but the
    // host's own page tables; the ISB makes PAR_EL1 hold its result before it is read.
    unsafe {
        core::arch::asm!(
            "at s1e1r, {addr}",
            "isb",
            "mrs {par}, par_el1",
            addr = in(reg) addr,
            par = out(reg) par,
            options(nostack, preserves_flags)
        )
    };
    par & 1 == 0
}

/// `ID_AA64DFR0_EL1.PMUVer` (bits 11:8): 0 none, 1 PMUv3, 4 PMUv3p1, 6 PMUv3p5, 0xF IMPDEF.
pub fn pmu_version() -> u64 {
    let dfr0: u64;
    // SAFETY: reading an ID register has no side effect.
    unsafe { core::arch::asm!("mrs {}, id_aa64dfr0_el1", out(reg) dfr0, options(nomem, nostack)) };
    (dfr0 >> 8) & 0xf
}

/// PMU event number CPU_CYCLES.
pub const PMU_CPU_CYCLES: u64 = 0x11;

/// Starts PMU event counter 0 counting `event` at EL1 and EL0, and at EL2 too wherever the
/// hypervisor does not prohibit it (`PMEVTYPER0_EL0.NSH` = 1), from 0.
pub fn pmu_start_counter0(event: u64) {
    // SAFETY: the host owns the PMU (MDCR_EL2 traps none of it); these writes configure and
    // enable counter 0 and touch no memory. PMCR_EL0.E enables counting, P zeroes the event
    // counters; the ISB makes the configuration take effect before the caller's next
    // instruction (the Arm ARM's rule for system-register writes: context synchronisation).
    unsafe {
        core::arch::asm!(
            "msr pmevtyper0_el0, {ty}",
            "msr pmcntenset_el0, {one}",
            "mrs {cr}, pmcr_el0",
            "orr {cr}, {cr}, #3",
            "msr pmcr_el0, {cr}",
            "isb",
            ty = in(reg) (1u64 << 27) | event,
            one = in(reg) 1u64,
            cr = out(reg) _,
            options(nomem, nostack)
        )
    };
}

/// The value of PMU event counter 0.
pub fn pmu_counter0() -> u64 {
    let v: u64;
    // SAFETY: reading a counter the host owns; the ISB orders it after earlier instructions.
    unsafe {
        core::arch::asm!("isb", "mrs {}, pmevcntr0_el0", out(reg) v, options(nomem, nostack))
    };
    v
}

/// Runs `f` with the host's root-table entry (level 1 of its 39-bit map) for `va` replaced by
/// `desc`, then puts the old entry back. Each change follows break-before-make (Arm ARM
/// D8.16.1): the entry is made invalid, the store is made visible to the table walkers of
/// every CPU (DSB ISHST), every stage-1 TLB and walk-cache entry is invalidated on every CPU
/// (TLBI VMALLE1IS, completed by DSB ISH), and only then is the new entry written, published
/// (DSB ISHST) and the instruction stream resynchronised (ISB) before `f` relies on it.
///
/// # Safety
///
/// Nothing may use the addresses the entry translates (1 GiB around `va`) while `f` runs,
/// on any CPU, except `f` itself; `desc` must be a descriptor `f`'s accesses can live with.
pub unsafe fn with_root_entry<R>(va: u64, desc: u64, f: impl FnOnce() -> R) -> R {
    let ttbr0: u64;
    // SAFETY: reading TTBR0_EL1 has no side effect.
    unsafe { core::arch::asm!("mrs {}, ttbr0_el1", out(reg) ttbr0, options(nomem, nostack)) };
    let root = ttbr0 & 0x0000_ffff_ffff_f000;
    let entry = (root + ((va >> 30) & 0x1ff) * 8) as *mut u64;
    // SAFETY: the root table is the host's own page, identity mapped and writable (it lives
    // in the host image's data); the entry is inside it.
    let old = unsafe { entry.read_volatile() };
    let replace = |value: u64| {
        // SAFETY: as above; the sequence is the break-before-make described above, and the
        // caller guarantees nothing else uses the translation meanwhile.
        unsafe {
            entry.write_volatile(0);
            core::arch::asm!(
                "dsb ishst",
                "tlbi vmalle1is",
                "dsb ish",
                options(nostack, preserves_flags)
            );
            entry.write_volatile(value);
            core::arch::asm!("dsb ishst", "isb", options(nostack, preserves_flags));
        }
    };
    replace(desc);
    let result = f();
    replace(old);
    result
}
