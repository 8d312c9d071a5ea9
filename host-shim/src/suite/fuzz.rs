//! `fuzz::` — a randomized hypercall fuzzer run from every CPU at once, then a full tracing
//! session whose counts must still be exact; and every CPU loading, using and tearing down
//! its own buffer at once, so that loads contend with loads, teardowns and every other call.
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
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

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
pub const TESTS: &[TestCase<Ctx>] = &[
    TestCase {
        group: "fuzz",
        name: "hypercalls_from_every_cpu",
        run: hypercalls,
    },
    TestCase {
        group: "fuzz",
        name: "every_cpu_loads_at_once",
        run: concurrent_loads,
    },
];

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

/// Rounds of `every_cpu_loads_at_once` on each CPU, at least; a CPU whose load was never
/// accepted goes on (it will be once the others are done), up to [`MAX_LOAD_ROUNDS`].
const LOAD_ROUNDS: u64 = 300;
const MAX_LOAD_ROUNDS: u64 = 1_000_000;
/// No CPU holds the buffer.
const NO_OWNER: usize = usize::MAX;
/// The CPU whose load the hypervisor accepted, as the CPUs themselves keep track of it.
static OWNER: AtomicUsize = AtomicUsize::new(NO_OWNER);
/// Per CPU: rounds in which its load was accepted.
static WON: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

/// Pages of one CPU's own buffer: its pack, a reader page and two ring pages.
#[derive(Clone, Copy)]
struct OwnPages {
    pack: u64,
    reader: u64,
    ring: [u64; 2],
}

/// Every CPU, at once and over and over: load a pack of its own pages (describing only its
/// own CPU), and if the hypervisor accepted it, write events, swap, read the footers and tear
/// down; while another CPU holds the buffer, random calls on it. Each valid load must be
/// accepted or refused with `AlreadyLoaded`, never two at once (the CPUs claim `OWNER` when
/// their load is accepted and give it up before their teardown), each swap must answer one of
/// the owner's own pages, and every CPU's load must be accepted at least once. Afterwards a
/// full session is exact.
fn concurrent_loads(ctx: &Ctx) -> TestResult {
    let n = machine().cpus.count();
    let mut pool = page_pool();
    let mut own = Vec::new();
    for _ in 0..n {
        let mut page = || pool.alloc().map_err(|e| format!("{e:?}"));
        own.push(OwnPages {
            pack: page()?,
            reader: page()?,
            ring: [page()?, page()?],
        });
    }
    let own: &'static [OwnPages] = Box::leak(own.into_boxed_slice());
    let seed = ctx.seed;
    for c in 1..n {
        smp::start_job(c, Box::new(move || load_rounds(c, own, seed)))?;
    }
    let mine = load_rounds(0, own, seed);
    let others: Result<(), _> = (1..n).try_for_each(|c| smp::wait_job(c, 600_000));
    mine.and(others).map_err(|e| format!("seed {seed}: {e}"))?;
    let won: Vec<u64> = WON.iter().map(|w| w.swap(0, Ordering::Relaxed)).collect();
    crate::arch::console::println!("    fuzz: loads accepted per CPU: {:?}", &won[..n]);
    check(won[..n].iter().all(|&w| w > 0), || {
        format!("a CPU's load was never accepted: {:?}", &won[..n])
    })?;
    expect_eq(
        "owner after the storm",
        OWNER.load(Ordering::Relaxed),
        NO_OWNER,
    )?;
    after_the_storm().map_err(|e| format!("seed {seed}: after the loads: {e}"))
}

