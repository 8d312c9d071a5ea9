//! In-QEMU measurements (issue #6 parts b to e): what tracing costs on the hypercall path,
//! one selftest event at EL2 against a plain timestamp-and-store loop, the highest rate one
//! reader drains without loss, and how the per-event cost scales with buffer size and writer
//! count. Every figure is printed as
//! `bench: <key> <median> [<min>..<max>] <unit>` from alternating rounds in one boot. Under
//! TCG absolute times say little about hardware; compare figures with each other.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use hyptrace_abi::event_format::Event;
use hyptrace_abi::events::{HostHcall, HypEnter, HypExit, Selftest};
use hyptrace_abi::HypercallId;

use crate::arch::boot::machine;
use crate::arch::console::println;
use crate::arch::{cpu, smp};
use crate::record::{call, page_pool, Session};

/// Rounds per measurement (alternating between the variants).
const ROUNDS: usize = 5;
/// Hypercalls per round.
const CALLS: u64 = 20_000;
/// Events per selftest batch (the hypervisor's maximum).
const BATCH: u64 = 1 << 16;

/// Median, min and max of `v` (sorted in place).
fn stats(v: &mut [f64]) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

fn print(key: &str, v: &mut [f64], unit: &str) -> f64 {
    let (med, min, max) = stats(v);
    println!("bench: {key} {med:.1} [{min:.1}..{max:.1}] {unit}");
    med
}

/// ns per call of `calls` null hypercalls.
fn null_calls(calls: u64) -> Result<f64, String> {
    let start = cpu::counter();
    for i in 0..calls {
        call(HypercallId::Null, &[i]).map_err(|e| format!("null: {e}"))?;
    }
    Ok(cpu::ticks_to_ns(cpu::counter() - start) as f64 / calls as f64)
}

/// ns per event of one full selftest batch on this CPU.
fn selftest_batch(first: u64) -> Result<f64, String> {
    selftest_events(first, BATCH)
}

/// The floor of one event at EL1 (`hyptrace_ring::floor`, the hypervisor's test-only
/// `writer_bench` runs the same loop at EL2), ns per event.
fn store_loop(ring: &mut [u8], events: u64) -> f64 {
    let start = cpu::counter();
    hyptrace_ring::floor::store_loop(ring, events, cpu::counter);
    cpu::ticks_to_ns(cpu::counter() - start) as f64 / events as f64
}

/// `hyptrace bench`: prints every figure; returns the exit status.
pub fn run() -> u32 {
    match measure() {
        Ok(()) => 0,
        Err(e) => {
            println!("bench: FAILED: {e}");
            1
        }
    }
}

