//! `tracing::` — the tracing hypercalls end to end: load cycles, every event with its fields,
//! exact accounting under concurrent writers, a slow reader, teardown and reset while CPUs
//! write, the clock, and the footers.

use alloc::boxed::Box;
use alloc::format;
use alloc::vec::Vec;

use host_shim::harness::{TestCase, TestResult};
use hyptrace_abi::event_format::Event;
use hyptrace_abi::events::{self, HostHcall, HostSmc, PsciCpuOn};
use hyptrace_abi::{HypError, HypercallId, RingCounters};
use hyptrace_platform::memmap::MAX_CPUS;
use smccc::psci::error::ALREADY_ON;

use super::tracing_support::{
    base, each_event, field, read_all, selftest, selftest_buffer, selftest_seqs, start_writers,
    teardown_under_writers, with_session, SeqCheck, SELFTEST,
};
use super::{check, expect_eq, Ctx};
use crate::arch::boot::machine;
use crate::arch::{cpu, smp};
use crate::record::{call, clock_params, page_pool};

/// The `tracing::` group.
pub const TESTS: &[TestCase<Ctx>] = &[
    TestCase {
        group: "tracing",
        name: "load_enable_teardown_cycles",
        run: load_cycles,
    },
    TestCase {
        group: "tracing",
        name: "every_event_with_its_fields",
        run: every_event,
    },
    TestCase {
        group: "tracing",
        name: "selftest_exact_on_every_cpu",
        run: selftest_exact,
    },
    TestCase {
        group: "tracing",
        name: "slow_reader_keeps_the_newest",
        run: slow_reader,
    },
    TestCase {
        group: "tracing",
        name: "teardown_while_every_cpu_writes",
        run: teardown_while_writing,
    },
    TestCase {
        group: "tracing",
        name: "reset_one_cpu_while_others_trace",
        run: reset_one_cpu,
    },
    TestCase {
        group: "tracing",
        name: "clock_shared_and_monotonic",
        run: clock_shared,
    },
    TestCase {
        group: "tracing",
        name: "footers_match_the_reader",
        run: footers_match,
    },
    TestCase {
        group: "tracing",
        name: "a_subset_of_the_cpus_loads_and_traces",
        run: cpu_subset,
    },
];

/// A pack for some CPUs only (the last CPU and CPU 0, in that order: a host with the others
/// offline) loads; CPU 0 traces and reads back, the CPUs left out answer `InvalidCpu`.
fn cpu_subset(_: &Ctx) -> TestResult {
    let count = machine().cpus.count() as u32;
    let cpus: Vec<u32> = if count > 1 {
        alloc::vec![count - 1, 0]
    } else {
        alloc::vec![0]
    };
    let mut pool = page_pool();
    let mut session = crate::record::Session::start_cpus(&mut pool, 8 << 10, &cpus)?;
    let result = (|| {
        call(HypercallId::EnableEvent, &[SELFTEST as u64, 1]).map_err(|e| format!("{e}"))?;
        session
            .set_writable(true)
            .map_err(|e| format!("enable: {e}"))?;
        expect_eq("written on CPU 0", selftest(0, 50)?, 50)?;
        for c in (0..count).filter(|c| !cpus.contains(c)) {
            expect_eq(
                &format!("swap on CPU {c}, not in the pack"),
                call(HypercallId::SwapReader, &[c as u64]).err(),
                Some(HypError::InvalidCpu),
            )?;
        }
        let last = *cpus.first().unwrap_or(&0);
        call(HypercallId::UpdateFooters, &[last as u64]).map_err(|e| format!("CPU {last}: {e}"))?;
        // CPU 0's reader is the last of the session's (the buffer's order).
        let reader = session.readers.last_mut().ok_or("no reader")?;
        let seqs = selftest_seqs(reader)?;
        expect_eq("CPU 0's events", seqs, (0..50).collect::<Vec<u64>>())
    })();
    let stopped = session
        .stop(&mut pool)
        .map_err(|e| format!("teardown: {e}"));
    result.and(stopped)
}

