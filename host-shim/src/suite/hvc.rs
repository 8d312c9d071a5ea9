//! `hvc::` — the hypercall path: round trips, unknown IDs, garbage registers, cost.

use alloc::format;
use host_shim::harness::{TestCase, TestResult};
use host_shim::rng::SplitMix64;
use hyptrace_abi::hypercall::{ABI_VERSION, SMCCC_NOT_SUPPORTED};
use hyptrace_abi::{HypError, HypercallId};

use super::{check, expect_eq, Ctx};
use crate::arch::boot::machine;
use crate::arch::calls::{hvc_raw, hypercall};
use crate::arch::console::println;
use crate::arch::{cpu, smp};

/// The `hvc::` group.
pub const TESTS: &[TestCase<Ctx>] = &[
    TestCase {
        group: "hvc",
        name: "null_round_trip_every_cpu",
        run: null_round_trip_every_cpu,
    },
    TestCase {
        group: "hvc",
        name: "unknown_ids_not_supported",
        run: unknown_ids_not_supported,
    },
    TestCase {
        group: "hvc",
        name: "garbage_registers_harmless",
        run: garbage_registers_harmless,
    },
    TestCase {
        group: "hvc",
        name: "nonzero_immediate_not_supported",
        run: nonzero_immediate_not_supported,
    },
    TestCase {
        group: "hvc",
        name: "round_trip_cost",
        run: round_trip_cost,
    },
];

const NOT_SUPPORTED: u64 = SMCCC_NOT_SUPPORTED as u64;

/// `calls` null hypercalls with changing arguments, each checked.
pub fn null_calls(calls: u64) -> TestResult {
    for i in 0..calls {
        let args = [i, !i, i.rotate_left(17)];
        let got = hypercall(HypercallId::Null, args);
        if got != [0, args[0], args[1], args[2]] {
            return Err(format!("call {i}: null returned {got:x?} for {args:x?}"));
        }
    }
    Ok(())
}

/// Checks that the hypervisor still answers correctly after something odd happened.
fn still_serving(index: usize) -> TestResult {
    let [status, version, nr_cpus, caller] = hypercall(HypercallId::Info, [0; 3]);
    expect_eq(
        "info after the odd call",
        [status, version, nr_cpus, caller],
        [0, ABI_VERSION, machine().cpus.count() as u64, index as u64],
    )
}

fn null_round_trip_every_cpu(_: &Ctx) -> TestResult {
    smp::run_everywhere(|_| null_calls(1_000), 10_000)
}

fn unknown_ids_not_supported(_: &Ctx) -> TestResult {
    let null = HypercallId::Null.function_id() as u64;
    let unknown = [
        // Inside the vendor-hypervisor range: unused numbers, SMC32, yielding, reserved bits.
        0xC600_0002,
        0xC600_000F,
        0xC600_001A,
        0xC600_FFFF,
        null & !(1 << 30),
        null & !(1 << 31),
        null | 0x0001_0000,
        // Outside it: other owners, PSCI over HVC (the conduit is SMC), zero, all ones.
        0xC500_0000,
        0xC700_0000,
        0x8400_0000,
        0xC400_0003,
        0x8000_0000,
        0,
        u64::MAX,
    ];
    for x0 in unknown {
        let mut regs = [0u64; 18];
        regs[0] = x0;
        regs[1] = 0x1111;
        regs[2] = 0x2222;
        regs[3] = 0x3333;
        let out = hvc_raw(regs);
        check(out[0] == NOT_SUPPORTED, || {
            format!("id {x0:#x}: x0 = {:#x}, expected NOT_SUPPORTED", out[0])
        })?;
        check(out[1..4] == [0x1111, 0x2222, 0x3333], || {
            format!("id {x0:#x}: x1..x3 changed to {:x?}", &out[1..4])
        })?;
        null_calls(1).map_err(|e| format!("after id {x0:#x}: {e}"))?;
    }
    still_serving(0)
}

fn garbage_registers_harmless(ctx: &Ctx) -> TestResult {
    let seed = ctx.seed;
    SEED.store(seed, core::sync::atomic::Ordering::Relaxed);
    smp::run_everywhere(
        |index| {
            // Each CPU draws its own stream from the printed seed.
            let seed = SEED.load(core::sync::atomic::Ordering::Relaxed);
            let mut rng = SplitMix64::new(seed ^ (index as u64).wrapping_mul(0x9e37_79b9));
            for round in 0..2_000 {
                let mut regs = [0u64; 18];
                for r in regs.iter_mut() {
                    *r = rng.edgy();
                }
                // Now and then aim at a real call with garbage arguments.
                if rng.below(4) == 0 {
                    regs[0] = (rng.next_u64() << 32) | HypercallId::Null.function_id() as u64;
                }
                let out = hvc_raw(regs);
                let accepted = match HypercallId::from_x0(regs[0]) {
                    Some(HypercallId::Null) | Some(HypercallId::Info) => out[0] == 0,
                    // Tracing is not loaded here: any other call must be refused with one of
                    // the documented error codes.
                    Some(_) => HypError::from_code(out[0] as i64).is_some(),
                    None => out[0] == NOT_SUPPORTED,
                };
                check(accepted, || {
                    format!("round {round}: x0 {:#x} -> {:#x}", regs[0], out[0])
                })?;
                if out[0] != 0 {
                    check(out[1..4] == regs[1..4], || {
                        format!("round {round}: refused call changed x1..x3")
                    })?;
                }
                check(out[4..] == regs[4..], || {
                    format!("round {round}: x4..x17 not preserved")
                })?;
            }
            still_serving(index)
        },
        60_000,
    )
    .map_err(|e| format!("seed {seed}: {e}"))
}

/// The harness seed, shared with jobs on other CPUs (jobs are plain `fn`s).
static SEED: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

fn nonzero_immediate_not_supported(_: &Ctx) -> TestResult {
    let (x0, x1, x2, x3): (u64, u64, u64, u64);
    // SAFETY: an HVC to our hypervisor, which only writes X0..X3 (declared clobbered).
    unsafe {
        core::arch::asm!(
            "hvc #1",
            inout("x0") HypercallId::Null.function_id() as u64 => x0,
            inout("x1") 1u64 => x1,
            inout("x2") 2u64 => x2,
            inout("x3") 3u64 => x3,
            options(nostack)
        );
    }
    expect_eq("hvc #1 status", x0, NOT_SUPPORTED)?;
    expect_eq("hvc #1 x1..x3", [x1, x2, x3], [1, 2, 3])?;
    still_serving(0)
}

fn round_trip_cost(_: &Ctx) -> TestResult {
    const CALLS: u64 = 20_000;
    let freq = cpu::counter_frequency();
    for index in 0..machine().cpus.count() {
        let measure = move |_: usize| -> TestResult {
            let start = cpu::counter();
            null_calls(CALLS)?;
            let ticks = cpu::counter() - start;
            println!(
                "    hvc::round_trip_cost: CPU {} {CALLS} null calls: {} ticks/call ({} ns/call at {freq} Hz, TCG)",
                cpu::index(),
                ticks / CALLS,
                cpu::ticks_to_ns(ticks) / CALLS,
            );
            Ok(())
        };
        if index == 0 {
            measure(0)?;
        } else {
            smp::start_job(index, alloc::boxed::Box::new(move || measure(index)))?;
            smp::wait_job(index, 60_000)?;
        }
    }
    Ok(())
}
