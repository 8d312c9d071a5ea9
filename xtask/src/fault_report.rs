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

/// What the flight recorder prints after the report of a fault with nothing loaded.
pub const NOTHING_LOADED: &str = "hyp: flight recorder: tracing is not loaded: no events";

/// Judges one deliberate EL2 fault run with nothing loaded: [`judge_el2`], and the flight
/// recorder saying in one line that it has nothing to show.
pub fn judge_el2_unloaded<S: AsRef<str>>(
    kind: &str,
    lines: &[S],
    end: RunEnd,
) -> Result<(), String> {
    judge_el2(kind, lines, end)?;
    if lines
        .iter()
        .any(|l| l.as_ref().trim_end() == NOTHING_LOADED)
    {
        Ok(())
    } else {
        Err(format!(
            "EL2 fault {kind}: no {NOTHING_LOADED:?} line after the report"
        ))
    }
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

/// Semihosting exit status of a hypervisor panic.
pub const HYP_PANIC_STATUS: i32 = 4;

/// The faults the flight-recorder checks commit (on CPU 0, with every CPU tracing): the
/// `kind=` name, its number (as the hyp_printk before it prints it), the exit status, and
/// what the report before the dump must say.
pub const FLIGHT_FAULTS: [(&str, u64, i32, &str); 2] = [
    (
        "write-text",
        2,
        HYP_EXCEPTION_STATUS,
        "hyp:   cause    = permission fault: write at 0x",
    ),
    (
        "panic",
        5,
        HYP_PANIC_STATUS,
        "hyp: CPU 0 panicked: panicked at hyp/src/arch/aarch64/fault_injection.rs",
    ),
];

/// What the flight recorder printed for one CPU.
#[derive(Debug, Default)]
struct FlightCpu {
    /// Events the header announced.
    announced: usize,
    /// (timestamp in µs, line) of each event line, in order.
    events: Vec<(u64, String)>,
}

/// The timestamp (µs) and CPU of a flight-recorder event line, printed as trace-cmd prints
/// the `hypervisor` instance: `hypervisor: <...>--1 [001] 12.345678: name: text`.
fn flight_event(line: &str) -> Option<(usize, u64)> {
    let rest = line.split_once("hypervisor: ")?.1;
    let (_, rest) = rest.split_once('[')?;
    let (cpu, rest) = rest.split_once(']')?;
    let (time, _) = rest.trim_start().split_once(": ")?;
    let (secs, micros) = time.split_once('.')?;
    let us = secs.parse::<u64>().ok()? * 1_000_000 + micros.parse::<u64>().ok()?;
    Some((cpu.parse().ok()?, us))
}

/// Judges a flight-recorder run: the deliberate fault `kind` (one of [`FLIGHT_FAULTS`]) on
/// CPU 0 after every one of `nr_cpus` CPUs traced. Its report comes first, then the dump:
/// events from every CPU, each CPU's timestamps non-decreasing, and CPU 0's newest event the
/// `hyp_printk` the hypervisor wrote just before committing the fault; then the fault's
/// status.
pub fn judge_flight<S: AsRef<str>>(
    kind: &str,
    lines: &[S],
    end: RunEnd,
    nr_cpus: usize,
) -> Result<(), String> {
    let &(_, number, status, report_line) =
        FLIGHT_FAULTS
            .iter()
            .find(|(name, ..)| *name == kind)
            .ok_or_else(|| format!("no such flight-recorder fault: {kind}"))?;
    if end != RunEnd::Exited(status) {
        return Err(format!(
            "{kind}: expected QEMU to exit with status {status}, but it ended with {end:?}"
        ));
    }
    let lines: Vec<&str> = lines.iter().map(AsRef::as_ref).collect();
    let find = |want: &str| lines.iter().position(|l| l.contains(want));
    let start = find("hyp: flight recorder: the last 32 events of each CPU, newest last")
        .ok_or("no flight-recorder dump after the report")?;
    let report = find(report_line).ok_or_else(|| format!("no {report_line:?} line"))?;
    if report > start {
        return Err("the dump came before the report".into());
    }
    let end_at = find("hyp: flight recorder: end").ok_or("the dump did not end")?;
    let mut cpus: Vec<FlightCpu> = (0..nr_cpus).map(|_| FlightCpu::default()).collect();
    let mut current: Option<usize> = None;
    for line in &lines[start + 1..end_at] {
        if let Some(rest) = line
            .split_once("hyp: flight recorder: CPU ")
            .map(|(_, r)| r)
        {
            let (cpu, rest) = rest
                .split_once(": ")
                .ok_or_else(|| format!("bad line {line:?}"))?;
            let cpu: usize = cpu.parse().map_err(|_| format!("bad CPU in {line:?}"))?;
            let c = cpus
                .get_mut(cpu)
                .ok_or_else(|| format!("CPU {cpu} of {nr_cpus}?"))?;
            if let Some((n, _)) = rest.split_once(" of ") {
                c.announced = n.parse().map_err(|_| format!("bad count in {line:?}"))?;
                current = Some(cpu);
            } else {
                return Err(format!("the dump reports a problem: {line:?}"));
            }
        } else if let Some((cpu, ts)) = flight_event(line) {
            if Some(cpu) != current {
                return Err(format!(
                    "an event of CPU {cpu} under CPU {current:?}: {line:?}"
                ));
            }
            cpus[cpu].events.push((ts, line.to_string()));
        }
    }
    for (cpu, c) in cpus.iter().enumerate() {
        if c.events.is_empty() || c.events.len() != c.announced {
            return Err(format!(
                "CPU {cpu}: {} event lines, {} announced (every CPU traced)",
                c.events.len(),
                c.announced
            ));
        }
        if let Some(w) = c.events.windows(2).find(|w| w[1].0 < w[0].0) {
            return Err(format!(
                "CPU {cpu}: time goes back: {:?} then {:?}",
                w[0].1, w[1].1
            ));
        }
    }
    let last = &cpus[0].events.last().expect("checked non-empty").1;
    let want = "bprint:";
    let text = format!("fault injection: committing fault {number} on CPU 0");
    if !(last.contains(want) && last.ends_with(&text)) {
        return Err(format!(
            "CPU 0's newest event is not the hyp_printk written before the fault ({text:?}): {last:?}"
        ));
    }
    Ok(())
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
    fn unloaded_faults_need_the_recorders_one_line() {
        let mut lines = OVERFLOW.to_vec();
        assert!(
            judge_el2_unloaded("stack-overflow", &lines, RunEnd::Exited(3))
                .unwrap_err()
                .contains("not loaded")
        );
        lines.push(NOTHING_LOADED);
        assert_eq!(
            judge_el2_unloaded("stack-overflow", &lines, RunEnd::Exited(3)),
            Ok(())
        );
    }

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

    fn flight_lines(cpu0_last: &str, cpu1_times: [&str; 2]) -> Vec<String> {
        let ev = |cpu: usize, t: &str, what: &str| {
            format!("hypervisor:            <...>--1    [{cpu:03}]     {t}: {what}")
        };
        vec![
            "hyp: fault injection on CPU 0: write-text".into(),
            "hyp: EXCEPTION on CPU 0: synchronous exception at the current EL".into(),
            "hyp:   cause    = permission fault: write at 0x40201184 in .text".into(),
            "hyp:   ESR_EL2  = 0x9600004f (EC 0x25 data abort at the same EL)".into(),
            "hyp: flight recorder: the last 32 events of each CPU, newest last".into(),
            "hyp: flight recorder: CPU 0: 2 of 900 events in the ring".into(),
            ev(0, "0.100000", "hyp_enter:             "),
            ev(0, "0.100001", cpu0_last),
            "hyp: flight recorder: CPU 1: 2 of 5 events in the ring".into(),
            ev(1, cpu1_times[0], "hyp_exit:              "),
            ev(1, cpu1_times[1], "hyp_enter:             "),
            "hyp: flight recorder: end".into(),
        ]
    }

    #[test]
    fn flight_dumps_are_judged_per_cpu() {
        let printk =
            "bprint:               hyp::arch: fault injection: committing fault 2 on CPU 0";
        let good = flight_lines(printk, ["0.000010", "0.000011"]);
        let judge = |lines: &[String], end, cpus| judge_flight("write-text", lines, end, cpus);
        assert_eq!(judge(&good, RunEnd::Exited(3), 2), Ok(()));
        assert!(judge(&good, RunEnd::Exited(3), 3).is_err(), "CPU 2 missing");
        assert!(judge(&good, RunEnd::Exited(4), 2).is_err());
        assert!(judge_flight("panic", &good, RunEnd::Exited(4), 2)
            .unwrap_err()
            .contains("panicked"));
        assert!(judge_flight("melt", &good, RunEnd::Exited(3), 2).is_err());
        // The panic's dump: its report line, status 4, the printk naming fault 5.
        let mut panic = flight_lines(
            "bprint:               hyp::arch: fault injection: committing fault 5 on CPU 0",
            ["0.000010", "0.000011"],
        );
        panic[1] =
            "hyp: CPU 0 panicked: panicked at hyp/src/arch/aarch64/fault_injection.rs:44:34:"
                .into();
        assert_eq!(judge_flight("panic", &panic, RunEnd::Exited(4), 2), Ok(()));
        assert!(judge_flight("panic", &panic, RunEnd::Exited(3), 2).is_err());
        let back = flight_lines(printk, ["0.000011", "0.000010"]);
        assert!(judge(&back, RunEnd::Exited(3), 2)
            .unwrap_err()
            .contains("time goes back"));
        let other_last = flight_lines("hyp_exit:              ", ["0.1", "0.2"]);
        assert!(judge(&other_last, RunEnd::Exited(3), 2)
            .unwrap_err()
            .contains("newest event"));
        let mut short = good.clone();
        short.remove(9);
        assert!(judge(&short, RunEnd::Exited(3), 2)
            .unwrap_err()
            .contains("announced"));
        let mut no_dump = good.clone();
        no_dump.truncate(4);
        assert!(judge(&no_dump, RunEnd::Exited(3), 2).is_err());
        assert_eq!(flight_event(&good[6]), Some((0, 100_000)));
    }

    #[test]
    fn missing_decoding_fails() {
        let undecoded = [GOOD[0], "host:   ESR_EL1  = 0x02000000", GOOD[3], GOOD[4]];
        let err = judge(&undecoded, RunEnd::Exited(5)).unwrap_err();
        assert!(err.contains("EC 0x00 unknown reason"), "{err}");
    }
}
