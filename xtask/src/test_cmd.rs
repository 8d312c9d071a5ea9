//! `cargo xtask test`: every check CI runs, in order, stopping at the first failing step.
//!
//! 1. `cargo fmt --all --check`
//! 2. clippy on the host (all targets), then on both bare-metal images, `-D warnings`
//! 3. `cargo test --workspace` (host unit and property tests, doctests), then `cargo package`
//!    of every library crate ([`LIBRARY_CRATES`])
//! 4. loom model checks (see [`loom_command`]), then the library crates' examples, whose
//!    trace.dat files the real trace-cmd must read ([`crate::examples_step`]), then every
//!    fuzz target for 30 s with a fixed seed ([`crate::fuzz_cmd::ci`])
//! 5. build the images, then the in-QEMU harness once per (CPU model, CPU count) of
//!    [`TestArgs::harness_matrix`]
//! 6. the fault reports: a deliberate EL1 fault must be decoded and end QEMU with status 5;
//!    four deliberate EL2 faults of the fault-injection image (stack overflow into the guard
//!    page, a write to `.text`, a fetch from data, a write to an unshared host page) must be
//!    named by cause and end QEMU with status 3
//! 7. trace.dat: record 1.5 s on 4 CPUs and check the file with the real trace-cmd
//!    ([`trace_step`], judged by [`crate::report_check`]); then two recordings stopped early,
//!    one by SIGINT (Ctrl-C) and one by `--timeout`, whose saved files must pass the same
//!    checks ([`crate::interrupt_step`])
//! 8. the MMU check: gdb attached to QEMU mid-recording reads every CPU's SCTLR_EL2 and
//!    SCTLR_EL1 ([`mmu_check`])
//! 9. a one-minute soak with exact accounting
//!
//! The harness runs for every CPU count even if one fails (which counts pass or fail tells
//! where to look), and steps 5-7 all run even if one of them fails; then the step fails. The summary of all steps follows, and the very last
//! line is `harness: N passed, N failed`, summed over the QEMU runs.

use std::ffi::OsString;
use std::process::Command;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};

use crate::build::{self, Images, Profile, HOST_SHIM, HYP};
use crate::cli::TestArgs;
use crate::crash_log;
use crate::fault_report;
use crate::harness_outcome::{self, judge, HarnessReport};
use crate::interrupt_step;
use crate::mmu_check;
use crate::qemu::{self, QemuConfig};
use crate::soak_cmd;
use crate::step_log::StepLog;
use crate::tools;
use crate::trace_step;
use crate::workspace;

/// Minutes of the soak `cargo xtask test` runs (`cargo xtask soak` defaults to 10).
const CI_SOAK_MINUTES: f64 = 1.0;
/// Name of the soak step.
const SOAK_STEP: &str = "soak (1 min, 4 CPUs)";

/// How many console lines a failed harness run repeats.
const FAILURE_TAIL_LINES: usize = 40;

/// The library crates, each checked with `cargo package` (they must be publishable).
const LIBRARY_CRATES: &[&str] = &["hyptrace-abi", "hyptrace-ring", "hyptrace-tracedat"];

/// Cargo arguments of the loom model checks (run with `--cfg loom`). The ring-buffer code owns
/// what runs under loom: narrow it here, e.g. with a test-name filter after `--`.
const LOOM_CARGO_ARGS: &[&str] = &["test", "-p", "hyptrace-ring", "--release", "--lib"];

/// Runs `cargo xtask test`. On failure the error has already been printed (before the summary,
/// so that the `harness:` line stays last) and [`crate::Reported`] is returned.
pub fn run(args: &TestArgs) -> Result<()> {
    let mut log = StepLog::default();
    let mut totals = None;
    let result = run_steps(args, &mut log, &mut totals);
    if let Err(error) = &result {
        eprintln!("xtask: error: {error:#}");
    }
    println!("{}", log.render());
    if let Some((passed, failed)) = totals {
        // The guest's summary line, with the totals of every run.
        let tally = host_shim::harness::Tally {
            passed: passed as usize,
            failed: failed as usize,
        };
        println!("harness: {tally}");
    }
    result.map_err(|_| anyhow!(crate::Reported))
}

