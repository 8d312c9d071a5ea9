//! What the guest's `run` mode says about the trace it recorded, parsed from its console.
//!
//! The guest (`host-shim/src/record.rs`) prints, among progress lines:
//! - `trace: cpu <i> written <W> read <R> lost <L> pages <P>`, one line per CPU at the end
//!   (the hypervisor's buffer), and `trace: host cpu <i> ...` the same for the host's own
//!   buffer when it recorded its events;
//! - `trace: selftest cpu <i> first <S> count <C>` for each CPU that wrote selftest events
//!   (sequence numbers `S..S+C` were written there; some may have been lost);
//! - `trace: recorded <MS> ms`: how long the recording really ran (less than asked when the
//!   host's page store filled up, or when stopped);
//! - `trace: stopped on the console after <MS> ms` when the stop byte (Ctrl-C in `cargo
//!   xtask run`) ended it ([`host_shim::harness::STOPPED_LINE`]);
//! - `trace: saved <PATH> (<B> bytes)` once the file is written.
//!
//! Pure: lines in, [`GuestTrace`] out, so every rule is unit-tested with fake lines.

use std::fmt::Write as _;

/// The prefix of every line of the guest's recorder.
const PREFIX: &str = "trace:";

/// One CPU's accounting, as the guest printed it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuCounts {
    /// The CPU number (the hypervisor's and host's shared numbering).
    pub cpu: u32,
    /// Events the hypervisor wrote on that CPU.
    pub written: u64,
    /// Events the host read and stored in the file.
    pub read: u64,
    /// Events lost to overwrite before the host read them.
    pub lost: u64,
    /// Pages of that CPU in the file.
    pub pages: u64,
}

impl CpuCounts {
    /// Whether `read + lost == written` (every event written is accounted for).
    pub fn balanced(&self) -> bool {
        self.read.checked_add(self.lost) == Some(self.written)
    }
}

/// The selftest sequence numbers one CPU wrote: `first..first + count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SelftestRange {
    /// The CPU that wrote them.
    pub cpu: u32,
    /// The first sequence number.
    pub first: u64,
    /// How many were written.
    pub count: u64,
}

impl SelftestRange {
    /// Whether `seq` is one of the numbers this CPU wrote.
    pub fn contains(&self, seq: u64) -> bool {
        seq >= self.first && seq - self.first < self.count
    }
}

/// Everything the guest said about its recording.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GuestTrace {
    /// Per-CPU accounting of the hypervisor's buffer, in the order printed.
    pub cpus: Vec<CpuCounts>,
    /// Per-CPU accounting of the host's own buffer (empty when it recorded none).
    pub host_cpus: Vec<CpuCounts>,
    /// Selftest ranges, in the order printed.
    pub selftest: Vec<SelftestRange>,
    /// `(path, bytes)` of the `trace: saved` line, if any.
    pub saved: Option<(String, u64)>,
    /// The `trace: recorded N ms` line's N, if printed.
    pub recorded_ms: Option<u64>,
    /// When the stop byte ended the recording: after how many ms.
    pub stopped_ms: Option<u64>,
    /// The `trace: N hyp_printk formats` line's N: call sites whose formats the file holds.
    pub printk_formats: Option<u64>,
    /// Other `trace:` lines that are not progress reports (e.g. the page store filling up,
    /// `trace: FAILED: ...`), trimmed.
    pub notes: Vec<String>,
}

