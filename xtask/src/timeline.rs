//! One timeline of host and hypervisor events: matching every call the host issued with what
//! the hypervisor recorded for it, the proof that both clocks line up, and the time spent in
//! the hypervisor.
//!
//! Per CPU, the host's buffer holds `hvc_call`/`hvc_return` (and `smc_call`/`smc_return`)
//! around every call, and the hypervisor's holds `hyp_enter`, `host_hcall` (or `host_smc`),
//! whatever the handler wrote, and `hyp_exit`. Each side's events of one CPU are in that
//! side's own order (a buffer's order is its writer's program order), so matching walks the
//! two sequences side by side:
//!
//! - a *window* is an `hvc_call` directly followed on its CPU by the `hvc_return` of the
//!   same ID, with no drop marker between them;
//! - its hypervisor events are the next ones from `hyp_enter` to `hyp_exit`: they must be
//!   `hyp_enter`, then `host_hcall` with the same ID, then `hyp_exit`, all with
//!   `call <= hyp_enter <= host_hcall <= hyp_exit <= return` (one inversion fails the
//!   proof); a hypervisor drop marker before or inside them makes the window incomplete;
//! - a `host_hcall` (or `host_smc`) between two consecutive host events that are not a window
//!   and have no drop marker between them belongs to no call: its clock is off (a failure).
//!
//! Pure: events in, [`Matching`] out; the inputs come from `trace-cmd report -t` lines
//! ([`Timeline::line`]) or from hyptrace's own decoder ([`crate::report`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::report_check::{parse_event_line, split_buffer, Findings};

/// What an event is, for matching.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Host: just before an HVC (`id`: the function ID).
    HvcCall,
    /// Host: just after it.
    HvcReturn,
    /// Host: just before an SMC.
    SmcCall,
    /// Host: just after it.
    SmcReturn,
    /// Any other host event.
    OtherHost,
    /// Hypervisor: entry.
    HypEnter,
    /// Hypervisor: an HVC (`id`).
    HostHcall,
    /// Hypervisor: an SMC (`id`).
    HostSmc,
    /// Hypervisor: exit.
    HypExit,
    /// Any other hypervisor event (a handler's, an abort).
    OtherHyp,
    /// A drop marker: events of this side and CPU were lost here.
    Dropped,
}

impl Kind {
    /// The kind of the event named `name`, and whether it is the host's.
    pub fn of(name: &str) -> (Self, bool) {
        match name {
            "hvc_call" => (Self::HvcCall, true),
            "hvc_return" => (Self::HvcReturn, true),
            "smc_call" => (Self::SmcCall, true),
            "smc_return" => (Self::SmcReturn, true),
            "reader_poll" | "reader_swap" | "workload" => (Self::OtherHost, true),
            "hyp_enter" => (Self::HypEnter, false),
            "host_hcall" => (Self::HostHcall, false),
            "host_smc" => (Self::HostSmc, false),
            "hyp_exit" => (Self::HypExit, false),
            _ => (Self::OtherHyp, false),
        }
    }

    /// Whether events of this kind carry the call's function ID.
    pub fn has_id(self) -> bool {
        matches!(
            self,
            Self::HvcCall
                | Self::HvcReturn
                | Self::SmcCall
                | Self::SmcReturn
                | Self::HostHcall
                | Self::HostSmc
        )
    }

    /// The field that holds the function ID in the event's text.
    pub fn id_field(self) -> &'static str {
        match self {
            Self::SmcCall | Self::SmcReturn => "fid",
            _ => "id",
        }
    }
}

/// One event of one side of one CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ev {
    /// Timestamp (ns).
    pub ts: u64,
    /// What it is.
    pub kind: Kind,
    /// The function ID, for kinds that have one.
    pub id: u64,
}

/// Every CPU's host and hypervisor events, each side in its own order.
#[derive(Clone, Debug, Default)]
pub struct Timeline {
    host: BTreeMap<u32, Vec<Ev>>,
    hyp: BTreeMap<u32, Vec<Ev>>,
    /// Lines that looked like events but could not be read (bad timestamp, no ID).
    pub unreadable: Findings,
}

/// A call matched on both sides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Call {
    /// The function ID.
    pub id: u64,
    /// Host: before the call.
    pub call: u64,
    /// Hypervisor: entry.
    pub enter: u64,
    /// Hypervisor: exit.
    pub exit: u64,
    /// Host: after the return.
    pub ret: u64,
}

/// What matching found on one CPU.
#[derive(Clone, Debug, Default)]
pub struct CpuMatching {
    /// Complete HVC sequences, in order.
    pub hvc: Vec<Call>,
    /// Complete SMC sequences, in order.
    pub smc: Vec<Call>,
    /// Windows skipped because the hypervisor lost events in them.
    pub incomplete: u64,
    /// Inversions and mismatches.
    pub failures: Findings,
}