fn measure() -> Result<(), String> {
    let n = machine().cpus.count();
    println!(
        "bench: machine {n} CPUs, counter {} Hz ({} ns per tick), QEMU TCG",
        cpu::counter_frequency(),
        cpu::ticks_to_ns(1)
    );
    // (b) The hypercall path: unloaded, traced (hyp_enter/hyp_exit), loaded but disabled.
    let mut pool = page_pool();
    let (mut unloaded, mut traced, mut disabled) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        unloaded.push(null_calls(CALLS)?);
        let s = Session::start(&mut pool, 1 << 20)?;
        s.set_writable(true).map_err(|e| format!("{e}"))?;
        disabled.push(null_calls(CALLS)?);
        for id in [HypEnter::DESC.id, HypExit::DESC.id] {
            call(HypercallId::EnableEvent, &[id as u64, 1]).map_err(|e| format!("{e}"))?;
        }
        traced.push(null_calls(CALLS)?);
        s.stop(&mut pool).map_err(|e| format!("{e}"))?;
    }
    let base = print("hvc_null_unloaded", &mut unloaded, "ns/call");
    let on = print("hvc_null_traced", &mut traced, "ns/call");
    let off = print("hvc_null_loaded_disabled", &mut disabled, "ns/call");
    println!(
        "bench: hvc_traced_overhead {:.3} ratio (goal <= 1.15)",
        on / base
    );
    println!(
        "bench: hvc_disabled_overhead {:.3} ratio (goal <= 1.01)",
        off / base
    );

    // (c) One selftest event at EL2 against the floor loop at EL1, same boot.
    let ring_page = pool.alloc_contiguous(256).map_err(|e| format!("{e:?}"))?;
    // SAFETY: 256 pool pages this function owns until it frees them below.
    let ring = unsafe { core::slice::from_raw_parts_mut(ring_page as *mut u8, 1 << 20) };
    let (mut event, mut floor) = (Vec::new(), Vec::new());
    let s = Session::start(&mut pool, 1 << 20)?;
    call(HypercallId::EnableEvent, &[Selftest::DESC.id as u64, 1]).map_err(|e| format!("{e}"))?;
    s.set_writable(true).map_err(|e| format!("{e}"))?;
    for round in 0..ROUNDS as u64 {
        event.push(selftest_batch(round * BATCH)?);
        floor.push(store_loop(ring, BATCH));
    }
    s.stop(&mut pool).map_err(|e| format!("{e}"))?;
    for i in 0..256 {
        let _ = pool.free(ring_page + i * 4096);
    }
    let ev = print("selftest_event", &mut event, "ns/event");
    let fl = print("store_loop_floor", &mut floor, "ns/event");
    println!("bench: selftest_over_floor {:.3} ratio", ev / fl);
    printk_against_selftest(&mut pool)?;

    // (e) Scaling: per-event cost against buffer size (one writer) and writer count.
    for kb in [64u64, 1024, 16 * 1024, 64 * 1024] {
        let s = Session::start(&mut pool, (kb * 1024) as usize)?;
        call(HypercallId::EnableEvent, &[Selftest::DESC.id as u64, 1])
            .map_err(|e| format!("{e}"))?;
        s.set_writable(true).map_err(|e| format!("{e}"))?;
        let mut v: Vec<f64> = (0..ROUNDS as u64)
            .map(|r| selftest_batch(r * BATCH))
            .collect::<Result<_, _>>()?;
        s.stop(&mut pool).map_err(|e| format!("{e}"))?;
        print(&format!("scaling_buffer_{kb}k"), &mut v, "ns/event");
    }
    for writers in 1..=n {
        let s = Session::start(&mut pool, 1 << 20)?;
        call(HypercallId::EnableEvent, &[Selftest::DESC.id as u64, 1])
            .map_err(|e| format!("{e}"))?;
        s.set_writable(true).map_err(|e| format!("{e}"))?;
        let mut v = Vec::new();
        for round in 0..ROUNDS as u64 {
            for c in 1..writers {
                smp::start_job(
                    c,
                    alloc::boxed::Box::new(move || {
                        selftest_batch(((c as u64) << 40) + round * BATCH).map(drop)
                    }),
                )?;
            }
            v.push(selftest_batch(round * BATCH)?);
            for c in 1..writers {
                smp::wait_job(c, 60_000)?;
            }
        }
        s.stop(&mut pool).map_err(|e| format!("{e}"))?;
        print(
            &format!("scaling_writers_{writers}"),
            &mut v,
            "ns/event (CPU 0)",
        );
    }
    drain_rates(&mut pool)?;
    println!("bench: done");
    Ok(())
}

/// Iterations of the calibration loop (2 instructions each).
const CALIBRATION_ITERATIONS: u64 = 1_000_000;
/// Hypercalls per deterministic figure.
const ICOUNT_CALLS: u64 = 4096;
/// Events per deterministic figure.
const ICOUNT_EVENTS: u64 = 16384;
/// `swap_reader` / `update_footers` calls per deterministic figure (fewer than the full
/// pages of [`CONTROL_BUFFER`], so every swap swaps).
const ICOUNT_CONTROL_CALLS: u64 = 4000;
/// Bytes per CPU of the buffer the control calls are counted on: 4096 ring pages.
const CONTROL_BUFFER: usize = 16 << 20;

/// `hyptrace bench icount=1`: the deterministic figures, run under `-icount shift=0`.
pub fn run_icount() -> u32 {
    match measure_icount() {
        Ok(()) => 0,
        Err(e) => {
            println!("bench: FAILED: {e}");
            1
        }
    }
}