impl GuestTrace {
    /// Parses the console lines (any others are ignored).
    pub fn parse<S: AsRef<str>>(lines: &[S]) -> Self {
        let mut trace = Self::default();
        for line in lines {
            let Some(rest) = recorder_text(line.as_ref()) else {
                continue;
            };
            if let Some(counts) = parse_cpu(rest) {
                trace.cpus.push(counts);
            } else if let Some(counts) = rest.strip_prefix("host ").and_then(parse_cpu) {
                trace.host_cpus.push(counts);
            } else if let Some(range) = parse_selftest(rest) {
                trace.selftest.push(range);
            } else if let Some(saved) = parse_saved(rest) {
                trace.saved = Some(saved);
            } else if let Some(ms) = rest
                .strip_prefix(stopped_text())
                .and_then(|r| r.strip_suffix(" ms"))
                .and_then(|n| n.parse().ok())
            {
                trace.stopped_ms = Some(ms);
            } else if let Some(ms) = rest
                .strip_prefix("recorded ")
                .and_then(|r| r.strip_suffix(" ms"))
                .and_then(|n| n.parse().ok())
            {
                trace.recorded_ms = Some(ms);
            } else if let Some(n) = rest
                .strip_suffix(" hyp_printk formats")
                .and_then(|n| n.parse().ok())
            {
                trace.printk_formats = Some(n);
            } else if !is_progress(rest) && !rest.starts_with("recording ") {
                trace.notes.push(format!("{PREFIX} {rest}"));
            }
        }
        trace
    }

    /// The accounting of CPU `cpu`, if printed.
    pub fn cpu(&self, cpu: u32) -> Option<&CpuCounts> {
        self.cpus.iter().find(|c| c.cpu == cpu)
    }

    /// The accounting of CPU `cpu` in the host's own buffer, if printed.
    pub fn host_cpu(&self, cpu: u32) -> Option<&CpuCounts> {
        self.host_cpus.iter().find(|c| c.cpu == cpu)
    }

    /// The selftest range of CPU `cpu`, if printed.
    pub fn selftest_range(&self, cpu: u32) -> Option<&SelftestRange> {
        self.selftest.iter().find(|r| r.cpu == cpu)
    }

    /// Problems with the guest's own report for a run on `cpus` CPUs: a missing or duplicate
    /// CPU line, `read + lost != written`, no `saved` line. Empty when it is complete.
    pub fn problems(&self, cpus: u16) -> Vec<String> {
        let mut problems = Vec::new();
        for cpu in 0..u32::from(cpus) {
            match self.cpus.iter().filter(|c| c.cpu == cpu).count() {
                0 => problems.push(format!("no `trace: cpu {cpu} ...` line")),
                1 => {}
                n => problems.push(format!("{n} `trace: cpu {cpu} ...` lines")),
            }
        }
        for c in self.cpus.iter().filter(|c| !c.balanced()) {
            problems.push(format!(
                "CPU {}: read {} + lost {} != written {}",
                c.cpu, c.read, c.lost, c.written
            ));
        }
        if !self.host_cpus.is_empty() {
            for cpu in 0..u32::from(cpus) {
                match self.host_cpus.iter().filter(|c| c.cpu == cpu).count() {
                    1 => {}
                    n => problems.push(format!("{n} `trace: host cpu {cpu} ...` lines")),
                }
            }
        }
        for c in self.host_cpus.iter().filter(|c| !c.balanced()) {
            problems.push(format!(
                "host CPU {}: read {} + lost {} != written {}",
                c.cpu, c.read, c.lost, c.written
            ));
        }
        if let Some(c) = self.cpus.iter().find(|c| c.cpu >= u32::from(cpus)) {
            problems.push(format!("a line for CPU {} of a {cpus}-CPU run", c.cpu));
        }
        if self.saved.is_none() {
            problems.push("no `trace: saved <PATH> (<B> bytes)` line".to_string());
        }
        problems
    }

    /// The per-CPU table: written, read, lost, pages, and a total line; then the same for
    /// the host's own buffer when it recorded.
    pub fn table(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = writeln!(
            out,
            "  {:>5} {:>12} {:>12} {:>12} {:>8}",
            "CPU", "written", "read", "lost", "pages"
        );
        rows_with_total(&mut out, &self.cpus);
        if !self.host_cpus.is_empty() {
            let _ = writeln!(out, "  host's own buffer:");
            rows_with_total(&mut out, &self.host_cpus);
        }
        out.pop();
        out
    }
}

