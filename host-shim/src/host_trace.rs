//! The host's own trace buffer: per-CPU rings the host writes itself with `hyptrace-ring`
//! (the writer the hypervisor uses, here in-process at EL1) and reads with the same
//! [`CpuReader`](crate::reader::CpuReader) it reads the hypervisor's buffer with.
//!
//! The host is this buffer's only writer: each CPU writes its own ring
//! ([`HostRings::emit`]) and the recorder drains every ring through [`LocalControl`], which
//! answers `swap_reader` and `update_footers` by calling the ring directly instead of issuing
//! hypercalls. Timestamps come from the generic counter converted with the very
//! [`ClockParams`] the host hands the hypervisor in `update_clock`, so one counter value is
//! one nanosecond value on both sides and trace-cmd merges the two buffers on one timeline.
//!
//! Events are `hyptrace_abi::host_events`: ftrace's common header with `common_pid` set to
//! the CPU's task ([`task_pid`](hyptrace_abi::host_events::task_pid)).

use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use hyptrace_abi::event_format::{set_common_pid, Event};
use hyptrace_abi::host_events::task_pid;
use hyptrace_abi::{HypError, SwapResult};
use hyptrace_ring::clock::ClockParams;
use hyptrace_ring::{PageDesc, RingBuffer, RingError};

use crate::reader::RingControl;

/// The largest host event payload, in bytes (checked at compile time in [`HostRings::emit`]).
const MAX_EVENT: usize = 64;

/// One ring per CPU, the clock they are stamped with, and whether they record.
#[derive(Debug)]
pub struct HostRings<const N: usize> {
    rings: [RingBuffer<'static>; N],
    /// Set (Release) after the clock words are stored; events are written only while set.
    active: AtomicBool,
    /// `mult | shift << 32` of the clock.
    mult_shift: AtomicU64,
    epoch_ns: AtomicU64,
    epoch_cyc: AtomicU64,
}

impl<const N: usize> HostRings<N> {
    /// `N` unloaded rings, not recording.
    pub const fn new() -> Self {
        Self {
            rings: [const { RingBuffer::new() }; N],
            active: AtomicBool::new(false),
            mult_shift: AtomicU64::new(0),
            epoch_ns: AtomicU64::new(0),
            epoch_cyc: AtomicU64::new(0),
        }
    }

    /// The ring of `cpu`.
    ///
    /// # Panics
    /// If `cpu >= N`.
    pub fn ring(&self, cpu: usize) -> &RingBuffer<'static> {
        &self.rings[cpu]
    }

    /// Loads `cpu`'s ring with a reader page and ring pages (see [`RingBuffer::load`]).
    ///
    /// # Errors
    /// The ring's, as [`RingBuffer::load`] gives them.
    ///
    /// # Safety
    /// As [`RingBuffer::load`]: distinct 4096-byte pages that stay valid and are accessed only
    /// through the ring and its reader until [`teardown`](Self::teardown) returns; `descs`
    /// lives at least as long and nothing else uses it.
    pub unsafe fn load(
        &self,
        cpu: usize,
        descs: &'static [PageDesc],
        reader_page: NonNull<u8>,
        pages: impl IntoIterator<Item = NonNull<u8>>,
    ) -> Result<(), RingError> {
        // SAFETY: the caller's contract is the ring's.
        unsafe { self.ring(cpu).load(descs, reader_page, pages) }
    }

    /// Starts recording on every loaded ring, stamping events with `clock`.
    ///
    /// # Errors
    /// [`RingError`] of a ring that could not be enabled (the others stay enabled).
    pub fn start(&self, clock: ClockParams) -> Result<(), RingError> {
        // Relaxed: published by the Release store of `active` below.
        self.mult_shift.store(
            u64::from(clock.mult) | u64::from(clock.shift) << 32,
            Ordering::Relaxed,
        );
        self.epoch_ns.store(clock.epoch_ns, Ordering::Relaxed);
        self.epoch_cyc.store(clock.epoch_cyc, Ordering::Relaxed);
        for ring in &self.rings {
            if ring.nr_pages() > 0 {
                ring.enable()?;
            }
        }
        // Release: pairs with the Acquire load in `emit`, which then sees the clock words.
        self.active.store(true, Ordering::Release);
        Ok(())
    }

    /// Stops recording: when this returns no event is being written or will be.
    pub fn stop(&self) {
        // Relaxed: a writer that still sees `active` is stopped by the ring's own disable
        // handshake below, which waits for it to leave.
        self.active.store(false, Ordering::Relaxed);
        for ring in &self.rings {
            let _ = ring.disable();
        }
    }

    /// Unloads every ring: their pages and descriptors are the caller's again.
    pub fn teardown(&self) {
        self.stop();
        for ring in &self.rings {
            let _ = ring.teardown();
        }
    }

    /// The clock events are stamped with (valid once [`start`](Self::start) ran).
    pub fn clock(&self) -> ClockParams {
        // Relaxed: after the Acquire load of `active` in `emit`, or on the CPU that stored
        // them.
        let ms = self.mult_shift.load(Ordering::Relaxed);
        ClockParams {
            mult: ms as u32,
            shift: (ms >> 32) as u32,
            epoch_ns: self.epoch_ns.load(Ordering::Relaxed),
            epoch_cyc: self.epoch_cyc.load(Ordering::Relaxed),
        }
    }