/// Guest instructions per counter tick, measured on a loop of known length. Under
/// `-icount shift=0` QEMU's virtual clock advances 1 ns per instruction, so with the 62.5 MHz
/// counter this is 16; anything not within 1 % of a whole number means QEMU is not counting
/// instructions.
fn instructions_per_tick() -> Result<u64, String> {
    let start = cpu::counter();
    cpu::counted_loop(CALIBRATION_ITERATIONS);
    let ticks = cpu::counter() - start;
    let (insns, ticks) = (2 * CALIBRATION_ITERATIONS, ticks.max(1));
    let per_tick = insns as f64 / ticks as f64;
    // Nearest whole number, and how far the loop is from it (integers: no `round` in core).
    let whole = (insns + ticks / 2) / ticks;
    let off = insns.abs_diff(whole * ticks);
    println!(
        "bench: icount_calibration {per_tick:.3} instructions/tick ({insns} instructions in {ticks} ticks)"
    );
    if whole == 0 || off * 100 > whole * ticks {
        return Err(format!(
            "{per_tick:.3} instructions per tick is not a whole number: is QEMU running with -icount shift=0?"
        ));
    }
    Ok(whole)
}

/// The deterministic figures: each one run of a fixed count, converted from counter ticks
/// to instructions with the calibrated factor.
fn measure_icount() -> Result<(), String> {
    println!(
        "bench: machine {} CPUs, counter {} Hz, QEMU TCG with -icount shift=0",
        machine().cpus.count(),
        cpu::counter_frequency()
    );
    let per_tick = instructions_per_tick()? as f64;
    // The ns figures of the timed helpers, in instructions.
    let insns = |ns: f64| ns / cpu::ticks_to_ns(1) as f64 * per_tick;
    let figure = |key: &str, v: f64, unit: &str| println!("bench: icount_{key} {v:.1} {unit}");
    let mut pool = page_pool();
    let unloaded = insns(null_calls(ICOUNT_CALLS)?);
    let s = Session::start(&mut pool, 1 << 20)?;
    s.set_writable(true).map_err(|e| format!("{e}"))?;
    let disabled = insns(null_calls(ICOUNT_CALLS)?);
    let trap_events = [
        ("hyp_enter", HypEnter::DESC.id),
        ("host_hcall", HostHcall::DESC.id),
        ("hyp_exit", HypExit::DESC.id),
    ];
    let enable = |id: u16, on: bool| {
        call(HypercallId::EnableEvent, &[id as u64, on as u64]).map_err(|e| format!("{e}"))
    };
    // Each trap event alone: what it adds to the disabled call. hyp_enter and host_hcall
    // each open the entry batch when alone, so their sum exceeds the pair's cost.
    let mut alone = Vec::new();
    for (name, id) in trap_events {
        enable(id, true)?;
        alone.push((name, insns(null_calls(ICOUNT_CALLS)?) - disabled));
        enable(id, false)?;
    }
    for (_, id) in trap_events {
        enable(id, true)?;
    }
    let traced = insns(null_calls(ICOUNT_CALLS)?);
    s.stop(&mut pool).map_err(|e| format!("{e}"))?;
    figure("hvc_null_unloaded", unloaded, "instructions/call");
    figure("hvc_null_loaded_disabled", disabled, "instructions/call");
    figure(
        "hvc_null_traced",
        traced,
        "instructions/call (hyp_enter, host_hcall, hyp_exit)",
    );
    for (name, extra) in alone {
        figure(
            &format!("trap_{name}"),
            extra,
            "instructions/call added when it is the only event enabled",
        );
    }

    let s = Session::start(&mut pool, 1 << 20)?;
    for id in [Selftest::DESC.id, hyptrace_abi::printk::ID] {
        call(HypercallId::EnableEvent, &[id as u64, 1]).map_err(|e| format!("{e}"))?;
    }
    s.set_writable(true).map_err(|e| format!("{e}"))?;
    let selftest = insns(selftest_events(0, ICOUNT_EVENTS)?);
    let printk = printk_calls(ICOUNT_EVENTS)?.map(insns);
    let mut sized = Vec::new();
    for len in [4, 16, 64] {
        let n = writer_bench(
            hyptrace_abi::hypercall::WRITER_BENCH_EVENTS,
            ICOUNT_EVENTS,
            len,
        )?;
        sized.push((len, n.map(insns)));
    }
    s.stop(&mut pool).map_err(|e| format!("{e}"))?;
    // swap_reader and update_footers on a full 16 MiB buffer (4096 ring pages, filled and
    // wrapped by selftest events): every swap swaps a page, and 4,000 calls make the
    // counter's 16-instruction tick negligible in the figure.
    let s = Session::start(&mut pool, CONTROL_BUFFER)?;
    call(HypercallId::EnableEvent, &[Selftest::DESC.id as u64, 1]).map_err(|e| format!("{e}"))?;
    s.set_writable(true).map_err(|e| format!("{e}"))?;
    let batch = hyptrace_abi::limits::MAX_SELFTEST_BATCH;
    for k in 0..(CONTROL_BUFFER as u64 / 24).div_ceil(batch) + 1 {
        selftest_events(k * batch, batch)?;
    }
    let swap = insns(control_calls(
        HypercallId::SwapReader,
        ICOUNT_CONTROL_CALLS,
    )?);
    let footers = insns(control_calls(
        HypercallId::UpdateFooters,
        ICOUNT_CONTROL_CALLS,
    )?);
    s.stop(&mut pool).map_err(|e| format!("{e}"))?;
    let el2_floor = writer_bench(
        hyptrace_abi::hypercall::WRITER_BENCH_FLOOR,
        ICOUNT_EVENTS,
        0,
    )?;
    let ring_page = pool.alloc_contiguous(256).map_err(|e| format!("{e:?}"))?;
    // SAFETY: 256 pool pages this function owns until it frees them below.
    let ring = unsafe { core::slice::from_raw_parts_mut(ring_page as *mut u8, 1 << 20) };
    let floor = insns(store_loop(ring, ICOUNT_EVENTS));
    for i in 0..256 {
        let _ = pool.free(ring_page + i * 4096);
    }
    figure(
        "selftest_event",
        selftest,
        "instructions/event (18-byte payload, at EL2)",
    );
    figure(
        "store_loop_floor",
        floor,
        "instructions/event (counter read and 24-byte store, at EL1)",
    );
    figure(
        "swap_reader",
        swap,
        "instructions/call (from EL1, a full page swapped each time)",
    );
    figure("update_footers", footers, "instructions/call (from EL1)");
    let test_only = "skipped: the benchmark call needs the fault-injection hypervisor";
    match printk {
        Some(p) => figure(
            "printk_event",
            p,
            "instructions/call (two arguments, at EL2)",
        ),
        None => println!("bench: icount_printk_event {test_only}"),
    }
    match el2_floor {
        Some(f) => figure(
            "store_loop_floor_el2",
            insns(f),
            "instructions/event (the same loop, at EL2)",
        ),
        None => println!("bench: icount_store_loop_floor_el2 {test_only}"),
    }
    for (len, v) in sized {
        let key = format!("event_{len}");
        match v {
            Some(v) => figure(
                &key,
                v,
                "instructions/event (raw payload, one batch, at EL2)",
            ),
            None => println!("bench: icount_{key} {test_only}"),
        }
    }
    println!("bench: done");
    Ok(())
}

