use super::*;

/// Lines exactly as trace-cmd 3.1.6 printed them for a real recording.
const REAL_LINES: [&str; 6] = [
    "cpus=4",
    "           <...>--1    [000]     0.077791: hyp_exit:              ",
    "           <...>--1    [000]     0.078171: host_hcall:           id=0xc6000013 invalid=0",
    "           <...>--1    [001]     0.078619: selftest:             seq=1099511627776 payload=0x4a7c150000005eed",
    "CPU:2 [3650 EVENTS DROPPED]",
    "           <...>--1    [000]     0.077791104: hyp_exit:              ",
];

/// An event line in trace-cmd's layout.
fn event(cpu: u32, ts: &str, name: &str, fields: &str) -> String {
    format!(
        "           <...>--1    [{cpu:03}]     {ts}: {:<22}{fields}",
        format!("{name}:")
    )
}

fn selftest(cpu: u32, seq: u64) -> String {
    let fields = format!("seq={seq} payload={:#x}", selftest_payload(seq));
    event(cpu, "1.000000", "selftest", &fields)
}

const BASE1: u64 = 1 << 40;
const BASE2: u64 = 2 << 40;

/// What the guest printed for a small 3-CPU run.
fn guest_lines() -> Vec<String> {
    [
        "trace: recording 1500 ms on 3 CPUs, 64 KiB per CPU, poll every 10 ms, events all",
        "trace: 251/1500 ms, events read 20, pages 3, lost 4",
        "trace: cpu 0 written 5 read 5 lost 0 pages 1",
        "trace: cpu 1 written 11 read 6 lost 5 pages 2",
        "trace: selftest cpu 1 first 1099511627776 count 8",
        "trace: cpu 2 written 4 read 4 lost 0 pages 1",
        "trace: selftest cpu 2 first 2199023255552 count 2",
        "trace: saved target/ci/trace.dat (20480 bytes)",
    ]
    .map(String::from)
    .to_vec()
}

/// A report consistent with [`guest_lines`].
fn report_lines() -> Vec<String> {
    let mut lines = vec!["cpus=3".to_string()];
    lines.push(event(0, "0.077791", "hyp_enter", " "));
    lines.push(event(
        0,
        "0.077792",
        "host_hcall",
        "id=0xc6000013 invalid=0",
    ));
    lines.push(event(
        0,
        "0.077793",
        "host_smc",
        "id=0x84000000 forwarded=1",
    ));
    lines.push(event(0, "0.077794", "hyp_exit", " "));
    lines.push("CPU:1 [5 EVENTS DROPPED]".to_string());
    lines.push(selftest(1, BASE1 + 5));
    lines.push(selftest(1, BASE1 + 6));
    lines.push(event(1, "1.000001", "hyp_enter", " "));
    lines.push(selftest(1, BASE1 + 7));
    lines.push(event(1, "1.000002", "hyp_exit", " "));
    lines.push(selftest(2, BASE2));
    lines.push(selftest(2, BASE2 + 1));
    lines.push(event(
        2,
        "1.000003",
        "host_hcall",
        "id=0xc60000ff invalid=1",
    ));
    for cpu in 0..3 {
        lines.push(refusal(cpu));
    }
    lines
}

/// The workload's refused CPU_ON as trace-cmd prints its hyp_printk.
fn refusal(cpu: u32) -> String {
    event(
        cpu,
        "1.000004",
        "bprint",
        &PRINTK_REFUSAL.replace("{}", &cpu.to_string()),
    )
}

fn scan(lines: &[String]) -> ReportScan {
    let mut scan = ReportScan::default();
    for line in lines {
        scan.line(line);
    }
    scan
}

fn ok_run(lines: &[String]) -> ScannedRun {
    ScannedRun {
        end: RunEnd::Exited(0),
        scan: scan(lines),
    }
}

fn captured(stdout: &str) -> CapturedRun {
    CapturedRun {
        end: RunEnd::Exited(0),
        stdout: stdout.to_string(),
        stderr: String::new(),
    }
}

const STAT: &str = "cpus=3\n\nKernel buffer statistics:\n\nCPU: 0\nentries: 0\noverrun: 0\n";

/// Everything a passing check sees, to be spoiled one way per test.
struct Fixture {
    guest: GuestTrace,
    file_bytes: u64,
    report: ScannedRun,
    check_events: CapturedRun,
    ts_check: ScannedRun,
    stat: CapturedRun,
}

impl Fixture {
    fn good() -> Self {
        Self::with_report(report_lines())
    }