    /// Records `event` on the ring of the CPU `here_and_now()` names, at the counter value
    /// it reads, with that CPU's task as `common_pid`. Returns whether it was written
    /// (`false` when not recording). When not recording it costs one load and a branch:
    /// `here_and_now` is not called.
    ///
    /// Only a CPU itself may write its ring (a second writer at once loses its event, as
    /// the ring documents).
    #[inline]
    pub fn emit<E: Event>(&self, here_and_now: impl FnOnce() -> (usize, u64), event: &E) -> bool {
        const { assert!(E::PAYLOAD_LEN <= MAX_EVENT) };
        // Acquire: pairs with the Release store in `start`: the clock words are visible.
        if !self.active.load(Ordering::Acquire) {
            return false;
        }
        let (cpu, cycles) = here_and_now();
        let Some(ring) = self.rings.get(cpu) else {
            return false;
        };
        let ts = self.clock().cycles_to_ns(cycles);
        let mut buf = [0u8; MAX_EVENT];
        let payload = &mut buf[..E::PAYLOAD_LEN];
        event.encode(payload);
        set_common_pid(payload, task_pid(cpu as u32));
        ring.write(ts, payload)
    }
}

impl<const N: usize> Default for HostRings<N> {
    fn default() -> Self {
        Self::new()
    }
}

/// The reader's control calls for a host ring: direct calls, no hypercall.
#[derive(Clone, Copy, Debug)]
pub struct LocalControl<const N: usize>(pub &'static HostRings<N>);

impl<const N: usize> RingControl for LocalControl<N> {
    fn swap_reader(&mut self, cpu: u32) -> Result<SwapResult, HypError> {
        let ring = self.0.rings.get(cpu as usize).ok_or(HypError::InvalidCpu)?;
        let swap = ring.swap_reader()?;
        Ok(SwapResult {
            reader_page: swap.reader_page.addr().get() as u64,
            lost: swap.lost,
            swapped: swap.swapped,
        })
    }

    fn update_footers(&mut self, cpu: u32) -> Result<(), HypError> {
        let ring = self.0.rings.get(cpu as usize).ok_or(HypError::InvalidCpu)?;
        ring.update_footers().map(drop).map_err(HypError::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reader::{CpuReader, IdentityMemory};
    use hyptrace_abi::event_format::FieldValue;
    use hyptrace_abi::host_events::{HvcCall, HvcReturn};
    use hyptrace_abi::page::PAGE_SIZE;

    #[repr(C, align(4096))]
    struct Page([u8; PAGE_SIZE]);

    /// Leaked pages and descriptors for `cpus` rings of `per_cpu` pages each (a test's).
    fn load(rings: &'static HostRings<2>, per_cpu: usize) -> Vec<u64> {
        let mut readers = Vec::new();
        for cpu in 0..2 {
            let pages: Vec<NonNull<u8>> = (0..=per_cpu)
                .map(|_| NonNull::from(Box::leak(Box::new(Page([0; PAGE_SIZE])))).cast())
                .collect();
            let descs: &'static [PageDesc] =
                Box::leak((0..=per_cpu).map(|_| PageDesc::new()).collect());
            // SAFETY: leaked pages and descriptors, used by this ring and its reader only.
            unsafe { rings.load(cpu, descs, pages[0], pages[1..].iter().copied()) }.unwrap();
            readers.push(pages[0].addr().get() as u64);
        }
        readers
    }

    #[test]
    fn nothing_is_written_before_start_or_after_stop() {
        let rings: &'static HostRings<2> = Box::leak(Box::new(HostRings::new()));
        load(rings, 2);
        let e = HvcCall { id: 1, arg0: 2 };
        assert!(!rings.emit(|| (0, 10), &e));
        rings.start(ClockParams::new(1, 0, 0, 0).unwrap()).unwrap();
        assert!(rings.emit(|| (0, 10), &e));
        assert!(!rings.emit(|| (5, 10), &e), "no such CPU");
        rings.stop();
        assert!(!rings.emit(|| (0, 11), &e));
        assert_eq!(rings.ring(0).stats().entries, 1);
        rings.teardown();
    }

    #[test]
    fn events_read_back_with_the_hypervisors_clock_and_the_cpus_task() {
        let rings: &'static HostRings<2> = Box::leak(Box::new(HostRings::new()));
        let reader_pages = load(rings, 4);
        // 62.5 MHz, as QEMU's virt counter: 16 ns per tick.
        let clock = ClockParams::for_frequency(62_500_000, 0, 0).unwrap();
        rings.start(clock).unwrap();
        for i in 0..1000u64 {
            assert!(rings.emit(|| (1, 1000 + i), &HvcCall { id: 7, arg0: i }));
            assert!(rings.emit(|| (1, 1000 + i), &HvcReturn { id: 7, ret: -1 }));
        }
        rings.stop();
        // SAFETY: the pages are the leaked ones the rings were loaded with.
        let mem = unsafe { IdentityMemory::new() };
        let mut reader = CpuReader::new(1, reader_pages[1], LocalControl(rings), mem);
        let mut got = Vec::new();
        while let Some(e) = reader.read_event().unwrap() {
            got.push((e.ts, e.payload.to_vec()));
        }
        let stats = reader.stats().unwrap();
        assert_eq!(stats.read + stats.lost, 2000);
        assert!(
            stats.lost > 0,
            "4 pages hold fewer than 2000 events of 20+ bytes"
        );
        assert_eq!(got.len() as u64, stats.read);
        let (ts, payload) = got.last().unwrap();
        assert_eq!(*ts, clock.cycles_to_ns(1999));
        assert_eq!(*ts, 1999 * 16);
        assert_eq!(&payload[4..8], &task_pid(1).to_le_bytes());
        let d = HvcReturn::DESC;
        assert_eq!(d.field(payload, 1), Some(FieldValue::Signed(-1)));
        rings.teardown();
    }
}
