//! The fault-report checks: a deliberate fault must be reported, decoded, and end QEMU with the
//! documented failure status — nothing may hang or exit 0 silently.
//!
//! The host shim's `crash` mode executes `UDF` at EL1. Its EL1 vectors must print the slot, the
//! decoded ESR (exception class by name), ELR and FAR, and exit through semihosting with
//! status 5 (`EXIT_HOST_EXCEPTION` in `host-shim/src/arch/aarch64/exceptions.rs`).
//!
//! The host shim's `fault kind=NAME` mode asks the test-only hypervisor (feature
//! `fault-injection`) to commit a fault at EL2: each must end with status 3 and a report whose
//! `cause` line names it ([`EL2_FAULTS`]).

use crate::supervise::RunEnd;

/// Semihosting exit status of an unexpected exception at EL1.
pub const HOST_EXCEPTION_STATUS: i32 = 5;

/// Lines that must appear in the report of the deliberate UDF.
pub const EXPECTED: [&str; 5] = [
    "host: EXCEPTION on CPU 0: synchronous exception at the current EL",
    "ESR_EL1  = 0x02000000 (EC 0x00 unknown reason)",
    "ELR_EL1  = 0x",
    "FAR_EL1  = 0x",
    "(not valid for this class)",
];

/// Semihosting exit status of an unexpected exception at EL2.
pub const HYP_EXCEPTION_STATUS: i32 = 3;

/// The deliberate EL2 faults: the `kind=` name, and the pieces the report's cause line must
/// hold, in order.
pub const EL2_FAULTS: [(&str, &[&str]); 4] = [
    (
        "stack-overflow",
        &["hyp:   cause    = stack overflow on CPU 0"],
    ),
    (
        "write-text",
        &[
            "hyp:   cause    = permission fault: write at 0x",
            " in .text",
        ],
    ),
    (
        "execute-data",
        &[
            "hyp:   cause    = permission fault: instruction fetch at 0x",
            " in .data/.bss",
        ],
    ),
    (
        "write-host-page",
        &[
            "hyp:   cause    = translation fault: write at 0x",
            ", which the hypervisor does not map",
        ],
    ),
];

/// Whether `line` holds `pieces` in order.
fn holds_in_order(line: &str, pieces: &[&str]) -> bool {
    let mut rest = line;
    pieces.iter().all(|piece| match rest.find(piece) {
        Some(at) => {
            rest = &rest[at + piece.len()..];
            true
        }
        None => false,
    })
}

/// Judges one deliberate EL2 fault run.
pub fn judge_el2<S: AsRef<str>>(kind: &str, lines: &[S], end: RunEnd) -> Result<(), String> {
    let (_, pieces) = EL2_FAULTS
        .iter()
        .find(|(name, _)| *name == kind)
        .ok_or_else(|| format!("no such EL2 fault: {kind}"))?;
    if end != RunEnd::Exited(HYP_EXCEPTION_STATUS) {
        return Err(format!(
            "EL2 fault {kind}: expected QEMU to exit with status {HYP_EXCEPTION_STATUS}, but \
             it ended with {end:?}"
        ));
    }
    let report = ["hyp: EXCEPTION on CPU 0: synchronous exception at the current EL"];
    for want in report {
        if !lines.iter().any(|l| l.as_ref().contains(want)) {
            return Err(format!("EL2 fault {kind}: the report lacks {want:?}"));
        }
    }
    if lines.iter().any(|l| holds_in_order(l.as_ref(), pieces)) {
        Ok(())
    } else {
        Err(format!(
            "EL2 fault {kind}: no cause line with {}",
            pieces.join(" … ")
        ))
    }
}

/// Judges the crash run from all its console lines and how QEMU ended.
pub fn judge<S: AsRef<str>>(lines: &[S], end: RunEnd) -> Result<(), String> {
    if end != RunEnd::Exited(HOST_EXCEPTION_STATUS) {
        return Err(format!(
            "expected QEMU to exit with status {HOST_EXCEPTION_STATUS} after the deliberate \
             fault, but it ended with {end:?}"
        ));
    }
    let missing: Vec<&str> = EXPECTED
        .iter()
        .filter(|want| !lines.iter().any(|l| l.as_ref().contains(*want)))
        .copied()
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!("the fault report lacks: {}", missing.join(" | ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: [&str; 6] = [
        "host: executing an undefined instruction on purpose (crash mode)",
        "host: EXCEPTION on CPU 0: synchronous exception at the current EL",
        "host:   ESR_EL1  = 0x02000000 (EC 0x00 unknown reason)",
        "host:   ELR_EL1  = 0x0000000041004b40",
        "host:   FAR_EL1  = 0x0000000000000000 (not valid for this class)",
        "host:   SPSR_EL1 = 0x00000000600003c5",
    ];

    #[test]
    fn accepts_a_complete_report() {
        assert_eq!(judge(&GOOD, RunEnd::Exited(5)), Ok(()));
    }

    #[test]
    fn wrong_status_or_timeout_fails() {
        assert!(judge(&GOOD, RunEnd::Exited(0)).is_err());
        assert!(judge(&GOOD, RunEnd::Exited(1)).is_err());
        assert!(judge(&GOOD, RunEnd::TimedOut { after_secs: 30 }).is_err());
    }

    const OVERFLOW: [&str; 4] = [
        "hyp: fault injection on CPU 0: stack-overflow",
        "hyp: EXCEPTION on CPU 0: synchronous exception at the current EL",
        "hyp:   cause    = stack overflow on CPU 0",
        "hyp:   ESR_EL2  = 0x97df8047 (EC 0x25 data abort at the same EL)",
    ];

    #[test]
    fn el2_fault_reports_are_judged_by_their_cause() {
        assert_eq!(
            judge_el2("stack-overflow", &OVERFLOW, RunEnd::Exited(3)),
            Ok(())
        );
        let wrong_cause = [
            OVERFLOW[0],
            OVERFLOW[1],
            "hyp:   cause    = stack overflow on CPU 1",
        ];
        assert!(judge_el2("stack-overflow", &wrong_cause, RunEnd::Exited(3)).is_err());
        assert!(judge_el2("stack-overflow", &OVERFLOW, RunEnd::Exited(4)).is_err());
        let text = [
            OVERFLOW[1],
            "hyp:   cause    = permission fault: write at 0x40201184 in .text",
        ];
        assert_eq!(judge_el2("write-text", &text, RunEnd::Exited(3)), Ok(()));
        assert!(judge_el2("execute-data", &text, RunEnd::Exited(3)).is_err());
        let host = [
            OVERFLOW[1],
            "hyp:   cause    = translation fault: write at 0x410cf000, which the hypervisor \
             does not map",
        ];
        assert_eq!(
            judge_el2("write-host-page", &host, RunEnd::Exited(3)),
            Ok(())
        );
        assert!(judge_el2("write-host-page", &host[..1], RunEnd::Exited(3)).is_err());
        assert!(judge_el2("melt", &host, RunEnd::Exited(3)).is_err());
    }

    #[test]
    fn missing_decoding_fails() {
        let undecoded = [GOOD[0], "host:   ESR_EL1  = 0x02000000", GOOD[3], GOOD[4]];
        let err = judge(&undecoded, RunEnd::Exited(5)).unwrap_err();
        assert!(err.contains("EC 0x00 unknown reason"), "{err}");
    }
}