fn run_steps(args: &TestArgs, log: &mut StepLog, totals: &mut Option<(u64, u64)>) -> Result<()> {
    if args.skip_host {
        for name in [
            "fmt",
            "clippy",
            "host tests",
            "package",
            "loom",
            EXAMPLES_STEP,
            &fuzz_step(),
        ] {
            log.skip(name, "--skip-host");
        }
    } else {
        host_steps(log)?;
    }
    if args.skip_qemu {
        for name in [
            "harness",
            "fault report (EL1)",
            EL2_FAULT_STEP,
            TRACE_STEP,
            INTERRUPT_STEP,
            ICOUNT_STEP,
            SOAK_STEP,
        ] {
            log.skip(name, "--skip-qemu");
        }
        return Ok(());
    }
    // From here on QEMU boots: an older crash log would claim a failure of this invocation.
    crash_log::begin()?;
    log.run("qemu installed", || {
        tools::ensure_tool(tools::QEMU.0, tools::QEMU.1).map(drop)
    })?;
    let images = log.run("build images", || build::build_images(Profile::Release))?;
    // The QEMU steps are independent: all of them run, then every failure is named.
    let results = [
        harness_steps(args, &images, log, totals),
        log.run("fault report (EL1)", || fault_report_step(args, &images)),
        log.run(EL2_FAULT_STEP, || el2_fault_step(args, &images)),
        log.run(TRACE_STEP, || trace_step::run(&images)),
        log.run(INTERRUPT_STEP, interrupt_step::run),
        log.run(MMU_STEP, || mmu_check::run(&images)),
        log.run(ICOUNT_STEP, icount_step),
        log.run(SOAK_STEP, || {
            let words = soak_cmd::guest_words(CI_SOAK_MINUTES, 64, args.seed);
            soak_cmd::soak(&images, 4, words, CI_SOAK_MINUTES, false)
        }),
    ];
    let errors: Vec<String> = results
        .into_iter()
        .filter_map(Result::err)
        .map(|e| format!("{e:#}"))
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(anyhow!(errors.join("; ")))
    }
}

/// The name of the EL2 fault-report step in the summary.
const EL2_FAULT_STEP: &str = "fault reports (EL2: guard page, text, data, host page)";

/// The name of the debugger's register check in the summary.
const MMU_STEP: &str = "MMU and caches on every CPU while tracing (gdb)";

/// The name of the trace.dat step in the summary.
const TRACE_STEP: &str = "trace.dat (4 CPUs, trace-cmd)";

/// The name of the step that stops recordings early.
const INTERRUPT_STEP: &str = "recordings stopped early (Ctrl-C, --timeout; trace-cmd)";

/// Name of the instruction-budget step.
const ICOUNT_STEP: &str = "instruction budgets (-icount)";

/// The deterministic instruction counts against their pinned budgets
/// ([`crate::icount::BUDGETS`]): two boots of the normal image that must agree, one of the
/// fault-injection image.
fn icount_step() -> Result<()> {
    let counts = crate::icount::measure(true)?;
    match crate::icount::judge(&counts) {
        Ok(lines) => {
            eprintln!(
                "xtask: instruction counts within their budgets (two boots equal): {}",
                lines.join(", ")
            );
            Ok(())
        }
        Err(bad) => Err(anyhow!(
            "instruction budgets exceeded (change a budget only with the reason, in \
             xtask/src/icount.rs): {}",
            bad.join("; ")
        )),
    }
}

