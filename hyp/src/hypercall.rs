//! Decoding and dispatch of host hypercalls (HVC from EL1).
//!
//! [`handle_hvc`] takes the caller's X0..X3 and returns the values to place back into them. It
//! never fails: an unknown or malformed function ID answers SMCCC `NOT_SUPPORTED` and leaves
//! every other register and all hypervisor state as they were.

use crate::abi::hypercall::{ABI_VERSION, SMCCC_NOT_SUPPORTED};
use crate::abi::HypercallId;

/// What the dispatcher needs to know about the calling CPU and the system.
#[derive(Clone, Copy, Debug)]
pub struct CallerInfo {
    /// Index of the CPU that issued the call.
    pub cpu: usize,
    /// Number of CPUs the hypervisor manages.
    pub nr_cpus: usize,
}

/// The decoded outcome of one hypercall, before it is written back to registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HvcOutcome {
    /// The call was recognised and answered: X0 = 0, X1..X3 = the results.
    Ok([u64; 3]),
    /// The call was recognised and refused: X0 = the negative code, X1..X3 unchanged.
    Err(i64),
}

impl HvcOutcome {
    /// Register image X0..X3 for a caller whose X1..X3 were `x[1..4]`.
    pub fn to_regs(self, x: [u64; 4]) -> [u64; 4] {
        match self {
            Self::Ok([a, b, c]) => [0, a, b, c],
            Self::Err(code) => [code as u64, x[1], x[2], x[3]],
        }
    }
}

/// Decodes and executes a hypercall with registers X0..X3.
pub fn dispatch(x: [u64; 4], caller: &CallerInfo) -> HvcOutcome {
    let Some(id) = HypercallId::from_x0(x[0]) else {
        return HvcOutcome::Err(SMCCC_NOT_SUPPORTED);
    };
    match id {
        HypercallId::Null => HvcOutcome::Ok([x[1], x[2], x[3]]),
        HypercallId::Info => {
            HvcOutcome::Ok([ABI_VERSION, caller.nr_cpus as u64, caller.cpu as u64])
        }
        // The tracing service is not part of this image yet: its IDs are reserved in the ABI
        // and answered like any other unknown call.
        HypercallId::LoadTracing
        | HypercallId::TeardownTracing
        | HypercallId::EnableTracing
        | HypercallId::SwapReader
        | HypercallId::UpdateFooters
        | HypercallId::EnableEvent
        | HypercallId::UpdateClock
        | HypercallId::ResetTracing => HvcOutcome::Err(SMCCC_NOT_SUPPORTED),
    }
}

/// [`dispatch`] followed by [`HvcOutcome::to_regs`].
pub fn handle_hvc(x: [u64; 4], caller: &CallerInfo) -> [u64; 4] {
    dispatch(x, caller).to_regs(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CALLER: CallerInfo = CallerInfo { cpu: 2, nr_cpus: 4 };

    #[test]
    fn null_echoes_arguments() {
        let id = HypercallId::Null.function_id() as u64;
        assert_eq!(handle_hvc([id, 1, 2, 3], &CALLER), [0, 1, 2, 3]);
    }

    #[test]
    fn info_reports_version_cpus_and_caller() {
        let id = HypercallId::Info.function_id() as u64;
        assert_eq!(handle_hvc([id, 9, 9, 9], &CALLER), [0, ABI_VERSION, 4, 2]);
    }

    #[test]
    fn unknown_ids_are_not_supported_and_leave_registers() {
        for x0 in [
            0u64,
            0xC600_0002,
            0xC600_FFFF,
            0x8600_0000,
            0x8400_0000,
            u64::MAX,
        ] {
            let regs = [x0, 0xaaaa, 0xbbbb, 0xcccc];
            assert_eq!(
                handle_hvc(regs, &CALLER),
                [u64::MAX, 0xaaaa, 0xbbbb, 0xcccc],
                "{x0:#x}"
            );
        }
    }

    #[test]
    fn garbage_in_upper_bits_of_x0_is_ignored() {
        let x0 = 0xffff_ffff_0000_0000 | HypercallId::Null.function_id() as u64;
        assert_eq!(handle_hvc([x0, 5, 6, 7], &CALLER), [0, 5, 6, 7]);
    }
}
