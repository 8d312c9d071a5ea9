//! The pure judgement of a recorded trace.dat, from what the real `trace-cmd` (3.1.6) says
//! about it and what the guest said it wrote.
//!
//! `trace-cmd report` prints a million lines for a second of tracing, so its output is not
//! kept: [`ReportScan`] takes it one line at a time and keeps counts and a few examples of
//! each problem. [`judge`] then applies the rules to the scans, the small outputs of
//! `--check-events` and `--stat`, and the guest's [`GuestTrace`]. No I/O here: every rule is
//! unit-tested with fake outputs shaped like real ones.
//!
//! Report lines look like
//! `           <...>--1    [002]     2.500000: host_hcall:           id=0xc6000000 invalid=0`;
//! besides event lines there is a `cpus=N` header and `CPU:N [N EVENTS DROPPED]` lines where
//! a page says events were lost before it.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};

use hyptrace_abi::events::selftest_payload;

use crate::supervise::RunEnd;
use crate::trace_summary::GuestTrace;

/// How many example lines each problem keeps.
pub const MAX_EXAMPLES: usize = 5;

/// Text libtraceevent prints for events it could not decode.
const DECODE_FAILURES: [&str; 3] = ["FAILED TO PARSE", "UNKNOWN EVENT", "UNKNOWN TYPE"];

/// What `trace-cmd report --ts-check` says when a CPU's timestamps decrease (on stderr).
const WENT_BACKWARDS: &str = "went backwards";

/// Events a default recording must contain at least once.
pub const REQUIRED_EVENTS: [&str; 5] = [
    "hyp_enter",
    "hyp_exit",
    "host_hcall",
    "host_smc",
    "selftest",
];

/// Lines of one kind: how many, and the first few.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Findings {
    /// How many lines were found.
    pub count: u64,
    /// The first [`MAX_EXAMPLES`] of them, trimmed.
    pub examples: Vec<String>,
}

impl Findings {
    /// Records one line.
    pub fn add(&mut self, line: &str) {
        self.count += 1;
        if self.examples.len() < MAX_EXAMPLES {
            self.examples.push(line.trim().to_string());
        }
    }

    /// Whether nothing was found.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

/// The selftest events of one CPU, as the report shows them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SelftestSeen {
    /// How many.
    pub count: u64,
    /// The smallest and largest sequence numbers.
    pub min: u64,
    /// See `min`.
    pub max: u64,
    /// The last one, in report order.
    pub last: u64,
}

/// One event line of the report, borrowed from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventLine<'a> {
    /// The buffer's name (`hypervisor`), or `""` for the top-level buffer.
    pub buffer: &'a str,
    /// The `[NNN]` field.
    pub cpu: u32,
    /// The timestamp, e.g. `2.500000`.
    pub timestamp: &'a str,
    /// The event name, e.g. `host_hcall`.
    pub name: &'a str,
    /// The printed fields, e.g. `id=0xc6000000 invalid=0` (trimmed; empty for none).
    pub fields: &'a str,
}

/// The buffer-name column of a report line of a file with instances: `hypervisor: ...` gives
/// `("hypervisor", rest)`. Lines of the top-level buffer (and of files without instances)
/// start with blanks and give `("", line)`.
pub fn split_buffer(line: &str) -> (&str, &str) {
    if line.starts_with(char::is_whitespace) {
        return ("", line);
    }
    match line.split_once(' ') {
        Some((first, rest)) if first.len() > 1 && first.ends_with(':') && !first.contains('[') => {
            (&first[..first.len() - 1], rest)
        }
        _ => ("", line),
    }
}

