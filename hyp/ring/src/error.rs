//! [`RingError`]: why a ring operation was refused.

use core::fmt;
use hyptrace_abi::HypError;

/// Why a [`RingBuffer`](crate::RingBuffer) operation was refused.
///
/// A hypervisor answering hypercalls converts it into the wire code with `HypError::from`
/// (the mapping is beside each variant).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RingError {
    /// [`load`](crate::RingBuffer::load) on a loaded buffer ([`HypError::AlreadyLoaded`]).
    AlreadyLoaded,
    /// The buffer is not loaded ([`HypError::NotLoaded`]).
    NotLoaded,
    /// Fewer than two ring pages ([`HypError::PackPageCount`]).
    TooFewPages,
    /// More pages than descriptors, or more than [`MAX_RING_PAGES`](crate::MAX_RING_PAGES)
    /// ([`HypError::NoMemory`]).
    TooManyPages,
    /// A page address that is not 4096-aligned ([`HypError::PageMisaligned`]).
    PageMisaligned,
    /// The retry budget ran out: the writer kept moving the head, or the links are corrupt
    /// ([`HypError::Busy`]).
    Busy,
}

impl RingError {
    /// Short description for humans.
    pub const fn description(self) -> &'static str {
        match self {
            Self::AlreadyLoaded => "ring buffer already loaded",
            Self::NotLoaded => "ring buffer not loaded",
            Self::TooFewPages => "fewer than two ring pages",
            Self::TooManyPages => "more ring pages than descriptors",
            Self::PageMisaligned => "page address not 4096-aligned",
            Self::Busy => "retry budget exhausted while the writer moved the head",
        }
    }
}

impl fmt::Display for RingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.description())
    }
}

impl core::error::Error for RingError {}

impl From<RingError> for HypError {
    fn from(e: RingError) -> Self {
        match e {
            RingError::AlreadyLoaded => HypError::AlreadyLoaded,
            RingError::NotLoaded => HypError::NotLoaded,
            RingError::TooFewPages => HypError::PackPageCount,
            RingError::TooManyPages => HypError::NoMemory,
            RingError::PageMisaligned => HypError::PageMisaligned,
            RingError::Busy => HypError::Busy,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_has_its_own_wire_code_and_text() {
        let all = [
            RingError::AlreadyLoaded,
            RingError::NotLoaded,
            RingError::TooFewPages,
            RingError::TooManyPages,
            RingError::PageMisaligned,
            RingError::Busy,
        ];
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                assert_ne!(HypError::from(*a), HypError::from(*b));
                assert_ne!(a.to_string(), b.to_string());
            }
        }
        assert_eq!(HypError::from(RingError::Busy).code(), -4);
    }
}