fn load_cycles(_: &Ctx) -> TestResult {
    for size in [1, 7 << 10, 64 << 10, 1 << 20] {
        with_session(size, &[SELFTEST], |s| {
            let pages = s.pages().len();
            let expect =
                machine().cpus.count() * (host_shim::trace_buffer::ring_pages_for(size) + 1);
            expect_eq(&format!("pages for {size} bytes"), pages, expect)?;
            expect_eq("written", selftest(0, 100)?, 100)?;
            let [entries, _, _] =
                call(HypercallId::UpdateFooters, &[0]).map_err(|e| format!("{e}"))?;
            expect_eq("footer entries", entries, 100)?;
            // A second load while loaded is refused and changes nothing.
            let again = call(HypercallId::LoadTracing, &[s.pages()[0], 4096]);
            expect_eq("second load", again.err(), Some(HypError::AlreadyLoaded))?;
            s.set_writable(false).map_err(|e| format!("disable: {e}"))?;
            expect_eq("written while disabled", selftest(100, 10)?, 0)
        })?;
        for id in [
            HypercallId::SwapReader,
            HypercallId::UpdateFooters,
            HypercallId::ResetTracing,
        ] {
            expect_eq(
                &format!("{} after teardown", id.name()),
                call(id, &[0]).err(),
                Some(HypError::NotLoaded),
            )?;
        }
    }
    Ok(())
}

fn every_event(_: &Ctx) -> TestResult {
    let all: Vec<u16> = events::ALL.iter().map(|e| e.id).collect();
    with_session(64 << 10, &all, |s| {
        call(HypercallId::Null, &[1, 2, 3]).map_err(|e| format!("{e}"))?;
        let mut regs = [0u64; 18];
        regs[0] = 0xC600_00FF;
        crate::arch::calls::hvc_raw(regs);
        crate::arch::calls::psci(smccc::psci::PSCI_VERSION, [0; 3]);
        regs[0] = 0x8200_0000;
        crate::arch::calls::smc_raw(regs);
        let target = machine().cpus.mpidr(0).unwrap_or(0);
        let on = smp::cpu_on(0, 0);
        expect_eq("CPU_ON of the running boot CPU", on, ALREADY_ON as i64)?;
        selftest(7, 2)?;
        s.set_writable(false).map_err(|e| format!("disable: {e}"))?;
        let got = read_all(&mut s.readers[0])?;
        let find = |id: u16, want: &[u64]| -> TestResult {
            let desc = events::by_id(id).ok_or("no such event")?;
            let hit = got.iter().any(|(_, i, p)| {
                *i == id
                    && want
                        .iter()
                        .enumerate()
                        .all(|(k, w)| field(desc, p, k) == *w)
            });
            check(hit, || {
                format!("no {} event with fields {want:x?}", desc.name)
            })
        };
        find(events::HypEnter::DESC.id, &[])?;
        find(events::HypExit::DESC.id, &[])?;
        find(
            HostHcall::DESC.id,
            &[HypercallId::Null.function_id() as u64, 0],
        )?;
        find(HostHcall::DESC.id, &[0xC600_00FF, 1])?;
        find(HostSmc::DESC.id, &[smccc::psci::PSCI_VERSION as u64, 1])?;
        find(HostSmc::DESC.id, &[0x8200_0000, 0])?;
        find(PsciCpuOn::DESC.id, &[target, ALREADY_ON as i64 as u64])?;
        find(SELFTEST, &[7, events::selftest_payload(7)])?;
        find(SELFTEST, &[8, events::selftest_payload(8)])
    })
}

