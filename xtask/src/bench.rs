//! `cargo xtask bench [TARGET]`: benchmarks on the development machine.
//!
//! Without a target, the suite (docs/performance.md): one table per part, every figure from
//! this run, and the same figures in `<target>/bench/results.json`. Part (a) is the native
//! writer against the floor and LTTng-UST ([`native`]); the other parts of issue #6
//! (in-QEMU hypercall overhead, drain rate and loss, scaling) are to be added as further
//! sections: a function returning a [`Section`] (its table lines and its JSON object),
//! called from [`suite`].
//!
//! `cargo xtask bench ring` runs the ring bench alone (writer with a swapping reader).

use std::fmt::Write as _;
use std::fs;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::bench_json::Json;
use crate::bench_lttng::{self, DriverFigures, Layout, LAYOUTS};
use crate::cli::{BenchArgs, BenchTarget};
use crate::workspace;

/// Alternating rounds per figure.
pub const ROUNDS: usize = 7;

/// Events per timed loop.
pub const EVENTS: u64 = 2_000_000;

/// Payload sizes of part (a), bytes.
pub const PAYLOADS: [usize; 3] = [4, 16, 64];

/// The payload the goals are stated for.
const GOAL_PAYLOAD: usize = 16;

/// Goal: hyptrace's writer at most this many times the floor.
const GOAL_FLOOR_RATIO: f64 = 1.5;

/// Goal of issue #15: the trap path's events (batches of three, `RingBuffer::batch`) at most
/// this many times the floor, on whatever x86 CPU the bench runs on.
const GOAL_BATCH_RATIO: f64 = 1.25;

/// Goal: LTTng-UST at least this many times slower than hyptrace's writer.
const GOAL_LTTNG_RATIO: f64 = 4.0;

/// Runs the selected benchmark, or the suite.
pub fn run(args: &BenchArgs) -> Result<()> {
    match args.target {
        Some(BenchTarget::Ring) => workspace::run_checked(
            workspace::cargo(&["bench", "-p", "hyptrace-ring", "--bench", "ring"]),
            "bench ring (hyp/ring/benches/ring.rs)",
        ),
        None => suite(args.quiet, args.icount),
    }
}

/// One part of the suite: the lines of its table and its JSON object.
pub struct Section {
    /// Key in results.json.
    pub key: &'static str,
    /// Printed lines (title first).
    pub lines: Vec<String>,
    /// Its figures.
    pub json: Json,
}

/// Every part (only the instruction counts with `icount_only`), then one table and
/// results.json.
fn suite(quiet: bool, icount_only: bool) -> Result<()> {
    let dir = workspace::target_dir().join("bench");
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let machine = Machine::probe();
    // Part (a) natively; parts (b), (c) and (e) inside QEMU. Part (d) is not measured yet.
    let sections = if icount_only {
        vec![crate::icount::section(quiet)?]
    } else {
        vec![
            native(&dir, quiet)?,
            crate::bench_qemu::section(quiet)?,
            crate::icount::section(quiet)?,
        ]
    };

    let mut out = String::new();
    writeln!(out, "\nhyptrace bench: {}", machine.one_line())?;
    for section in &sections {
        out.push('\n');
        for line in &section.lines {
            writeln!(out, "{line}")?;
        }
    }
    println!("{out}");
    let mut json = Json::object();
    json.set("schema", Json::Num(1.0));
    json.set(
        "command",
        Json::str(if icount_only {
            "cargo xtask bench --icount"
        } else {
            "cargo xtask bench"
        }),
    );
    json.set("machine", machine.json());
    for section in sections {
        json.set(section.key, section.json);
    }
    let path = dir.join("results.json");
    fs::write(&path, json.render() + "\n")
        .with_context(|| format!("writing {}", path.display()))?;
    println!("results: {}", path.display());
    Ok(())
}

/// Median, minimum and maximum of a set of runs.
#[derive(Clone, Debug, PartialEq)]
pub struct Stats {
    /// The runs in the order they were measured.
    pub runs: Vec<f64>,
    /// Median (mean of the two middle runs for an even count).
    pub median: f64,
    /// Smallest run.
    pub min: f64,
    /// Largest run.
    pub max: f64,
}

