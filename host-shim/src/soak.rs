//! `cargo xtask soak`: every CPU traces at full speed for minutes while CPU 0 drains
//! continuously and issues randomized control calls; at the end, exact accounting per CPU.
//!
//! Control actions, one every 100 ms, chosen by a seeded generator: a disable/enable cycle,
//! a reset of a random CPU (taken while tracing is disabled and that CPU is drained, so its
//! counts up to the reset are exact), an update of the clock with the same parameters, or a
//! burst of swaps. Progress is printed every 5 s.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use host_shim::harness::RunOptions;
use host_shim::reader::PageBuf;
use host_shim::rng::SplitMix64;
use hyptrace_abi::{HypError, HypercallId};

use crate::arch::boot::machine;
use crate::arch::console::println;
use crate::arch::{cpu, smp};
use crate::record::{call, clock_params, page_pool, poke, worker, workload_slice, Session, STOP};

/// Per-CPU totals across resets.
#[derive(Clone, Copy, Default)]
struct Totals {
    written: u64,
    read: u64,
    lost: u64,
}

/// Runs the soak; returns the semihosting exit status.
pub fn run(opts: &RunOptions, seed: u64) -> u32 {
    match soak(opts, seed) {
        Ok(()) => {
            println!("soak: PASSED");
            0
        }
        Err(e) => {
            println!("soak: FAILED: {e}");
            1
        }
    }
}

/// Drains every page `reader` has without keeping them; returns the events read.
fn drain_count(s: &mut Session, c: usize, buf: &mut PageBuf) -> Result<u64, String> {
    let mut events = 0;
    loop {
        match s.readers[c].read_page(buf) {
            Ok(Some(page)) => events += page.events,
            Ok(None) | Err(HypError::Busy) => return Ok(events),
            Err(e) => return Err(format!("drain of cpu {c}: {e}")),
        }
    }
}

fn soak(opts: &RunOptions, seed: u64) -> Result<(), String> {
    let n = machine().cpus.count();
    let mut pool = page_pool();
    let mut s = Session::start(&mut pool, (opts.buffer_kb * 1024) as usize)?;
    s.enable_events(opts.events)?;
    let mut rng = SplitMix64::new(seed);
    let mut totals = [Totals::default(); hyptrace_platform::memmap::MAX_CPUS];
    let mut buf = PageBuf::zeroed();
    println!(
        "soak: {} s on {n} CPUs, {} KiB per CPU, seed {seed}",
        opts.duration_ms / 1000,
        opts.buffer_kb
    );
    STOP.store(false, Ordering::Release);
    s.set_writable(true).map_err(|e| format!("enable: {e}"))?;
    for c in 1..n {
        smp::start_job(c, alloc::boxed::Box::new(move || worker(c)))?;
    }
    let start = cpu::counter();
    let duration = cpu::ticks_per_ms(opts.duration_ms);
    let (period, action_every, progress_every) = (
        cpu::ticks_per_ms(opts.period_ms),
        cpu::ticks_per_ms(100),
        cpu::ticks_per_ms(5_000),
    );
    let (mut next_poll, mut next_action, mut next_progress) =
        (start, start + action_every, start + progress_every);
    let mut actions = [0u64; 4];
    while cpu::counter() - start < duration {
        if n == 1 {
            workload_slice(0)?;
        }
        let now = cpu::counter();
        if now >= next_poll {
            next_poll = now + period;
            for c in 0..n {
                if poke(&mut s.readers[c]).map_err(|e| format!("poke {c}: {e}"))? {
                    drain_count(&mut s, c, &mut buf)?;
                }
            }
        }
        if now >= next_action {
            next_action = now + action_every;
            let kind = rng.below(4) as usize;
            actions[kind] += 1;
            control_action(kind, &mut s, &mut rng, &mut totals, &mut buf)?;
        }
        if now >= next_progress {
            next_progress = now + progress_every;
            let (mut read, mut lost) = (0, 0);
            for (c, t) in totals.iter().enumerate().take(n) {
                let st = s.readers[c].stats().unwrap_or_default();
                read += t.read + st.read;
                lost += t.lost + st.lost;
            }
            println!(
                "soak: {}/{} s, events read {read}, lost {lost}, actions {actions:?}",
                cpu::ticks_to_ns(now - start) / 1_000_000_000,
                opts.duration_ms / 1000
            );
        }
    }
    STOP.store(true, Ordering::Release);
    for c in 1..n {
        smp::wait_job(c, 30_000)?;
    }
    s.set_writable(false).map_err(|e| format!("disable: {e}"))?;
    let mut failures = Vec::new();
    for (c, t) in totals.iter_mut().enumerate().take(n) {
        drain_count(&mut s, c, &mut buf)?;
        let st = s.readers[c]
            .stats()
            .map_err(|e| format!("stats {c}: {e}"))?;
        t.written += st.entries;
        t.read += st.read;
        t.lost += st.lost;
        println!(
            "soak: cpu {c} written {} read {} lost {}",
            t.written, t.read, t.lost
        );
        if t.read + t.lost != t.written {
            failures.push(format!(
                "cpu {c}: read + lost = {} != written {}",
                t.read + t.lost,
                t.written
            ));
        }
    }
    println!("soak: actions (disable/enable, reset, clock, swaps) = {actions:?}");
    s.stop(&mut pool).map_err(|e| format!("teardown: {e}"))?;
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("; "))
    }
}

/// One randomized control action.
fn control_action(
    kind: usize,
    s: &mut Session,
    rng: &mut SplitMix64,
    totals: &mut [Totals],
    buf: &mut PageBuf,
) -> Result<(), String> {
    let n = machine().cpus.count();
    match kind {
        0 => {
            s.set_writable(false).map_err(|e| format!("disable: {e}"))?;
            s.set_writable(true).map_err(|e| format!("enable: {e}"))?;
        }
        1 => {
            // Quiesce, drain the victim, bank its exact counts, reset it, resume.
            let c = rng.below(n as u64) as usize;
            s.set_writable(false).map_err(|e| format!("disable: {e}"))?;
            drain_count(s, c, buf)?;
            let st = s.readers[c]
                .stats()
                .map_err(|e| format!("stats {c}: {e}"))?;
            totals[c].written += st.entries;
            totals[c].read += st.read;
            totals[c].lost += st.lost;
            call(HypercallId::ResetTracing, &[c as u64]).map_err(|e| format!("reset {c}: {e}"))?;
            s.readers[c].after_reset();
            s.set_writable(true).map_err(|e| format!("enable: {e}"))?;
        }
        2 => {
            let p = clock_params();
            call(
                HypercallId::UpdateClock,
                &[p.mult as u64, p.shift as u64, p.epoch_ns, p.epoch_cyc],
            )
            .map_err(|e| format!("update_clock: {e}"))?;
        }
        _ => {
            for _ in 0..8 {
                let c = rng.below(n as u64) as usize;
                drain_count(s, c, buf)?;
            }
        }
    }
    Ok(())
}
