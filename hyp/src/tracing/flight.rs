//! The flight recorder: the last events of every CPU's ring, printed when the hypervisor
//! dies.
//!
//! [`TracingService::flight_record`] runs on a fatal path, on whichever CPU met the error,
//! while the other CPUs may still be writing. It first freezes every ring whose control lock
//! is free (the lock held and the stop hint raised: [`crate::ring::RingBuffer::freeze`]),
//! then waits for the rings whose lock was taken, then for every writer to leave its write
//! (all within one deadline the caller sets; a ring whose writer did not stop is not read),
//! then
//! copies each page into private memory before reading it (the host can write the pages at
//! any time), decodes the copy with the bounds-checked page decoder and prints the last
//! events as trace-cmd prints the `hypervisor` instance of a recording: the same columns,
//! the same event text, `hyp_printk` lines formatted from the hypervisor's own format table
//! (never from an address read off a page). A scribbled page yields a decoding error line,
//! never a fault.

use core::fmt::{self, Write};

use crate::abi::event_format::{write_event_name, write_timestamp_us, EventDesc};
use crate::abi::page::decode::{DecodeError, Event, PageBuf, Records};
use crate::abi::page::DATA_SIZE;
use crate::abi::{events, printf, printk};
use crate::memmap::MAX_CPUS;
use crate::ring::{FreezeError, Frozen};

use super::TracingService;

/// Events printed per CPU unless asked otherwise.
pub const DEFAULT_EVENTS: usize = 32;

/// How long the recorder waits, in all, for the rings' control locks and for their writers
/// to leave the write they are in, in microseconds. A writer stops at its next event once
/// asked, so on hardware this is a bound that is never reached; under an emulator whose
/// host did not schedule a writer's vCPU for a while it is what lets the ring be read.
pub const FREEZE_WAIT_US: u64 = 1_000_000;

/// The name of the hypervisor's buffer in the file, printed first on each line as trace-cmd
/// prints an instance's events.
pub const INSTANCE: &str = "hypervisor";

/// The private copy of the page being decoded. One dump at a time: a second CPU dying
/// during a dump finds it taken and says so.
static PAGE: spin::Mutex<PageBuf> = spin::Mutex::new(PageBuf::zeroed());

/// Copies the page at `page` into `out` with volatile 8-byte reads.
///
/// # Safety
/// `page` must be a mapped, readable, 8-aligned page.
unsafe fn copy_page(page: core::ptr::NonNull<u8>, out: &mut PageBuf) {
    for (i, chunk) in out.0.chunks_exact_mut(8).enumerate() {
        // SAFETY: inside the page the caller vouches for; aligned since the page is.
        let word = unsafe { core::ptr::read_volatile(page.as_ptr().cast::<u64>().add(i)) };
        chunk.copy_from_slice(&word.to_ne_bytes());
    }
}

/// The event with this ID, the printk event included.
fn desc_of(payload: &[u8]) -> Option<&'static EventDesc> {
    let id = u16::from_le_bytes(payload.get(..2)?.try_into().ok()?);
    events::by_id(id).or((id == printk::ID).then_some(&printk::DESC))
}

/// Writes one event as trace-cmd prints it in the `hypervisor` instance: `hypervisor:`, the
/// task (`<...>-1`: hypervisor events carry no pid), the CPU, the time, the name, the text.
fn write_event(out: &mut dyn Write, cpu: usize, ts: u64, payload: &[u8]) -> fmt::Result {
    write!(out, "{INSTANCE}: {:>16}-{:<5} [{cpu:03}]", "<...>", -1)?;
    write_timestamp_us(out, ts)?;
    let Some(desc) = desc_of(payload) else {
        let id = payload.get(..2).map(|b| u16::from_le_bytes([b[0], b[1]]));
        return write!(out, " [unknown event {id:?}]");
    };
    write_event_name(out, desc.name)?;
    if desc.id != printk::ID {
        return desc.write_info(payload, out);
    }
    let Some(record) = printk::parse(payload) else {
        return out.write_str("[truncated]");
    };
    match crate::printk::site_at(record.fmt) {
        Some(site) => {
            write!(out, "{}: ", site.location)?;
            printf::write_binary(out, site.format, record.args)
        }
        None => write!(
            out,
            "{:#x}: [no hyp_printk site at {:#x}]",
            record.ip, record.fmt
        ),
    }
}