/// One row per CPU of `counts`, then their total.
fn rows_with_total(out: &mut String, counts: &[CpuCounts]) {
    let row = |out: &mut String, label: &str, [w, r, l, p]: [u64; 4]| {
        // Writing to a String cannot fail.
        let _ = writeln!(out, "  {label:>5} {w:>12} {r:>12} {l:>12} {p:>8}");
    };
    let mut total = [0u64; 4];
    for c in counts {
        let values = [c.written, c.read, c.lost, c.pages];
        row(out, &c.cpu.to_string(), values);
        for (t, v) in total.iter_mut().zip(values) {
            *t = t.saturating_add(v);
        }
    }
    row(out, "total", total);
}

/// Whether the summary `cargo xtask run` prints after the recording repeats this console
/// line (a CPU's accounting, a selftest range, the printk format count, the saved file): such
/// lines are not echoed live, so each figure is printed once. They are still kept, parsed
/// and saved with the console of a failed run.
pub fn summary_repeats(line: &str) -> bool {
    let Some(rest) = recorder_text(line) else {
        return false;
    };
    parse_cpu(rest).is_some()
        || rest.strip_prefix("host ").and_then(parse_cpu).is_some()
        || parse_selftest(rest).is_some()
        || parse_saved(rest).is_some()
        || rest
            .strip_suffix(" hyp_printk formats")
            .is_some_and(is_number)
}

/// [`host_shim::harness::STOPPED_LINE`] after the recorder's prefix.
fn stopped_text() -> &'static str {
    let line = host_shim::harness::STOPPED_LINE;
    line.strip_prefix(PREFIX).unwrap_or(line).trim_start()
}

/// The text after `trace:` (trimmed), for lines of the recorder.
fn recorder_text(line: &str) -> Option<&str> {
    line.trim().strip_prefix(PREFIX).map(str::trim)
}

/// `<elapsed>/<duration> ms, events read ...`.
/// A progress line: `N/M ms, ...`, or `N ms, ...` for a recording until stopped.
fn is_progress(rest: &str) -> bool {
    rest.split_once(' ').is_some_and(|(first, after)| {
        after.starts_with("ms")
            && match first.split_once('/') {
                Some((a, b)) => is_number(a) && is_number(b),
                None => is_number(first),
            }
    })
}

fn is_number(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())
}

/// `cpu <i> written <W> read <R> lost <L> pages <P>`.
fn parse_cpu(rest: &str) -> Option<CpuCounts> {
    let words: Vec<&str> = rest.split_whitespace().collect();
    let ["cpu", cpu, "written", w, "read", r, "lost", l, "pages", p] = words[..] else {
        return None;
    };
    Some(CpuCounts {
        cpu: cpu.parse().ok()?,
        written: w.parse().ok()?,
        read: r.parse().ok()?,
        lost: l.parse().ok()?,
        pages: p.parse().ok()?,
    })
}

/// `selftest cpu <i> first <S> count <C>`.
fn parse_selftest(rest: &str) -> Option<SelftestRange> {
    let words: Vec<&str> = rest.split_whitespace().collect();
    let ["selftest", "cpu", cpu, "first", first, "count", count] = words[..] else {
        return None;
    };
    Some(SelftestRange {
        cpu: cpu.parse().ok()?,
        first: first.parse().ok()?,
        count: count.parse().ok()?,
    })
}

/// `saved <PATH> (<B> bytes)`; the path may not contain spaces (guest words cannot).
fn parse_saved(rest: &str) -> Option<(String, u64)> {
    let rest = rest.strip_prefix("saved ")?;
    let (path, size) = rest.rsplit_once(" (")?;
    let bytes = size.strip_suffix(" bytes)")?.parse().ok()?;
    Some((path.trim().to_string(), bytes))
}