impl Stats {
    /// Summarises `runs` (not empty).
    pub fn of(runs: Vec<f64>) -> Stats {
        assert!(!runs.is_empty(), "no runs to summarise");
        let mut v = runs.clone();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Stats {
            runs,
            median,
            min: v[0],
            max: v[n - 1],
        }
    }

    /// `median [min..max]`.
    pub fn cell(&self) -> String {
        format!("{:.2} [{:.2}..{:.2}]", self.median, self.min, self.max)
    }

    fn json(&self) -> Json {
        let mut o = Json::object();
        o.set("median", Json::Num(self.median));
        o.set("min", Json::Num(self.min));
        o.set("max", Json::Num(self.max));
        o.set(
            "runs",
            Json::Arr(self.runs.iter().map(|&r| Json::Num(r)).collect()),
        );
        o
    }
}

/// Per-round ratios `a[i] / b[i]` of paired rounds.
fn ratios(a: &Stats, b: &Stats) -> Stats {
    Stats::of(a.runs.iter().zip(&b.runs).map(|(x, y)| x / y).collect())
}

/// `x.xx [x.xx..x.xx]x` for a ratio.
fn ratio_cell(r: &Stats) -> String {
    format!("{:.2}x [{:.2}..{:.2}]", r.median, r.min, r.max)
}

/// The machine, for the report.
pub struct Machine {
    cpu_model: String,
    cpus: usize,
    virtualized: bool,
    virt_kind: String,
    kernel: String,
    clocksource: String,
    cc: String,
    /// /proc/loadavg's 1-minute figure when the run started (other work on the machine).
    load_before: String,
}

impl Machine {
    fn probe() -> Machine {
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let field = |name: &str| {
            cpuinfo
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
                .unwrap_or_else(|| "unknown".into())
        };
        let virtualized = field("flags").split_whitespace().any(|f| f == "hypervisor");
        let first_line = |program: &str, args: &[&str]| {
            Command::new(program)
                .args(args)
                .output()
                .ok()
                .map(|o| {
                    String::from_utf8_lossy(&o.stdout)
                        .lines()
                        .next()
                        .unwrap_or("")
                        .trim()
                        .to_string()
                })
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "unknown".into())
        };
        let read = |path: &str| {
            fs::read_to_string(path)
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|_| "unknown".into())
        };
        Machine {
            cpu_model: field("model name"),
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            virtualized,
            virt_kind: first_line("systemd-detect-virt", &[]),
            kernel: read("/proc/sys/kernel/osrelease"),
            clocksource: read("/sys/devices/system/clocksource/clocksource0/current_clocksource"),
            cc: first_line("cc", &["--version"]),
            load_before: read("/proc/loadavg")
                .split_whitespace()
                .next()
                .unwrap_or("unknown")
                .to_string(),
        }
    }

    fn one_line(&self) -> String {
        format!(
            "{}, {} CPUs, {}, Linux {}, clocksource {}, {}; load average {} at the start",
            self.cpu_model,
            self.cpus,
            if self.virtualized {
                "virtual machine (hypervisor flag set)"
            } else {
                "no hypervisor flag"
            },
            self.kernel,
            self.clocksource,
            self.cc,
            self.load_before
        )
    }

    fn json(&self) -> Json {
        let mut o = Json::object();
        o.set("cpu_model", Json::str(&self.cpu_model));
        o.set("cpus", Json::Num(self.cpus as f64));
        o.set("virtualized", Json::Bool(self.virtualized));
        o.set("systemd_detect_virt", Json::str(&self.virt_kind));
        o.set("kernel", Json::str(&self.kernel));
        o.set("clocksource", Json::str(&self.clocksource));
        o.set("cc", Json::str(&self.cc));
        o.set("loadavg_1min_before", Json::str(&self.load_before));
        o
    }
}

/// The `taskset -c CPU` prefix pinning the measured loops to the last CPU, if there is more
/// than one CPU and taskset exists.
fn pin_prefix() -> (Vec<String>, String) {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let taskset = crate::tools::find_on_path("taskset", std::env::var_os("PATH").as_deref());
    match taskset {
        Some(_) if cpus > 1 => {
            let cpu = (cpus - 1).to_string();
            (
                vec!["taskset".into(), "-c".into(), cpu.clone()],
                format!("pinned to CPU {cpu} (taskset)"),
            )
        }
        Some(_) => (vec![], "not pinned (one CPU)".into()),
        None => (vec![], "not pinned (taskset not found)".into()),
    }
}

