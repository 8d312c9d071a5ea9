//! The results of the calls that return more than a status, each with one register encoding.
//!
//! The hypervisor answers with [`to_regs`](SwapResult::to_regs) into X1..X3; the host decodes
//! with [`from_regs`](SwapResult::from_regs). Both directions live here so the encoding is
//! written once: a host cannot unpack a field the hypervisor did not pack.
//!
//! ```
//! use hyptrace_abi::results::SwapResult;
//!
//! let swap = SwapResult { reader_page: 0x4300_2000, lost: 7, swapped: true };
//! let regs = swap.to_regs(); // X1, X2, X3
//! assert_eq!(regs, [0x4300_2000, 7, 1]);
//! assert_eq!(SwapResult::from_regs(regs), Ok(swap));
//! ```

use crate::HypError;

/// What `swap_reader(cpu)` returns: X1 = reader page, X2 = lost, X3 = swapped (0 or 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SwapResult {
    /// Host address of the reader page after the call (unchanged when nothing was swapped).
    pub reader_page: u64,
    /// Events lost to overwrite since the previous swap (0 when nothing was swapped).
    pub lost: u64,
    /// Whether pages were swapped. `false`: the writer is still on the reader page, so the
    /// reader keeps it and reads up to its `commit` again later.
    pub swapped: bool,
}

impl SwapResult {
    /// X1..X3.
    pub const fn to_regs(self) -> [u64; 3] {
        [self.reader_page, self.lost, self.swapped as u64]
    }

    /// Decodes X1..X3.
    ///
    /// # Errors
    /// [`HypError::InvalidArgument`] when X3 is neither 0 nor 1: no hyptrace hypervisor
    /// answers that, so the caller is not talking to one.
    pub const fn from_regs(regs: [u64; 3]) -> Result<Self, HypError> {
        let swapped = match regs[2] {
            0 => false,
            1 => true,
            _ => return Err(HypError::InvalidArgument),
        };
        Ok(Self {
            reader_page: regs[0],
            lost: regs[1],
            swapped,
        })
    }
}

/// What `update_footers(cpu)` returns, the writer's counters since load or reset:
/// X1 = entries, X2 = overrun, X3 = pages touched.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RingCounters {
    /// Events written.
    pub entries: u64,
    /// Events lost to overwrite (the live value, also written into the reader page's footer).
    pub overrun: u64,
    /// Tail moves (pages the writer has left).
    pub pages_touched: u64,
}

impl RingCounters {
    /// X1..X3.
    pub const fn to_regs(self) -> [u64; 3] {
        [self.entries, self.overrun, self.pages_touched]
    }

    /// Decodes X1..X3. Every value is valid.
    pub const fn from_regs(regs: [u64; 3]) -> Self {
        Self {
            entries: regs[0],
            overrun: regs[1],
            pages_touched: regs[2],
        }
    }
}

/// What `info()` returns: X1 = ABI version, X2 = CPUs, X3 = the calling CPU's index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Info {
    /// [`ABI_VERSION`](crate::hypercall::ABI_VERSION) of the hypervisor: major in bits 31:16,
    /// minor in 15:0.
    pub abi_version: u64,
    /// Number of CPUs the hypervisor discovered (the bound on every `cpu` argument).
    pub nr_cpus: u64,
    /// Index of the CPU that made the call.
    pub cpu: u64,
}

impl Info {
    /// X1..X3.
    pub const fn to_regs(self) -> [u64; 3] {
        [self.abi_version, self.nr_cpus, self.cpu]
    }

    /// Decodes X1..X3. Every value is valid (check the version yourself).
    pub const fn from_regs(regs: [u64; 3]) -> Self {
        Self {
            abi_version: regs[0],
            nr_cpus: regs[1],
            cpu: regs[2],
        }
    }

    /// The major version (incompatible changes).
    pub const fn major(self) -> u16 {
        (self.abi_version >> 16) as u16
    }
}

/// Result of `printk_formats(page_pa, first)`: how much of the format table the page holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrintkFormats {
    /// Entries written, from entry `first` on (0 when `first` is the table's length).
    pub written: u64,
    /// Entries in the whole table: the host asks again from `first + written` while it is
    /// below this.
    pub total: u64,
    /// Bytes of the page the entries fill (the rest is zero).
    pub bytes: u64,
}

impl PrintkFormats {
    /// X1..X3.
    pub const fn to_regs(self) -> [u64; 3] {
        [self.written, self.total, self.bytes]
    }

    /// Decodes X1..X3 (check `bytes` against the page size and `written` against `total`
    /// yourself: they come from the other side).
    pub const fn from_regs(regs: [u64; 3]) -> Self {
        Self {
            written: regs[0],
            total: regs[1],
            bytes: regs[2],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn swap_round_trips(reader_page: u64, lost: u64, swapped: bool) {
            let s = SwapResult { reader_page, lost, swapped };
            prop_assert_eq!(SwapResult::from_regs(s.to_regs()), Ok(s));
        }

        #[test]
        fn counters_and_info_round_trip(a: u64, b: u64, c: u64) {
            prop_assert_eq!(RingCounters::from_regs([a, b, c]).to_regs(), [a, b, c]);
            prop_assert_eq!(Info::from_regs([a, b, c]).to_regs(), [a, b, c]);
        }
    }

    #[test]
    fn swap_refuses_a_non_boolean_flag() {
        assert_eq!(
            SwapResult::from_regs([0x1000, 0, 2]),
            Err(HypError::InvalidArgument)
        );
        assert_eq!(
            SwapResult::from_regs([0x1000, 0, u64::MAX]),
            Err(HypError::InvalidArgument)
        );
    }

    #[test]
    fn info_major_is_bits_31_16() {
        let i = Info::from_regs([crate::hypercall::ABI_VERSION, 4, 0]);
        assert_eq!(i.major(), 1);
    }
}
