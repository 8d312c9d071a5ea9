//! `race::` — control calls racing writers: disable, enable and reset under load, swaps racing
//! head pushes on a tiny ring, teardown under writes and swaps, and a tracing CPU turned off
//! and on. Each asserts exact accounting (read + lost == written) and, for teardown, that no
//! write lands after it returns. With one CPU the races degrade to interleavings on that CPU.

use alloc::boxed::Box;
use alloc::format;
use alloc::vec::Vec;

use host_shim::harness::{TestCase, TestResult};
use hyptrace_abi::{HypError, HypercallId};

use super::tracing_support::{
    base, selftest, selftest_buffer, start_writers, teardown_under_writers, with_session, SeqCheck,
    SELFTEST,
};
use super::{check, expect_eq, Ctx};
use crate::arch::boot::machine;
use crate::arch::{cpu, smp};
use crate::record::{call, page_pool, Session};

/// The `race::` group.
pub const TESTS: &[TestCase<Ctx>] = &[
    TestCase {
        group: "race",
        name: "disable_enable_reset_under_load",
        run: control_under_load,
    },
    TestCase {
        group: "race",
        name: "swaps_race_head_pushes",
        run: swaps_race_head_pushes,
    },
    TestCase {
        group: "race",
        name: "teardown_under_writes_and_swaps",
        run: teardown_under_swaps,
    },
    TestCase {
        group: "race",
        name: "tracing_cpu_off_and_on",
        run: cpu_off_on,
    },
];

fn exact(s: &mut Session, checks: &mut [SeqCheck]) -> TestResult {
    for (c, (check, reader)) in checks.iter_mut().zip(s.readers.iter_mut()).enumerate() {
        check.drain(reader)?;
        let st = reader.stats().map_err(|e| format!("stats: {e}"))?;
        expect_eq(
            &format!("cpu {c} read + lost"),
            st.read + st.lost,
            st.entries,
        )?;
        expect_eq(&format!("cpu {c} read"), check.count(), st.read)?;
    }
    Ok(())
}

fn control_under_load(ctx: &Ctx) -> TestResult {
    let n = machine().cpus.count();
    let mut rng = host_shim::rng::SplitMix64::new(ctx.seed);
    with_session(16 << 10, &[SELFTEST], |s| {
        let mut checks: Vec<SeqCheck> = (0..n).map(SeqCheck::for_cpu).collect();
        let writers = start_writers(16)?;
        let mut own = base(0);
        for round in 0..60 {
            own += selftest(own, 16)?;
            match round % 3 {
                0 => {
                    call(HypercallId::EnableTracing, &[0]).map_err(|e| format!("disable: {e}"))?;
                    // Nothing is written while disabled.
                    expect_eq("written while disabled", selftest(own, 8)?, 0)?;
                    call(HypercallId::EnableTracing, &[1]).map_err(|e| format!("enable: {e}"))?;
                }
                1 => {
                    let victim = rng.below(n as u64) as usize;
                    call(HypercallId::ResetTracing, &[victim as u64])
                        .map_err(|e| format!("reset: {e}"))?;
                    s.readers[victim].after_reset();
                    // A reset starts the CPU's accounting afresh; its sequence may restart
                    // anywhere above what was written before.
                    checks[victim] = SeqCheck::for_cpu(victim);
                }
                _ => {
                    for (check, reader) in checks.iter_mut().zip(s.readers.iter_mut()) {
                        check.drain(reader)?;
                    }
                }
            }
        }
        writers.stop()?;
        call(HypercallId::EnableTracing, &[0]).map_err(|e| format!("disable: {e}"))?;
        exact(s, &mut checks)
    })
}

fn swaps_race_head_pushes(_: &Ctx) -> TestResult {
    let n = machine().cpus.count();
    // Two ring pages: the writer pushes the head every page.
    with_session(1, &[SELFTEST], |s| {
        let mut checks: Vec<SeqCheck> = (0..n).map(SeqCheck::for_cpu).collect();
        let writers = start_writers(64)?;
        let deadline = cpu::counter() + cpu::ticks_per_ms(300);
        let mut own = base(0);
        while cpu::counter() < deadline {
            own += selftest(own, 64)?;
            for (check, reader) in checks.iter_mut().zip(s.readers.iter_mut()) {
                check.drain(reader)?;
            }
        }
        writers.stop()?;
        call(HypercallId::EnableTracing, &[0]).map_err(|e| format!("disable: {e}"))?;
        exact(s, &mut checks)?;
        let lost: u64 = s
            .readers
            .iter_mut()
            .map(|r| r.stats().map_or(0, |st| st.lost))
            .sum();
        crate::arch::console::println!("    race::swaps_race_head_pushes: {lost} events lost");
        check(lost > 0 || n == 1, || {
            "the tiny ring never overflowed: no race happened".into()
        })
    })
}

const CANARY: u64 = 0x5eed_dead_beef_0001;

fn teardown_under_swaps(_: &Ctx) -> TestResult {
    let n = machine().cpus.count();
    let mut pool = page_pool();
    let (_session, pages) = selftest_buffer(&mut pool, 4 << 10)?;
    let writers = start_writers(32)?;
    let deadline = cpu::counter() + cpu::ticks_per_ms(100);
    while cpu::counter() < deadline {
        for c in 0..n {
            match call(HypercallId::SwapReader, &[c as u64]) {
                Ok(_) | Err(HypError::Busy) => {}
                Err(e) => return Err(format!("swap {c}: {e}")),
            }
        }
    }
    teardown_under_writers(writers, &mut pool, &pages, CANARY, || {
        // The writers keep calling (and are refused); swaps are refused too.
        let refused = call(HypercallId::SwapReader, &[0]).err();
        expect_eq("swap after teardown", refused, Some(HypError::NotLoaded))
    })
}

fn cpu_off_on(_: &Ctx) -> TestResult {
    let n = machine().cpus.count();
    if n == 1 {
        crate::arch::console::println!(
            "    race::tracing_cpu_off_and_on: no secondary CPU (-smp 1)"
        );
        return Ok(());
    }
    with_session(64 << 10, &[SELFTEST], |s| {
        let victim = n - 1;
        let write = move |first: u64| -> TestResult {
            expect_eq("selftest written", selftest(first, 300)?, 300)
        };
        smp::start_job(victim, Box::new(move || write(base(victim))))?;
        smp::wait_job(victim, 10_000)?;
        // Off, while tracing stays loaded and enabled; then on again.
        let arrivals = smp::boot_block(victim)
            .arrivals
            .load(core::sync::atomic::Ordering::Acquire);
        smp::start_job(victim, Box::new(smp::power_off_self))?;
        smp::wait_off(victim, 5_000)?;
        expect_eq("CPU_ON", smp::cpu_on(victim, 77), 0)?;
        smp::wait_arrivals(victim, arrivals + 1, 5_000)?;
        smp::start_job(victim, Box::new(move || write(base(victim) + 300)))?;
        smp::wait_job(victim, 10_000)?;
        call(HypercallId::EnableTracing, &[0]).map_err(|e| format!("disable: {e}"))?;
        let mut checks: Vec<SeqCheck> = (0..n).map(SeqCheck::for_cpu).collect();
        exact(s, &mut checks)?;
        expect_eq(
            "events of the CPU that went off and on",
            checks[victim].count(),
            600,
        )
    })
}