/// Builds hyptrace-ring's `native` bench and returns its executable.
fn build_native() -> Result<PathBuf> {
    let mut command = workspace::cargo(&[
        "bench",
        "-p",
        "hyptrace-ring",
        "--bench",
        "native",
        "--no-run",
        "--message-format=json-render-diagnostics",
    ]);
    let line = workspace::display_command(&command);
    eprintln!("xtask: $ {line}");
    let out = command
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("could not run `{line}`"))?;
    if !out.status.success() {
        bail!("building the native bench failed: `{line}`");
    }
    native_executable(&String::from_utf8_lossy(&out.stdout))
        .with_context(|| format!("`{line}` reported no executable for the native bench"))
}

/// The `executable` of the `native` bench artifact in cargo's JSON messages.
fn native_executable(messages: &str) -> Option<PathBuf> {
    messages
        .lines()
        .filter(|l| l.contains("\"reason\":\"compiler-artifact\""))
        .filter(|l| l.contains("\"name\":\"native\"") && l.contains("\"kind\":[\"bench\"]"))
        .find_map(|l| {
            let start = l.find("\"executable\":\"")? + "\"executable\":\"".len();
            let rest = &l[start..];
            let end = rest.find('"')?;
            Some(PathBuf::from(rest[..end].replace("\\\\", "\\")))
        })
}

/// One round of the native bench for one payload size, ns/event.
#[derive(Clone, Copy, Debug, PartialEq)]
struct NativeRow {
    payload: usize,
    floor: f64,
    hyptrace: f64,
    floor_cas: f64,
    /// The writer in batches of three events under one status handshake.
    batch: f64,
}

/// Runs one round of the native bench.
fn native_round(exe: &std::path::Path, pin: &[String]) -> Result<Vec<NativeRow>> {
    let mut command = match pin.split_first() {
        Some((program, args)) => {
            let mut c = Command::new(program);
            c.args(args).arg(exe);
            c
        }
        None => Command::new(exe),
    };
    command.args(["--events", &EVENTS.to_string()]);
    let line = workspace::display_command(&command);
    let out = workspace::output_checked(command)?;
    parse_native(&String::from_utf8_lossy(&out.stdout))
        .with_context(|| format!("unexpected output from `{line}`"))
}

/// Parses `result floor|hyptrace|floor_cas|hyptrace_batch PAYLOAD NS` lines; every payload
/// needs all four.
fn parse_native(stdout: &str) -> Result<Vec<NativeRow>> {
    let mut rows: Vec<(usize, [Option<f64>; 4])> = Vec::new();
    for line in stdout.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if let ["result", name, p, ns] = words.as_slice() {
            let p: usize = p.parse()?;
            let ns: f64 = ns.parse()?;
            let i = match rows.iter().position(|r| r.0 == p) {
                Some(i) => i,
                None => {
                    rows.push((p, [None; 4]));
                    rows.len() - 1
                }
            };
            match *name {
                "floor" => rows[i].1[0] = Some(ns),
                "hyptrace" => rows[i].1[1] = Some(ns),
                "floor_cas" => rows[i].1[2] = Some(ns),
                "hyptrace_batch" => rows[i].1[3] = Some(ns),
                other => bail!("unknown figure `{other}`"),
            }
        }
    }
    let rows: Option<Vec<_>> = rows
        .into_iter()
        .map(|(payload, [f, h, c, b])| {
            Some(NativeRow {
                payload,
                floor: f?,
                hyptrace: h?,
                floor_cas: c?,
                batch: b?,
            })
        })
        .collect();
    match rows {
        Some(rows) if !rows.is_empty() => Ok(rows),
        _ => bail!(
            "missing floor, hyptrace, floor_cas or hyptrace_batch figures in: {}",
            stdout.trim()
        ),
    }
}