/// Parses an event line: `[<buffer>:] <comm>-<pid> [CPU] <ts>: <name>: <fields>`.
pub fn parse_event_line(line: &str) -> Option<EventLine<'_>> {
    let (buffer, line) = split_buffer(line);
    // The CPU is the first `[digits]` group: the comm before it is `<...>` or a task name
    // (which could hold brackets, but not a bracketed number followed by a timestamp).
    let mut search = 0;
    while let Some(open) = line[search..].find('[').map(|i| search + i) {
        search = open + 1;
        let close = line[open..].find(']').map(|i| open + i)?;
        let digits = &line[open + 1..close];
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let rest = line[close + 1..].trim_start();
        let (timestamp, rest) = rest.split_once(':')?;
        let timestamp_ok = !timestamp.is_empty()
            && timestamp.bytes().all(|b| b.is_ascii_digit() || b == b'.')
            && timestamp.contains('.');
        if !timestamp_ok {
            continue;
        }
        let rest = rest.trim_start();
        let (name, fields) = rest.split_once(':')?;
        if name.is_empty() || name.contains(char::is_whitespace) {
            return None;
        }
        return Some(EventLine {
            buffer,
            cpu: digits.parse().ok()?,
            timestamp,
            name,
            fields: fields.trim(),
        });
    }
    None
}

/// `seq=S payload=0xP` of a selftest event.
pub fn parse_selftest_fields(fields: &str) -> Option<(u64, u64)> {
    let mut seq = None;
    let mut payload = None;
    for word in fields.split_whitespace() {
        if let Some(s) = word.strip_prefix("seq=") {
            seq = Some(s.parse().ok()?);
        } else if let Some(p) = word.strip_prefix("payload=") {
            payload = Some(u64::from_str_radix(p.strip_prefix("0x")?, 16).ok()?);
        }
    }
    Some((seq?, payload?))
}

/// What one pass over a report's output (stdout and stderr lines) found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReportScan {
    /// The `cpus=N` header, if seen.
    pub header_cpus: Option<u32>,
    /// Event lines per CPU.
    pub events_per_cpu: BTreeMap<u32, u64>,
    /// Event lines per event name.
    pub events_by_name: BTreeMap<String, u64>,
    /// `CPU:N [... EVENTS DROPPED]` lines.
    pub dropped_lines: u64,
    /// Lines with `FAILED TO PARSE`, `UNKNOWN EVENT` or `UNKNOWN TYPE`.
    pub decode_failures: Findings,
    /// Lines saying a timestamp went backwards.
    pub went_backwards: Findings,
    /// Lines that are none of the above (nor empty).
    pub unrecognised: Findings,
    /// Selftest events per CPU.
    pub selftest: BTreeMap<u32, SelftestSeen>,
    /// Selftest events whose fields could not be read.
    pub selftest_malformed: Findings,
    /// Selftest events whose payload is not `selftest_payload(seq)`.
    pub selftest_bad_payload: Findings,
    /// Selftest events whose seq equals the previous one on the same CPU.
    pub selftest_duplicate: Findings,
    /// Selftest events whose seq is below the previous one on the same CPU.
    pub selftest_decreasing: Findings,
    /// Per CPU: `hyp_printk` lines of the workload's refused CPU_ON, formatted in full
    /// ([`PRINTK_REFUSAL`] with that CPU's number).
    pub printk_refusals: BTreeMap<u32, u64>,
    /// `bprint` lines printed without their format or symbol (`NO FORMAT FOUND`, a bare
    /// address instead of the call site's module).
    pub printk_unformatted: Findings,
}

/// The text of the `hyp_printk` the relay writes for the workload's CPU_ON of a running CPU,
/// as trace-cmd prints it after `bprint:` (`{}`: the CPU).
pub const PRINTK_REFUSAL: &str = "hyp::psci: CPU_ON refused: CPU {} is already on";

