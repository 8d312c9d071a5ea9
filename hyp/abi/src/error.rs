//! Error codes: a typed enum inside Rust, a negative number in X0 on the wire.
//!
//! Every rejected hypercall gets the most specific code that applies, so a host (or a test) can
//! tell exactly which rule its input broke. `docs/abi.md` lists them with the calls that return
//! them. Codes are stable once released: add new ones at the end.

use core::fmt;

/// Why the hypervisor refused a call. The discriminant is the wire value placed in X0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(i64)]
pub enum HypError {
    /// Unknown or malformed function ID (SMCCC `NOT_SUPPORTED`).
    NotSupported = -1,
    /// The call needs tracing to be loaded and it is not.
    NotLoaded = -2,
    /// `load_tracing` while tracing is already loaded.
    AlreadyLoaded = -3,
    /// A lockless retry budget ran out (the writer kept the head moving, or links are corrupt).
    Busy = -4,
    /// A CPU argument names no CPU, or a CPU that has no buffer.
    InvalidCpu = -5,
    /// The pack address is not page-aligned.
    PackMisaligned = -6,
    /// The pack size is zero, not a multiple of the page size, or larger than allowed.
    PackSize = -7,
    /// The pack's contents do not fit its size (a record runs past the end, or trailing bytes
    /// are left over).
    PackTruncated = -8,
    /// `nr_cpus` is zero or larger than the number of CPUs.
    PackCpuCount = -9,
    /// A CPU is described twice, or its number is out of range.
    PackCpu = -10,
    /// A CPU has fewer than two ring pages, or so many that sizes overflow.
    PackPageCount = -11,
    /// `total_pages` does not equal the pages actually described.
    PackTotalPages = -12,
    /// A page address is not page-aligned.
    PageMisaligned = -13,
    /// A page lies outside host RAM (beyond RAM, or MMIO).
    PageNotRam = -14,
    /// A page lies inside hypervisor memory.
    PageInHyp = -15,
    /// A page is listed twice, is both reader and ring page, or is the pack itself.
    PageDuplicate = -16,
    /// The hypervisor's private pools cannot hold this many pages.
    NoMemory = -17,
    /// No event has this ID.
    UnknownEvent = -18,
    /// Clock parameters rejected (mult 0, shift >= 64).
    InvalidClock = -19,
    /// An argument is out of its documented range (e.g. a boolean that is not 0 or 1).
    InvalidArgument = -20,
    /// The page is shared with the hypervisor (a page of the loaded trace buffer): the call
    /// writes only pages the host alone owns.
    PageShared = -21,
}

impl HypError {
    /// Every error, in code order.
    pub const ALL: [HypError; 21] = [
        Self::NotSupported,
        Self::NotLoaded,
        Self::AlreadyLoaded,
        Self::Busy,
        Self::InvalidCpu,
        Self::PackMisaligned,
        Self::PackSize,
        Self::PackTruncated,
        Self::PackCpuCount,
        Self::PackCpu,
        Self::PackPageCount,
        Self::PackTotalPages,
        Self::PageMisaligned,
        Self::PageNotRam,
        Self::PageInHyp,
        Self::PageDuplicate,
        Self::NoMemory,
        Self::UnknownEvent,
        Self::InvalidClock,
        Self::InvalidArgument,
        Self::PageShared,
    ];

    /// The value placed in X0.
    pub const fn code(self) -> i64 {
        self as i64
    }

    /// The X0 register image of this error.
    pub const fn to_x0(self) -> u64 {
        self as i64 as u64
    }

    /// Decodes a status register; `None` for 0 (success) and for unknown codes.
    pub fn from_code(code: i64) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.code() == code)
    }

    /// Short description for humans.
    pub const fn description(self) -> &'static str {
        match self {
            Self::NotSupported => "unknown or malformed function ID",
            Self::NotLoaded => "tracing is not loaded",
            Self::AlreadyLoaded => "tracing is already loaded",
            Self::Busy => "retry budget exhausted",
            Self::InvalidCpu => "no such CPU or no buffer for it",
            Self::PackMisaligned => "pack address not page-aligned",
            Self::PackSize => "pack size zero, unaligned or too large",
            Self::PackTruncated => "pack contents do not match its size",
            Self::PackCpuCount => "nr_cpus zero or above the CPU count",
            Self::PackCpu => "CPU listed twice or out of range",
            Self::PackPageCount => "too few or too many pages for a CPU",
            Self::PackTotalPages => "total_pages does not match the pages described",
            Self::PageMisaligned => "page address not page-aligned",
            Self::PageNotRam => "page outside host RAM",
            Self::PageInHyp => "page inside hypervisor memory",
            Self::PageDuplicate => "page listed twice or overlapping the pack",
            Self::NoMemory => "hypervisor pools exhausted",
            Self::UnknownEvent => "unknown event ID",
            Self::InvalidClock => "invalid clock parameters",
            Self::InvalidArgument => "argument out of range",
            Self::PageShared => "page shared with the hypervisor",
        }
    }
}

impl fmt::Display for HypError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.description(), self.code())
    }
}

impl core::error::Error for HypError {}

/// Status-register image of a result: 0 for success, the error code otherwise.
pub fn status_x0(result: Result<(), HypError>) -> u64 {
    match result {
        Ok(()) => 0,
        Err(e) => e.to_x0(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_negative_and_round_trip() {
        for (i, e) in HypError::ALL.iter().enumerate() {
            assert!(e.code() < 0);
            assert_eq!(HypError::from_code(e.code()), Some(*e));
            for other in &HypError::ALL[i + 1..] {
                assert_ne!(e.code(), other.code());
            }
        }
        assert_eq!(HypError::from_code(0), None);
        assert_eq!(HypError::from_code(-1000), None);
    }

    #[test]
    fn not_supported_is_smccc_minus_one() {
        assert_eq!(HypError::NotSupported.to_x0(), u64::MAX);
        assert_eq!(
            HypError::NotSupported.code(),
            super::super::hypercall::SMCCC_NOT_SUPPORTED
        );
    }
}