/// Samples of part (a), per payload (in [`PAYLOADS`] order).
#[derive(Default)]
struct NativeSamples {
    floor: Vec<Vec<f64>>,
    hyptrace: Vec<Vec<f64>>,
    floor_cas: Vec<Vec<f64>>,
    batch: Vec<Vec<f64>>,
    /// Per layout: per payload, the driver's figures per round.
    lttng: Vec<Vec<Vec<DriverFigures>>>,
}

/// Part (a): the native writer against the floor and LTTng-UST, alternating rounds.
fn native(dir: &std::path::Path, quiet: bool) -> Result<Section> {
    let exe = build_native()?;
    let (pin, pin_text) = pin_prefix();
    let mut lttng_state: std::result::Result<bench_lttng::Lttng, String> =
        bench_lttng::prepare(dir).map_err(|e| format!("{e:#}"));
    let mut versions = String::new();
    let mut sessiond = String::new();
    if let Ok(l) = &lttng_state {
        versions = l.versions.clone();
        sessiond = format!(
            "private lttng-sessiond --no-kernel, pid {}, LTTNG_HOME {}{}",
            l.sessiond_pid(),
            l.home().display(),
            if l.as_nobody() { ", run as nobody" } else { "" }
        );
        eprintln!("xtask: LTTng-UST: {versions}; {sessiond}");
    }
    if let Err(reason) = &lttng_state {
        eprintln!("xtask: LTTng-UST skipped (the rest of the bench still runs): {reason}");
    }
    let mut s = NativeSamples {
        floor: vec![vec![]; PAYLOADS.len()],
        hyptrace: vec![vec![]; PAYLOADS.len()],
        floor_cas: vec![vec![]; PAYLOADS.len()],
        batch: vec![vec![]; PAYLOADS.len()],
        lttng: vec![vec![vec![]; PAYLOADS.len()]; LAYOUTS.len()],
    };
    let index = |p: usize| PAYLOADS.iter().position(|&q| q == p);
    for round in 0..ROUNDS {
        if !quiet {
            eprintln!("xtask: bench (a) round {}/{ROUNDS}", round + 1);
        }
        for r in native_round(&exe, &pin)? {
            let i = index(r.payload).context("native bench payload size")?;
            s.floor[i].push(r.floor);
            s.hyptrace[i].push(r.hyptrace);
            s.floor_cas[i].push(r.floor_cas);
            s.batch[i].push(r.batch);
        }
        if let Ok(l) = &lttng_state {
            let mut failure = None;
            for (k, &layout) in LAYOUTS.iter().enumerate() {
                match l.round(layout, EVENTS, &pin) {
                    Ok(figures) => {
                        for (p, f) in figures {
                            if let Some(i) = index(p) {
                                s.lttng[k][i].push(f);
                            }
                        }
                    }
                    Err(e) => {
                        failure = Some(format!(
                            "round {} with {} sub-buffers failed: {e:#}",
                            round + 1,
                            layout.key()
                        ));
                        break;
                    }
                }
            }
            if let Some(reason) = failure {
                lttng_state = Err(reason);
            }
        }
    }
    // Stop the daemon (by its pid, in Drop) before printing.
    let lttng_ok = match lttng_state {
        Ok(l) => {
            drop(l);
            Ok(())
        }
        Err(reason) => Err(reason),
    };
    let counts = crate::bench_callgrind::count(&exe, quiet);
    let mut section = native_section(&s, lttng_ok, &versions, &sessiond, &pin_text);
    crate::bench_callgrind::append(&mut section, &counts);
    Ok(section)
}