impl ReportScan {
    /// Takes one line of the report's stdout or stderr.
    pub fn line(&mut self, line: &str) {
        if DECODE_FAILURES.iter().any(|m| line.contains(m)) {
            self.decode_failures.add(line);
        }
        if line.contains(WENT_BACKWARDS) {
            self.went_backwards.add(line);
            return;
        }
        let trimmed = line.trim();
        if trimmed.is_empty() {
            return;
        }
        if let Some(n) = trimmed.strip_prefix("cpus=") {
            if let Ok(n) = n.parse() {
                self.header_cpus = Some(n);
                return;
            }
        }
        let unnamed = split_buffer(trimmed).1.trim();
        if unnamed.starts_with("CPU:") && unnamed.ends_with("EVENTS DROPPED]") {
            self.dropped_lines += 1;
            return;
        }
        let Some(event) = parse_event_line(line) else {
            self.unrecognised.add(line);
            return;
        };
        *self.events_per_cpu.entry(event.cpu).or_default() += 1;
        match self.events_by_name.get_mut(event.name) {
            Some(n) => *n += 1,
            None => {
                self.events_by_name.insert(event.name.to_string(), 1);
            }
        }
        if event.name == "selftest" {
            self.selftest_event(event.cpu, event.fields, line);
        }
        if event.name == "bprint" {
            let refusal = PRINTK_REFUSAL.replace("{}", &event.cpu.to_string());
            if event.fields == refusal {
                *self.printk_refusals.entry(event.cpu).or_default() += 1;
            } else if event.fields.contains("NO FORMAT FOUND") || event.fields.starts_with("0x") {
                self.printk_unformatted.add(line);
            }
        }
    }

    fn selftest_event(&mut self, cpu: u32, fields: &str, line: &str) {
        let Some((seq, payload)) = parse_selftest_fields(fields) else {
            self.selftest_malformed.add(line);
            return;
        };
        if payload != selftest_payload(seq) {
            self.selftest_bad_payload.add(line);
        }
        let seen = self.selftest.entry(cpu).or_insert(SelftestSeen {
            count: 0,
            min: seq,
            max: seq,
            last: seq,
        });
        if seen.count > 0 {
            if seq == seen.last {
                self.selftest_duplicate.add(line);
            } else if seq < seen.last {
                self.selftest_decreasing.add(line);
            }
        }
        seen.count += 1;
        seen.min = seen.min.min(seq);
        seen.max = seen.max.max(seq);
        seen.last = seq;
    }

    /// All events in the report.
    pub fn total_events(&self) -> u64 {
        self.events_per_cpu.values().sum()
    }
}

/// A `trace-cmd` run whose output was scanned line by line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScannedRun {
    /// How it ended.
    pub end: RunEnd,
    /// What its stdout and stderr contained.
    pub scan: ReportScan,
}

/// A `trace-cmd` run with small output, kept whole.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CapturedRun {
    /// How it ended.
    pub end: RunEnd,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
}

/// Everything the judgement looks at.
#[derive(Clone, Debug)]
pub struct Evidence<'a> {
    /// How many CPUs the guest ran with.
    pub cpus: u16,
    /// What the guest printed.
    pub guest: &'a GuestTrace,
    /// The size of the file on disk.
    pub file_bytes: u64,
    /// `trace-cmd report -i F`.
    pub report: &'a ScannedRun,
    /// `trace-cmd report -i F --check-events`.
    pub check_events: &'a CapturedRun,
    /// `trace-cmd report -i F --ts-check`.
    pub ts_check: &'a ScannedRun,
    /// `trace-cmd report --stat -i F`.
    pub stat: &'a CapturedRun,
}

/// One rule that did not hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleFailure {
    /// The rule, in a few words.
    pub rule: &'static str,
    /// What was wrong.
    pub detail: String,
    /// Offending lines, if any.
    pub examples: Vec<String>,
}

impl fmt::Display for RuleFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.rule, self.detail)?;
        for example in &self.examples {
            write!(f, "\n      | {example}")?;
        }
        Ok(())
    }
}

/// What a passing check establishes, for its one-line summary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Passed {
    /// Events in the report (equal to the guest's reads).
    pub events: u64,
    /// Selftest events verified.
    pub selftest: u64,
    /// Distinct event names seen.
    pub names: usize,
}

impl fmt::Display for Passed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "trace-cmd decoded all {} events (per-CPU counts match the guest's reads), {} \
             selftest events verified, {} event types, no timestamp went backwards",
            self.events, self.selftest, self.names
        )
    }
}