    fn with_report(lines: Vec<String>) -> Self {
        Self {
            guest: GuestTrace::parse(&guest_lines()),
            file_bytes: 20480,
            report: ok_run(&lines),
            check_events: captured(""),
            ts_check: ok_run(&lines),
            stat: captured(STAT),
        }
    }

    fn judge(&self) -> Result<Passed, Vec<RuleFailure>> {
        judge(&Evidence {
            cpus: 3,
            guest: &self.guest,
            file_bytes: self.file_bytes,
            report: &self.report,
            check_events: &self.check_events,
            ts_check: &self.ts_check,
            stat: &self.stat,
        })
    }

    /// The failed rules' names.
    fn failed_rules(&self) -> Vec<&'static str> {
        match self.judge() {
            Ok(passed) => panic!("expected a failure, got {passed}"),
            Err(failures) => failures.iter().map(|f| f.rule).collect(),
        }
    }

    fn failure(&self, rule: &str) -> RuleFailure {
        let failures = self.judge().expect_err("expected a failure");
        failures
            .iter()
            .find(|f| f.rule == rule)
            .unwrap_or_else(|| panic!("no `{rule}` failure in {failures:?}"))
            .clone()
    }
}

#[test]
fn parses_real_event_lines() {
    let e = parse_event_line(REAL_LINES[2]).expect("event");
    assert_eq!(
        e,
        EventLine {
            buffer: "",
            cpu: 0,
            timestamp: "0.078171",
            name: "host_hcall",
            fields: "id=0xc6000013 invalid=0"
        }
    );
    let e = parse_event_line(REAL_LINES[1]).expect("event without fields");
    assert_eq!((e.name, e.fields), ("hyp_exit", ""));
    let e = parse_event_line(REAL_LINES[5]).expect("nanosecond timestamps (-t)");
    assert_eq!(e.timestamp, "0.077791104");
    assert_eq!(
        parse_selftest_fields(parse_event_line(REAL_LINES[3]).expect("selftest").fields),
        Some((BASE1, 0x4a7c_1500_0000_5eed))
    );
    assert_eq!(selftest_payload(BASE1), 0x4a7c_1500_0000_5eed);
    assert_eq!(parse_event_line(REAL_LINES[0]), None);
    assert_eq!(parse_event_line(REAL_LINES[4]), None);
    // A task name with brackets before the CPU field.
    let e = parse_event_line("  kworker/[1]-9 [003]  5.000001: selftest: seq=1 payload=0x1");
    assert_eq!(e.map(|e| (e.cpu, e.name)), Some((3, "selftest")));
}

/// Lines of a real two-buffer recording (trace-cmd 3.1.6 report of `cargo xtask run`).
const TWO_BUFFER_LINES: [&str; 4] = [
    "hypervisor:            <...>--1    [000]     0.144990752: hyp_exit:              ",
    "                       <...>--1    [000]     0.145770512: workload:             phase=0",
    "hypervisor: CPU:1 [882 EVENTS DROPPED]",
    "           <...>--1    [001]     0.151631728: selftest:             seq=1099511628308 \
     payload=0x15c50a7c86c98549",
];

#[test]
fn lines_of_a_two_buffer_file_name_their_buffer() {
    let e = parse_event_line(TWO_BUFFER_LINES[0]).expect("instance event");
    assert_eq!((e.buffer, e.cpu, e.name), ("hypervisor", 0, "hyp_exit"));
    let e = parse_event_line(TWO_BUFFER_LINES[1]).expect("top-level event");
    assert_eq!((e.buffer, e.name, e.fields), ("", "workload", "phase=0"));
    let mut s = ReportScan::default();
    for line in TWO_BUFFER_LINES {
        s.line(line);
    }
    assert_eq!(s.dropped_lines, 1);
    assert!(s.unrecognised.is_empty(), "{:?}", s.unrecognised);
    assert_eq!(s.events_per_cpu, BTreeMap::from([(0, 2), (1, 1)]));
}

#[test]
fn scan_of_real_lines() {
    let mut s = ReportScan::default();
    for line in REAL_LINES {
        s.line(line);
    }
    assert_eq!(s.header_cpus, Some(4));
    assert_eq!(s.dropped_lines, 1);
    assert_eq!(s.events_per_cpu, BTreeMap::from([(0, 3), (1, 1)]));
    assert_eq!(s.events_by_name.get("hyp_exit"), Some(&2));
    assert!(s.unrecognised.is_empty() && s.decode_failures.is_empty());
    assert!(s.selftest_bad_payload.is_empty() && s.selftest_malformed.is_empty());
    assert_eq!(s.selftest[&1].count, 1);
}

