//! `cargo xtask report --latency`: time spent in the hypervisor per call, from the matched
//! calls of [`crate::timeline`].
//!
//! Per CPU and per function ID (hypercalls and SMC functions apart): (a) the time inside
//! the hypervisor, `hyp_enter` to `hyp_exit`, and (b) the host's round trip, `hvc_call` to
//! `hvc_return` (or `smc_call` to `smc_return`): count, minimum, median, p99, maximum, and a
//! histogram of the round trips in powers of two. Under QEMU's TCG these are times of
//! instruction emulation on the machine that ran QEMU, not of hardware.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hyptrace_abi::HypercallId;

use crate::timeline::{Call, Matching};

/// Order statistics of a set of durations (ns).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stats {
    /// How many.
    pub count: usize,
    /// Smallest.
    pub min: u64,
    /// Median (the lower one of an even count).
    pub median: u64,
    /// 99th percentile (nearest rank).
    pub p99: u64,
    /// Largest.
    pub max: u64,
}

impl Stats {
    /// The statistics of `values` (sorted in place); `None` when empty.
    pub fn of(values: &mut [u64]) -> Option<Self> {
        if values.is_empty() {
            return None;
        }
        values.sort_unstable();
        let n = values.len();
        let rank = |p: usize| values[(n * p).div_ceil(100).clamp(1, n) - 1];
        Some(Self {
            count: n,
            min: values[0],
            median: values[(n - 1) / 2],
            p99: rank(99),
            max: values[n - 1],
        })
    }
}

/// The figures of one function on one CPU.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    /// The CPU.
    pub cpu: u32,
    /// `hvc` or `smc`.
    pub kind: &'static str,
    /// The function ID.
    pub id: u64,
    /// Inside the hypervisor.
    pub hyp: Stats,
    /// The host's round trip.
    pub round_trip: Stats,
    /// Round trips per power-of-two bucket: `(upper bound ns, count)`.
    pub histogram: Vec<(u64, usize)>,
}

/// A name for function `id`: hyptrace's hypercall names, PSCI's, else the number.
pub fn function_name(kind: &str, id: u64) -> String {
    if kind == "hvc" {
        if let Some(h) = HypercallId::from_x0(id) {
            return h.name().to_string();
        }
    }
    let psci = match id {
        0x8400_0000 => Some("PSCI_VERSION"),
        0xC400_0003 | 0x8400_0003 => Some("PSCI_CPU_ON"),
        0x8400_0002 => Some("PSCI_CPU_OFF"),
        0xC400_0004 | 0x8400_0004 => Some("PSCI_AFFINITY_INFO"),
        _ => None,
    };
    psci.map_or_else(|| format!("{id:#x}"), str::to_string)
}

/// The rows of every CPU and function, CPU first, hypercalls before SMCs, by ID.
pub fn rows(m: &Matching) -> Vec<Row> {
    let mut rows = Vec::new();
    for (&cpu, c) in &m.cpus {
        for (kind, calls) in [("hvc", &c.hvc), ("smc", &c.smc)] {
            let mut by_id: BTreeMap<u64, Vec<&Call>> = BTreeMap::new();
            for call in calls {
                by_id.entry(call.id).or_default().push(call);
            }
            for (id, calls) in by_id {
                let mut hyp: Vec<u64> = calls.iter().map(|c| c.exit - c.enter).collect();
                let mut trip: Vec<u64> = calls.iter().map(|c| c.ret - c.call).collect();
                let mut histogram: BTreeMap<u64, usize> = BTreeMap::new();
                for &t in &trip {
                    *histogram.entry(t.max(1).next_power_of_two()).or_default() += 1;
                }
                let (Some(hyp), Some(round_trip)) = (Stats::of(&mut hyp), Stats::of(&mut trip))
                else {
                    continue;
                };
                rows.push(Row {
                    cpu,
                    kind,
                    id,
                    hyp,
                    round_trip,
                    histogram: histogram.into_iter().collect(),
                });
            }
        }
    }
    rows
}

fn us(ns: u64) -> String {
    format!("{:.3}", ns as f64 / 1000.0)
}

