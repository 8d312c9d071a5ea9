//! The fault-report check: a deliberate fault must be reported, decoded, and end QEMU with the
//! documented failure status — nothing may hang or exit 0 silently.
//!
//! The host shim's `crash` mode executes `UDF` at EL1. Its EL1 vectors must print the slot, the
//! decoded ESR (exception class by name), ELR and FAR, and exit through semihosting with
//! status 5 (`EXIT_HOST_EXCEPTION` in `host-shim/src/arch/aarch64/exceptions.rs`).

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

    #[test]
    fn missing_decoding_fails() {
        let undecoded = [GOOD[0], "host:   ESR_EL1  = 0x02000000", GOOD[3], GOOD[4]];
        let err = judge(&undecoded, RunEnd::Exited(5)).unwrap_err();
        assert!(err.contains("EC 0x00 unknown reason"), "{err}");
    }
}