fn selftest_exact(_: &Ctx) -> TestResult {
    with_session(16 << 10, &[SELFTEST], |s| {
        let n = machine().cpus.count();
        let writers = start_writers(32)?;
        let mut seqs: Vec<SeqCheck> = (0..n).map(SeqCheck::for_cpu).collect();
        let deadline = cpu::counter() + cpu::ticks_per_ms(300);
        let mut own = base(0);
        while cpu::counter() < deadline {
            own += selftest(own, 32)?;
            for (seq, reader) in seqs.iter_mut().zip(s.readers.iter_mut()) {
                seq.drain(reader)?;
            }
        }
        writers.stop()?;
        s.set_writable(false).map_err(|e| format!("disable: {e}"))?;
        for (c, (seq, reader)) in seqs.iter_mut().zip(s.readers.iter_mut()).enumerate() {
            seq.drain(reader)?;
            let st = reader.stats().map_err(|e| format!("stats: {e}"))?;
            expect_eq(
                &format!("cpu {c} read + lost"),
                st.read + st.lost,
                st.entries,
            )?;
            expect_eq(&format!("cpu {c} lost vs overrun"), st.lost, st.overrun)?;
            expect_eq(
                &format!("cpu {c} selftest events read"),
                seq.count(),
                st.read,
            )?;
            check(st.entries > 0, || format!("cpu {c} wrote nothing"))?;
        }
        Ok(())
    })
}

fn slow_reader(_: &Ctx) -> TestResult {
    // Two ring pages: about 400 selftest events fit.
    with_session(1, &[SELFTEST], |s| {
        let mut written = 0;
        while written < 10_000 {
            written += selftest(written, 1_000)?;
        }
        s.set_writable(false).map_err(|e| format!("disable: {e}"))?;
        let seqs = selftest_seqs(&mut s.readers[0])?;
        let st = s.readers[0].stats().map_err(|e| format!("stats: {e}"))?;
        expect_eq("read + lost", st.read + st.lost, 10_000)?;
        check(st.lost > 9_000, || format!("only {} lost", st.lost))?;
        expect_eq("newest event kept", seqs.last().copied(), Some(9_999))?;
        let contiguous = seqs.windows(2).all(|w| w[1] == w[0] + 1);
        check(contiguous, || {
            "the kept events are not the newest, contiguous ones".into()
        })
    })
}

const CANARY: u64 = 0xca4a_57ee_d00d_f00d;

fn teardown_while_writing(_: &Ctx) -> TestResult {
    let mut pool = page_pool();
    let (_session, pages) = selftest_buffer(&mut pool, 8 << 10)?;
    let writers = start_writers(64)?;
    // Let every writer get going, then tear down under them.
    let until = cpu::counter() + cpu::ticks_per_ms(50);
    while cpu::counter() < until {
        selftest(0, 16)?;
    }
    teardown_under_writers(writers, &mut pool, &pages, CANARY, || {
        core::hint::spin_loop();
        Ok(())
    })
}

fn reset_one_cpu(_: &Ctx) -> TestResult {
    let n = machine().cpus.count();
    // While writers push the head, update_footers may answer Busy: ask again (bounded).
    let entries = |c: usize| {
        for _ in 0..10_000 {
            match call(HypercallId::UpdateFooters, &[c as u64]) {
                Ok(regs) => return Ok(RingCounters::from_regs(regs).entries),
                Err(HypError::Busy) => continue,
                Err(e) => return Err(format!("footers of cpu {c}: {e}")),
            }
        }
        Err(format!("footers of cpu {c}: Busy 10000 times in a row"))
    };
    // Waits (bounded) until every CPU but the victim has written more than `floor[c]`; CPU 0
    // writes for itself meanwhile (the others are the writer jobs).
    let advance = |floor: &[u64], victim: usize, next: &mut u64| -> TestResult {
        let deadline = cpu::counter() + cpu::ticks_per_ms(5_000);
        loop {
            *next += selftest(*next, 32)?;
            let now: Vec<u64> = (0..n).map(entries).collect::<Result<_, _>>()?;
            if (0..n).all(|c| c == victim || now[c] > floor[c]) {
                return Ok(());
            }
            if cpu::counter() > deadline {
                return Err(format!(
                    "CPUs did not all write within 5 s: {now:?} vs {floor:?}"
                ));
            }
        }
    };
    with_session(64 << 10, &[SELFTEST], |s| {
        // The victim is this CPU: nothing writes on it between the reset and the check, so
        // its count must then be exactly 0, while the writer jobs keep the others busy.
        let victim = 0;
        let writers = start_writers(32)?;
        let mut next = base(0);
        // Every CPU (the victim included) is writing before the reset.
        advance(&[1000; MAX_CPUS][..n], usize::MAX, &mut next)?;
        let before: Vec<u64> = (0..n).map(entries).collect::<Result<_, _>>()?;
        call(HypercallId::ResetTracing, &[victim as u64]).map_err(|e| format!("reset: {e}"))?;
        s.readers[victim].after_reset();
        let after_reset = entries(victim)?;
        // The others keep tracing across the reset.
        advance(&before, victim, &mut next)?;
        writers.stop()?;
        expect_eq(
            &format!("cpu {victim} entries after its reset"),
            after_reset,
            0,
        )?;
        check(before[victim] > 0, || {
            "the victim wrote nothing before".into()
        })?;
        // The reset CPU's buffer still works and decodes.
        s.set_writable(false).map_err(|e| format!("disable: {e}"))?;
        let seqs = selftest_seqs(&mut s.readers[victim])?;
        check(seqs.windows(2).all(|w| w[0] < w[1]), || {
            "out of order after reset".into()
        })
    })
}

