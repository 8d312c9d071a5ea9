//! Helpers the tracing-related test groups share: a session around a test body, event
//! decoding without allocation, selftest calls and checks.

use alloc::boxed::Box;
use alloc::format;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, Ordering};

use host_shim::harness::TestResult;
use host_shim::reader::{CpuReader, IdentityMemory};
use hyptrace_abi::event_format::{Event, EventDesc, FieldValue};
use hyptrace_abi::events::{self, Selftest};
use hyptrace_abi::{HypError, HypercallId};

use super::check;
use crate::arch::boot::machine;
use crate::arch::smp;
use crate::record::{call, page_pool, HvcControl, Session};

/// The selftest event's ID.
pub const SELFTEST: u16 = Selftest::DESC.id;

pub type Reader = CpuReader<HvcControl, IdentityMemory>;

/// Runs `body` with a loaded session of `size` bytes per CPU and `events` enabled, writable;
/// always tears it down.
pub fn with_session(
    size: usize,
    events: &[u16],
    body: impl FnOnce(&mut Session) -> TestResult,
) -> TestResult {
    let mut pool = page_pool();
    let mut session = Session::start(&mut pool, size)?;
    let result = (|| {
        for id in events {
            call(HypercallId::EnableEvent, &[*id as u64, 1]).map_err(|e| format!("{e}"))?;
        }
        session
            .set_writable(true)
            .map_err(|e| format!("enable: {e}"))?;
        body(&mut session)
    })();
    let stopped = session
        .stop(&mut pool)
        .map_err(|e| format!("teardown: {e}"));
    result.and(stopped)
}

/// Decoded field `i` of `payload` as u64 (signed values sign-extended).
pub fn field(desc: &EventDesc, payload: &[u8], i: usize) -> u64 {
    match desc.field(payload, i) {
        Some(FieldValue::Unsigned(v)) => v,
        Some(FieldValue::Signed(v)) => v as u64,
        None => u64::MAX,
    }
}

/// Reads every available event of `reader`: (ts, id, payload copy).
pub fn read_all(reader: &mut Reader) -> Result<Vec<(u64, u16, Vec<u8>)>, alloc::string::String> {
    let mut out = Vec::new();
    while let Some(e) = reader.read_event().map_err(|e| format!("read: {e}"))? {
        let id = u16::from_le_bytes([e.payload[0], e.payload[1]]);
        out.push((e.ts, id, e.payload.to_vec()));
    }
    Ok(out)
}

/// Calls `f(ts, id, payload)` for every available event of `reader`, without allocating.
/// A `Busy` swap (possible only while a writer is active) ends the drain early.
pub fn each_event(
    reader: &mut Reader,
    mut f: impl FnMut(u64, u16, &[u8]) -> TestResult,
) -> TestResult {
    loop {
        let e = match reader.read_event() {
            Ok(Some(e)) => e,
            Ok(None) => return Ok(()),
            // A swap lost every retry to a writer pushing the head: nothing changed, and
            // the events are still there for the next drain.
            Err(HypError::Busy) => return Ok(()),
            Err(e) => return Err(format!("read: {e}")),
        };
        f(
            e.ts,
            u16::from_le_bytes([e.payload[0], e.payload[1]]),
            e.payload,
        )?;
    }
}

/// The sequence number of a selftest payload, checked against the payload it carries.
pub fn selftest_seq(p: &[u8]) -> Result<u64, alloc::string::String> {
    let d = Selftest::DESC;
    let (seq, payload) = (field(&d, p, 0), field(&d, p, 1));
    check(payload == events::selftest_payload(seq), || {
        format!("selftest seq {seq} carries payload {payload:#x}")
    })?;
    Ok(seq)
}

/// Selftest sequence numbers of everything `reader` has (for small tests).
pub fn selftest_seqs(reader: &mut Reader) -> Result<Vec<u64>, alloc::string::String> {
    let mut seqs = Vec::new();
    each_event(reader, |_, id, p| {
        if id == SELFTEST {
            seqs.push(selftest_seq(p)?);
        }
        Ok(())
    })?;
    Ok(seqs)
}

pub fn selftest(first: u64, count: u64) -> Result<u64, alloc::string::String> {
    call(HypercallId::WriteSelftest, &[first, count])
        .map(|[n, _, _]| n)
        .map_err(|e| format!("write_selftest: {e}"))
}

/// Checks one CPU's selftest sequence as it is read: every number belongs to that CPU's
/// range and is larger than the one before (no duplicate, no reordering).
#[derive(Default)]
pub struct SeqCheck {
    cpu: usize,
    last: Option<u64>,
    count: u64,
}

impl SeqCheck {
    /// A check of CPU `cpu`'s sequence (numbers `(cpu + 1) << 32 ..`).
    pub fn for_cpu(cpu: usize) -> Self {
        Self {
            cpu,
            ..Self::default()
        }
    }