/// The table and JSON of part (a) from its samples.
fn native_section(
    s: &NativeSamples,
    lttng: std::result::Result<(), String>,
    versions: &str,
    sessiond: &str,
    pin_text: &str,
) -> Section {
    let mut lines = vec![
        format!(
            "(a) native writer on this host: ns/event, median [min..max] of {ROUNDS} \
             alternating rounds (hyptrace+floor, LTTng 4 KiB, LTTng 64 KiB, ...) of {EVENTS} \
             events per loop, {pin_text}"
        ),
        "    clocks: floor and hyptrace stamp with RDTSC; LTTng-UST stamps with its own \
         clock_gettime(CLOCK_MONOTONIC); loops are timed with clock_gettime(MONOTONIC)"
            .to_string(),
    ];
    let mut json = Json::object();
    let mut clocks = Json::object();
    clocks.set("hyptrace", Json::str("RDTSC"));
    clocks.set("floor", Json::str("RDTSC"));
    clocks.set("lttng", Json::str("clock_gettime(CLOCK_MONOTONIC)"));
    clocks.set("loop_timer", Json::str("clock_gettime(CLOCK_MONOTONIC)"));
    json.set("clocks", clocks);
    json.set("rounds", Json::Num(ROUNDS as f64));
    json.set("events_per_loop", Json::Num(EVENTS as f64));
    json.set("pinning", Json::str(pin_text));
    let mut lttng_json = Json::object();
    match &lttng {
        Ok(()) => {
            lttng_json.set("status", Json::str("measured"));
            lttng_json.set("packages", Json::str(versions));
            lttng_json.set("sessiond", Json::str(sessiond));
            let mut layouts = Json::object();
            for l in LAYOUTS {
                layouts.set(&l.key(), layout_json(l));
            }
            lttng_json.set("layouts", layouts);
        }
        Err(reason) => {
            lttng_json.set("status", Json::str("skipped"));
            lttng_json.set("reason", Json::str(reason));
        }
    }
    json.set("lttng", lttng_json);

    let w = [8, 22, 22, 22, 24, 24, 22, 22];
    let header = [
        "payload",
        "floor (ts+copy)",
        "hyptrace writer",
        "hyptrace/floor",
        "LTTng 4 KiB sub-bufs",
        "LTTng 64 KiB sub-bufs",
        "LTTng 4K/hyptrace",
        "LTTng 64K/hyptrace",
    ];
    lines.push(row(&header.map(String::from), &w));
    let mut payload_json = Vec::new();
    let mut goal_lines = Vec::new();
    let mut cross = Vec::new();
    let mut handshake = Vec::new();
    for (i, &p) in PAYLOADS.iter().enumerate() {
        let floor = Stats::of(s.floor[i].clone());
        let hyp = Stats::of(s.hyptrace[i].clone());
        let hyp_floor = ratios(&hyp, &floor);
        let floor_cas = Stats::of(s.floor_cas[i].clone());
        let hyp_floor_cas = ratios(&hyp, &floor_cas);
        let batch = Stats::of(s.batch[i].clone());
        let batch_floor = ratios(&batch, &floor);
        handshake.push(format!(
            "    {p:>3} B: floor + status CAS {} ({:+.2} ns over the floor); hyptrace / that {}",
            floor_cas.cell(),
            floor_cas.median - floor.median,
            ratio_cell(&hyp_floor_cas)
        ));
        handshake.push(format!(
            "    {p:>3} B: hyptrace in batches of 3 (one handshake each) {}; / floor {}",
            batch.cell(),
            ratio_cell(&batch_floor)
        ));
        let mut pj = Json::object();
        pj.set("payload_bytes", Json::Num(p as f64));
        pj.set("floor_ns", floor.json());
        pj.set("hyptrace_ns", hyp.json());
        pj.set("ratio_hyptrace_over_floor", hyp_floor.json());
        pj.set("floor_cas_ns", floor_cas.json());
        pj.set("ratio_hyptrace_over_floor_cas", hyp_floor_cas.json());
        pj.set("hyptrace_batch_ns", batch.json());
        pj.set("ratio_hyptrace_batch_over_floor", batch_floor.json());
        let mut cells = vec![
            p.to_string(),
            floor.cell(),
            hyp.cell(),
            ratio_cell(&hyp_floor),
        ];
        let mut lttng_cells = vec![];
        let mut ratio_cells = vec![];
        let mut lttng_ratio_16 = vec![];
        for (k, layout) in LAYOUTS.iter().enumerate() {
            let key = layout.key();
            if lttng.is_ok() && !s.lttng[k][i].is_empty() {
                let runs = &s.lttng[k][i];
                let net = Stats::of(runs.iter().map(|f| f.lttng_raw - f.empty).collect());
                let raw = Stats::of(runs.iter().map(|f| f.lttng_raw).collect());
                let empty = Stats::of(runs.iter().map(|f| f.empty).collect());
                let c_floor = Stats::of(runs.iter().map(|f| f.c_floor).collect());
                let r = ratios(&net, &hyp);
                lttng_cells.push(net.cell());
                ratio_cells.push(ratio_cell(&r));
                if p == GOAL_PAYLOAD {
                    lttng_ratio_16.push((key.clone(), r.median));
                }
                cross.push(format!(
                    "    {p:>3} B, {key:>3}: LTTng loop {} minus empty loop {}; C floor {}",
                    raw.cell(),
                    empty.cell(),
                    c_floor.cell()
                ));
                pj.set(&format!("lttng_{key}_ns"), net.json());
                pj.set(&format!("lttng_{key}_raw_loop_ns"), raw.json());
                pj.set(&format!("lttng_{key}_empty_loop_ns"), empty.json());
                pj.set(&format!("c_floor_{key}_round_ns"), c_floor.json());
                pj.set(&format!("ratio_lttng_{key}_over_hyptrace"), r.json());
            } else {
                lttng_cells.push("skipped".into());
                ratio_cells.push("-".into());
                pj.set(&format!("lttng_{key}_ns"), Json::Null);
                pj.set(&format!("ratio_lttng_{key}_over_hyptrace"), Json::Null);
            }
        }
        cells.extend(lttng_cells);
        cells.extend(ratio_cells);
        lines.push(row(&cells, &w));
        if p == GOAL_PAYLOAD {
            let met = hyp_floor.median <= GOAL_FLOOR_RATIO;
            goal_lines.push(format!(
                "    goal hyptrace <= {GOAL_FLOOR_RATIO}x floor at {p} B: {:.2}x, {}",
                hyp_floor.median,
                if met { "met" } else { "MISSED" }
            ));
            let batch_met = batch_floor.median <= GOAL_BATCH_RATIO;
            goal_lines.push(format!(
                "    goal trap-path events (batches of 3) <= {GOAL_BATCH_RATIO}x floor at {p} B: \
                 {:.2}x, {} (on the CPU the header names)",
                batch_floor.median,
                if batch_met { "met" } else { "MISSED" },
            ));
            let mut goals = Json::object();
            goals.set("batch_over_floor_max", Json::Num(GOAL_BATCH_RATIO));
            goals.set("batch_over_floor", Json::Num(batch_floor.median));
            goals.set("batch_over_floor_met", Json::Bool(batch_met));
            goals.set("hyptrace_over_floor_max", Json::Num(GOAL_FLOOR_RATIO));
            goals.set("hyptrace_over_floor", Json::Num(hyp_floor.median));
            goals.set("hyptrace_over_floor_met", Json::Bool(met));
            goals.set("lttng_over_hyptrace_min", Json::Num(GOAL_LTTNG_RATIO));
            if lttng_ratio_16.is_empty() {
                goal_lines.push(format!(
                    "    goal LTTng-UST >= {GOAL_LTTNG_RATIO}x hyptrace at {p} B: not measured \
                     (LTTng skipped)"
                ));
                goals.set("lttng_over_hyptrace_met", Json::Null);
            }
            let mut all_met = true;
            for (key, r) in &lttng_ratio_16 {
                let met = *r >= GOAL_LTTNG_RATIO;
                all_met &= met;
                goal_lines.push(format!(
                    "    goal LTTng-UST >= {GOAL_LTTNG_RATIO}x hyptrace at {p} B ({key} \
                     sub-buffers): {r:.2}x, {}",
                    if met { "met" } else { "MISSED" }
                ));
                goals.set(&format!("lttng_{key}_over_hyptrace"), Json::Num(*r));
            }
            if !lttng_ratio_16.is_empty() {
                goals.set("lttng_over_hyptrace_met", Json::Bool(all_met));
            }
            goals.set("payload_bytes", Json::Num(p as f64));
            json.set("goals", goals);
        }
        payload_json.push(pj);
    }
    json.set("payloads", Json::Arr(payload_json));
    lines.push(
        "    the writer's status handshake (one locked compare-and-swap per event, or per \
         batch, on x86; docs/performance.md):"
            .into(),
    );
    lines.extend(handshake);
    match &lttng {
        Ok(()) => {
            lines.push(
                "    LTTng = ns/event of the enabled tracepoint loop minus the empty loop, same \
                 process and round; snapshot session, one overwrite channel of 1 MiB per CPU"
                    .into(),
            );
            lines.push(format!("    LTTng-UST: {versions}; {sessiond}"));
            lines.push("    cross-checks (LTTng driver, C, same rounds):".into());
            lines.extend(cross);
        }
        Err(reason) => lines.push(format!("    LTTng-UST skipped: {reason}")),
    }
    lines.extend(goal_lines);
    Section {
        key: "native",
        lines,
        json,
    }
}

