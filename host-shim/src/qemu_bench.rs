//! In-QEMU measurements (issue #6 parts b, c, e): what tracing costs on the hypercall path,
//! one selftest event at EL2 against a plain timestamp-and-store loop, and how the per-event
//! cost scales with buffer size and writer count. Every figure is printed as
//! `bench: <key> <median> [<min>..<max>] <unit>` from alternating rounds in one boot. Under
//! TCG absolute times say little about hardware; compare figures with each other.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use hyp::abi::event_format::Event;
use hyp::abi::events::{HypEnter, HypExit, Selftest};
use hyp::abi::HypercallId;

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
    let start = cpu::counter();
    let [n, _, _] =
        call(HypercallId::WriteSelftest, &[first, BATCH]).map_err(|e| format!("{e}"))?;
    let ns = cpu::ticks_to_ns(cpu::counter() - start) as f64;
    if n != BATCH {
        return Err(format!("wrote {n} of {BATCH} selftest events"));
    }
    Ok(ns / BATCH as f64)
}

/// The floor of one event: read the counter and store an 18-byte payload plus a 4-byte
/// header into a 1 MiB ring, as the writer does, without any ring protocol.
fn store_loop(ring: &mut [u8], events: u64) -> f64 {
    let start = cpu::counter();
    let mut at = 0;
    for seq in 0..events {
        let ts = cpu::counter();
        let rec = &mut ring[at..at + 24];
        rec[..4].copy_from_slice(&(ts as u32).to_le_bytes());
        rec[4..12].copy_from_slice(&seq.to_le_bytes());
        rec[12..20].copy_from_slice(&ts.to_le_bytes());
        at = (at + 24) % (ring.len() - 24);
    }
    core::hint::black_box(&ring);
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
    println!("bench: done");
    Ok(())
}
