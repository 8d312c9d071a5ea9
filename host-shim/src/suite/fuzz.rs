//! `fuzz::` — a randomized hypercall fuzzer run from every CPU at once, then a full tracing
//! session whose counts must still be exact.
//!
//! Calls mix (a) random function IDs in and out of hyptrace's range with edge-biased
//! arguments, (b) `load_tracing` of a valid pack with one random mutation (header fields,
//! CPU records, page entries replaced by forbidden addresses, the size or address argument),
//! and (c) the other tracing calls with random or plausible arguments. The seed is printed;
//! `cargo xtask test --seed N` replays a run. Page entries only ever become addresses the
//! hypervisor must refuse, or other pages of the fuzzer's own arena, so a mutation the
//! hypervisor rightly accepts never makes it write over the host's live memory.

use alloc::boxed::Box;
use alloc::format;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use host_shim::harness::{TestCase, TestResult};
use host_shim::page_pool::PAGE_SIZE;
use host_shim::rng::SplitMix64;
use hyptrace_abi::hypercall::HYPTRACE_FID_BASE;
use hyptrace_abi::{HypError, HypercallId};
use hyptrace_platform::memmap::{HYP_BASE, MAX_CPUS};

use super::tracing_support::{selftest, with_session, SeqCheck, SELFTEST};
use super::{check, expect_eq, Ctx};
use crate::arch::boot::machine;
use crate::arch::calls::hvc_raw;
use crate::arch::{cpu, smp};
use crate::record::{call, page_pool};

/// The `fuzz::` group.
pub const TESTS: &[TestCase<Ctx>] = &[TestCase {
    group: "fuzz",
    name: "hypercalls_from_every_cpu",
    run: hypercalls,
}];

/// Calls in total, split between the CPUs.
const TOTAL_CALLS: u64 = 100_000;
/// Arena pages valid packs name.
const ARENA_PAGES: usize = 16;

/// Per-CPU tallies, read by the boot CPU after the jobs finished.
static CALLS: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
static LOADS_ACCEPTED: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

/// What every CPU's fuzzer needs: the shared arena, its own pack page, the seed.
#[derive(Clone, Copy)]
struct Setup {
    seed: u64,
    arena: &'static [u64],
    packs: &'static [u64],
    calls: u64,
}

fn hypercalls(ctx: &Ctx) -> TestResult {
    let n = machine().cpus.count();
    let mut pool = page_pool();
    let arena: Vec<u64> = (0..ARENA_PAGES)
        .map(|_| pool.alloc())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{e:?}"))?;
    let packs: Vec<u64> = (0..n)
        .map(|_| pool.alloc())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{e:?}"))?;
    // The jobs on other CPUs need 'static slices; the pages stay the fuzzer's for the run.
    let setup = Setup {
        seed: ctx.seed,
        arena: Box::leak(arena.into_boxed_slice()),
        packs: Box::leak(packs.into_boxed_slice()),
        calls: TOTAL_CALLS / n as u64,
    };
    crate::arch::console::println!(
        "    fuzz: seed {} ({} calls on each of {n} CPUs)",
        setup.seed,
        setup.calls
    );
    let start = cpu::counter();
    for c in 1..n {
        smp::start_job(c, Box::new(move || fuzz_cpu(c, setup)))?;
    }
    let mine = fuzz_cpu(0, setup);
    let others: Result<(), _> = (1..n).try_for_each(|c| smp::wait_job(c, 600_000));
    mine.and(others)
        .map_err(|e| format!("seed {}: {e}", setup.seed))?;
    let calls: u64 = CALLS.iter().map(|c| c.swap(0, Ordering::Relaxed)).sum();
    let loads: u64 = LOADS_ACCEPTED
        .iter()
        .map(|c| c.swap(0, Ordering::Relaxed))
        .sum();
    crate::arch::console::println!(
        "    fuzz: {calls} calls in {} ms, {loads} mutated packs accepted",
        cpu::ticks_to_ns(cpu::counter() - start) / 1_000_000
    );
    check(calls >= TOTAL_CALLS - n as u64, || {
        format!("only {calls} calls made")
    })?;
    // Whatever the fuzzer left loaded goes away; then a full session must be exact.
    let _ = call(HypercallId::TeardownTracing, &[]);
    after_the_storm().map_err(|e| format!("seed {}: after fuzzing: {e}", setup.seed))
}