/// How a recording was run, for [`advice`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunShape {
    /// `--duration`, ms.
    pub duration_ms: u64,
    /// `--period-ms`.
    pub period_ms: u64,
    /// `--buffer-size-kb`.
    pub buffer_kb: u64,
}

/// Loss above this share of a CPU's events earns advice.
pub const LOSS_ADVICE_PERCENT: u64 = 10;

/// Record data per page (the ftrace page's data area), to estimate bytes per event.
const PAGE_DATA: u64 = hyptrace_abi::page::DATA_SIZE as u64;

/// Warnings and advice on a finished recording: nothing recorded; a poll period longer than
/// the recording; and for every CPU of the hypervisor's buffer that lost more than
/// [`LOSS_ADVICE_PERCENT`] % of its events, its measured rate and the buffer size or poll
/// period that would have held one period's events twice over at that rate, measured over
/// the time it really recorded (an estimate:
/// the host must also keep up with the rate, which docs/performance.md part (d) measures).
pub fn advice(trace: &GuestTrace, shape: RunShape) -> Vec<String> {
    let mut out = Vec::new();
    let read: u64 = trace.cpus.iter().map(|c| c.read).sum();
    if read == 0 {
        out.push(
            "warning: no event was recorded: check --events, and that the buffer was enabled \
             (the guest's lines above say why)"
                .to_string(),
        );
    }
    // `--duration 0` runs until Ctrl-C: compare with how long it did run.
    let duration_ms = match shape.duration_ms {
        0 => trace.recorded_ms.unwrap_or(u64::MAX),
        ms => ms,
    };
    if shape.period_ms > duration_ms {
        out.push(format!(
            "warning: the host polls every {} ms but the recording lasts {} ms: only the final \
             drain read anything; choose --period-ms below the duration",
            shape.period_ms, duration_ms
        ));
    }
    // The time it really recorded (less than asked when the page store filled).
    let secs = trace.recorded_ms.unwrap_or(shape.duration_ms).max(1) as f64 / 1000.0;
    for c in &trace.cpus {
        if c.written == 0 || c.lost * 100 <= c.written * LOSS_ADVICE_PERCENT {
            continue;
        }
        let rate = c.written as f64 / secs;
        // Bytes per event as stored (headers, time extends, padding), from the pages read.
        let per_event = if c.read > 0 && c.pages > 0 {
            (c.pages * PAGE_DATA) as f64 / c.read as f64
        } else {
            24.0
        };
        let period = shape.period_ms as f64 / 1000.0;
        let need_kb = (2.0 * rate * period * per_event / 1024.0).ceil() as u64;
        let need_kb = need_kb.max(shape.buffer_kb * 2).next_power_of_two();
        let buffer = (shape.buffer_kb * 1024) as f64;
        let period_ms = (buffer / (2.0 * rate * per_event) * 1000.0).floor() as u64;
        let fills_ms = buffer / (rate * per_event) * 1000.0;
        let period_hint = if period_ms >= 1 && period_ms < shape.period_ms {
            format!(" or --period-ms {period_ms}")
        } else {
            String::new()
        };
        let late = if fills_ms > shape.period_ms as f64 {
            " (longer than the poll period: the polls came late, as the drain takes time and \
             under TCG the vCPUs share the host's cores)"
        } else {
            ""
        };
        out.push(format!(
            "loss: CPU {} lost {:.1} % of its events: it wrote {:.0} events/s (about {:.0} bytes \
             each), which fill its {} KiB buffer in {:.1} ms{late}; the host polls every {} ms. \
             To keep them try --buffer-size-kb {need_kb} (two poll periods at that rate){}; \
             the host must also drain that fast",
            c.cpu,
            c.lost as f64 * 100.0 / c.written as f64,
            rate,
            per_event,
            shape.buffer_kb,
            fills_ms,
            shape.period_ms,
            period_hint
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(cpu: u32, written: u64, read: u64, lost: u64, pages: u64) -> CpuCounts {
        CpuCounts {
            cpu,
            written,
            read,
            lost,
            pages,
        }
    }

    #[test]
    fn advice_on_loss_names_rate_buffer_and_period() {
        let trace = GuestTrace {
            cpus: vec![
                counts(0, 1000, 995, 5, 5),
                counts(1, 2_000_000, 540_000, 1_460_000, 2700),
                counts(2, 100_000, 80_000, 20_000, 400),
            ],
            ..GuestTrace::default()
        };
        let shape = RunShape {
            duration_ms: 2000,
            period_ms: 10,
            buffer_kb: 64,
        };
        let lines = advice(&trace, shape);
        assert_eq!(lines.len(), 2, "CPU 0 lost 0.5 %: no advice; {lines:?}");
        // CPU 2: 50,000 events/s fill 64 KiB in 64.8 ms, far more than the 10 ms period:
        // its polls came late, and a shorter period is no advice.
        assert!(
            lines[1].contains("in 64.8 ms (longer than the poll period"),
            "{}",
            lines[1]
        );
        assert!(!lines[1].contains("--period-ms"), "{}", lines[1]);
        let l = &lines[0];
        assert!(l.starts_with("loss: CPU 1 lost 73.0 %"), "{l}");
        // 1e6 events/s of 2700 * 4048 / 540000 = 20.24 bytes: one 10 ms period is 198 KiB,
        // twice that rounds up to 512 KiB; 64 KiB holds 3.2 ms, half of it 1 ms.
        assert!(l.contains("1000000 events/s (about 20 bytes each)"), "{l}");
        assert!(
            l.contains("64 KiB buffer in 3.2 ms; the host polls every 10 ms"),
            "{l}"
        );
        assert!(
            l.contains(
                "try --buffer-size-kb 512 (two poll periods at that rate) or --period-ms 1;"
            ),
            "{l}"
        );
    }

    #[test]
    fn the_rate_is_over_the_time_really_recorded() {
        let trace = GuestTrace::parse(&[
            "trace: cpu 0 written 2000000 read 540000 lost 1460000 pages 2700",
            "trace: the host's page store is full: stopping early",
            "trace: recorded 1000 ms",
        ]);
        assert_eq!(trace.recorded_ms, Some(1000));
        assert_eq!(
            trace.notes.len(),
            1,
            "the recorded line is no note: {:?}",
            trace.notes
        );
        let shape = RunShape {
            duration_ms: 300_000,
            period_ms: 10,
            buffer_kb: 64,
        };
        let lines = advice(&trace, shape);
        assert!(lines[0].contains("2000000 events/s"), "{}", lines[0]);
    }

    #[test]
    fn advice_warns_of_an_empty_recording_and_a_long_period() {
        let trace = GuestTrace {
            cpus: vec![counts(0, 0, 0, 0, 0)],
            ..GuestTrace::default()
        };
        let shape = RunShape {
            duration_ms: 5,
            period_ms: 10,
            buffer_kb: 64,
        };
        let lines = advice(&trace, shape);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].starts_with("warning: no event was recorded"));
        assert!(lines[1].contains("polls every 10 ms but the recording lasts 5 ms"));
    }

    /// What a real 1.5 s run on 4 CPUs printed (trimmed to the relevant lines).
    pub(crate) const REAL_RUN: [&str; 14] = [
        "host: CPU 3 (MPIDR 0x3) is up at EL1",
        "trace: recording 1500 ms on 4 CPUs, 64 KiB per CPU, poll every 10 ms, events all",
        "trace: 251/1500 ms, events read 202240, pages 1228, lost 485215",
        "trace: 1258/1500 ms, events read 1065816, pages 6382, lost 2312131",
        "trace: cpu 0 written 17490 read 17490 lost 0 pages 162",
        "trace: cpu 1 written 1366400 read 431563 lost 934837 pages 2605",
        "trace: selftest cpu 1 first 1099511627776 count 874496",
        "trace: cpu 2 written 1346100 read 418274 lost 927826 pages 2458",
        "trace: selftest cpu 2 first 2199023255552 count 861504",
        "trace: cpu 3 written 1309500 read 401303 lost 908197 pages 2267",
        "trace: selftest cpu 3 first 3298534883328 count 838080",
        "trace: saved target/xt-exp/trace.dat (30691328 bytes)",
        "xtask: QEMU exited 0 after 1.9 s (20 console lines)",
        "",
    ];

    #[test]
    fn parses_a_real_run() {
        let t = GuestTrace::parse(&REAL_RUN);
        assert_eq!(t.cpus.len(), 4);
        assert_eq!(
            t.cpu(1),
            Some(&CpuCounts {
                cpu: 1,
                written: 1_366_400,
                read: 431_563,
                lost: 934_837,
                pages: 2605
            })
        );
        assert_eq!(t.selftest.len(), 3);
        assert_eq!(t.selftest_range(0), None);
        let r2 = t.selftest_range(2).copied().expect("cpu 2 range");
        assert_eq!((r2.first, r2.count), (2 << 40, 861_504));
        assert!(r2.contains(2 << 40) && r2.contains((2 << 40) + 861_503));
        assert!(!r2.contains((2 << 40) + 861_504) && !r2.contains((2 << 40) - 1));
        assert_eq!(
            t.saved,
            Some(("target/xt-exp/trace.dat".to_string(), 30_691_328))
        );
        assert!(t.notes.is_empty(), "{:?}", t.notes);
        assert!(t.problems(4).is_empty(), "{:?}", t.problems(4));
    }

    #[test]
    fn the_lines_the_summary_repeats_are_known() {
        for line in [
            "trace: cpu 1 written 10 read 7 lost 3 pages 1",
            "trace: host cpu 0 written 4012 read 4012 lost 0 pages 33",
            "trace: selftest cpu 2 first 2199023255552 count 108544",
            "trace: 8 hyp_printk formats",
            "trace: saved /tmp/p.dat.partial (4304896 bytes)",
        ] {
            assert!(summary_repeats(line), "{line}");
        }
        for line in [
            "trace: recorded 311 ms",
            "trace: 287/300 ms, events read 171265, pages 629, lost 402540",
            "trace: FAILED: load_tracing: bad pack",
            "host: CPU 1 (MPIDR 0x1) is up at EL1",
        ] {
            assert!(!summary_repeats(line), "{line}");
        }
    }

    #[test]
    fn a_recording_stopped_on_the_console_says_when() {
        let lines = [
            "trace: recording until stopped on 4 CPUs, 64 KiB per CPU, poll every 10 ms, \
             events all, host events on",
            "trace: 250 ms, events read 9, pages 1, lost 0",
            &format!("{}1234 ms", host_shim::harness::STOPPED_LINE),
            "trace: recorded 1234 ms",
        ];
        let t = GuestTrace::parse(&lines);
        assert_eq!(t.stopped_ms, Some(1234));
        assert_eq!(t.recorded_ms, Some(1234));
        assert!(
            t.notes.is_empty(),
            "progress lines are no notes: {:?}",
            t.notes
        );
        assert_eq!(GuestTrace::parse(&REAL_RUN).stopped_ms, None);
        // `--duration 0`: the period is compared with the time it did record.
        let shape = |ms| RunShape {
            duration_ms: 0,
            period_ms: ms,
            buffer_kb: 64,
        };
        let long_period = |a: &[String]| a.iter().any(|l| l.contains("the host polls every"));
        assert!(!long_period(&advice(&t, shape(10))));
        assert!(long_period(&advice(&t, shape(2000))));
    }

    #[test]
    fn problems_name_what_is_missing_or_unbalanced() {
        let lines = [
            "trace: cpu 0 written 10 read 7 lost 2 pages 1",
            "trace: cpu 0 written 10 read 8 lost 2 pages 1",
            "trace: cpu 5 written 1 read 1 lost 0 pages 1",
        ];
        let problems = GuestTrace::parse(&lines).problems(2);
        let text = problems.join(" | ");
        assert!(text.contains("2 `trace: cpu 0 ...` lines"), "{text}");
        assert!(text.contains("no `trace: cpu 1 ...` line"), "{text}");
        assert!(text.contains("read 7 + lost 2 != written 10"), "{text}");
        assert!(text.contains("CPU 5 of a 2-CPU run"), "{text}");
        assert!(text.contains("no `trace: saved"), "{text}");
    }

    #[test]
    fn other_recorder_lines_are_notes() {
        let lines = [
            "trace: the host's page store is full: stopping early",
            "  trace: FAILED: drain: Busy  ",
            "trace: 10/20 ms, events read 1, pages 1, lost 0",
            "host: trace: not ours",
            "trace: 3 hyp_printk formats",
            "trace: many hyp_printk formats",
        ];
        let t = GuestTrace::parse(&lines);
        assert_eq!(t.printk_formats, Some(3));
        assert_eq!(
            t.notes,
            [
                "trace: the host's page store is full: stopping early",
                "trace: FAILED: drain: Busy",
                "trace: many hyp_printk formats"
            ]
        );
    }

    #[test]
    fn malformed_lines_are_not_counts() {
        for line in [
            "trace: cpu x written 1 read 1 lost 0 pages 1",
            "trace: cpu 0 written 1 read 1 lost 0",
            "trace: cpu 0 written 1 read 1 lost 0 pages 1 extra",
            "trace: selftest cpu 1 first 2",
            "trace: saved x.dat (12 byte)",
        ] {
            let t = GuestTrace::parse(&[line]);
            assert!(t.cpus.is_empty() && t.selftest.is_empty() && t.saved.is_none());
            assert_eq!(t.notes.len(), 1, "{line}");
        }
    }

    #[test]
    fn host_lines_are_the_host_buffers_accounting() {
        let mut lines = REAL_RUN.to_vec();
        lines.push("trace: host cpu 0 written 18736 read 18736 lost 0 pages 274");
        lines.push("trace: host cpu 1 written 129052 read 120643 lost 8409 pages 1243");
        let t = GuestTrace::parse(&lines);
        assert!(t.notes.is_empty(), "{:?}", t.notes);
        assert_eq!(t.host_cpu(1).map(|c| c.read), Some(120_643));
        assert_eq!(t.cpu(1).map(|c| c.read), Some(431_563));
        let problems = t.problems(4).join(" | ");
        assert!(
            problems.contains("0 `trace: host cpu 2 ...` lines"),
            "{problems}"
        );
        lines.push("trace: host cpu 2 written 5 read 3 lost 1 pages 1");
        let problems = GuestTrace::parse(&lines).problems(3).join(" | ");
        assert!(
            problems.contains("host CPU 2: read 3 + lost 1 != written 5"),
            "{problems}"
        );
        let table = GuestTrace::parse(&lines).table();
        assert!(table.contains("host's own buffer"), "{table}");
    }

    #[test]
    fn table_has_a_total() {
        let t = GuestTrace::parse(&REAL_RUN);
        let table = t.table();
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 6, "{table}");
        assert!(lines[0].contains("written") && lines[0].contains("pages"));
        assert_eq!(
            lines[1].split_whitespace().collect::<Vec<_>>(),
            ["0", "17490", "17490", "0", "162"]
        );
        assert_eq!(
            lines[5].split_whitespace().collect::<Vec<_>>(),
            ["total", "4039490", "1268630", "2770860", "7492"]
        );
    }
}