#[test]
fn selftest_payload_fields_read_back() {
    assert_eq!(
        parse_selftest_fields("seq=7 payload=0xabc"),
        Some((7, 0xabc))
    );
    assert_eq!(parse_selftest_fields("seq=7"), None);
    assert_eq!(parse_selftest_fields("seq=x payload=0x1"), None);
    assert_eq!(parse_selftest_fields("seq=7 payload=12"), None);
}

#[test]
fn consistent_outputs_pass() {
    let passed = Fixture::good().judge().expect("passes");
    assert_eq!(
        passed,
        Passed {
            events: 15,
            selftest: 5,
            names: 6
        }
    );
    assert!(passed.to_string().contains("all 15 events"));
}

#[test]
fn decode_failures_fail() {
    let mut lines = report_lines();
    lines[2] = event(
        0,
        "0.077792",
        "host_hcall",
        "[FAILED TO PARSE] id=0xc6000013",
    );
    lines.push(event(2, "1.5", "[UNKNOWN EVENT]", ""));
    let f = Fixture::with_report(lines);
    let failure = f.failure("decoding");
    assert!(failure.detail.starts_with("2 report lines"), "{failure}");
    assert!(failure.examples[0].contains("FAILED TO PARSE"));
    // The second line is not shaped like an event either.
    assert!(f.failed_rules().contains(&"report lines"));
}

#[test]
fn failing_report_exit_fails() {
    let mut f = Fixture::good();
    f.report.end = RunEnd::Exited(1);
    assert_eq!(f.failed_rules(), ["report exit"]);
}

#[test]
fn check_events_failure_is_reported_with_its_output() {
    let mut f = Fixture::good();
    f.check_events = CapturedRun {
        end: RunEnd::Exited(255),
        stdout: String::new(),
        stderr: "  failed to parse event selftest\n".to_string(),
    };
    let failure = f.failure("check-events");
    assert!(failure.detail.contains("exit status 255"));
    assert_eq!(failure.examples, ["failed to parse event selftest"]);
}

#[test]
fn backwards_timestamps_on_stderr_fail() {
    let mut f = Fixture::good();
    // As trace-cmd 3.1.6 prints it, on stderr, with exit status 0.
    f.ts_check
        .scan
        .line("  WARNING: Record on cpu 1 went backwards: 79107328 to 29107440 delta: -49999888");
    let failure = f.failure("ts-check");
    assert!(failure.detail.starts_with("1 timestamps"));
    assert!(failure.examples[0].starts_with("WARNING: Record on cpu 1"));
    assert_eq!(f.failed_rules(), ["ts-check"]);
}

#[test]
fn per_cpu_counts_must_match_reads() {
    let mut lines = report_lines();
    lines.retain(|l| !l.contains("[002]") || l.contains("selftest"));
    let failure = Fixture::with_report(lines).failure("events per CPU");
    assert_eq!(failure.detail, "CPU 2: report 2, guest read 4");

    let mut lines = report_lines();
    lines.push(event(3, "2.0", "hyp_enter", " "));
    let f = Fixture::with_report(lines);
    let failure = f.failure("events per CPU");
    assert!(
        failure
            .detail
            .contains("CPU 3 (not in a 3-CPU run): 1 events"),
        "{failure}"
    );
}

#[test]
fn dropped_and_header_lines_are_not_events() {
    let mut lines = report_lines();
    lines.push("CPU:2 [EVENTS DROPPED]".to_string());
    lines.push("CPU:0 [123 EVENTS DROPPED]".to_string());
    let f = Fixture::with_report(lines);
    assert!(f.judge().is_ok());
    assert_eq!(f.report.scan.dropped_lines, 3);
}

#[test]
fn unexpected_lines_and_header_fail() {
    let mut lines = report_lines();
    lines[0] = "cpus=4".to_string();
    lines.push("something trace-cmd never printed".to_string());
    let f = Fixture::with_report(lines);
    let mut rules = f.failed_rules();
    rules.sort_unstable();
    assert_eq!(rules, ["report header", "report lines"]);
    assert_eq!(
        f.failure("report lines").examples,
        ["something trace-cmd never printed"]
    );
}

#[test]
fn wrong_selftest_payload_fails() {
    let mut lines = report_lines();
    let seq = BASE1 + 6;
    let bad = selftest_payload(seq) ^ 1;
    lines[7] = event(1, "1.0", "selftest", &format!("seq={seq} payload={bad:#x}"));
    let failure = Fixture::with_report(lines.clone()).failure("selftest payload");
    assert_eq!(failure.examples, [lines[7].trim()]);
}

