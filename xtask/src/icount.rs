//! Deterministic instruction counts: the guest's `bench icount=1` mode under QEMU's
//! `-icount shift=0`, and the pinned budgets `cargo xtask test` holds every hot path to.
//!
//! With `-icount shift=0` QEMU's virtual clock advances one nanosecond per guest
//! instruction, so the 62.5 MHz counter ticks once every 16 instructions and a figure timed
//! with the counter is an instruction count, the same on every boot and every host. Each run
//! checks that factor on a loop of known length (2,000,000 instructions) before it trusts
//! it. The figures include the loop around the measured call (the host's hypercall loop, the
//! hypervisor's selftest or printk loop), as the timed figures do.

use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::bench::Section;
use crate::bench_json::Json;
use crate::bench_qemu::{parse_figure, Figure};
use crate::build::{self, Images, Profile};
use crate::qemu::{self, QemuConfig};
use crate::supervise::RunEnd;

/// Guest instructions per counter tick under `-icount shift=0` with QEMU virt's 62.5 MHz
/// counter.
pub const INSTRUCTIONS_PER_TICK: f64 = 16.0;

/// Every hot path's budget, in instructions: a figure above its budget fails `cargo xtask
/// test`. Change a budget only in the commit that changes the count, and say why there.
/// Set from `cargo xtask bench --icount` on the commit that last changed them (the comments
/// say why they moved); `printk_event` is measured on the fault-injection image, every other
/// one on the normal image.
pub const BUDGETS: [(&str, f64); 15] = [
    // 291 before writer batches; 242 since the dispatcher's counter is a function item
    // (`Context<C>`) instead of a function pointer, which shrank every hypercall's path.
    ("hvc_null_unloaded", 242.0),
    ("hvc_null_loaded_disabled", 242.0),
    // 619.3 before writer batches: one handshake and one clock read for hyp_enter +
    // host_hcall, the clock's before-epoch case out of line, the writer's one-test fast
    // path, no per-page event counter, and the dispatcher as above.
    ("hvc_null_traced", 489.5),
    // What each trap event adds to the disabled null hypercall when it is the only one
    // enabled (hyp_enter and host_hcall each open the entry batch alone).
    ("trap_hyp_enter", 105.1),
    ("trap_host_hcall", 118.2),
    ("trap_hyp_exit", 83.1),
    // 142.3 before: as above, one batch per write_selftest call, and its counter inlined.
    ("selftest_event", 82.5),
    ("store_loop_floor", 45.0),
    // From EL1, on a full 16 MiB buffer: the hypercall, the head search and the swap.
    ("swap_reader", 434.1),
    ("update_footers", 625.0),
    // 166.4 before: the clock and the writer's fast path, as above.
    ("printk_event", 137.7),
    // The same store loop as `store_loop_floor`, at EL2 (the fault-injection image).
    ("store_loop_floor_el2", 46.0),
    // Raw events of 4, 16 and 64 payload bytes in one batch at EL2.
    ("event_4", 51.2),
    ("event_16", 54.5),
    ("event_64", 67.7),
];

/// The figures one boot printed, keyed without their `icount_` prefix, in order.
#[derive(Clone, Debug, PartialEq)]
pub struct Counts {
    /// The calibration: instructions per tick the guest measured.
    pub per_tick: f64,
    /// (key, instructions) of every figure.
    pub figures: Vec<(String, f64)>,
}

impl Counts {
    /// The figure `key`, if printed.
    pub fn get(&self, key: &str) -> Option<f64> {
        self.figures.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
    }
}

/// Reads the `bench: icount_...` lines of one boot.
///
/// # Errors
/// No calibration line, or a calibration that is not [`INSTRUCTIONS_PER_TICK`] (QEMU did
/// not count instructions), or no `bench: done`.
pub fn parse(lines: &[&str]) -> Result<Counts> {
    let figures: Vec<Figure> = lines.iter().filter_map(|l| parse_figure(l)).collect();
    if !lines.iter().any(|l| l.trim() == "bench: done") {
        bail!("the icount bench did not finish");
    }
    let mut per_tick = None;
    let mut out = Vec::new();
    for f in figures {
        let Some(key) = f.key.strip_prefix("icount_") else {
            continue;
        };
        if key == "calibration" {
            per_tick = Some(f.median);
        } else {
            out.push((key.to_string(), f.median));
        }
    }
    let per_tick = per_tick.context("no icount calibration line")?;
    if per_tick != INSTRUCTIONS_PER_TICK {
        bail!(
            "the calibration loop ran {per_tick} instructions per tick, not \
             {INSTRUCTIONS_PER_TICK}: QEMU is not counting instructions"
        );
    }
    Ok(Counts {
        per_tick,
        figures: out,
    })
}

/// Two boots' figures must be equal, key by key.
///
/// # Errors
/// The keys or a value differ.
pub fn same(a: &Counts, b: &Counts) -> Result<()> {
    if a.figures != b.figures {
        bail!(
            "two boots gave different counts: {:?} and {:?}",
            a.figures,
            b.figures
        );
    }
    Ok(())
}