/// ns per event of `count` selftest events in one call on this CPU.
fn selftest_events(first: u64, count: u64) -> Result<f64, String> {
    let start = cpu::counter();
    let [n, _, _] =
        call(HypercallId::WriteSelftest, &[first, count]).map_err(|e| format!("{e}"))?;
    let ns = cpu::ticks_to_ns(cpu::counter() - start) as f64;
    if n != count {
        return Err(format!("wrote {n} of {count} selftest events"));
    }
    Ok(ns / count as f64)
}

/// ns per call of `count` calls of `id(cpu 0)` (`swap_reader` or `update_footers`).
fn control_calls(id: HypercallId, count: u64) -> Result<f64, String> {
    let start = cpu::counter();
    for _ in 0..count {
        let r = call(id, &[0]).map_err(|e| format!("{id:?}: {e}"))?;
        if id == HypercallId::SwapReader
            && !hyptrace_abi::SwapResult::from_regs(r).is_ok_and(|s| s.swapped)
        {
            return Err("swap_reader swapped no page: the figure would not be a swap".into());
        }
    }
    Ok(cpu::ticks_to_ns(cpu::counter() - start) as f64 / count as f64)
}

/// ns per iteration of the test-only `writer_bench(kind, count, len)` on this CPU; `None`
/// when the hypervisor does not answer it (a normal build).
fn writer_bench(kind: u64, count: u64, len: u64) -> Result<Option<f64>, String> {
    let mut regs = [0u64; 18];
    regs[0] = hyptrace_abi::hypercall::WRITER_BENCH_FID.into();
    regs[1..4].copy_from_slice(&[kind, count, len]);
    let start = cpu::counter();
    let out = crate::arch::calls::hvc_raw(regs);
    let ns = cpu::ticks_to_ns(cpu::counter() - start) as f64;
    match (out[0], out[1]) {
        (0, n) if n == count => Ok(Some(ns / count as f64)),
        (0, n) => Err(format!("writer_bench({kind}, {count}, {len}) did {n}")),
        _ => Ok(None),
    }
}

