//! `cargo xtask test`'s examples step: the library crates' examples run on the development
//! machine, and the trace.dat files they write are read by the real trace-cmd.
//!
//! - `hyptrace-ring --example roundtrip`: a writer, a reader draining it with overwrites, the
//!   pages as a trace.dat. trace-cmd must print exactly the events the example says it read,
//!   as `selftest` events in sequence order without gaps.
//! - `hyptrace-ring --example own_event`: events defined outside hyptrace's crates. trace-cmd
//!   must print both, formatted by the print format the example defined.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, ensure, Context, Result};

use crate::{tools, workspace};

/// Runs both examples and checks their files with trace-cmd.
pub fn run() -> Result<()> {
    let trace_cmd = tools::ensure_tool(tools::TRACE_CMD.0, tools::TRACE_CMD.1)?;
    let dir = workspace::target_dir().join("examples-out");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;

    let file = dir.join("roundtrip.dat");
    let said = run_example("roundtrip", &file)?;
    let read: u64 = said
        .split_whitespace()
        .find_map(|w| w.strip_prefix("read="))
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("roundtrip printed no read=N: {said:?}"))?;
    let lost: u64 = said
        .split_whitespace()
        .find_map(|w| w.strip_prefix("lost="))
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("roundtrip printed no lost=N: {said:?}"))?;
    ensure!(
        lost > 0,
        "roundtrip lost nothing, so overwrite went untested: {said}"
    );
    let printed = trace_cmd_report(&trace_cmd, &file)?;
    let seqs: Vec<u64> = printed
        .lines()
        .filter(|l| l.contains(" selftest: "))
        .map(|l| {
            l.split("seq=")
                .nth(1)
                .and_then(|s| s.split_whitespace().next())
                .and_then(|s| s.parse().ok())
                .with_context(|| format!("no seq= in {l:?}"))
        })
        .collect::<Result<_>>()?;
    ensure!(
        seqs.len() as u64 == read,
        "trace-cmd printed {} selftest events, the example read {read}",
        seqs.len()
    );
    let expected: Vec<u64> = (lost..lost + read).collect();
    ensure!(
        seqs == expected,
        "trace-cmd's events are not seq {lost}.. in order"
    );

    let file = dir.join("own_event.dat");
    run_example("own_event", &file)?;
    let printed = trace_cmd_report(&trace_cmd, &file)?;
    for (event, text) in [
        ("vcpu_enter:", "vcpu=1"),
        ("vcpu_exit:", "vcpu=1 reason=0x16 elr=0xffff800008001234"),
    ] {
        if !printed
            .lines()
            .any(|l| l.contains(event) && l.trim_end().ends_with(text))
        {
            bail!("trace-cmd did not print {event} {text}; it printed:\n{printed}");
        }
    }
    Ok(())
}

/// Runs `cargo run -p hyptrace-ring --example NAME -- OUTPUT` and returns its stdout.
fn run_example(name: &str, output: &Path) -> Result<String> {
    let mut command =
        workspace::cargo(&["run", "-q", "-p", "hyptrace-ring", "--example", name, "--"]);
    command.arg(output);
    let out = workspace::output_checked(command)?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `trace-cmd report -i FILE`, which must succeed.
fn trace_cmd_report(trace_cmd: &Path, file: &Path) -> Result<String> {
    let mut command = Command::new(trace_cmd);
    command.arg("report").arg("-i").arg(file);
    let out = workspace::output_checked(command)?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