/// Applies every rule; all failures are returned, not only the first.
pub fn judge(e: &Evidence<'_>) -> Result<Passed, Vec<RuleFailure>> {
    let mut failures = Vec::new();
    let mut fail = |rule, detail: String, examples: &[String]| {
        failures.push(RuleFailure {
            rule,
            detail,
            examples: examples.to_vec(),
        })
    };

    // The guest's own account, and the file it says it wrote.
    let problems = e.guest.problems(e.cpus);
    if !problems.is_empty() {
        fail("guest summary", problems.join("; "), &[]);
    }
    if let Some((path, bytes)) = &e.guest.saved {
        if *bytes != e.file_bytes {
            fail(
                "file size",
                format!(
                    "the guest saved {bytes} bytes to {path} but the file has {}",
                    e.file_bytes
                ),
                &[],
            );
        }
    }

    // trace-cmd report: exit 0, everything decoded, nothing it did not print as an event.
    let report = &e.report.scan;
    if e.report.end != RunEnd::Exited(0) {
        fail(
            "report exit",
            format!("`trace-cmd report` ended with {}", e.report.end),
            &[],
        );
    }
    if !report.decode_failures.is_empty() {
        fail(
            "decoding",
            format!(
                "{} report lines say FAILED TO PARSE / UNKNOWN EVENT / UNKNOWN TYPE",
                report.decode_failures.count
            ),
            &report.decode_failures.examples,
        );
    }
    if !report.unrecognised.is_empty() {
        fail(
            "report lines",
            format!(
                "{} lines are neither events, the cpus= header nor EVENTS DROPPED lines",
                report.unrecognised.count
            ),
            &report.unrecognised.examples,
        );
    }
    if report.header_cpus != Some(u32::from(e.cpus)) {
        fail(
            "report header",
            format!(
                "expected `cpus={}`, found {}",
                e.cpus,
                report
                    .header_cpus
                    .map_or("no cpus= line".to_string(), |n| format!("cpus={n}"))
            ),
            &[],
        );
    }

    // Per-CPU event counts equal the guest's reads (of both buffers).
    let mut mismatches = Vec::new();
    for cpu in 0..u32::from(e.cpus) {
        let in_report = report.events_per_cpu.get(&cpu).copied().unwrap_or(0);
        let host = e.guest.host_cpu(cpu).map_or(0, |c| c.read);
        match e.guest.cpu(cpu) {
            Some(c) if c.read + host == in_report => {}
            Some(c) if e.guest.host_cpus.is_empty() => mismatches.push(format!(
                "CPU {cpu}: report {in_report}, guest read {}",
                c.read
            )),
            Some(c) => mismatches.push(format!(
                "CPU {cpu}: report {in_report}, guest read {} (hypervisor {}, host {host})",
                c.read + host,
                c.read
            )),
            None => {}
        }
    }
    for (cpu, n) in report.events_per_cpu.range(u32::from(e.cpus)..) {
        mismatches.push(format!(
            "CPU {cpu} (not in a {}-CPU run): {n} events",
            e.cpus
        ));
    }
    if !mismatches.is_empty() {
        fail("events per CPU", mismatches.join("; "), &[]);
    }

    // Every selftest event decodes to what was written.
    selftest_rules(e, &mut fail);

    // hyp_printk: the workload's refused CPU_ON is printed as text on every CPU, and no
    // bprint line lacks its format or its call site.
    let silent: Vec<String> = (0..u32::from(e.cpus))
        .filter(|cpu| !report.printk_refusals.contains_key(cpu))
        .map(|cpu| cpu.to_string())
        .collect();
    if !silent.is_empty() {
        fail(
            "hyp_printk",
            format!(
                "no `bprint: {PRINTK_REFUSAL}` line on CPU {}",
                silent.join(", ")
            ),
            &[],
        );
    }
    if !report.printk_unformatted.is_empty() {
        fail(
            "hyp_printk formats",
            format!(
                "{} bprint lines without their format or call site",
                report.printk_unformatted.count
            ),
            &report.printk_unformatted.examples,
        );
    }

    let missing: Vec<&str> = REQUIRED_EVENTS
        .iter()
        .filter(|name| !report.events_by_name.contains_key(**name))
        .copied()
        .collect();
    if !missing.is_empty() {
        let seen: Vec<String> = report
            .events_by_name
            .iter()
            .map(|(name, n)| format!("{name} {n}"))
            .collect();
        fail(
            "required events",
            format!("no {} event; seen: {}", missing.join(", "), seen.join(", ")),
            &[],
        );
    }

    // --check-events, --ts-check, --stat.
    let ce = e.check_events;
    if ce.end != RunEnd::Exited(0) {
        fail(
            "check-events",
            format!("`trace-cmd report --check-events` ended with {}", ce.end),
            &first_lines(&ce.stderr, &ce.stdout),
        );
    }
    let ts = e.ts_check;
    if !ts.scan.went_backwards.is_empty() {
        fail(
            "ts-check",
            format!("{} timestamps went backwards", ts.scan.went_backwards.count),
            &ts.scan.went_backwards.examples,
        );
    }
    if ts.end != RunEnd::Exited(0) {
        fail(
            "ts-check exit",
            format!("`trace-cmd report --ts-check` ended with {}", ts.end),
            &[],
        );
    }
    let stat = e.stat;
    if stat.end != RunEnd::Exited(0) || !stat.stdout.contains("CPU: 0") {
        fail(
            "stat",
            format!(
                "`trace-cmd report --stat` ended with {} and {} `CPU: 0`",
                stat.end,
                if stat.stdout.contains("CPU: 0") {
                    "printed"
                } else {
                    "did not print"
                }
            ),
            &first_lines(&stat.stderr, &stat.stdout),
        );
    }

    if failures.is_empty() {
        Ok(Passed {
            events: report.total_events(),
            selftest: report.selftest.values().map(|s| s.count).sum(),
            names: report.events_by_name.len(),
        })
    } else {
        Err(failures)
    }
}

