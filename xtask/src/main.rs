//! `cargo xtask`: hyptrace's build, run, test and bench driver.
//!
//! Run `cargo xtask --help` for the commands. The alias lives in `.cargo/config.toml`; the
//! commands are described in `docs/xtask.md`.
//!
//! Layout:
//! - [`cli`]: the command line (clap).
//! - [`workspace`]: where things are (workspace root, target directory, QEMU's working
//!   directory) and how cargo is invoked.
//! - [`build`]: building the two bare-metal images.
//! - [`tools`]: making sure system tools such as QEMU and trace-cmd are installed.
//! - [`supervise`]: running a child process under a deadline while draining its output.
//! - [`qemu`]: the QEMU command line and one supervised QEMU run.
//! - [`crash_log`]: the console of a failed QEMU run, saved to `<target>/hyp-crash.log`.
//! - [`harness_outcome`]: the pure pass/fail judgement of an in-QEMU harness run.
//! - [`trace_summary`]: what the guest's `run` mode printed about the trace it recorded.
//! - [`report_check`]: the pure judgement of a trace.dat from trace-cmd's outputs.
//! - [`report`]: `cargo xtask report`, hyptrace's own trace.dat decoder and printer.
//! - [`fuzz_cmd`]: `cargo xtask fuzz`, the libFuzzer targets of `hyp/fuzz`.
//! - [`run_cmd`], [`test_cmd`], [`bench`]: the `run`, `test` and `bench` subcommands;
//!   [`trace_step`]: the trace.dat step of `test`.
//! - [`step_log`]: timing and summarising the steps of `test`.

mod bench;
mod bench_callgrind;
mod bench_json;
mod bench_lttng;
mod bench_qemu;
mod build;
mod cli;
mod crash_log;
mod event_counts;
mod examples_step;
mod fault_report;
mod fuzz_cmd;
mod harness_outcome;
mod icount;
mod interrupt_step;
mod latency;
mod limits;
mod mmu_check;
mod qemu;
mod report;
mod report_check;
mod run_cmd;
mod soak_cmd;
mod step_log;
mod supervise;
mod test_cmd;
mod timeline;
mod toolchain;
mod tools;
mod trace_step;
mod trace_summary;
mod workspace;

use std::fmt;
use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};

/// An error that was already printed where it happened (so that, e.g., `test` can keep its
/// `harness: N passed, N failed` line last); `main` only turns it into a failing exit code.
#[derive(Debug)]
pub struct Reported;

impl fmt::Display for Reported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("failure already reported above")
    }
}

impl std::error::Error for Reported {}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Every command that builds an image or runs clippy needs the pinned targets and
    // components; the reader and the QEMU check do not.
    let builds = !matches!(cli.command, Command::Report(_) | Command::QemuCheck);
    if builds {
        if let Err(error) = toolchain::ensure_pinned() {
            eprintln!("xtask: error: {error:#}");
            return ExitCode::FAILURE;
        }
    }
    let result = match cli.command {
        Command::Build(args) => build::build_images(args.profile()).and_then(|images| {
            eprintln!("xtask: hyp image:       {}", images.hyp.display());
            eprintln!("xtask: host-shim image: {}", images.host_shim.display());
            if args.fault_injection {
                let path = build::build_fault_injection_hyp(args.profile())?;
                eprintln!("xtask: test-only hyp:   {}", path.display());
            }
            Ok(())
        }),
        Command::Run(args) => run_cmd::run(&args),
        Command::Test(args) => test_cmd::run(&args),
        Command::Soak(args) => soak_cmd::run(&args),
        Command::Bench(args) => bench::run(&args),
        Command::QemuCheck => qemu::check_installation(),
        Command::Report(args) => report::run(&args),
        Command::Fuzz(args) => fuzz_cmd::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) if error.is::<Reported>() => ExitCode::FAILURE,
        Err(error) => {
            // `{:#}` prints the whole context chain on one line: what failed, then why.
            eprintln!("xtask: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