/// A full, valid session on every CPU: selftest counts and sequences exact.
fn after_the_storm() -> TestResult {
    let n = machine().cpus.count();
    with_session(64 << 10, &[SELFTEST], |s| {
        for c in 0..n {
            let job = move || -> TestResult {
                expect_eq(
                    "selftest written",
                    selftest((c as u64 + 1) << 32, 200)?,
                    200,
                )
            };
            if c == 0 {
                job()?;
            } else {
                smp::start_job(c, Box::new(job))?;
                smp::wait_job(c, 10_000)?;
            }
        }
        s.set_writable(false).map_err(|e| format!("disable: {e}"))?;
        for (c, reader) in s.readers.iter_mut().enumerate() {
            let mut seqs = SeqCheck::for_cpu(c);
            seqs.drain(reader)?;
            let st = reader.stats().map_err(|e| format!("stats: {e}"))?;
            expect_eq(&format!("cpu {c} events read"), seqs.count(), 200)?;
            expect_eq(&format!("cpu {c} entries"), st.entries, 200)?;
            expect_eq(&format!("cpu {c} lost"), st.lost, 0)?;
        }
        Ok(())
    })
}

/// One CPU's share of the calls.
fn fuzz_cpu(cpu: usize, setup: Setup) -> TestResult {
    let mut rng = SplitMix64::new(setup.seed ^ (cpu as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let pack = setup.packs[cpu];
    for i in 0..setup.calls {
        let mut regs = [0u64; 18];
        for r in regs.iter_mut() {
            *r = rng.edgy();
        }
        match rng.below(10) {
            0..=5 => random_call(&mut rng, &mut regs),
            6..=8 => mutated_load(&mut rng, &mut regs, setup.arena, pack),
            _ => plausible_call(&mut rng, &mut regs),
        }
        let out = hvc_raw(regs);
        let code = out[0] as i64;
        if code != 0 && HypError::from_code(code).is_none() {
            return Err(format!(
                "cpu {cpu} call {i}: x0 {:#x} -> unknown status {code}",
                regs[0]
            ));
        }
        if code != 0 && out[1..4] != regs[1..4] {
            return Err(format!(
                "cpu {cpu} call {i}: refused call {:#x} changed x1..x3",
                regs[0]
            ));
        }
        if out[4..] != regs[4..] {
            return Err(format!("cpu {cpu} call {i}: x4..x17 not preserved"));
        }
        if code == 0 && regs[0] as u32 == HypercallId::LoadTracing.function_id() {
            LOADS_ACCEPTED[cpu].fetch_add(1, Ordering::Relaxed);
        }
        CALLS[cpu].fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

/// A function ID anywhere (in the vendor range or not), edge-biased arguments. Writes of
/// selftest events are kept small so the run stays short.
fn random_call(rng: &mut SplitMix64, regs: &mut [u64; 18]) {
    regs[0] = match rng.below(3) {
        0 => HYPTRACE_FID_BASE as u64 | rng.below(0x20),
        1 => (rng.next_u64() << 32) | (HYPTRACE_FID_BASE as u64 + rng.below(0x20)),
        _ => rng.next_u64(),
    };
    sanitize(regs);
}

/// A known tracing call with plausible or edge arguments.
fn plausible_call(rng: &mut SplitMix64, regs: &mut [u64; 18]) {
    let ids = HypercallId::ALL;
    let id = ids[rng.below(ids.len() as u64) as usize];
    regs[0] = id.function_id() as u64;
    if rng.below(2) == 0 {
        regs[1] = rng.below(MAX_CPUS as u64 + 1);
        regs[2] = rng.below(3);
    }
    if id == HypercallId::LoadTracing {
        // Never a plausible pack here: mutated_load does those with the arena's pages.
        regs[1] = HYP_BASE;
    }
    sanitize(regs);
}

/// Keeps a random call from turning the fuzzer into a long benchmark or from naming host
/// memory in use as ring pages.
fn sanitize(regs: &mut [u64; 18]) {
    match HypercallId::from_x0(regs[0]) {
        Some(HypercallId::WriteSelftest) => regs[2] %= 1024,
        // A random load must not succeed with pages we do not own: point the pack at the
        // hypervisor, which is always refused, unless the address is already not plain RAM.
        Some(HypercallId::LoadTracing) if machine().ram.contains(&regs[1]) => regs[1] = HYP_BASE,
        _ => {}
    }
}

/// Addresses a page entry may be replaced with: each is refused, or another arena page.
fn bad_page(rng: &mut SplitMix64, arena: &[u64], pack: u64) -> u64 {
    match rng.below(8) {
        0 => HYP_BASE + rng.below(0xe00) * PAGE_SIZE,
        1 => machine().uart,
        2 => machine().ram.end + rng.below(16) * PAGE_SIZE,
        3 => arena[rng.below(arena.len() as u64) as usize] + 8 * (1 + rng.below(511)),
        4 => pack,
        5 => !0xfff,
        6 => 0,
        _ => arena[rng.below(arena.len() as u64) as usize],
    }
}

/// `load_tracing` of a valid pack (every CPU, arena pages) with one mutation.
fn mutated_load(rng: &mut SplitMix64, regs: &mut [u64; 18], arena: &[u64], pack: u64) {
    let n = machine().cpus.count();
    let per_cpu = (arena.len() / n).clamp(3, 4);
    let cpus = n.min(arena.len() / per_cpu);
    let mut words: Vec<u64> = Vec::new();
    words.push(cpus as u64);
    words.push((cpus * per_cpu) as u64);
    for c in 0..cpus {
        let pages = &arena[c * per_cpu..(c + 1) * per_cpu];
        words.push(c as u64);
        words.push(pages[0]);
        words.push(per_cpu as u64 - 1);
        words.extend_from_slice(&pages[1..]);
    }
    let mut size = PAGE_SIZE;
    let mut at = pack;
    match rng.below(8) {
        // A header or record word set to an edge value (counts, CPU numbers, reader page).
        0 | 1 => {
            let i = rng.below(words.len() as u64) as usize;
            let v = rng.edgy();
            // Page-address words only take refused or arena addresses.
            words[i] = if is_page_word(i, cpus, per_cpu) {
                bad_page(rng, arena, pack)
            } else {
                v
            };
        }
        2 | 3 => {
            let i = page_word(rng, cpus, per_cpu);
            words[i] = bad_page(rng, arena, pack);
        }
        4 => size = [0, 8, 100, 2 * PAGE_SIZE, 1 << 21][rng.below(5) as usize],
        5 => at = pack + 8 * (1 + rng.below(511)),
        6 => words.truncate(rng.below(words.len() as u64) as usize),
        _ => {}
    }
    // SAFETY: `pack` is a pool page this CPU's fuzzer owns; the words fit in a page.
    let page = unsafe { core::slice::from_raw_parts_mut(pack as *mut u64, 512) };
    page.fill(0);
    for (slot, w) in page.iter_mut().zip(&words) {
        *slot = *w;
    }
    regs[0] = HypercallId::LoadTracing.function_id() as u64;
    regs[1] = at;
    regs[2] = size;
}

/// Index of the word holding record `c`'s reader page, or its ring page `k`.
fn is_page_word(i: usize, cpus: usize, per_cpu: usize) -> bool {
    (0..cpus).any(|c| {
        let base = 2 + c * (per_cpu + 2);
        i == base + 1 || (base + 3..base + 3 + per_cpu - 1).contains(&i)
    })
}

fn page_word(rng: &mut SplitMix64, cpus: usize, per_cpu: usize) -> usize {
    let c = rng.below(cpus as u64) as usize;
    let base = 2 + c * (per_cpu + 2);
    let k = rng.below(per_cpu as u64) as usize;
    if k == 0 {
        base + 1
    } else {
        base + 2 + k
    }
}
