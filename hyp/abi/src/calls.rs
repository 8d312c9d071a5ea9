//! Every hypercall with its arguments, and the status convention, each encoded once.
//!
//! The host builds a [`Call`] and issues [`Call::to_regs`]; the hypervisor decodes the trapped
//! registers with [`Call::from_regs`]. The answer comes back as X0 = status, X1..X3 = results,
//! decoded by [`status_from_regs`] (and the typed results of [`crate::results`]).
//!
//! Arguments are carried as the registers hold them: range checks (a boolean that is not 0 or
//! 1, a CPU without a buffer, an unknown event) are the hypervisor's, made after its state
//! checks, so a call on an unloaded buffer answers `NotLoaded` whatever its arguments.
//!
//! ```
//! use hyptrace_abi::calls::{status_from_regs, Call};
//! use hyptrace_abi::{HypError, HypercallId};
//!
//! let call = Call::SwapReader { cpu: 3 };
//! let regs = call.to_regs();
//! assert_eq!(regs, [0xC600_0013, 3, 0, 0, 0]);
//! assert_eq!(Call::from_regs(&regs), Some(call));
//! assert_eq!(call.id(), HypercallId::SwapReader);
//! // A refusal: X0 = the negative code.
//! assert_eq!(status_from_regs([HypError::NotLoaded.to_x0(), 0, 0, 0]), Err(HypError::NotLoaded));
//! ```

use crate::{HypError, HypercallId};

/// One hyptrace hypercall and its arguments (X1..X4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Call {
    /// `null(a, b, c)`: answers X1..X3 = `args`.
    Null {
        /// X1..X3, echoed.
        args: [u64; 3],
    },
    /// `info()`: answers [`Info`](crate::Info).
    Info,
    /// `load_tracing(pack_pa, pack_size)`.
    LoadTracing {
        /// Physical address of the pack (page-aligned).
        pack_pa: u64,
        /// Its size in bytes (whole pages, at most
        /// [`MAX_PACK_SIZE`](crate::limits::MAX_PACK_SIZE)).
        pack_size: u64,
    },
    /// `teardown_tracing()`.
    TeardownTracing,
    /// `enable_tracing(enable)`.
    EnableTracing {
        /// 1 to make every loaded ring writable, 0 to stop them.
        enable: u64,
    },
    /// `swap_reader(cpu)`: answers [`SwapResult`](crate::SwapResult).
    SwapReader {
        /// The CPU whose reader page to swap.
        cpu: u64,
    },
    /// `update_footers(cpu)`: answers [`RingCounters`](crate::RingCounters).
    UpdateFooters {
        /// The CPU whose footers to refresh.
        cpu: u64,
    },
    /// `enable_event(id, enable)`.
    EnableEvent {
        /// The event ID (`common_type`).
        id: u64,
        /// 1 to enable, 0 to disable.
        enable: u64,
    },
    /// `update_clock(mult, shift, epoch_ns, epoch_cyc)`.
    UpdateClock {
        /// Multiplier (non-zero, 32 bits).
        mult: u64,
        /// Shift (< 64).
        shift: u64,
        /// Nanoseconds at `epoch_cyc`.
        epoch_ns: u64,
        /// Counter value at `epoch_ns`.
        epoch_cyc: u64,
    },
    /// `reset_tracing(cpu)`.
    ResetTracing {
        /// The CPU whose buffer to empty.
        cpu: u64,
    },
    /// `write_selftest(first_seq, count)`: the calling CPU writes `count` selftest events.
    WriteSelftest {
        /// Sequence number of the first event.
        first_seq: u64,
        /// How many (at most [`MAX_SELFTEST_BATCH`](crate::limits::MAX_SELFTEST_BATCH)).
        count: u64,
    },
    /// `printk_formats(page_pa, first)`: the hypervisor writes `hyp_printk` format-table
    /// entries ([`crate::printk`]) into the host page, answering a
    /// [`PrintkFormats`](crate::PrintkFormats).
    PrintkFormats {
        /// Host address of a page the host owns and has not shared.
        page_pa: u64,
        /// Index of the first entry wanted.
        first: u64,
    },
}

impl Call {
    /// The call's ID.
    pub const fn id(&self) -> HypercallId {
        match self {
            Self::Null { .. } => HypercallId::Null,
            Self::Info => HypercallId::Info,
            Self::LoadTracing { .. } => HypercallId::LoadTracing,
            Self::TeardownTracing => HypercallId::TeardownTracing,
            Self::EnableTracing { .. } => HypercallId::EnableTracing,
            Self::SwapReader { .. } => HypercallId::SwapReader,
            Self::UpdateFooters { .. } => HypercallId::UpdateFooters,
            Self::EnableEvent { .. } => HypercallId::EnableEvent,
            Self::UpdateClock { .. } => HypercallId::UpdateClock,
            Self::ResetTracing { .. } => HypercallId::ResetTracing,
            Self::WriteSelftest { .. } => HypercallId::WriteSelftest,
            Self::PrintkFormats { .. } => HypercallId::PrintkFormats,
        }
    }