impl TracingService {
    /// Prints the last `per_cpu` events of every CPU's ring to `out`, newest last, for a
    /// hypervisor that is going down, on CPU `this_cpu` (see the module documentation).
    /// Waits for control locks and writers while `keep_waiting()` returns true: one deadline
    /// for the whole dump (see [`FREEZE_WAIT_US`]).
    /// Leaves every ring it froze non-writable (until a control operation enables it again:
    /// on a fatal path none follows). A ring whose writer did not stop within the wait is
    /// not read (the writer may go on for a while), unless it is `this_cpu`'s, whose writer
    /// is this code's caller and never runs again. Prints at most `per_cpu` events and [`MAX_ERROR_LINES`] error lines per
    /// CPU, whatever the host does to the pages meanwhile.
    ///
    /// Returns `Ok(false)`, printing nothing, when another CPU is already printing a dump:
    /// see [`dump_in_progress`].
    ///
    /// # Safety
    /// Call only on a fatal path: while a ring is frozen its pages must stay mapped (nothing
    /// tears tracing down concurrently, which holds since a frozen ring's control lock is
    /// held by the caller).
    ///
    /// # Errors
    /// Only those of `out`.
    pub unsafe fn flight_record(
        &self,
        this_cpu: usize,
        per_cpu: usize,
        keep_waiting: &mut dyn FnMut() -> bool,
        out: &mut dyn Write,
    ) -> Result<bool, fmt::Error> {
        let Some(mut page) = PAGE.try_lock() else {
            return Ok(false);
        };
        // Every writer stopped first, so the dump is one moment on every CPU (and no CPU
        // keeps writing while another's ring is printed). First every ring whose control lock
        // is free is asked to stop, without waiting, so they all stop at once; then the rings
        // whose lock was taken are waited for; then the writers. One deadline covers it all: a
        // lock held by a dead CPU costs it whole, but every other ring was asked to stop
        // before that wait began.
        let mut frozen: [Result<Frozen<'_, 'static>, FreezeError>; MAX_CPUS] =
            core::array::from_fn(|cpu| self.rings[cpu].freeze(crate::ring::tries(0)));
        for (cpu, f) in frozen.iter_mut().enumerate() {
            if matches!(f, Err(FreezeError::Busy)) {
                *f = self.rings[cpu].freeze(&mut *keep_waiting);
            }
        }
        // This CPU's writer is this code's caller, and never runs again: no wait for it.
        for (cpu, f) in frozen.iter_mut().enumerate() {
            if let (Ok(f), false) = (f, cpu == this_cpu) {
                f.wait_for_writer(&mut *keep_waiting);
            }
        }
        let mut any = false;
        for (cpu, frozen) in frozen.iter().enumerate() {
            let frozen = match frozen {
                Ok(f) => f,
                Err(FreezeError::NotLoaded) => continue,
                Err(e) => {
                    any = true;
                    writeln!(out, "hyp: flight recorder: CPU {cpu}: not dumped: {e}")?;
                    continue;
                }
            };
            if !any {
                writeln!(
                    out,
                    "hyp: flight recorder: the last {per_cpu} events of each CPU, newest last"
                )?;
                any = true;
            }
            // A writer that did not stop may go on for a while (`stop` is a hint): its pages
            // are not read, unless it is this CPU's, which runs this code and never returns.
            if !frozen.writer_stopped() && cpu != this_cpu {
                writeln!(
                    out,
                    "hyp: flight recorder: CPU {cpu}: not dumped: its writer did not stop"
                )?;
                continue;
            }
            // SAFETY: the ring is frozen (its pages stay loaded and mapped while its control
            // lock is held), per this function's contract, and no writer stores into them.
            unsafe { dump_ring(cpu, frozen, per_cpu, &mut page, out)? };
        }
        if any {
            writeln!(out, "hyp: flight recorder: end")?;
        } else {
            writeln!(
                out,
                "hyp: flight recorder: tracing is not loaded: no events"
            )?;
        }
        Ok(true)
    }
}

/// Whether a CPU is printing a dump now: another CPU that meets a fatal error meanwhile
/// should wait for it to end the system rather than end it in the middle of the dump.
pub fn dump_in_progress() -> bool {
    PAGE.is_locked()
}

/// Error lines printed per CPU at most; the rest are counted.
pub const MAX_ERROR_LINES: usize = 4;

/// The events of the page copy in `page`: the committed data, capped at a live page's data
/// area (a page the host scribbled on may claim more), decoded.
fn events_of(page: &PageBuf) -> impl Iterator<Item = Result<Event<'_>, DecodeError>> {
    let view = page.view();
    let data = view.data().map(|d| &d[..d.len().min(DATA_SIZE)]);
    let (records, error) = match data {
        Ok(d) => (Some(Records::new(d, view.time_stamp()).events()), None),
        Err(e) => (None, Some(Err(e))),
    };
    records.into_iter().flatten().chain(error)
}

/// Prints the last `per_cpu` events of one frozen ring.
///
/// # Safety
/// The frozen ring's pages must be mapped, and no writer may store into them.
unsafe fn dump_ring(
    cpu: usize,
    frozen: &Frozen<'_, '_>,
    per_cpu: usize,
    page: &mut PageBuf,
    out: &mut dyn Write,
) -> fmt::Result {
    // Pass 1: count the events (decoding private copies); pass 2: print the last ones. The
    // host may change the pages in between: pass 2 then prints fewer, never more.
    let mut total = 0usize;
    for p in frozen.pages() {
        // SAFETY: a page of the frozen ring: mapped (caller).
        unsafe { copy_page(p, page) };
        total += events_of(page).filter(Result::is_ok).count();
    }
    let skip = total.saturating_sub(per_cpu);
    let wanted = total - skip;
    writeln!(
        out,
        "hyp: flight recorder: CPU {cpu}: {wanted} of {total} events in the ring{}",
        if frozen.writer_stopped() {
            ""
        } else {
            " (this CPU died in a write: its newest record may be torn)"
        }
    )?;
    let (mut seen, mut printed, mut errors) = (0usize, 0usize, 0usize);
    for (index, p) in frozen.pages().enumerate() {
        // SAFETY: as above.
        unsafe { copy_page(p, page) };
        for e in events_of(page) {
            match e {
                Ok(e) => {
                    if seen >= skip && printed < wanted {
                        write_event(out, cpu, e.ts, e.payload)?;
                        out.write_char('\n')?;
                        printed += 1;
                    }
                    seen += 1;
                }
                Err(err) => {
                    errors += 1;
                    if errors <= MAX_ERROR_LINES {
                        writeln!(out, "hyp: flight recorder: CPU {cpu}: page {index}: {err}")?;
                    }
                }
            }
        }
    }
    if errors > MAX_ERROR_LINES {
        writeln!(
            out,
            "hyp: flight recorder: CPU {cpu}: {} more pages did not decode",
            errors - MAX_ERROR_LINES
        )?;
    }
    Ok(())
}