fn clock_shared(_: &Ctx) -> TestResult {
    let clock = clock_params();
    with_session(64 << 10, &[SELFTEST], |s| {
        let n = machine().cpus.count();
        let mut windows = Vec::new();
        for c in 0..n {
            let job = move || -> TestResult {
                for round in 0..3u64 {
                    selftest(base(c) + round * 10, 10)?;
                }
                Ok(())
            };
            let before = clock.cycles_to_ns(cpu::counter());
            if c == 0 {
                job()?;
            } else {
                smp::start_job(c, Box::new(job))?;
                smp::wait_job(c, 5_000)?;
            }
            windows.push((before, clock.cycles_to_ns(cpu::counter())));
        }
        s.set_writable(false).map_err(|e| format!("disable: {e}"))?;
        for (c, reader) in s.readers.iter_mut().enumerate() {
            let mut evs = Vec::new();
            each_event(reader, |ts, id, _| {
                if id == SELFTEST {
                    evs.push(ts);
                }
                Ok(())
            })?;
            expect_eq(&format!("cpu {c} events"), evs.len(), 30)?;
            check(evs.windows(2).all(|w| w[0] <= w[1]), || {
                format!("cpu {c}: time went backwards")
            })?;
            let (lo, hi) = windows[c];
            check(evs.iter().all(|t| (lo..=hi).contains(t)), || {
                format!(
                    "cpu {c}: timestamps {:?}..{:?} outside the host's window {lo}..{hi}",
                    evs.first(),
                    evs.last()
                )
            })?;
        }
        Ok(())
    })
}

fn footers_match(_: &Ctx) -> TestResult {
    with_session(8 << 10, &[SELFTEST], |s| {
        selftest(0, 3_000)?;
        let reader = &mut s.readers[0];
        let mut events = 0u64;
        each_event(reader, |_, _, _| {
            events += 1;
            Ok(())
        })?;
        let st = reader.stats().map_err(|e| format!("stats: {e}"))?;
        let RingCounters {
            entries,
            overrun,
            pages_touched,
        } = RingCounters::from_regs(
            call(HypercallId::UpdateFooters, &[0]).map_err(|e| format!("{e}"))?,
        );
        expect_eq("footer entries vs hypercall", st.entries, entries)?;
        expect_eq("footer overrun vs hypercall", st.overrun, overrun)?;
        expect_eq(
            "footer pages_touched vs hypercall",
            st.pages_touched,
            pages_touched,
        )?;
        expect_eq("entries", entries, 3_000)?;
        expect_eq("reader read", st.read, events)?;
        // Events still on the writer's page are not read yet: read + lost never exceeds it.
        check(st.read + st.lost <= entries, || {
            format!("read {} + lost {} > entries {entries}", st.read, st.lost)
        })
    })
}