/// Boots the host shim in `crash` mode and checks the fault report and exit status.
fn fault_report_step(args: &TestArgs, images: &Images) -> Result<()> {
    let config = QemuConfig::new(images, 1, vec!["crash".to_string()])?;
    let timeout = Duration::from_secs(args.timeout);
    let captured = qemu::run(&config, timeout, false, harness_outcome::is_relevant)?;
    let lines: Vec<&str> = captured.tail.iter().map(|l| l.text.as_str()).collect();
    let verdict = fault_report::judge(&lines, captured.end);
    // Expected to end with a failure status: its own file, never the crash log.
    let saved = crash_log::save_fault_check(
        "el1-crash",
        &captured,
        fault_report::HOST_EXCEPTION_STATUS,
        verdict.as_ref().map(drop).map_err(String::as_str),
    );
    verdict.map_err(|cause| {
        captured.print_last_lines(FAILURE_TAIL_LINES);
        if let Some(path) = saved {
            eprintln!("xtask: console of the EL1 fault check saved to {path}");
        }
        anyhow!(cause)
    })
}

/// Builds the fault-injection hypervisor and boots it once per deliberate EL2 fault: each
/// must end with its decoded report, cause named, and status 3. All run; then every failure
/// is named.
fn el2_fault_step(args: &TestArgs, images: &Images) -> Result<()> {
    let faulty = Images {
        hyp: build::build_fault_injection_hyp(Profile::Release)?,
        host_shim: images.host_shim.clone(),
    };
    let timeout = Duration::from_secs(args.timeout);
    let mut errors = Vec::new();
    for (kind, _) in fault_report::EL2_FAULTS {
        let words = vec!["fault".to_string(), format!("kind={kind}")];
        let config = QemuConfig::new(&faulty, 1, words)?;
        let captured = qemu::run(&config, timeout, false, harness_outcome::is_relevant)?;
        let lines: Vec<&str> = captured.tail.iter().map(|l| l.text.as_str()).collect();
        let verdict = fault_report::judge_el2_unloaded(kind, &lines, captured.end);
        // Expected to end with status 3: its own file, never the crash log.
        let saved = crash_log::save_fault_check(
            kind,
            &captured,
            fault_report::HYP_EXCEPTION_STATUS,
            verdict.as_ref().map(drop).map_err(String::as_str),
        );
        let console = saved.map_or(String::new(), |path| format!(" (console: {path})"));
        match verdict {
            Ok(()) => eprintln!("xtask: EL2 fault {kind}: reported by cause, status 3{console}"),
            Err(cause) => {
                captured.print_last_lines(FAILURE_TAIL_LINES);
                eprintln!("xtask: EL2 fault {kind} check failed{console}");
                errors.push(cause);
            }
        }
    }
    for (kind, ..) in fault_report::FLIGHT_FAULTS {
        if let Err(cause) = flight_check(&faulty, timeout, kind) {
            errors.push(cause);
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(anyhow!(errors.join("; ")))
    }
}

/// CPUs of the flight-recorder check: every one traces, CPU 0 faults.
const FLIGHT_CPUS: u16 = 4;

/// The flight recorder: every CPU traces (the host keeps its workload running on the others),
/// then CPU 0 asks for a deliberate EL2 fault; the report must be followed by the last events
/// of every CPU ([`fault_report::judge_flight`]).
fn flight_check(faulty: &Images, timeout: Duration, kind: &str) -> Result<(), String> {
    let words = vec![
        "fault".to_string(),
        format!("kind={kind}"),
        "trace=1".to_string(),
    ];
    let config = QemuConfig::new(faulty, FLIGHT_CPUS, words).map_err(|e| format!("{e:#}"))?;
    let captured = qemu::run(&config, timeout, false, harness_outcome::is_relevant)
        .map_err(|e| format!("{e:#}"))?;
    // The whole console: the dump is longer than the tail.
    let lines: Vec<&str> = captured.console.lines().map(|l| l.text.as_str()).collect();
    let verdict = fault_report::judge_flight(kind, &lines, captured.end, usize::from(FLIGHT_CPUS));
    let status = fault_report::FLIGHT_FAULTS
        .iter()
        .find(|(name, ..)| *name == kind)
        .map_or(fault_report::HYP_EXCEPTION_STATUS, |f| f.2);
    let saved = crash_log::save_fault_check(
        &format!("flight-recorder-{kind}"),
        &captured,
        status,
        verdict.as_ref().map(drop).map_err(String::as_str),
    );
    let console = saved.map_or(String::new(), |path| format!(" (console: {path})"));
    match verdict {
        Ok(()) => {
            eprintln!(
                "xtask: flight recorder ({kind}): the last events of all {FLIGHT_CPUS} CPUs \
                 after the report, CPU 0's newest the hyp_printk before the fault{console}"
            );
            Ok(())
        }
        Err(cause) => {
            captured.print_last_lines(FAILURE_TAIL_LINES);
            eprintln!("xtask: flight-recorder check ({kind}) failed{console}");
            Err(format!("flight recorder ({kind}): {cause}"))
        }
    }
}

/// fmt, clippy (host and bare metal), host tests, loom.
fn host_steps(log: &mut StepLog) -> Result<()> {
    let cargo = |args: &[&str]| workspace::cargo(args);
    log.run("fmt", || {
        workspace::run_checked(cargo(&["fmt", "--all", "--check"]), "formatting check")
            .context("code is not formatted; run `cargo fmt --all`")
    })?;
    log.run("clippy (host)", || {
        let command = cargo(&[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]);
        workspace::run_checked(command, "clippy on the host")
    })?;
    for (spec, features) in [
        (HYP, None),
        (HYP, Some(build::FAULT_INJECTION_FEATURE)),
        (HOST_SHIM, None),
    ] {
        let name = match features {
            None => format!("clippy ({}, {})", spec.bin, spec.target),
            Some(f) => format!("clippy ({} +{f}, {})", spec.bin, spec.target),
        };
        log.run(&name, || {
            let mut args = spec.cargo_args("clippy", Profile::Release);
            if let Some(f) = features {
                args.extend(["--features", f]);
            }
            args.extend(["--", "-D", "warnings"]);
            workspace::run_checked(cargo(&args), &name)
        })?;
    }
    log.run("host tests", || {
        workspace::run_checked(cargo(&["test", "--workspace"]), "host tests")
    })?;
    let name = format!("package ({})", LIBRARY_CRATES.join(", "));
    log.run(&name, || {
        // Builds every library crate from its packaged sources alone: metadata complete, no
        // path-only dependency. Packaged together, so that a crate depending on another one
        // resolves it from the others' packages (cargo's local registry overlay) rather than
        // from crates.io. Nothing is published.
        let mut args = vec!["package", "--allow-dirty", "--quiet"];
        for krate in LIBRARY_CRATES {
            args.extend(["-p", krate]);
        }
        workspace::run_checked(cargo(&args), &name)
    })?;
    log.run("loom", || {
        workspace::run_checked(loom_command(), "loom model checks")
    })?;
    log.run(EXAMPLES_STEP, crate::examples_step::run)?;
    log.run(&fuzz_step(), crate::fuzz_cmd::ci)?;
    Ok(())
}

/// The name of the fuzz step in the summary.
fn fuzz_step() -> String {
    use crate::fuzz_cmd::{CI_SECONDS, CI_SEED};
    format!("fuzz (every target {CI_SECONDS} s, seed {CI_SEED})")
}

/// The name of the examples step in the summary.
const EXAMPLES_STEP: &str = "examples (roundtrip, own_event; trace-cmd)";

/// The loom model-check command: [`LOOM_CARGO_ARGS`] with `--cfg loom` added to RUSTFLAGS and
/// its own target directory (`<target>/loom`) so the cfg change does not rebuild everything
/// else.
pub fn loom_command() -> Command {
    let mut rustflags = std::env::var_os("RUSTFLAGS").unwrap_or_default();
    if !rustflags.is_empty() {
        rustflags.push(" ");
    }
    rustflags.push("--cfg loom");
    let mut command = workspace::cargo(LOOM_CARGO_ARGS);
    command.env("RUSTFLAGS", rustflags).env(
        "CARGO_TARGET_DIR",
        OsString::from(workspace::target_dir().join("loom")),
    );
    command
}

/// One QEMU run per CPU count; all run, then the step fails if any failed.
fn harness_steps(
    args: &TestArgs,
    images: &Images,
    log: &mut StepLog,
    totals: &mut Option<(u64, u64)>,
) -> Result<()> {
    let mut failures = Vec::new();
    for (model, cpus) in args.harness_matrix() {
        let name = format!("harness ({}, {model})", cpus_label(cpus));
        let result = log.run(&name, || {
            let run = harness_run(args, images, &model, cpus)?;
            let (all_passed, all_failed) = totals.get_or_insert((0, 0));
            *all_passed += run.passed;
            *all_failed += run.failed;
            match run.failure {
                None => Ok(()),
                Some(cause) => Err(anyhow!(cause)),
            }
        });
        if let Err(error) = result {
            failures.push(format!("{error:#}"));
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(anyhow!(failures.join("; ")))
    }
}

/// "1 CPU", "4 CPUs".
fn cpus_label(cpus: u16) -> String {
    if cpus == 1 {
        "1 CPU".to_string()
    } else {
        format!("{cpus} CPUs")
    }
}

/// The result of one harness run that could be judged.
struct HarnessRun {
    /// Tests that passed.
    passed: u64,
    /// Failures for the aggregate (at least 1 when the run failed).
    failed: u64,
    /// The cause, when the run failed.
    failure: Option<String>,
}

/// Boots the harness once and judges it, printing the cause, the failed tests and the last
/// console lines on failure. Errors are reserved for QEMU not starting at all.
fn harness_run(args: &TestArgs, images: &Images, model: &str, cpus: u16) -> Result<HarnessRun> {
    let config = QemuConfig::new(images, cpus, args.guest_words())?.with_cpu_model(model);
    let timeout = Duration::from_secs(args.timeout);
    let captured = qemu::run(&config, timeout, true, harness_outcome::is_relevant)?;
    let report = HarnessReport::parse(&captured.kept);
    let outcome = judge(&report, captured.end);
    let (passed, failed) = report.counts(&outcome);
    let seconds = captured.elapsed.as_secs_f64();
    let label = format!("{} on {model}", cpus_label(cpus));
    if outcome.is_pass() {
        eprintln!(
            "xtask: harness with {label} passed in {seconds:.1} s: {}",
            outcome.describe()
        );
        return Ok(HarnessRun {
            passed,
            failed,
            failure: None,
        });
    }
    captured.print_last_lines(FAILURE_TAIL_LINES);
    for test in &report.failed {
        eprintln!("xtask: FAILED {}: {}", test.name, test.reason);
    }
    eprintln!(
        "xtask: harness with {label} FAILED after {seconds:.1} s: {}",
        outcome.describe()
    );
    crash_log::save_failed_run(
        &format!("harness ({label})"),
        &captured,
        &outcome.describe(),
    );
    Ok(HarnessRun {
        passed,
        failed,
        failure: Some(outcome.describe()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loom_command_sets_cfg_and_its_own_target_dir() {
        let command = loom_command();
        let env = |key: &str| {
            command
                .get_envs()
                .find(|(k, _)| *k == key)
                .and_then(|(_, v)| v)
                .map(|v| v.to_string_lossy().into_owned())
        };
        assert!(env("RUSTFLAGS").is_some_and(|f| f.ends_with("--cfg loom")));
        assert!(env("CARGO_TARGET_DIR").is_some_and(|d| d.ends_with("loom")));
        let args: Vec<_> = command.get_args().collect();
        assert_eq!(args, LOOM_CARGO_ARGS);
    }
}
