//! Hypercall function IDs and the SMCCC wire convention.
//!
//! hyptrace's calls are SMCCC *fast* calls using the *SMC64* convention in the *vendor-specific
//! hypervisor service* range (owner 6): function ID `0xC600_0000 | number`. The caller issues
//! `HVC #0` with the function ID in W0 and arguments in X1..X17. On return X0 holds the status
//! (0 or a negative [`HypError`](super::HypError) code) and X1..X3 the results.

/// SMCCC function ID bit 31: fast call.
pub const SMCCC_FAST_CALL: u32 = 1 << 31;
/// SMCCC function ID bit 30: SMC64/HVC64 calling convention.
pub const SMCCC_64: u32 = 1 << 30;
/// Shift of the owning-entity number (bits 29:24).
pub const SMCCC_OWNER_SHIFT: u32 = 24;
/// Owning entity "vendor-specific hypervisor service".
pub const SMCCC_OWNER_VENDOR_HYP: u32 = 6;
/// Mask of the owning-entity number, once shifted down.
pub const SMCCC_OWNER_MASK: u32 = 0x3f;
/// Bits 23:16 must be zero in a fast call's function ID.
pub const SMCCC_FAST_RESERVED_MASK: u32 = 0x00ff_0000;
/// SMCCC `NOT_SUPPORTED` status, returned in X0 for an unknown function.
pub const SMCCC_NOT_SUPPORTED: i64 = -1;

/// First function ID of hyptrace's range.
pub const HYPTRACE_FID_BASE: u32 =
    SMCCC_FAST_CALL | SMCCC_64 | (SMCCC_OWNER_VENDOR_HYP << SMCCC_OWNER_SHIFT);

/// Version of this ABI, reported by [`HypercallId::Info`]: major in bits 31:16, minor in 15:0.
pub const ABI_VERSION: u64 = (1 << 16) | 1;

/// Function ID of the test-only fault-injection call (number 0xF0, outside [`HypercallId`]):
/// `fault_injection(kind, addr)` makes the hypervisor commit the fault [`FaultKind`] names, so
/// tests can check the fatal report. Only an image built with the `fault-injection` feature
/// (`cargo xtask test` builds one for the fault checks) answers it; every normal build returns
/// SMCCC `NOT_SUPPORTED`, as for any unknown ID.
pub const FAULT_INJECTION_FID: u32 = HYPTRACE_FID_BASE | 0xf0;

/// Function ID of the test-only `hyp_printk` benchmark (number 0xF1, outside
/// [`HypercallId`]): `printk_bench(count)` runs `hyp_printk!` with two arguments `count`
/// times (at most [`MAX_SELFTEST_BATCH`](crate::limits::MAX_SELFTEST_BATCH)) on the calling
/// CPU and answers X0 = 0, X1 = `count`. Only the `fault-injection` build answers it, as
/// [`FAULT_INJECTION_FID`]; every normal build returns SMCCC `NOT_SUPPORTED`.
pub const PRINTK_BENCH_FID: u32 = HYPTRACE_FID_BASE | 0xf1;

/// Function ID of the test-only writer benchmark at EL2 (number 0xF2, outside
/// [`HypercallId`]): `writer_bench(kind, count, len)` on the calling CPU, `count` at most
/// [`MAX_SELFTEST_BATCH`](crate::limits::MAX_SELFTEST_BATCH). Kind
/// [`WRITER_BENCH_FLOOR`] runs the store-loop floor at EL2 into a private buffer; kind
/// [`WRITER_BENCH_EVENTS`] writes `count` raw events of `len` payload bytes (4, 16 or 64) on
/// the calling CPU's loaded buffer in one batch, as `write_selftest` writes its events. It
/// answers X0 = 0, X1 = what it did (iterations, events written). Only the `fault-injection`
/// build answers it, as [`FAULT_INJECTION_FID`]: the raw events carry no event ID, so no
/// trace of a normal build may hold them.
pub const WRITER_BENCH_FID: u32 = HYPTRACE_FID_BASE | 0xf2;

/// [`WRITER_BENCH_FID`] kind: the store-loop floor at EL2.
pub const WRITER_BENCH_FLOOR: u64 = 0;
/// [`WRITER_BENCH_FID`] kind: raw events of a given payload size.
pub const WRITER_BENCH_EVENTS: u64 = 1;

/// The faults [`FAULT_INJECTION_FID`] can commit at EL2.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum FaultKind {
    /// Unbounded recursion until the stack runs into its guard page.
    StackOverflow = 1,
    /// A store to the hypervisor's own `.text`.
    WriteText = 2,
    /// A branch into the hypervisor's `.data`.
    ExecuteData = 3,
    /// A store to the host page at `addr`, which the host has not shared.
    WriteHostPage = 4,
    /// A Rust panic at EL2.
    Panic = 5,
}

impl FaultKind {
    /// Every kind.
    pub const ALL: [FaultKind; 5] = [
        Self::StackOverflow,
        Self::WriteText,
        Self::ExecuteData,
        Self::WriteHostPage,
        Self::Panic,
    ];

    /// The kind with register value `v`.
    pub fn from_u64(v: u64) -> Option<Self> {
        Self::ALL.into_iter().find(|k| *k as u64 == v)
    }

    /// Its name on command lines (`fault=NAME`).
    pub const fn name(self) -> &'static str {
        match self {
            Self::StackOverflow => "stack-overflow",
            Self::WriteText => "write-text",
            Self::ExecuteData => "execute-data",
            Self::WriteHostPage => "write-host-page",
            Self::Panic => "panic",
        }
    }
}

