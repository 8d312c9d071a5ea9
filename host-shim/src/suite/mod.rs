//! The in-QEMU test suite and the default workload.
//!
//! Each test runs on the boot CPU and may dispatch work to other CPUs through
//! [`smp`](crate::arch::smp). Results are printed as `test <group>::<name> ... ok|FAILED: ...`
//! followed by `N passed, N failed` (see [`host_shim::harness`]).

mod bad_input;
mod boot;
mod fuzz;
mod hvc;
mod isolation;
mod psci;
mod race;
mod tracing;
mod tracing_support;

use alloc::format;
use host_shim::harness::{Cmdline, ResultLine, Tally, TestCase, TestResult};
use hyptrace_abi::HypercallId;

use crate::arch::console::println;
use crate::arch::cpu;
use crate::record::call;

/// What every test receives.
pub struct Ctx {
    /// Seed for randomized tests (printed at the start of the run).
    pub seed: u64,
}

/// Every test, in the order they run.
const TESTS: &[&[TestCase<Ctx>]] = &[
    boot::TESTS,
    hvc::TESTS,
    psci::TESTS,
    tracing::TESTS,
    isolation::TESTS,
    bad_input::TESTS,
    fuzz::TESTS,
    race::TESTS,
];

/// Runs the selected tests and returns the semihosting exit status.
pub fn run(cmd: &Cmdline) -> u32 {
    let seed = cmd.seed.unwrap_or_else(cpu::counter);
    println!(
        "host: running the harness (seed={seed}, filter={})",
        cmd.filter.unwrap_or("none")
    );
    let ctx = Ctx { seed };
    let mut tally = Tally::default();
    for test in TESTS.iter().flat_map(|group| group.iter()) {
        if !test.matches(cmd.filter) {
            continue;
        }
        let mut result = (test.run)(&ctx);
        // A test must leave nothing loaded (and a failed one must not make the next fail).
        let leftover = call(HypercallId::TeardownTracing, &[]);
        if leftover.is_ok() && result.is_ok() {
            result = Err("the test left tracing loaded".into());
        }
        tally.record(&result);
        println!(
            "{}",
            ResultLine {
                group: test.group,
                name: test.name,
                result: &result
            }
        );
    }
    println!("{tally}");
    tally.exit_code()
}

/// `Err` with a formatted reason unless `cond`.
pub fn check(cond: bool, reason: impl FnOnce() -> alloc::string::String) -> TestResult {
    if cond {
        Ok(())
    } else {
        Err(reason())
    }
}

/// `Err("<what>: got <actual>, expected <expected>")` unless they are equal.
pub fn expect_eq<T: PartialEq + core::fmt::Debug>(
    what: &str,
    actual: T,
    expected: T,
) -> TestResult {
    check(actual == expected, || {
        format!("{what}: got {actual:?}, expected {expected:?}")
    })
}