    /// Events checked so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    fn push(&mut self, seq: u64) -> TestResult {
        check(seq >> 32 == self.cpu as u64 + 1, || {
            format!("cpu {}: seq {seq:#x} of another CPU's range", self.cpu)
        })?;
        if let Some(last) = self.last {
            check(seq > last, || {
                format!(
                    "cpu {}: seq {seq:#x} after {last:#x}: duplicated or out of order",
                    self.cpu
                )
            })?;
        }
        self.last = Some(seq);
        self.count += 1;
        Ok(())
    }

    /// Drains `reader`, checking its selftest events.
    pub fn drain(&mut self, reader: &mut Reader) -> TestResult {
        each_event(reader, |_, id, p| {
            if id == SELFTEST {
                self.push(selftest_seq(p)?)?;
            }
            Ok(())
        })
    }
}

static WRITERS_STOP: AtomicBool = AtomicBool::new(false);

/// Selftest base of CPU `cpu` in these tests.
pub fn base(cpu: usize) -> u64 {
    (cpu as u64 + 1) << 32
}

/// The selftest writers running on every secondary CPU. Stop them with
/// [`Writers::stop`]; dropping them (e.g. when a test fails early) stops them too, so a failed
/// test never leaves jobs running into the next one.
#[must_use = "the writers run until stopped"]
pub struct Writers {
    stopped: bool,
}

impl Writers {
    /// Stops every writer and waits for it.
    pub fn stop(mut self) -> TestResult {
        self.stopped = true;
        stop_all()
    }
}

impl Drop for Writers {
    fn drop(&mut self) {
        if !self.stopped {
            let _ = stop_all();
        }
    }
}

/// Starts a writer on every secondary CPU: batches of `batch` selftest events with sequence
/// numbers from [`base`]`(cpu)` on. Sequence numbers advance by the whole batch whatever was
/// written (a disable or reset during a batch drops events from its middle), so the numbers
/// each CPU writes always increase.
pub fn start_writers(batch: u64) -> Result<Writers, alloc::string::String> {
    WRITERS_STOP.store(false, Ordering::Release);
    let writers = Writers { stopped: false };
    for c in 1..machine().cpus.count() {
        smp::start_job(
            c,
            Box::new(move || {
                let mut next = base(c);
                // Acquire: pairs with the Release store in `stop_all`.
                while !WRITERS_STOP.load(Ordering::Acquire) {
                    match call(HypercallId::WriteSelftest, &[next, batch]) {
                        Ok(_) => next += batch,
                        // After a teardown the calls are refused: keep trying until stopped.
                        Err(HypError::NotLoaded) => {}
                        Err(e) => return Err(format!("write_selftest: {e}")),
                    }
                }
                Ok(())
            }),
        )?;
    }
    Ok(writers)
}

fn stop_all() -> TestResult {
    // Release: pairs with the writers' Acquire loads.
    WRITERS_STOP.store(true, Ordering::Release);
    (1..machine().cpus.count()).try_for_each(|c| smp::wait_job(c, 30_000))
}

/// Loads a buffer of `size` bytes per CPU with only the selftest event enabled and makes it
/// writable, returning it with its pages (for tests that tear down under writers).
pub fn selftest_buffer(
    pool: &mut host_shim::page_pool::PagePool,
    size: usize,
) -> Result<(Session, Vec<u64>), alloc::string::String> {
    let session = Session::start(pool, size)?;
    call(HypercallId::EnableEvent, &[SELFTEST as u64, 1]).map_err(|e| format!("{e}"))?;
    session
        .set_writable(true)
        .map_err(|e| format!("enable: {e}"))?;
    let pages = session.pages();
    Ok((session, pages))
}

/// Fills every page of `pages` with `canary` (they must be the host's: after a teardown).
pub fn fill_canary(pages: &[u64], canary: u64) {
    for &p in pages {
        // SAFETY: the caller owns these pool pages (tracing was torn down).
        unsafe { core::slice::from_raw_parts_mut(p as *mut u64, 512) }.fill(canary);
    }
}

/// Fails if any word of `pages` is not `canary` any more: something wrote after teardown.
pub fn check_canary(pages: &[u64], canary: u64) -> TestResult {
    for &p in pages {
        // SAFETY: as in `fill_canary`.
        let words = unsafe { core::slice::from_raw_parts(p as *const u64, 512) };
        if let Some(i) = words.iter().position(|w| *w != canary) {
            return Err(format!(
                "page {p:#x} word {i} written after teardown: {:#x}",
                words[i]
            ));
        }
    }
    Ok(())
}

/// Tears tracing down while `writers` keep calling, fills the buffer's `pages` (the host's
/// again) with `canary`, runs `meanwhile` for 50 ms, stops the writers, checks that no write
/// touched the pages, and returns them to `pool`.
pub fn teardown_under_writers(
    writers: Writers,
    pool: &mut host_shim::page_pool::PagePool,
    pages: &[u64],
    canary: u64,
    mut meanwhile: impl FnMut() -> TestResult,
) -> TestResult {
    call(HypercallId::TeardownTracing, &[]).map_err(|e| format!("teardown: {e}"))?;
    fill_canary(pages, canary);
    let until = crate::arch::cpu::counter() + crate::arch::cpu::ticks_per_ms(50);
    while crate::arch::cpu::counter() < until {
        meanwhile()?;
    }
    writers.stop()?;
    check_canary(pages, canary)?;
    for &p in pages {
        let _ = pool.free(p);
    }
    Ok(())
}