/// Every hypercall hyptrace answers. The discriminant is the function number (bits 15:0).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum HypercallId {
    /// No-op. Returns X1..X3 unchanged in X1..X3; used to measure the round trip.
    Null = 0x00,
    /// Returns X1 = [`ABI_VERSION`], X2 = number of CPUs the hypervisor discovered,
    /// X3 = index of the calling CPU.
    Info = 0x01,
    /// `load_tracing(pack_pa, pack_size)`.
    LoadTracing = 0x10,
    /// `teardown_tracing()`.
    TeardownTracing = 0x11,
    /// `enable_tracing(enable)`.
    EnableTracing = 0x12,
    /// `swap_reader(cpu)`.
    SwapReader = 0x13,
    /// `update_footers(cpu)`.
    UpdateFooters = 0x14,
    /// `enable_event(id, enable)`.
    EnableEvent = 0x15,
    /// `update_clock(mult, shift, epoch_ns, epoch_cyc)`.
    UpdateClock = 0x16,
    /// `reset_tracing(cpu)`.
    ResetTracing = 0x17,
    /// `write_selftest(first_seq, count)`: the calling CPU writes `count` selftest events.
    WriteSelftest = 0x18,
    /// `printk_formats(page_pa, first)`: fills the host page at `page_pa` with `hyp_printk`
    /// format-table entries from entry `first` on (see `crate::printk`).
    PrintkFormats = 0x19,
}

impl HypercallId {
    /// Every ID, in numeric order.
    pub const ALL: [HypercallId; 12] = [
        Self::Null,
        Self::Info,
        Self::LoadTracing,
        Self::TeardownTracing,
        Self::EnableTracing,
        Self::SwapReader,
        Self::UpdateFooters,
        Self::EnableEvent,
        Self::UpdateClock,
        Self::ResetTracing,
        Self::WriteSelftest,
        Self::PrintkFormats,
    ];

    /// The SMCCC function ID the caller puts in W0.
    pub const fn function_id(self) -> u32 {
        HYPTRACE_FID_BASE | self as u32
    }

    /// Decodes X0 of a trapped HVC. SMCCC passes the function ID in W0, so bits 63:32 of X0
    /// are ignored. Anything that is not exactly one of hyptrace's IDs (another owner, the
    /// SMC32 convention, a yielding call, non-zero reserved bits, an unknown number) is `None`,
    /// which the caller answers with [`SMCCC_NOT_SUPPORTED`].
    pub fn from_x0(x0: u64) -> Option<Self> {
        let fid = x0 as u32;
        if fid & !0xffff != HYPTRACE_FID_BASE {
            return None;
        }
        let number = fid as u16;
        Self::ALL.into_iter().find(|id| *id as u16 == number)
    }

    /// Short lower-case name, as used in docs and test output.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Null => "null",
            Self::Info => "info",
            Self::LoadTracing => "load_tracing",
            Self::TeardownTracing => "teardown_tracing",
            Self::EnableTracing => "enable_tracing",
            Self::SwapReader => "swap_reader",
            Self::UpdateFooters => "update_footers",
            Self::EnableEvent => "enable_event",
            Self::UpdateClock => "update_clock",
            Self::ResetTracing => "reset_tracing",
            Self::WriteSelftest => "write_selftest",
            Self::PrintkFormats => "printk_formats",
        }
    }
}

/// Returns whether a W0 value lies in the vendor-specific hypervisor owner range at all
/// (fast or yielding, 32 or 64 bit). Used to tell "unknown vendor call" from "other owner" in
/// traces; both are answered with [`SMCCC_NOT_SUPPORTED`].
pub fn is_vendor_hyp_range(x0: u64) -> bool {
    ((x0 as u32) >> SMCCC_OWNER_SHIFT) & SMCCC_OWNER_MASK == SMCCC_OWNER_VENDOR_HYP
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_ids_are_fast_smc64_vendor_hyp() {
        assert_eq!(HypercallId::Null.function_id(), 0xC600_0000);
        assert_eq!(HypercallId::LoadTracing.function_id(), 0xC600_0010);
        assert_eq!(HypercallId::ResetTracing.function_id(), 0xC600_0017);
        assert_eq!(HypercallId::WriteSelftest.function_id(), 0xC600_0018);
    }

    #[test]
    fn every_id_round_trips() {
        for id in HypercallId::ALL {
            assert_eq!(HypercallId::from_x0(id.function_id() as u64), Some(id));
            // Bits 63:32 of X0 are not part of the function ID.
            let dirty = (0xdead_beef_u64 << 32) | id.function_id() as u64;
            assert_eq!(HypercallId::from_x0(dirty), Some(id));
        }
    }

    #[test]
    fn near_misses_are_rejected() {
        let null = HypercallId::Null.function_id();
        // SMC32 convention, yielding call, other owners, reserved bits, unknown numbers.
        for bad in [
            null & !SMCCC_64,
            null & !SMCCC_FAST_CALL,
            0xC500_0000,
            0xC700_0000,
            0x8400_0000,
            null | 0x0001_0000,
            null | 0x0080_0000,
            null | 0x02,
            null | 0x0f,
            null | 0x1a,
            null | 0xffff,
            0,
            u64::MAX as u32,
        ] {
            assert_eq!(HypercallId::from_x0(bad as u64), None, "{bad:#x}");
        }
    }

    #[test]
    fn vendor_range_detection() {
        assert!(is_vendor_hyp_range(0xC600_1234));
        assert!(is_vendor_hyp_range(0x8600_FF01));
        assert!(!is_vendor_hyp_range(0x8400_0000));
    }
}