/// What matching found on every CPU.
#[derive(Clone, Debug, Default)]
pub struct Matching {
    /// Per CPU.
    pub cpus: BTreeMap<u32, CpuMatching>,
}

/// Nanoseconds of a `trace-cmd report -t` timestamp (`S.NNNNNNNNN`); `None` for any other
/// form (microsecond timestamps cannot prove an ordering at nanosecond steps).
pub fn parse_ns(ts: &str) -> Option<u64> {
    let (s, frac) = ts.split_once('.')?;
    if frac.len() != 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<u64>()
        .ok()?
        .checked_mul(1_000_000_000)?
        .checked_add(frac.parse().ok()?)
}

/// The value of `name=` in a report's field text (hex with `0x`, else decimal; negative
/// values as two's complement).
pub fn field_value(fields: &str, name: &str) -> Option<u64> {
    fields.split_whitespace().find_map(|w| {
        let v = w.strip_prefix(name)?.strip_prefix('=')?;
        match v.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16).ok(),
            None => v.parse::<i64>().ok().map(|n| n as u64),
        }
    })
}

impl Timeline {
    /// Adds an event of `cpu`.
    pub fn push(&mut self, cpu: u32, host: bool, ev: Ev) {
        let side = if host { &mut self.host } else { &mut self.hyp };
        side.entry(cpu).or_default().push(ev);
    }

    /// Takes one line of `trace-cmd report -t` of a file whose top-level buffer is the
    /// host's and whose `hypervisor` instance is the hypervisor's.
    pub fn line(&mut self, line: &str) {
        let (buffer, rest) = split_buffer(line);
        let rest = rest.trim();
        if let Some(cpu) = rest
            .strip_prefix("CPU:")
            .filter(|r| r.ends_with("EVENTS DROPPED]"))
            .and_then(|r| r.split_once(' '))
            .and_then(|(cpu, _)| cpu.parse::<u32>().ok())
        {
            // The marker sits where the loss was: order it by the side's next event, so
            // it gets the timestamp of the previous one (or 0).
            let side = if buffer.is_empty() {
                &mut self.host
            } else {
                &mut self.hyp
            };
            let seq = side.entry(cpu).or_default();
            let ts = seq.last().map_or(0, |e| e.ts);
            seq.push(Ev {
                ts,
                kind: Kind::Dropped,
                id: 0,
            });
            return;
        }
        let Some(e) = parse_event_line(line) else {
            return;
        };
        let (kind, host) = Kind::of(e.name);
        let Some(ts) = parse_ns(e.timestamp) else {
            self.unreadable.add(line);
            return;
        };
        let id = if kind.has_id() {
            match field_value(e.fields, kind.id_field()) {
                Some(id) => id,
                None => {
                    self.unreadable.add(line);
                    return;
                }
            }
        } else {
            0
        };
        self.push(e.cpu, host, Ev { ts, kind, id });
    }

    /// Matches every CPU's calls with the hypervisor's events.
    pub fn matching(&self) -> Matching {
        let mut m = Matching::default();
        let empty = Vec::new();
        let cpus: std::collections::BTreeSet<u32> =
            self.host.keys().chain(self.hyp.keys()).copied().collect();
        for cpu in cpus {
            let host = self.host.get(&cpu).unwrap_or(&empty);
            let hyp = self.hyp.get(&cpu).unwrap_or(&empty);
            m.cpus.insert(cpu, match_cpu(cpu, host, hyp));
        }
        m
    }
}

fn describe(e: &Ev) -> String {
    format!("{:?} id={:#x} at {} ns", e.kind, e.id, e.ts)
}