/// The selftest rules: fields readable, payload matches, seq unique and increasing per CPU,
/// within the range the guest says that CPU wrote.
fn selftest_rules(e: &Evidence<'_>, fail: &mut impl FnMut(&'static str, String, &[String])) {
    let report = &e.report.scan;
    let per_line = [
        (
            &report.selftest_malformed,
            "selftest fields",
            "without readable seq=/payload= fields",
        ),
        (
            &report.selftest_bad_payload,
            "selftest payload",
            "whose payload is not selftest_payload(seq)",
        ),
        (
            &report.selftest_duplicate,
            "selftest seq unique",
            "repeating the previous seq of their CPU",
        ),
        (
            &report.selftest_decreasing,
            "selftest seq order",
            "with a seq below the previous one of their CPU",
        ),
    ];
    for (findings, rule, what) in per_line {
        if !findings.is_empty() {
            fail(
                rule,
                format!("{} selftest events {what}", findings.count),
                &findings.examples,
            );
        }
    }
    let mut out_of_range = Vec::new();
    for (cpu, seen) in &report.selftest {
        match e.guest.selftest_range(*cpu) {
            None => out_of_range.push(format!(
                "CPU {cpu}: {} selftest events but the guest wrote none there",
                seen.count
            )),
            Some(r) if !(r.contains(seen.min) && r.contains(seen.max)) || seen.count > r.count => {
                out_of_range.push(format!(
                    "CPU {cpu}: {} events with seq {}..={} but the guest wrote {} from {}",
                    seen.count, seen.min, seen.max, r.count, r.first
                ))
            }
            Some(_) => {}
        }
    }
    if !out_of_range.is_empty() {
        fail("selftest range", out_of_range.join("; "), &[]);
    }
}

/// The first few non-empty lines of stderr then stdout, as examples.
fn first_lines(stderr: &str, stdout: &str) -> Vec<String> {
    stderr
        .lines()
        .chain(stdout.lines())
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .take(MAX_EXAMPLES)
        .map(str::to_string)
        .collect()
}

/// Renders failures for the console, one rule per paragraph.
pub fn render_failures(failures: &[RuleFailure]) -> String {
    let mut out = String::new();
    for failure in failures {
        // Writing to a String cannot fail.
        let _ = writeln!(out, "  FAILED {failure}");
    }
    out.pop();
    out
}

#[cfg(test)]
mod tests;
