//! Events per buffer, CPU and name, counted from the decoded lines of a trace.dat (the lines
//! `cargo xtask report` prints, parsed with `report_check::parse_event_line`): the per-event
//! table under `cargo xtask run`'s summary and the `events` object of its `--json` and of
//! `report --stat --json`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::bench_json::Json;
use crate::report_check::parse_event_line;

/// Counts keyed by buffer name (`""` for the top-level buffer), event name and CPU.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventCounts {
    counts: BTreeMap<(String, String), BTreeMap<u32, u64>>,
    /// The buffer of the drop marker just read: trace-cmd 3.1.6 (and `cargo xtask report`,
    /// which prints what it prints) omits the instance's prefix on the event right after an
    /// instance's `CPU:N [K EVENTS DROPPED]` line, so that event belongs to this buffer.
    after_marker: Option<String>,
}

impl EventCounts {
    /// Counts one decoded line (lines that are no event, like drop markers, count nothing).
    pub fn line(&mut self, line: &str) {
        let (buffer, rest) = crate::report_check::split_buffer(line);
        let rest = rest.trim_start();
        if rest.starts_with("CPU:") && rest.ends_with("EVENTS DROPPED]") {
            self.after_marker = Some(buffer.to_string());
            return;
        }
        let marker = self.after_marker.take();
        if let Some(e) = parse_event_line(line) {
            let buffer = match marker {
                Some(b) if e.buffer.is_empty() => b,
                _ => e.buffer.to_string(),
            };
            *self
                .counts
                .entry((buffer, e.name.to_string()))
                .or_default()
                .entry(e.cpu)
                .or_default() += 1;
        }
    }

    /// The count of `event` on `cpu` in `buffer`.
    #[cfg(test)]
    pub fn get(&self, buffer: &str, event: &str, cpu: u32) -> u64 {
        self.counts
            .get(&(buffer.to_string(), event.to_string()))
            .and_then(|c| c.get(&cpu))
            .copied()
            .unwrap_or(0)
    }

    /// Events of `buffer` on `cpu`, every name together.
    pub fn cpu_total(&self, buffer: &str, cpu: u32) -> u64 {
        self.counts
            .iter()
            .filter(|((b, _), _)| b == buffer)
            .filter_map(|(_, per_cpu)| per_cpu.get(&cpu))
            .sum()
    }

    /// The buffers with events, in order (the keys are sorted by buffer first).
    fn buffers(&self) -> Vec<&str> {
        let mut buffers: Vec<&str> = self.counts.keys().map(|(b, _)| b.as_str()).collect();
        buffers.dedup();
        buffers
    }

    /// One table per buffer: a row per event, a column per CPU, and the total.
    pub fn table(&self, cpus: u32) -> String {
        let mut out = String::from("events per CPU, as decoded from the file:\n");
        let buffers = self.buffers();
        for buffer in buffers {
            let name = if buffer.is_empty() {
                "top-level buffer"
            } else {
                buffer
            };
            let _ = write!(out, "  {name:<22}");
            for cpu in 0..cpus {
                let _ = write!(out, " {:>10}", format!("CPU {cpu}"));
            }
            let _ = writeln!(out, " {:>11}", "total");
            for ((b, event), per_cpu) in &self.counts {
                if b != buffer {
                    continue;
                }
                let _ = write!(out, "  {event:<22}");
                for cpu in 0..cpus {
                    let _ = write!(out, " {:>10}", per_cpu.get(&cpu).copied().unwrap_or(0));
                }
                let _ = writeln!(out, " {:>11}", per_cpu.values().sum::<u64>());
            }
        }
        out
    }

    /// `{ "<buffer>": { "<event>": { "<cpu>": n, ..., "total": n } } }`, the top-level
    /// buffer under `""`.
    pub fn json(&self) -> Json {
        let mut all = Json::object();
        let buffers = self.buffers();
        for buffer in buffers {
            let mut events = Json::object();
            for ((b, event), per_cpu) in &self.counts {
                if b != buffer {
                    continue;
                }
                let mut o = Json::object();
                for (cpu, n) in per_cpu {
                    o.set(&cpu.to_string(), Json::Num(*n as f64));
                }
                o.set("total", Json::Num(per_cpu.values().sum::<u64>() as f64));
                events.set(event, o);
            }
            all.set(buffer, events);
        }
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_events_by_buffer_name_and_cpu() {
        let mut c = EventCounts::default();
        for line in [
            "cpus=2",
            "hypervisor:            <...>--1    [000]     0.101233: hyp_exit:              ",
            "hypervisor:            <...>--1    [001]     0.101240: hyp_exit:              ",
            "hypervisor:            <...>--1    [001]     0.101250: host_hcall:           id=0xc6000012 invalid=0",
            "                       <...>--1    [000]     0.101635: workload:             phase=0",
            "CPU:1 [12 EVENTS DROPPED]",
            // trace-cmd 3.1.6 prints an instance's event after its drop marker unprefixed.
            "hypervisor: CPU:1 [5641 EVENTS DROPPED]",
            "           <...>--1    [001]     0.359801: hyp_enter:             ",
            "           <...>--1    [001]     0.359901: workload:             phase=1",
        ] {
            c.line(line);
        }
        assert_eq!(c.get("hypervisor", "hyp_exit", 0), 1);
        assert_eq!(c.get("hypervisor", "hyp_exit", 1), 1);
        assert_eq!(c.get("", "workload", 0), 1);
        assert_eq!(
            c.get("hypervisor", "hyp_enter", 1),
            1,
            "the unprefixed line after the marker"
        );
        assert_eq!(c.get("", "hyp_enter", 1), 0);
        assert_eq!(
            c.get("", "workload", 1),
            1,
            "only the one line after the marker"
        );
        assert_eq!(c.get("hypervisor", "workload", 0), 0);
        let t = c.table(2);
        assert!(
            t.contains("top-level buffer") && t.contains("hypervisor"),
            "{t}"
        );
        assert!(
            t.lines()
                .any(|l| l.trim_start().starts_with("hyp_exit") && l.trim_end().ends_with(" 2")),
            "{t}"
        );
        assert_eq!(c.cpu_total("hypervisor", 1), 3);
        let j = c.json().render();
        assert!(
            j.contains("\"hyp_exit\"") && j.contains("\"total\": 2"),
            "{j}"
        );
    }
}