/// The matching of one CPU (see the module's rules).
fn match_cpu(cpu: u32, host: &[Ev], hyp_all: &[Ev]) -> CpuMatching {
    let mut out = CpuMatching::default();
    // A hypervisor drop marker stands for events lost anywhere between the events around
    // it: keep the events, and those intervals.
    let hyp: Vec<Ev> = hyp_all
        .iter()
        .copied()
        .filter(|e| e.kind != Kind::Dropped)
        .collect();
    // Each gap: the index in `hyp` of the first event after it, and the timestamp of the
    // last event before it (the lost events are no older).
    let mut gaps = Vec::new();
    let mut kept = 0;
    let mut last_ts = 0;
    for e in hyp_all {
        if e.kind == Kind::Dropped {
            gaps.push((kept, last_ts));
        } else {
            kept += 1;
            last_ts = e.ts;
        }
    }
    let mut g = 0;
    let mut j = 0;
    for pair in host.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        let window = match (a.kind, b.kind) {
            (Kind::HvcCall, Kind::HvcReturn) if a.id == b.id => Some(Kind::HostHcall),
            (Kind::SmcCall, Kind::SmcReturn) if a.id == b.id => Some(Kind::HostSmc),
            _ => None,
        };
        let gap_free = a.kind != Kind::Dropped && b.kind != Kind::Dropped;
        // Hypervisor events before this window: between two host events that are not a
        // window, nothing may claim to be a call.
        while j < hyp.len() && hyp[j].ts < b.ts && (window.is_none() || hyp[j].ts < a.ts) {
            let e = hyp[j];
            if gap_free
                && e.ts > a.ts
                && matches!(e.kind, Kind::HostHcall | Kind::HostSmc)
                && window.is_none()
            {
                out.failures.add(&format!(
                    "CPU {cpu}: {} falls between host events {} and {}, in no call",
                    describe(&e),
                    describe(&a),
                    describe(&b)
                ));
            }
            j += 1;
        }
        let Some(expected) = window else {
            continue;
        };
        // The window's hypervisor events: from hyp_enter up to the first hyp_exit, none
        // later than the return.
        let start = j;
        while g < gaps.len() && gaps[g].0 < start {
            g += 1;
        }
        let mut end = None;
        while j < hyp.len() {
            let e = hyp[j];
            if e.ts > b.ts {
                break;
            }
            j += 1;
            if e.kind == Kind::HypExit {
                end = Some(j);
                break;
            }
        }
        // Lost events may be this window's when a gap is inside its events, right before
        // them when they do not start with hyp_enter, or right after them when no hyp_exit
        // was found and the loss began before the return.
        let stop = end.unwrap_or(j);
        let dropped = gaps[g..]
            .iter()
            .take_while(|&&(p, _)| p <= stop)
            .any(|&(p, since)| {
                (start < p && p < stop)
                    || (p == start && hyp.get(start).is_none_or(|e| e.kind != Kind::HypEnter))
                    || (end.is_none() && p == stop && since <= b.ts)
            });
        if dropped {
            out.incomplete += 1;
            // Resynchronise on the next window.
            while j < hyp.len() && hyp[j].ts <= b.ts {
                j += 1;
            }
            continue;
        }
        let seq = &hyp[start..end.unwrap_or(j)];
        if end.is_none() {
            let mut text = format!(
                "CPU {cpu}: call {} .. return at {} ns: no hyp_exit up to the return;",
                describe(&a),
                b.ts
            );
            for e in seq.iter().chain(hyp.get(j)).take(6) {
                let _ = write!(text, " {};", describe(e));
            }
            out.failures.add(&text);
            continue;
        }
        let ok_shape = seq.len() >= 3
            && seq[0].kind == Kind::HypEnter
            && seq[1].kind == expected
            && seq[1].id == a.id
            && seq[seq.len() - 1].kind == Kind::HypExit
            && seq[2..seq.len() - 1]
                .iter()
                .all(|e| e.kind == Kind::OtherHyp);
        let times: Vec<u64> = std::iter::once(a.ts)
            .chain(seq.iter().map(|e| e.ts))
            .chain(std::iter::once(b.ts))
            .collect();
        let ordered = times.windows(2).all(|w| w[0] <= w[1]);
        if !ok_shape || !ordered {
            let mut text = format!("CPU {cpu}: call {} .. return at {} ns:", describe(&a), b.ts);
            for e in seq.iter().take(6) {
                let _ = write!(text, " {};", describe(e));
            }
            out.failures.add(&text);
            continue;
        }
        let call = Call {
            id: a.id,
            call: a.ts,
            enter: seq[0].ts,
            exit: seq[seq.len() - 1].ts,
            ret: b.ts,
        };
        if expected == Kind::HostHcall {
            out.hvc.push(call);
        } else {
            out.smc.push(call);
        }
    }
    out
}

/// The CI's rule: not one failure, and at least `min_hvc` HVC and `min_smc` SMC sequences
/// checked on every CPU of a `cpus`-CPU run. `Ok`: the per-CPU counts, one line.
///
/// # Errors
/// Every rule broken, with examples.
pub fn judge(m: &Matching, cpus: u32, min_hvc: usize, min_smc: usize) -> Result<String, String> {
    let mut problems = String::new();
    let mut summary = String::new();
    for cpu in 0..cpus {
        let Some(c) = m.cpus.get(&cpu) else {
            let _ = writeln!(problems, "CPU {cpu}: no events");
            continue;
        };
        let _ = write!(
            summary,
            "{}CPU {cpu}: {} hvc + {} smc checked ({} incomplete)",
            if cpu == 0 { "" } else { "; " },
            c.hvc.len(),
            c.smc.len(),
            c.incomplete
        );
        if c.hvc.len() < min_hvc || c.smc.len() < min_smc {
            let _ = writeln!(
                problems,
                "CPU {cpu}: only {} hvc and {} smc sequences complete (at least {min_hvc} and \
                 {min_smc} needed)",
                c.hvc.len(),
                c.smc.len()
            );
        }
        if !c.failures.is_empty() {
            let _ = writeln!(
                problems,
                "CPU {cpu}: {} inversions or mismatches",
                c.failures.count
            );
            for e in &c.failures.examples {
                let _ = writeln!(problems, "      | {e}");
            }
        }
    }
    if problems.is_empty() {
        Ok(summary)
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests;