/// ns per `hyp_printk!` of `count` calls of `printk_bench`; `None` when the hypervisor does
/// not answer the test-only call.
fn printk_calls(count: u64) -> Result<Option<f64>, String> {
    let mut regs = [0u64; 18];
    regs[0] = hyptrace_abi::hypercall::PRINTK_BENCH_FID.into();
    regs[1] = count;
    let start = cpu::counter();
    let out = crate::arch::calls::hvc_raw(regs);
    let ns = cpu::ticks_to_ns(cpu::counter() - start) as f64;
    match (out[0], out[1]) {
        (0, n) if n == count => Ok(Some(ns / count as f64)),
        (0, n) => Err(format!("printk_bench made {n} of {count} calls")),
        _ => Ok(None),
    }
}

/// ns per `hyp_printk!` (two arguments) of one `printk_bench` batch on this CPU; `None` when
/// the hypervisor does not answer the test-only call (a normal build).
fn printk_batch() -> Result<Option<f64>, String> {
    printk_calls(BATCH)
}

/// (c') One `hyp_printk!` with two arguments against one selftest event, alternating in
/// one session. Needs the fault-injection hypervisor (the benchmark call is test-only); run
/// under `-icount shift=0` the ns figures are guest instructions (see docs/performance.md).
fn printk_against_selftest(pool: &mut host_shim::page_pool::PagePool) -> Result<(), String> {
    let s = Session::start(pool, 1 << 20)?;
    for id in [Selftest::DESC.id, hyptrace_abi::printk::ID] {
        call(HypercallId::EnableEvent, &[id as u64, 1]).map_err(|e| format!("{e}"))?;
    }
    s.set_writable(true).map_err(|e| format!("{e}"))?;
    let (mut printk, mut event) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS as u64 {
        match printk_batch()? {
            Some(ns) => printk.push(ns),
            None => break,
        }
        event.push(selftest_batch(round * BATCH)?);
    }
    s.stop(pool).map_err(|e| format!("{e}"))?;
    if printk.is_empty() {
        println!(
            "bench: printk_event skipped: the benchmark call needs the fault-injection hypervisor"
        );
        return Ok(());
    }
    let p = print("printk_event", &mut printk, "ns/event");
    let e = print("printk_selftest_event", &mut event, "ns/event");
    println!("bench: printk_over_selftest {:.3} ratio", p / e);
    Ok(())
}

/// Paced selftest writing on the calling CPU: `rate` events/s in batches of 32 until
/// `until`; returns how many it wrote.
fn paced_writer(rate: u64, until: u64, first: u64) -> Result<u64, String> {
    const PACE_BATCH: u64 = 32;
    let interval = cpu::counter_frequency() * PACE_BATCH / rate.max(1);
    let mut next = cpu::counter();
    let mut seq = first;
    let mut written = 0;
    while cpu::counter() < until {
        let [n, _, _] =
            call(HypercallId::WriteSelftest, &[seq, PACE_BATCH]).map_err(|e| format!("{e}"))?;
        written += n;
        seq += PACE_BATCH;
        next += interval;
        // Descheduled for a while (TCG on shared host cores): do not catch up in a burst.
        let now = cpu::counter();
        if now > next + interval {
            next = now;
        }
        while cpu::counter() < next {
            core::hint::spin_loop();
        }
    }
    Ok(written)
}