/// Holds `counts` to [`BUDGETS`] (each budget's figure must be present and not above it;
/// tracing loaded but disabled must cost exactly what unloaded does). Returns one line per
/// figure.
///
/// # Errors
/// Every figure over budget or missing, and a disabled path that costs more than unloaded.
pub fn judge(counts: &Counts) -> Result<Vec<String>, Vec<String>> {
    let mut ok = Vec::new();
    let mut bad = Vec::new();
    for (key, budget) in BUDGETS {
        match counts.get(key) {
            Some(v) if v <= budget => ok.push(format!("{key} {v:.1} <= {budget:.1}")),
            Some(v) => bad.push(format!(
                "{key}: {v:.1} instructions, over its budget of {budget:.1} (+{:.1})",
                v - budget
            )),
            None => bad.push(format!("{key}: not measured")),
        }
    }
    if let (Some(off), Some(on)) = (
        counts.get("hvc_null_loaded_disabled"),
        counts.get("hvc_null_unloaded"),
    ) {
        if off != on {
            bad.push(format!(
                "tracing loaded but disabled costs {off:.1} instructions per null hypercall, \
                 unloaded {on:.1}: they must be equal"
            ));
        }
    }
    if bad.is_empty() {
        Ok(ok)
    } else {
        Err(bad)
    }
}

/// One boot of `hyp` (with `host_shim`) in the icount mode on one vCPU.
fn boot(images: &Images, quiet: bool) -> Result<Counts> {
    let mut config = QemuConfig::new(images, 1, vec!["bench".into(), "icount=1".into()])?;
    config.extra_args = vec!["-icount".into(), "shift=0".into()];
    let keep = |l: &str| l.trim_start().starts_with("bench:") || l.contains("EXCEPTION");
    let captured = qemu::run(&config, Duration::from_secs(300), !quiet, keep)?;
    let lines: Vec<&str> = captured.kept.iter().map(|l| l.text.as_str()).collect();
    if captured.end != RunEnd::Exited(0) {
        captured.print_last_lines(40);
        bail!("the icount bench ended with {:?}", captured.end);
    }
    parse(&lines)
}

/// The figures only the fault-injection image measures (its test-only benchmark calls).
pub const TEST_ONLY: [&str; 5] = [
    "printk_event",
    "store_loop_floor_el2",
    "event_4",
    "event_16",
    "event_64",
];

/// Boots the normal image twice and the fault-injection image twice (each pair's counts
/// must be equal); returns the normal image's counts with the [`TEST_ONLY`] figures of the
/// fault-injection image appended.
pub fn measure(quiet: bool) -> Result<Counts> {
    let images = build::build_images(Profile::Release)?;
    let first = boot(&images, quiet)?;
    let second = boot(&images, quiet)?;
    same(&first, &second)?;
    let faulty = Images {
        hyp: build::build_fault_injection_hyp(Profile::Release)?,
        host_shim: images.host_shim.clone(),
    };
    let test_only = boot(&faulty, quiet)?;
    same(&test_only, &boot(&faulty, quiet)?)?;
    let mut counts = first;
    for key in TEST_ONLY {
        let v = test_only
            .get(key)
            .with_context(|| format!("the fault-injection image printed no {key}"))?;
        counts.figures.push((key.into(), v));
    }
    Ok(counts)
}

/// Goal of issue #15: a selftest event at most this many times the EL2 store-loop floor.
pub const GOAL_EVENT_OVER_FLOOR: f64 = 2.0;
/// Goal of issue #15: a traced null hypercall at most this many times an untraced one.
pub const GOAL_TRACED_OVER_UNTRACED: f64 = 1.4;

/// The ratios the goals are about, with met or MISSED.
fn goal_lines(counts: &Counts) -> Vec<String> {
    let mut lines = Vec::new();
    let mut ratio = |label: &str, num: &str, den: &str, goal: f64| {
        if let (Some(n), Some(d)) = (counts.get(num), counts.get(den)) {
            let r = n / d;
            lines.push(format!(
                "  {label:<40} {r:>6.3}x  goal <= {goal}x: {}",
                if r <= goal { "met" } else { "MISSED" }
            ));
        }
    };
    ratio(
        "selftest / EL2 floor",
        "selftest_event",
        "store_loop_floor_el2",
        GOAL_EVENT_OVER_FLOOR,
    );
    ratio(
        "16-byte event / EL2 floor",
        "event_16",
        "store_loop_floor_el2",
        GOAL_EVENT_OVER_FLOOR,
    );
    ratio(
        "traced / untraced null hypercall",
        "hvc_null_traced",
        "hvc_null_unloaded",
        GOAL_TRACED_OVER_UNTRACED,
    );
    lines
}