fn layout_json(l: Layout) -> Json {
    let mut o = Json::object();
    o.set("subbuf_size", Json::Num(l.subbuf_size as f64));
    o.set("num_subbuf", Json::Num(l.num_subbuf as f64));
    o
}

fn row(cells: &[String], widths: &[usize]) -> String {
    cells
        .iter()
        .zip(widths)
        .map(|(c, &w)| format!("{c:>w$}"))
        .collect::<Vec<_>>()
        .join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_median_and_range() {
        let s = Stats::of(vec![3.0, 1.0, 2.0]);
        assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
        assert_eq!(s.runs, [3.0, 1.0, 2.0]);
        assert_eq!(Stats::of(vec![4.0, 1.0, 2.0, 3.0]).median, 2.5);
        assert_eq!(s.cell(), "2.00 [1.00..3.00]");
    }

    #[test]
    fn ratios_pair_rounds() {
        let a = Stats::of(vec![2.0, 4.0]);
        let b = Stats::of(vec![1.0, 1.0]);
        assert_eq!(ratios(&a, &b).runs, [2.0, 4.0]);
    }

    #[test]
    fn parses_native_output() {
        let out = "clock RDTSC\nresult floor 4 8.5\nresult hyptrace 4 15\n\
                   result floor_cas 4 13\nresult hyptrace_batch 4 12\nresult floor 16 8\n\
                   result hyptrace 16 15.25\nresult floor_cas 16 13.5\n\
                   result hyptrace_batch 16 9.75\n";
        let rows = parse_native(out).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(
            rows[1],
            NativeRow {
                payload: 16,
                floor: 8.0,
                hyptrace: 15.25,
                floor_cas: 13.5,
                batch: 9.75,
            }
        );
        assert!(parse_native("result floor 4 8.5\nresult hyptrace 4 15\n").is_err());
        assert!(
            parse_native("result floor 4 8.5\nresult hyptrace 4 15\nresult floor_cas 4 13\n")
                .is_err(),
            "the batch figure is missing"
        );
        assert!(parse_native("").is_err());
    }

    #[test]
    fn finds_the_native_executable() {
        let messages = concat!(
            r#"{"reason":"compiler-artifact","target":{"kind":["lib"],"name":"hyp"},"executable":null}"#,
            "\n",
            r#"{"reason":"compiler-artifact","target":{"kind":["bench"],"crate_types":["bin"],"name":"native"},"executable":"/t/release/deps/native-abc"}"#,
            "\n"
        );
        assert_eq!(
            native_executable(messages),
            Some(PathBuf::from("/t/release/deps/native-abc"))
        );
        assert_eq!(native_executable(""), None);
    }

    #[test]
    fn skipped_lttng_is_reported_not_invented() {
        let s = NativeSamples {
            floor: vec![vec![8.0]; 3],
            hyptrace: vec![vec![15.0]; 3],
            floor_cas: vec![vec![13.0]; 3],
            batch: vec![vec![10.0]; 3],
            lttng: vec![vec![vec![]; 3]; 2],
        };
        let section = native_section(&s, Err("no root".into()), "", "", "pinned");
        let text = section.lines.join("\n");
        assert!(text.contains("LTTng-UST skipped: no root"));
        assert!(text.contains("(batches of 3) <= 1.25x floor at 16 B: 1.25x, met"));
        assert!(text.contains("not measured"));
        let json = section.json.render();
        assert!(json.contains("\"status\": \"skipped\""));
        assert!(json.contains("\"lttng_4k_ns\": null"));
    }
}