/// One point of part (d): `writers` CPUs (1..) write at `rate` events/s each for 300 ms while
/// CPU 0 drains every `period_ms`; returns (events written, events lost).
fn drain_point(
    pool: &mut host_shim::page_pool::PagePool,
    buffer_kb: u64,
    period_ms: u64,
    writers: usize,
    rate: u64,
) -> Result<(u64, u64), String> {
    let mut s = Session::start(pool, (buffer_kb * 1024) as usize)?;
    call(HypercallId::EnableEvent, &[Selftest::DESC.id as u64, 1]).map_err(|e| format!("{e}"))?;
    s.set_writable(true).map_err(|e| format!("{e}"))?;
    let start = cpu::counter();
    let until = start + cpu::ticks_per_ms(300);
    for c in 1..=writers {
        smp::start_job(
            c,
            alloc::boxed::Box::new(move || paced_writer(rate, until, (c as u64) << 40).map(drop)),
        )?;
    }
    let mut buf = host_shim::reader::PageBuf::zeroed();
    let mut next_poll = start;
    while cpu::counter() < until + cpu::ticks_per_ms(period_ms) {
        if cpu::counter() >= next_poll {
            next_poll += cpu::ticks_per_ms(period_ms);
            for c in 1..=writers {
                while let Ok(Some(_)) = s.readers[c].read_page(&mut buf) {}
            }
        }
        core::hint::spin_loop();
    }
    for c in 1..=writers {
        smp::wait_job(c, 30_000)?;
    }
    s.set_writable(false).map_err(|e| format!("{e}"))?;
    let (mut written, mut lost) = (0, 0);
    for c in 1..=writers {
        while let Ok(Some(_)) = s.readers[c].read_page(&mut buf) {}
        let st = s.readers[c].stats().map_err(|e| format!("{e}"))?;
        written += st.entries;
        lost += st.lost;
    }
    s.stop(pool).map_err(|e| format!("{e}"))?;
    Ok((written, lost))
}

/// Part (d): for one reader (CPU 0) and 1..3 writers, 64 KiB and 1 MiB per CPU, polling every
/// 1, 10 and 100 ms, the highest rate per writer on a doubling ladder that lost nothing, and
/// the loss rate at the next step.
fn drain_rates(pool: &mut host_shim::page_pool::PagePool) -> Result<(), String> {
    const LADDER: [u64; 8] = [
        25_000, 50_000, 100_000, 200_000, 400_000, 700_000, 1_000_000, 1_400_000,
    ];
    let writers_max = machine().cpus.count().saturating_sub(1).min(3);
    if writers_max == 0 {
        println!("bench: drain_rates skipped (needs a reader CPU and a writer CPU)");
        return Ok(());
    }
    for writers in 1..=writers_max {
        for buffer_kb in [64u64, 1024] {
            for period_ms in [1u64, 10, 100] {
                let (mut best, mut achieved) = (0, 0.0);
                let mut above = None;
                for rate in LADDER {
                    let (written, lost) = drain_point(pool, buffer_kb, period_ms, writers, rate)?;
                    if lost == 0 {
                        best = rate;
                        // Over the 300 ms window: what the paced writers really wrote.
                        achieved = written as f64 / 0.3 / writers as f64;
                    } else {
                        above = Some((rate, lost as f64 / written.max(1) as f64));
                        break;
                    }
                }
                let above = above.map_or("no loss on the whole ladder".into(), |(r, l)| {
                    format!("loss {:.1} % at {r}/s", 100.0 * l)
                });
                println!(
                    "bench: drain_w{writers}_{buffer_kb}k_{period_ms}ms {best} events/s per writer \
                     lossless (achieved {achieved:.0}/s; {above})"
                );
            }
        }
    }
    Ok(())
}