#[test]
fn duplicate_and_decreasing_seqs_fail() {
    let mut lines = report_lines();
    lines[7] = selftest(1, BASE1 + 5);
    let f = Fixture::with_report(lines);
    assert_eq!(f.failed_rules(), ["selftest seq unique"]);

    let mut lines = report_lines();
    lines.swap(6, 7);
    let f = Fixture::with_report(lines);
    assert_eq!(f.failed_rules(), ["selftest seq order"]);
}

#[test]
fn seqs_of_another_cpu_or_outside_the_range_fail() {
    // CPU 0 wrote no selftest events; CPU 2's range is 2 long.
    let mut lines = report_lines();
    lines[1] = selftest(0, BASE1 + 1);
    lines[12] = selftest(2, BASE2 + 2);
    let failure = Fixture::with_report(lines).failure("selftest range");
    assert!(
        failure
            .detail
            .contains("CPU 0: 1 selftest events but the guest wrote none"),
        "{failure}"
    );
    assert!(
        failure.detail.contains("CPU 2: 2 events with seq"),
        "{failure}"
    );
}

#[test]
fn malformed_selftest_fields_fail() {
    let mut lines = report_lines();
    lines[6] = event(1, "1.0", "selftest", "seq=12");
    assert!(Fixture::with_report(lines)
        .failed_rules()
        .contains(&"selftest fields"));
}

#[test]
fn every_required_event_must_appear() {
    let mut lines = report_lines();
    lines[3] = event(0, "0.077793", "host_hcall", "id=0xc6000001 invalid=0");
    let failure = Fixture::with_report(lines).failure("required events");
    assert!(
        failure.detail.starts_with("no host_smc event; seen:"),
        "{failure}"
    );
    assert!(failure.detail.contains("host_hcall 3"), "{failure}");
}

#[test]
fn stat_must_exit_zero_and_show_cpu_0() {
    let mut f = Fixture::good();
    f.stat.stdout = "cpus=3\n".to_string();
    assert_eq!(f.failed_rules(), ["stat"]);
    let mut f = Fixture::good();
    f.stat.end = RunEnd::Killed { signal: Some(11) };
    assert!(f.failure("stat").detail.contains("killed by signal 11"));
}

#[test]
fn guest_summary_and_file_size_are_checked() {
    let mut f = Fixture::good();
    f.file_bytes = 4096;
    assert_eq!(f.failed_rules(), ["file size"]);

    let mut f = Fixture::good();
    f.guest.cpus[1].lost = 4;
    f.guest.saved = None;
    let failure = f.failure("guest summary");
    assert!(
        failure.detail.contains("read 6 + lost 4 != written 11"),
        "{failure}"
    );
    assert!(failure.detail.contains("no `trace: saved"), "{failure}");
}

#[test]
fn failures_render_with_examples() {
    let failures = [RuleFailure {
        rule: "decoding",
        detail: "1 report lines say FAILED TO PARSE".into(),
        examples: vec!["x [FAILED TO PARSE]".into()],
    }];
    assert_eq!(
        render_failures(&failures),
        "  FAILED decoding: 1 report lines say FAILED TO PARSE\n      | x [FAILED TO PARSE]"
    );
}

#[test]
fn printk_text_is_required_on_every_cpu_and_formatted() {
    let mut lines = report_lines();
    lines.retain(|l| *l != refusal(1));
    lines.push(event(
        1,
        "1.000004",
        "selftest",
        &format!(
            "seq={} payload={:#x}",
            BASE1 + 8,
            selftest_payload(BASE1 + 8)
        ),
    ));
    let fails = Fixture::with_report(lines).judge().unwrap_err();
    assert!(
        fails
            .iter()
            .any(|f| f.rule == "hyp_printk" && f.detail.contains("CPU 1")),
        "{fails:?}"
    );
    let mut lines = report_lines();
    lines.retain(|l| *l != refusal(2));
    lines.push(event(
        2,
        "1.000005",
        "bprint",
        "0x40216940: CPU_ON refused: CPU 2 is already on",
    ));
    let fails = Fixture::with_report(lines.clone()).judge().unwrap_err();
    assert!(
        fails.iter().any(|f| f.rule == "hyp_printk formats"),
        "{fails:?}"
    );
    lines.pop();
    lines.push(event(
        2,
        "1.000005",
        "bprint",
        "hyp::psci: (NO FORMAT FOUND at 40216940)",
    ));
    let fails = Fixture::with_report(lines).judge().unwrap_err();
    assert!(
        fails.iter().any(|f| f.rule == "hyp_printk formats"),
        "{fails:?}"
    );
}