/// `cargo xtask bench --icount`'s section: the counts, their budgets, results.json's
/// `icount` object.
pub fn section(quiet: bool) -> Result<Section> {
    let counts = measure(quiet)?;
    let mut lines = vec![format!(
        "instructions under -icount shift=0, 1 vCPU (calibrated: {} per tick on a 2,000,000-instruction loop; two boots equal)",
        counts.per_tick
    )];
    let mut json = Json::object();
    for (key, v) in &counts.figures {
        let budget = BUDGETS.iter().find(|(k, _)| k == key).map(|(_, b)| *b);
        lines.push(format!(
            "  {key:<28} {v:>9.1}{}",
            budget.map_or(String::new(), |b| format!("   budget {b:.1}"))
        ));
        json.set(key, Json::Num(*v));
    }
    lines.extend(goal_lines(&counts));
    Ok(Section {
        key: "icount",
        lines,
        json,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn goals_are_judged_from_the_counts() {
        let lines = goal_lines(&merged());
        assert!(lines[0].contains("selftest / EL2 floor") && lines[0].ends_with("met"));
        assert!(lines[2].contains("traced / untraced") && lines[2].ends_with("MISSED"));
    }

    const BOOT: [&str; 14] = [
        "bench: machine 1 CPUs, counter 62500000 Hz, QEMU TCG with -icount shift=0",
        "bench: icount_calibration 16.000 instructions/tick (2000000 instructions in 125001 ticks)",
        "bench: icount_hvc_null_unloaded 242.0 instructions/call",
        "bench: icount_hvc_null_loaded_disabled 242.0 instructions/call",
        "bench: icount_hvc_null_traced 489.5 instructions/call (hyp_enter, host_hcall, hyp_exit)",
        "bench: icount_trap_hyp_enter 105.1 instructions/call added when it is the only event enabled",
        "bench: icount_trap_host_hcall 118.2 instructions/call added when it is the only event enabled",
        "bench: icount_trap_hyp_exit 83.1 instructions/call added when it is the only event enabled",
        "bench: icount_selftest_event 82.5 instructions/event (18-byte payload, at EL2)",
        "bench: icount_store_loop_floor 45.0 instructions/event (counter read and 24-byte store, at EL1)",
        "bench: icount_swap_reader 434.1 instructions/call (from EL1, a full page swapped each time)",
        "bench: icount_update_footers 625.0 instructions/call (from EL1)",
        "bench: icount_printk_event skipped: the benchmark call needs the fault-injection hypervisor",
        "bench: done",
    ];
    const TEST_ONLY_BOOT: [&str; 7] = [
        "bench: icount_calibration 16.000 instructions/tick (2000000 instructions in 125000 ticks)",
        "bench: icount_printk_event 137.7 instructions/call (two arguments, at EL2)",
        "bench: icount_store_loop_floor_el2 46.0 instructions/event (the same loop, at EL2)",
        "bench: icount_event_4 51.2 instructions/event (raw payload, one batch, at EL2)",
        "bench: icount_event_16 54.5 instructions/event (raw payload, one batch, at EL2)",
        "bench: icount_event_64 67.7 instructions/event (raw payload, one batch, at EL2)",
        "bench: done",
    ];

    /// The two boots' figures merged, as `measure` merges them.
    fn merged() -> Counts {
        let mut c = parse(&BOOT).unwrap();
        let t = parse(&TEST_ONLY_BOOT).unwrap();
        for key in TEST_ONLY {
            c.figures.push((key.into(), t.get(key).unwrap()));
        }
        c
    }

    #[test]
    fn a_real_boot_parses_and_meets_its_budgets() {
        let c = merged();
        assert_eq!(c.per_tick, 16.0);
        assert_eq!(c.get("hvc_null_traced"), Some(489.5));
        assert_eq!(c.figures.len(), 15);
        assert_eq!(
            c.get("printk_event"),
            Some(137.7),
            "skipped lines are not figures"
        );
        let ok = judge(&c).unwrap();
        assert_eq!(ok.len(), BUDGETS.len());
        assert!(same(&c, &c.clone()).is_ok());
    }

    #[test]
    fn a_count_over_budget_or_missing_fails() {
        let mut c = merged();
        c.figures[6].1 = 82.6; // selftest_event
        c.figures.retain(|(k, _)| k != "printk_event");
        let bad = judge(&c).unwrap_err();
        assert!(
            bad.iter().any(|l| l.starts_with("selftest_event: 82.6")),
            "{bad:?}"
        );
        assert!(
            bad.iter().any(|l| l == "printk_event: not measured"),
            "{bad:?}"
        );
        let mut c = merged();
        c.figures[1].1 = 240.0; // disabled cheaper than unloaded: within budget, but not equal
        let bad = judge(&c).unwrap_err();
        assert!(bad.iter().any(|l| l.contains("must be equal")), "{bad:?}");
    }

    #[test]
    fn without_icount_or_unfinished_the_boot_is_refused() {
        let mut timed = BOOT;
        timed[1] = "bench: icount_calibration 2.713 instructions/tick (2000000 instructions in 737000 ticks)";
        assert!(parse(&timed)
            .unwrap_err()
            .to_string()
            .contains("not counting"));
        assert!(parse(&BOOT[..13]).is_err());
        let mut other = parse(&BOOT).unwrap();
        let c = other.clone();
        other.figures[0].1 += 0.1;
        assert!(same(&c, &other).is_err());
    }
}