fn load_rounds(cpu: usize, all: &[OwnPages], seed: u64) -> TestResult {
    let own = all[cpu];
    let mut rng = SplitMix64::new(seed ^ 0x10ad ^ (cpu as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let words = [1, 3, cpu as u64, own.reader, 2, own.ring[0], own.ring[1]];
    let mut round = 0;
    while round < LOAD_ROUNDS || WON[cpu].load(Ordering::Relaxed) == 0 {
        round += 1;
        if round > MAX_LOAD_ROUNDS {
            return Err(format!(
                "cpu {cpu}: no load accepted in {MAX_LOAD_ROUNDS} rounds"
            ));
        }
        // SAFETY: the pack page is this CPU's own pool page, and no load of it is in flight.
        let page = unsafe { core::slice::from_raw_parts_mut(own.pack as *mut u64, 512) };
        page.fill(0);
        page[..words.len()].copy_from_slice(&words);
        let which = |e| format!("cpu {cpu} round {round}: {e}");
        match call(HypercallId::LoadTracing, &[own.pack, PAGE_SIZE]) {
            Ok(_) => {
                let owner =
                    OWNER.compare_exchange(NO_OWNER, cpu, Ordering::AcqRel, Ordering::Acquire);
                if let Err(other) = owner {
                    return Err(which(format!("loaded while CPU {other} holds the buffer")));
                }
                WON[cpu].fetch_add(1, Ordering::Relaxed);
                use_own_buffer(cpu, own).map_err(which)?;
                // Given up before the teardown: no other load can succeed before it.
                OWNER.store(NO_OWNER, Ordering::Release);
                call(HypercallId::TeardownTracing, &[])
                    .map_err(|e| which(format!("teardown of my own load: {e}")))?;
            }
            Err(HypError::AlreadyLoaded) => {
                let regs = bystander_call(&mut rng);
                let owner = OWNER.load(Ordering::Acquire);
                let out = hvc_raw(regs);
                let code = out[0] as i64;
                if code != 0 && HypError::from_code(code).is_none() {
                    return Err(which(format!(
                        "call {:#x} -> unknown status {code}",
                        regs[0]
                    )));
                }
                // The same owner before and after: the call met that owner's buffer.
                let same = owner != NO_OWNER && OWNER.load(Ordering::Acquire) == owner;
                if same && code == 0 && regs[1] == owner as u64 {
                    let theirs = all[owner];
                    let pages = [theirs.reader, theirs.ring[0], theirs.ring[1]];
                    match HypercallId::from_x0(regs[0]) {
                        Some(HypercallId::SwapReader) if !pages.contains(&out[1]) => {
                            return Err(which(format!(
                                "swap of CPU {owner}'s buffer answered {:#x}, not one of its pages",
                                out[1]
                            )));
                        }
                        Some(HypercallId::UpdateFooters) if out[1] > 50 => {
                            return Err(which(format!(
                                "CPU {owner}'s buffer has {} entries, it writes 50",
                                out[1]
                            )));
                        }
                        _ => {}
                    }
                }
            }
            Err(e) => return Err(which(format!("a valid load refused with {e}"))),
        }
    }
    Ok(())
}

/// A call on someone else's buffer that leaves the owner's expectations intact: swaps,
/// footers, clock updates, selftest writes on this CPU (which has no buffer), enabling the
/// buffer, loads of the hypervisor's memory, with edge arguments. Teardown, reset, disables
/// and event enables (another event would add entries to the owner's count) are the owner's
/// alone here.
fn bystander_call(rng: &mut SplitMix64) -> [u64; 18] {
    let mut regs = [0u64; 18];
    for r in regs.iter_mut() {
        *r = rng.edgy();
    }
    let ids = [
        HypercallId::Null,
        HypercallId::Info,
        HypercallId::SwapReader,
        HypercallId::UpdateFooters,
        HypercallId::UpdateClock,
        HypercallId::WriteSelftest,
        HypercallId::EnableTracing,
        HypercallId::LoadTracing,
    ];
    let id = ids[rng.below(ids.len() as u64) as usize];
    regs[0] = id.function_id() as u64;
    match id {
        HypercallId::SwapReader | HypercallId::UpdateFooters => {
            regs[1] = rng.below(MAX_CPUS as u64 + 1);
        }
        HypercallId::EnableTracing => regs[1] = 1,
        _ => {}
    }
    sanitize(&mut regs);
    regs
}

/// The owner's use of its buffer: enable, write, swap (which must answer its own pages),
/// footers.
fn use_own_buffer(cpu: usize, own: OwnPages) -> TestResult {
    let mine = [own.reader, own.ring[0], own.ring[1]];
    call(HypercallId::EnableEvent, &[u64::from(SELFTEST), 1])
        .map_err(|e| format!("enable_event: {e}"))?;
    call(HypercallId::EnableTracing, &[1]).map_err(|e| format!("enable: {e}"))?;
    let written = selftest((cpu as u64) << 32, 50)?;
    expect_eq("selftest written on my own buffer", written, 50)?;
    let [page, _, _] =
        call(HypercallId::SwapReader, &[cpu as u64]).map_err(|e| format!("swap: {e}"))?;
    check(mine.contains(&page), || {
        format!("swap answered {page:#x}, not one of my pages {mine:x?}")
    })?;
    let [entries, _, _] =
        call(HypercallId::UpdateFooters, &[cpu as u64]).map_err(|e| format!("footers: {e}"))?;
    expect_eq("entries on my own buffer", entries, 50)
}