/// The text table and histograms.
pub fn text(rows: &[Row]) -> String {
    let mut s = String::from(
        "Time in the hypervisor (hyp_enter -> hyp_exit) and the host's round trip \
         (hvc_call -> hvc_return, smc_call -> smc_return), in microseconds.\n\
         Under QEMU TCG these are instruction-emulation times, not hardware figures.\n\n",
    );
    let _ = writeln!(
        s,
        "{:>3} {:<4} {:<22} {:>8}  {:>9} {:>9} {:>9} {:>9}  {:>9} {:>9} {:>9} {:>9}",
        "CPU",
        "kind",
        "function",
        "count",
        "hyp min",
        "median",
        "p99",
        "max",
        "trip min",
        "median",
        "p99",
        "max"
    );
    for r in rows {
        let (h, t) = (r.hyp, r.round_trip);
        let _ = writeln!(
            s,
            "{:>3} {:<4} {:<22} {:>8}  {:>9} {:>9} {:>9} {:>9}  {:>9} {:>9} {:>9} {:>9}",
            r.cpu,
            r.kind,
            function_name(r.kind, r.id),
            h.count,
            us(h.min),
            us(h.median),
            us(h.p99),
            us(h.max),
            us(t.min),
            us(t.median),
            us(t.p99),
            us(t.max)
        );
    }
    for r in rows {
        let _ = writeln!(
            s,
            "\nround trips of {} on CPU {} ({} calls):",
            function_name(r.kind, r.id),
            r.cpu,
            r.round_trip.count
        );
        let most = r.histogram.iter().map(|&(_, n)| n).max().unwrap_or(1);
        for &(upper, n) in &r.histogram {
            let bar = "#".repeat((n * 50).div_ceil(most));
            let _ = writeln!(s, "  < {:>10} us {n:>8} {bar}", us(upper));
        }
    }
    s
}

/// The same figures as JSON: `{"unit": "ns", "rows": [{"cpu", "kind", "id", "function",
/// "hyp": {...}, "round_trip": {...}, "histogram": [[upper_ns, count], ...]}]}`.
pub fn json(rows: &[Row]) -> String {
    let stats = |s: &Stats| {
        format!(
            "{{\"count\": {}, \"min\": {}, \"median\": {}, \"p99\": {}, \"max\": {}}}",
            s.count, s.min, s.median, s.p99, s.max
        )
    };
    let mut out = String::from("{\"unit\": \"ns\", \"rows\": [");
    for (i, r) in rows.iter().enumerate() {
        let hist: Vec<String> = r
            .histogram
            .iter()
            .map(|(u, n)| format!("[{u}, {n}]"))
            .collect();
        let _ = write!(
            out,
            "{}\n  {{\"cpu\": {}, \"kind\": \"{}\", \"id\": {}, \"function\": \"{}\", \"hyp\": {}, \
             \"round_trip\": {}, \"histogram\": [{}]}}",
            if i == 0 { "" } else { "," },
            r.cpu,
            r.kind,
            r.id,
            function_name(r.kind, r.id),
            stats(&r.hyp),
            stats(&r.round_trip),
            hist.join(", ")
        );
    }
    out.push_str("\n]}\n");
    out
}

/// One line for `cargo xtask run`'s summary: the null hypercall over every CPU.
pub fn summary_line(m: &Matching) -> Option<String> {
    let null = u64::from(HypercallId::Null.function_id());
    let calls: Vec<&Call> = m
        .cpus
        .values()
        .flat_map(|c| c.hvc.iter())
        .filter(|c| c.id == null)
        .collect();
    let mut hyp: Vec<u64> = calls.iter().map(|c| c.exit - c.enter).collect();
    let mut trip: Vec<u64> = calls.iter().map(|c| c.ret - c.call).collect();
    let (h, t) = (Stats::of(&mut hyp)?, Stats::of(&mut trip)?);
    Some(format!(
        "null hypercall, {} calls on {} CPUs: {} us in the hypervisor (median; p99 {}), round \
         trip {} us (p99 {}); TCG emulation time (cargo xtask report --latency)",
        h.count,
        m.cpus.len(),
        us(h.median),
        us(h.p99),
        us(t.median),
        us(t.p99)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timeline::CpuMatching;

    #[test]
    fn order_statistics() {
        let mut v: Vec<u64> = (1..=200).rev().collect();
        let s = Stats::of(&mut v).unwrap();
        assert_eq!(
            (s.count, s.min, s.median, s.p99, s.max),
            (200, 1, 100, 198, 200)
        );
        assert_eq!(Stats::of(&mut []), None);
        let s = Stats::of(&mut [7]).unwrap();
        assert_eq!((s.median, s.p99), (7, 7));
    }

    #[test]
    fn rows_text_and_json() {
        let null = u64::from(HypercallId::Null.function_id());
        let call = |d: u64| Call {
            id: null,
            call: 0,
            enter: 10,
            exit: 10 + d,
            ret: 20 + d,
        };
        let mut m = Matching::default();
        m.cpus.insert(
            1,
            CpuMatching {
                hvc: vec![call(100), call(300), call(1000)],
                ..CpuMatching::default()
            },
        );
        let rows = rows(&m);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].hyp.median, 300);
        assert_eq!(rows[0].round_trip.max, 1020);
        assert_eq!(rows[0].histogram, [(128, 1), (512, 1), (1024, 1)]);
        let t = text(&rows);
        assert!(t.contains("null") && t.contains("0.300"), "{t}");
        let j = json(&rows);
        assert!(
            j.contains("\"median\": 300") && j.contains("[1024, 1]"),
            "{j}"
        );
        assert!(summary_line(&m).unwrap().contains("3 calls on 1 CPUs"));
    }
}
