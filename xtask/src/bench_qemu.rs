//! Parts (b) to (e) of `cargo xtask bench`: figures measured inside QEMU by the guest's
//! `bench` mode (host-shim/src/qemu_bench.rs), in one boot: the hypercall path with tracing
//! unloaded, traced and loaded-but-disabled; one selftest event at EL2 against a
//! counter-and-store loop; the highest lossless drain rate; the per-event cost against buffer
//! size and writer count.
//!
//! Under TCG absolute times say little about hardware, and on a busy 2-core machine the
//! rounds vary widely: compare figures with each other, with their ranges in view.

use std::time::Duration;

use anyhow::{bail, Result};

use crate::bench::Section;
use crate::bench_json::Json;
use crate::build::{self, Profile};
use crate::qemu::{self, QemuConfig};
use crate::supervise::RunEnd;

/// One `bench:` figure of the guest.
#[derive(Clone, Debug, PartialEq)]
pub struct Figure {
    /// Key, e.g. `hvc_null_traced`.
    pub key: String,
    /// Median (or the single value of a ratio).
    pub median: f64,
    /// Range of the rounds, when the guest printed one.
    pub range: Option<(f64, f64)>,
    /// Unit and remarks, e.g. `ns/call` or `ratio (goal <= 1.15)`.
    pub unit: String,
}

/// Parses `bench: <key> <value> [<min>..<max>] <unit...>` (the range is optional). Other
/// `bench:` lines (machine, done) give `None`.
pub fn parse_figure(line: &str) -> Option<Figure> {
    let rest = line.trim_start().strip_prefix("bench: ")?;
    let mut words = rest.split_whitespace();
    let key = words.next().filter(|k| *k != "machine")?.to_string();
    let median: f64 = words.next()?.parse().ok()?;
    let mut tail: Vec<&str> = words.collect();
    let mut range = None;
    if let Some(first) = tail.first() {
        if let Some(inner) = first.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
            let (lo, hi) = inner.split_once("..")?;
            range = Some((lo.parse().ok()?, hi.parse().ok()?));
            tail.remove(0);
        }
    }
    Some(Figure {
        key,
        median,
        range,
        unit: tail.join(" "),
    })
}

fn is_bench_line(line: &str) -> bool {
    let line = line.trim_start();
    line.starts_with("bench:") || line.contains("EXCEPTION") || line.contains("panicked")
}

/// Boots the guest's bench mode on 4 CPUs and turns its figures into a section; unless
/// `quiet`, the guest's lines stream as progress.
pub fn section(quiet: bool) -> Result<Section> {
    let images = build::build_images(Profile::Release)?;
    let config = QemuConfig::new(&images, 4, vec!["bench".to_string()])?;
    if !quiet {
        eprintln!(
            "xtask: bench (b)-(e): booting the guest's bench mode on 4 vCPUs (about a minute)"
        );
    }
    // The guest's `bench:` lines stream as they are measured: they are the progress.
    let captured = qemu::run(&config, Duration::from_secs(900), !quiet, is_bench_line)?;
    let lines: Vec<&str> = captured.kept.iter().map(|l| l.text.as_str()).collect();
    let finished = lines.iter().any(|l| l.contains("bench: done"));
    if captured.end != RunEnd::Exited(0) || !finished {
        captured.print_last_lines(40);
        bail!(
            "the in-QEMU bench did not finish (QEMU ended with {:?}); its last lines are above",
            captured.end
        );
    }
    let figures: Vec<Figure> = lines.iter().filter_map(|l| parse_figure(l)).collect();
    let mut out = vec![
        "(b)-(e) in QEMU, one boot, 4 vCPUs, TCG: median [min..max] of 5 alternating rounds; drain: highest lossless rate"
            .to_string(),
    ];
    if let Some(machine) = lines.iter().find(|l| l.contains("bench: machine")) {
        out.push(format!(
            "  {}",
            machine.trim().trim_start_matches("bench: ")
        ));
    }
    let mut json = Json::object();
    for f in &figures {
        let range = f
            .range
            .map_or(String::new(), |(lo, hi)| format!(" [{lo:.1}..{hi:.1}]"));
        out.push(format!(
            "  {:<28} {:>9.3}{range} {}",
            f.key, f.median, f.unit
        ));
        let mut entry = Json::object();
        entry.set("median", Json::Num(f.median));
        if let Some((lo, hi)) = f.range {
            entry.set("min", Json::Num(lo));
            entry.set("max", Json::Num(hi));
        }
        entry.set("unit", Json::str(&f.unit));
        json.set(&f.key, entry);
    }
    Ok(Section {
        key: "qemu",
        lines: out,
        json,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_with_and_without_ranges() {
        assert_eq!(
            parse_figure("bench: hvc_null_unloaded 3156.2 [2349.4..3553.4] ns/call"),
            Some(Figure {
                key: "hvc_null_unloaded".into(),
                median: 3156.2,
                range: Some((2349.4, 3553.4)),
                unit: "ns/call".into(),
            })
        );
        let ratio = parse_figure("bench: hvc_traced_overhead 1.483 ratio (goal <= 1.15)").unwrap();
        assert_eq!((ratio.median, ratio.range), (1.483, None));
        assert_eq!(ratio.unit, "ratio (goal <= 1.15)");
        assert_eq!(
            parse_figure("bench: scaling_writers_2 288.6 [287.9..412.7] ns/event (CPU 0)")
                .unwrap()
                .unit,
            "ns/event (CPU 0)"
        );
        assert_eq!(
            parse_figure("bench: machine 4 CPUs, counter 62500000 Hz"),
            None
        );
        assert_eq!(parse_figure("bench: done"), None);
        assert_eq!(parse_figure("trace: 1/2 ms"), None);
    }
}
