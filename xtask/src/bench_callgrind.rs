//! Deterministic x86 instruction counts of the native bench's loops, with valgrind's
//! callgrind: instructions per event of the writer beyond the floor.
//!
//! Each loop (`floor`, `hyptrace`, `hyptrace_batch`) runs alone (`--only NAME --payload P`)
//! at two lengths, [`SHORT`] and [`LONG`] events; the difference of the two totals divided
//! by the difference of the lengths is the loop's count per event, with the process's
//! set-up, the fixed-length warm-up and the exit cancelled out. The count is a property of
//! the compiled code, the same on every run and every x86 CPU (not of the CPU's speed).

use std::path::Path;
use std::process::Command;

use crate::bench::Section;
use crate::bench_json::Json;

/// The shorter run, events.
pub const SHORT: u64 = 200_000;
/// The longer run, events.
pub const LONG: u64 = 400_000;
/// The loops counted, as the native bench names them.
pub const LOOPS: [&str; 3] = ["floor", "hyptrace", "hyptrace_batch"];
/// Goal of issue #15: the writer's instructions per event beyond the floor's, 16-byte
/// payload.
pub const GOAL_BEYOND_FLOOR: f64 = 25.0;
const GOAL_PAYLOAD: usize = 16;

/// Per payload size: instructions per event of every loop in [`LOOPS`], in order.
pub type Counts = Result<Vec<(usize, [f64; 3])>, String>;

/// Counts every loop at every payload size; `Err` says why not (no valgrind, a failed run).
pub fn count(exe: &Path, quiet: bool) -> Counts {
    if crate::tools::find_on_path("valgrind", std::env::var_os("PATH").as_deref()).is_none() {
        return Err("valgrind is not installed (apt-get install valgrind)".into());
    }
    let mut rows = Vec::new();
    for payload in crate::bench::PAYLOADS {
        let mut per = [0.0; 3];
        for (k, name) in LOOPS.iter().enumerate() {
            if !quiet {
                eprintln!("xtask: callgrind: {name}, {payload}-byte payload");
            }
            let short = total(exe, name, payload, SHORT)?;
            let long = total(exe, name, payload, LONG)?;
            per[k] = per_event(short, long)?;
        }
        rows.push((payload, per));
    }
    Ok(rows)
}

/// Instructions per event from the totals of the two runs.
fn per_event(short: u64, long: u64) -> Result<f64, String> {
    match long.checked_sub(short) {
        Some(d) => Ok(d as f64 / (LONG - SHORT) as f64),
        None => Err(format!(
            "the longer run counted fewer instructions ({long} < {short})"
        )),
    }
}

/// The total instruction count callgrind reports for one run.
fn total(exe: &Path, name: &str, payload: usize, events: u64) -> Result<u64, String> {
    let out_file =
        std::env::temp_dir().join(format!("hyptrace-callgrind-{}.out", std::process::id()));
    let out = Command::new("valgrind")
        .arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", out_file.display()))
        .arg(exe)
        .args(["--only", name, "--payload", &payload.to_string()])
        .args(["--events", &events.to_string()])
        .output()
        .map_err(|e| format!("cannot run valgrind: {e}"))?;
    let _ = std::fs::remove_file(&out_file);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return Err(format!("valgrind failed on {name}: {}", stderr.trim()));
    }
    parse_collected(&stderr)
        .ok_or_else(|| format!("no `Collected :` line from callgrind: {stderr}"))
}

/// The `==PID== Collected : N` figure of callgrind's summary.
pub fn parse_collected(stderr: &str) -> Option<u64> {
    stderr.lines().find_map(|l| {
        let (_, rest) = l.split_once("Collected :")?;
        rest.trim().parse().ok()
    })
}

/// Adds the counts (or why they are missing) to the native section: lines and JSON key
/// `callgrind`.
pub fn append(section: &mut Section, counts: &Counts) {
    let mut json = Json::object();
    match counts {
        Err(reason) => {
            section.lines.push(format!(
                "    x86 instructions per event (callgrind): not counted: {reason}"
            ));
            json.set("status", Json::str("skipped"));
            json.set("reason", Json::str(reason));
        }
        Ok(rows) => {
            section.lines.push(format!(
                "    x86 instructions per event (callgrind, runs of {LONG} minus {SHORT} events; \
                 deterministic):"
            ));
            json.set("status", Json::str("measured"));
            let mut payloads = Vec::new();
            for (p, [floor, single, batch]) in rows {
                section.lines.push(format!(
                    "    {p:>3} B: floor {floor:.1}, hyptrace {single:.1} ({:+.1} beyond the floor), \
                     batches of 3 {batch:.1} ({:+.1})",
                    single - floor,
                    batch - floor
                ));
                let mut o = Json::object();
                o.set("payload_bytes", Json::Num(*p as f64));
                o.set("floor", Json::Num(*floor));
                o.set("hyptrace", Json::Num(*single));
                o.set("hyptrace_batch", Json::Num(*batch));
                o.set("hyptrace_beyond_floor", Json::Num(single - floor));
                o.set("hyptrace_batch_beyond_floor", Json::Num(batch - floor));
                payloads.push(o);
                if *p == GOAL_PAYLOAD {
                    let beyond = single - floor;
                    let met = beyond <= GOAL_BEYOND_FLOOR;
                    section.lines.push(format!(
                        "    goal hyptrace <= {GOAL_BEYOND_FLOOR} instructions per event beyond the \
                         floor at {p} B (callgrind): {beyond:.1}, {}",
                        if met { "met" } else { "MISSED" }
                    ));
                    json.set("goal_beyond_floor_max", Json::Num(GOAL_BEYOND_FLOOR));
                    json.set("goal_beyond_floor", Json::Num(beyond));
                    json.set("goal_beyond_floor_met", Json::Bool(met));
                }
            }
            json.set("payloads", Json::Arr(payloads));
        }
    }
    section.json.set("callgrind", json);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_callgrinds_summary() {
        let stderr = "==12== Callgrind, a call-graph generating cache profiler\n\
                      ==12== Events    : Ir\n==12== Collected : 44965934\n==12==\n\
                      ==12== I   refs:      44,965,934\n";
        assert_eq!(parse_collected(stderr), Some(44_965_934));
        assert_eq!(parse_collected("==12== I refs: 5\n"), None);
    }

    #[test]
    fn the_difference_of_two_lengths_is_per_event() {
        assert_eq!(per_event(1_000, 1_000 + 23 * (LONG - SHORT)), Ok(23.0));
        assert!(per_event(5, 4).is_err());
    }

    #[test]
    fn the_section_names_the_goal_and_a_skip() {
        let mut s = Section {
            key: "native",
            lines: vec![],
            json: Json::object(),
        };
        append(&mut s, &Ok(vec![(16, [22.0, 46.4, 40.8])]));
        assert!(s.lines.iter().any(|l| l.contains("+24.4 beyond the floor")));
        assert!(s.lines.iter().any(|l| l.contains("24.4, met")));
        let mut s = Section {
            key: "native",
            lines: vec![],
            json: Json::object(),
        };
        append(&mut s, &Ok(vec![(16, [22.0, 50.0, 40.8])]));
        assert!(s.lines.iter().any(|l| l.contains("28.0, MISSED")));
        append(&mut s, &Err("valgrind is not installed".into()));
        assert!(s
            .lines
            .iter()
            .any(|l| l.contains("not counted: valgrind is not installed")));
    }
}