    /// X0..X4 for `HVC #0`: the function ID, then the arguments; unused registers 0.
    pub const fn to_regs(&self) -> [u64; 5] {
        let a = match *self {
            Self::Null { args: [a, b, c] } => [a, b, c, 0],
            Self::Info | Self::TeardownTracing => [0; 4],
            Self::LoadTracing { pack_pa, pack_size } => [pack_pa, pack_size, 0, 0],
            Self::EnableTracing { enable } => [enable, 0, 0, 0],
            Self::SwapReader { cpu } | Self::UpdateFooters { cpu } | Self::ResetTracing { cpu } => {
                [cpu, 0, 0, 0]
            }
            Self::EnableEvent { id, enable } => [id, enable, 0, 0],
            Self::UpdateClock {
                mult,
                shift,
                epoch_ns,
                epoch_cyc,
            } => [mult, shift, epoch_ns, epoch_cyc],
            Self::WriteSelftest { first_seq, count } => [first_seq, count, 0, 0],
            Self::PrintkFormats { page_pa, first } => [page_pa, first, 0, 0],
        };
        [self.id().function_id() as u64, a[0], a[1], a[2], a[3]]
    }

    /// Decodes trapped X0..X4. `None` when X0 is not one of hyptrace's function IDs (see
    /// [`HypercallId::from_x0`]), which the hypervisor answers with SMCCC `NOT_SUPPORTED`.
    /// Registers a call does not take are ignored.
    pub fn from_regs(x: &[u64; 5]) -> Option<Self> {
        Some(match HypercallId::from_x0(x[0])? {
            HypercallId::Null => Self::Null {
                args: [x[1], x[2], x[3]],
            },
            HypercallId::Info => Self::Info,
            HypercallId::LoadTracing => Self::LoadTracing {
                pack_pa: x[1],
                pack_size: x[2],
            },
            HypercallId::TeardownTracing => Self::TeardownTracing,
            HypercallId::EnableTracing => Self::EnableTracing { enable: x[1] },
            HypercallId::SwapReader => Self::SwapReader { cpu: x[1] },
            HypercallId::UpdateFooters => Self::UpdateFooters { cpu: x[1] },
            HypercallId::EnableEvent => Self::EnableEvent {
                id: x[1],
                enable: x[2],
            },
            HypercallId::UpdateClock => Self::UpdateClock {
                mult: x[1],
                shift: x[2],
                epoch_ns: x[3],
                epoch_cyc: x[4],
            },
            HypercallId::ResetTracing => Self::ResetTracing { cpu: x[1] },
            HypercallId::WriteSelftest => Self::WriteSelftest {
                first_seq: x[1],
                count: x[2],
            },
            HypercallId::PrintkFormats => Self::PrintkFormats {
                page_pa: x[1],
                first: x[2],
            },
        })
    }
}

/// The answer registers X0..X3 of a successful call: X0 = 0, X1..X3 = `results`.
pub const fn ok_regs(results: [u64; 3]) -> [u64; 4] {
    [0, results[0], results[1], results[2]]
}

/// Decodes the answer X0..X3: the results X1..X3 when X0 is 0.
///
/// # Errors
/// The [`HypError`] X0 names; a status that is no hyptrace code (SMCCC `NOT_SUPPORTED`
/// included) is [`HypError::NotSupported`].
pub fn status_from_regs(regs: [u64; 4]) -> Result<[u64; 3], HypError> {
    match regs[0] {
        0 => Ok([regs[1], regs[2], regs[3]]),
        x0 => Err(HypError::from_code(x0 as i64).unwrap_or(HypError::NotSupported)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn any_call() -> impl Strategy<Value = Call> {
        let v = any::<u64>;
        prop_oneof![
            any::<[u64; 3]>().prop_map(|args| Call::Null { args }),
            Just(Call::Info),
            (v(), v()).prop_map(|(pack_pa, pack_size)| Call::LoadTracing { pack_pa, pack_size }),
            Just(Call::TeardownTracing),
            v().prop_map(|enable| Call::EnableTracing { enable }),
            v().prop_map(|cpu| Call::SwapReader { cpu }),
            v().prop_map(|cpu| Call::UpdateFooters { cpu }),
            (v(), v()).prop_map(|(id, enable)| Call::EnableEvent { id, enable }),
            (v(), v(), v(), v()).prop_map(|(mult, shift, epoch_ns, epoch_cyc)| {
                Call::UpdateClock {
                    mult,
                    shift,
                    epoch_ns,
                    epoch_cyc,
                }
            }),
            v().prop_map(|cpu| Call::ResetTracing { cpu }),
            (v(), v()).prop_map(|(first_seq, count)| Call::WriteSelftest { first_seq, count }),
            (v(), v()).prop_map(|(page_pa, first)| Call::PrintkFormats { page_pa, first }),
        ]
    }

    proptest! {
        #[test]
        fn every_call_round_trips(call in any_call()) {
            let regs = call.to_regs();
            prop_assert_eq!(HypercallId::from_x0(regs[0]), Some(call.id()));
            prop_assert_eq!(Call::from_regs(&regs), Some(call));
        }

        #[test]
        fn decoding_never_panics_and_only_knows_our_ids(x: [u64; 5]) {
            let call = Call::from_regs(&x);
            prop_assert_eq!(call.is_some(), HypercallId::from_x0(x[0]).is_some());
        }

        #[test]
        fn status_round_trips(results: [u64; 3]) {
            prop_assert_eq!(status_from_regs(ok_regs(results)), Ok(results));
        }
    }

    #[test]
    fn every_id_has_a_call() {
        for id in HypercallId::ALL {
            let x = [id.function_id() as u64, 1, 2, 3, 4];
            assert_eq!(Call::from_regs(&x).map(|c| c.id()), Some(id));
        }
    }

    #[test]
    fn refusals_decode_to_their_error() {
        for e in HypError::ALL {
            assert_eq!(status_from_regs([e.to_x0(), 7, 7, 7]), Err(e));
        }
        assert_eq!(
            status_from_regs([(-1000i64) as u64, 0, 0, 0]),
            Err(HypError::NotSupported)
        );
    }
}
