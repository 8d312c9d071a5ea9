//! The tracing service: what the tracing hypercalls do, and how events reach the per-CPU
//! writers.
//!
//! One [`TracingService`] lives in a `static` of the hypervisor. It owns a [`RingBuffer`] per
//! CPU, the pool of page descriptors they use (hypervisor memory the host never sees), the
//! per-event enable flags and the clock. Control calls (load, teardown, enable, swap,
//! footers, events, clock, reset) are serialised by one lock; the write path
//! ([`TracingService::emit`]) takes no lock: a disabled event costs one load and one branch,
//! an enabled one the ring's lock-free reserve/commit.
//!
//! `load` never trusts the pack: it checks the pack's location, copies it into hypervisor
//! memory, parses and validates the copy (structure, every page address, no page twice) and
//! only then touches any ring. Any failure leaves nothing loaded.

pub mod flight;
pub mod host_memory;
pub mod memory_rules;
pub mod ownership;

use core::sync::atomic::{AtomicBool, Ordering};

use crate::abi::event_format::Event;
use crate::abi::events;
use crate::abi::limits::{MAX_LOAD_PAGES, MAX_PACK_SIZE, MAX_SELFTEST_BATCH};
use crate::abi::pack::TraceBufferPack;
use crate::abi::page::{PAGE_SIZE, PAGE_SIZE_U64};
use crate::abi::printk;
use crate::abi::{HypError, PrintkFormats, RingCounters, SwapResult};
use crate::clock::ClockParams;
use crate::memmap::MAX_CPUS;
use crate::ring::clock_banks::ClockBanks;
use crate::ring::{Batch, PageDesc, Reservation, RingBuffer};
use host_memory::{host_pointer, map_pages, unmap_pages, HostMemory};
use memory_rules::MemoryRules;
use ownership::PageStates;

/// Page descriptors in the hypervisor's pool: [`MAX_LOAD_PAGES`], the most pages (ring and
/// reader pages of all CPUs together) one load may describe.
const DESC_POOL: usize = MAX_LOAD_PAGES;

/// Number of event-enable slots: the hypervisor's events (IDs 1..=ALL.len()) and
/// `hyp_printk`'s, right after them.
const EVENT_SLOTS: usize = printk::ID as usize + 1;

/// Scratch space of `load`, and the pages of the loaded buffer (shared until teardown).
struct Scratch {
    pack: [u8; MAX_PACK_SIZE as usize],
    pages: [u64; DESC_POOL],
    shared: usize,
    states: PageStates,
}

/// The service's large, all-zero memory: the page-descriptor pool and `load`'s scratch space.
/// Kept apart from [`TracingService`] so that a `static` of it lands in BSS instead of
/// adding megabytes of zeros to the image.
pub struct TracingStorage {
    descs: [PageDesc; DESC_POOL],
    scratch: spin::Mutex<Scratch>,
}

impl Default for TracingStorage {
    fn default() -> Self {
        Self::new()
    }
}

impl TracingStorage {
    /// Zeroed storage.
    pub const fn new() -> Self {
        Self {
            descs: [const { PageDesc::new() }; DESC_POOL],
            scratch: spin::Mutex::new(Scratch {
                pack: [0; MAX_PACK_SIZE as usize],
                pages: [0; DESC_POOL],
                shared: 0,
                states: PageStates::new(),
            }),
        }
    }
}

struct Control {
    loaded: bool,
    has_buffer: [bool; MAX_CPUS],
    /// Where each CPU's pages start in `Scratch::pages` (and its descriptors in the pool):
    /// the host address of descriptor `i` of CPU `c` is `pages[first_page[c] + i]`.
    first_page: [usize; MAX_CPUS],
}

/// The hypervisor's tracing state. See the module documentation.
pub struct TracingService {
    control: spin::Mutex<Control>,
    rings: [RingBuffer<'static>; MAX_CPUS],
    storage: &'static TracingStorage,
    memory: &'static dyn HostMemory,
    events: [AtomicBool; EVENT_SLOTS],
    clock: ClockBanks,
}

fn boolean(v: u64) -> Result<bool, HypError> {
    match v {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(HypError::InvalidArgument),
    }
}

impl TracingService {
    /// An unloaded service (every event disabled, clock at zero) using `storage`, reaching
    /// host pages through `memory`.
    pub const fn new(storage: &'static TracingStorage, memory: &'static dyn HostMemory) -> Self {
        Self {
            control: spin::Mutex::new(Control {
                loaded: false,
                has_buffer: [false; MAX_CPUS],
                first_page: [0; MAX_CPUS],
            }),
            rings: [const { RingBuffer::new() }; MAX_CPUS],
            storage,
            memory,
            events: [const { AtomicBool::new(false) }; EVENT_SLOTS],
            clock: ClockBanks::new(),
        }
    }

    /// `load_tracing(pack_pa, size)`: validates the pack and builds one writer per CPU it
    /// describes. `nr_cpus` is the number of CPUs the hypervisor manages.
    ///
    /// # Safety
    ///
    /// Every page-aligned address inside `rules.ram` and outside `rules.hyp` must be host
    /// memory that the service's [`HostMemory`] makes accessible at the same address while it
    /// is mapped, and never hypervisor memory Rust code relies on (the host may change it at
    /// any time).
    pub unsafe fn load(
        &'static self,
        pack_pa: u64,
        size: u64,
        rules: &MemoryRules,
        nr_cpus: usize,
    ) -> Result<(), HypError> {
        let mut guard = self.control.lock();
        let ctl = &mut *guard;
        if ctl.loaded {
            return Err(HypError::AlreadyLoaded);
        }
        let span = rules.check_pack(pack_pa, size)?;
        let len = size as usize;
        // Only `load` uses the scratch space, and it holds the control lock.
        let mut scratch = self.storage.scratch.lock();
        let scratch = &mut *scratch;
        // Validate a private copy: the host cannot change what is being checked. The pack is
        // mapped read-only for the copy alone.
        self.memory.map(span.clone(), false)?;
        // SAFETY: `check_pack` put [pack_pa, pack_pa + size) inside host RAM, which the
        // caller guarantees is host memory, mapped just above; `len` <= MAX_PACK_SIZE = the
        // scratch size.
        unsafe { copy_from_host(&mut scratch.pack[..len], pack_pa) };
        self.memory.unmap(span.clone());
        let pack = TraceBufferPack::parse(&scratch.pack[..len], nr_cpus.min(MAX_CPUS))?;
        if pack.total_pages() > DESC_POOL as u64 {
            return Err(HypError::NoMemory);
        }
        let pages = &mut scratch.pages;
        let mut n = 0;
        for cpu in pack.cpus() {
            for va in core::iter::once(cpu.reader_page_va).chain(cpu.page_vas()) {
                rules.check_page(va, &span)?;
                // `total_pages` (checked above) bounds n: the parser verified it is the sum.
                pages[n] = va;
                n += 1;
            }
        }
        // Share them all (a page named twice is caught here); undone if a ring load fails.
        // Nothing is shared while unloaded, so the table may follow the rules' RAM.
        scratch.states.ensure(&rules.ram, &rules.hyp);
        scratch.states.share(&scratch.pages[..n])?;
        // Mapped at EL2 only now that they are validated and shared.
        if let Err(e) = map_pages(self.memory, &scratch.pages[..n]) {
            scratch.states.unshare(&scratch.pages[..n]);
            return Err(e);
        }
        scratch.shared = n;

        let mut next = 0;
        for cpu in pack.cpus() {
            let index = cpu.cpu as usize;
            let count = cpu.nr_pages() + 1;
            let descs = &self.storage.descs[next..next + count];
            let ptrs = &scratch.pages[next..next + count];
            ctl.first_page[index] = next;
            next += count;
            let result = match host_pointer(ptrs[0]) {
                // Every address was checked to be a page of host RAM, so none is 0; checked
                // again here so that no page can silently drop out of the ring.
                Some(reader) if ptrs.iter().all(|pa| host_pointer(*pa).is_some()) => {
                    // SAFETY: every page was checked to be a distinct page of host RAM,
                    // mapped above and (the caller guarantees) reachable at `host_pointer`'s
                    // address while mapped; teardown runs before it is unmapped and given
                    // back. The descriptors are hypervisor memory, disjoint per CPU.
                    unsafe {
                        self.rings[index].load(
                            descs,
                            reader,
                            ptrs[1..].iter().filter_map(|pa| host_pointer(*pa)),
                        )
                    }
                    .map_err(HypError::from)
                }
                _ => Err(HypError::PageNotRam),
            };
            if let Err(e) = result {
                Self::unload(&self.rings, ctl);
                unmap_pages(self.memory, &scratch.pages[..n]);
                scratch.states.unshare(&scratch.pages[..n]);
                scratch.shared = 0;
                return Err(e);
            }
            ctl.has_buffer[index] = true;
        }
        ctl.loaded = true;
        Ok(())
    }

    /// Tears down every loaded ring (each waits for a write in flight) and disables events.
    fn unload(rings: &[RingBuffer<'static>; MAX_CPUS], ctl: &mut Control) {
        for (ring, has) in rings.iter().zip(ctl.has_buffer.iter_mut()) {
            if *has {
                // Loaded rings always tear down.
                let _ = ring.teardown();
                *has = false;
            }
        }
        ctl.loaded = false;
    }

    /// `teardown_tracing()`. When it returns no write touches any page of the pack.
    pub fn teardown(&self) -> Result<(), HypError> {
        let mut ctl = self.control.lock();
        if !ctl.loaded {
            return Err(HypError::NotLoaded);
        }
        Self::unload(&self.rings, &mut ctl);
        // Every page is the host's again (no write touches them after unload): unmapped at
        // EL2 first, so the hypervisor cannot reach a page the host owns.
        let mut scratch = self.storage.scratch.lock();
        let shared = scratch.shared;
        let Scratch { pages, states, .. } = &mut *scratch;
        unmap_pages(self.memory, &pages[..shared]);
        states.unshare(&pages[..shared]);
        scratch.shared = 0;
        drop(scratch);
        for e in &self.events {
            // Relaxed: a flag; the next load starts with every event disabled.
            e.store(false, Ordering::Relaxed);
        }
        crate::printk::flag_changed(self, false);
        Ok(())
    }

    fn loaded_ring(&self, ctl: &Control, cpu: u64) -> Result<&RingBuffer<'static>, HypError> {
        if !ctl.loaded {
            return Err(HypError::NotLoaded);
        }
        match usize::try_from(cpu) {
            Ok(i) if i < MAX_CPUS && ctl.has_buffer[i] => Ok(&self.rings[i]),
            _ => Err(HypError::InvalidCpu),
        }
    }

    /// `enable_tracing(enable)`: makes every loaded ring writable (1) or not (0, waiting for
    /// writes in flight).
    pub fn enable(&self, enable: u64) -> Result<(), HypError> {
        let ctl = self.control.lock();
        if !ctl.loaded {
            return Err(HypError::NotLoaded);
        }
        let enable = boolean(enable)?;
        for (ring, _) in self
            .rings
            .iter()
            .zip(ctl.has_buffer)
            .filter(|(_, has)| *has)
        {
            if enable {
                ring.enable()?;
            } else {
                ring.disable()?;
            }
        }
        Ok(())
    }

    /// `swap_reader(cpu)`. The reader page is answered with the host's own address for it,
    /// the one the pack named.
    pub fn swap_reader(&self, cpu: u64) -> Result<SwapResult, HypError> {
        let ctl = self.control.lock();
        let swap = self
            .loaded_ring(&ctl, cpu)?
            .swap_reader()
            .inspect_err(|e| {
                if *e == crate::ring::RingError::Busy {
                    crate::hyp_printk!(
                        "swap_reader cpu={}: the writer kept moving, {} attempts ran out",
                        cpu,
                        crate::ring::SWAP_ATTEMPTS
                    );
                }
            })?;
        // `loaded_ring` checked `cpu`, and the ring's descriptor index is below its page
        // count, so the lookup cannot miss; if an invariant were ever broken, the call is
        // refused rather than the hypervisor panicking.
        let first = ctl.first_page[cpu as usize];
        let reader_page = first
            .checked_add(swap.reader_index)
            .and_then(|i| self.storage.scratch.lock().pages.get(i).copied())
            .ok_or(HypError::Busy)?;
        Ok(SwapResult {
            reader_page,
            lost: swap.lost,
            swapped: swap.swapped,
        })
    }

    /// `update_footers(cpu)`: returns the writer's counters as written into the footers.
    pub fn update_footers(&self, cpu: u64) -> Result<RingCounters, HypError> {
        let ctl = self.control.lock();
        let counters = self
            .loaded_ring(&ctl, cpu)?
            .update_footers()
            .inspect_err(|e| {
                if *e == crate::ring::RingError::Busy {
                    crate::hyp_printk!(
                        "update_footers cpu={}: no head found in {} attempts",
                        cpu,
                        crate::ring::HEAD_SEARCH_ATTEMPTS
                    );
                }
            })?;
        Ok(counters)
    }

    /// `reset_tracing(cpu)`: empties one CPU's buffer without teardown.
    pub fn reset(&self, cpu: u64) -> Result<(), HypError> {
        let ctl = self.control.lock();
        Ok(self.loaded_ring(&ctl, cpu)?.reset()?)
    }

    /// `enable_event(id, enable)`.
    pub fn enable_event(&self, id: u64, enable: u64) -> Result<(), HypError> {
        let ctl = self.control.lock();
        if !ctl.loaded {
            return Err(HypError::NotLoaded);
        }
        let desc = u16::try_from(id)
            .ok()
            .and_then(|id| events::by_id(id).or((id == printk::ID).then_some(&printk::DESC)))
            .ok_or(HypError::UnknownEvent)?;
        let enable = boolean(enable)?;
        // Relaxed: writers only need to see the flag eventually; nothing is published with it.
        self.events[desc.id as usize].store(enable, Ordering::Relaxed);
        if desc.id == printk::ID {
            crate::printk::flag_changed(self, enable);
        }
        Ok(())
    }

    /// `update_clock(mult, shift, epoch_ns, epoch_cyc)`.
    pub fn update_clock(
        &self,
        mult: u64,
        shift: u64,
        epoch_ns: u64,
        epoch_cyc: u64,
    ) -> Result<(), HypError> {
        let ctl = self.control.lock();
        if !ctl.loaded {
            return Err(HypError::NotLoaded);
        }
        let params = ClockParams::new(mult, shift, epoch_ns, epoch_cyc)?;
        self.clock.update(params);
        drop(ctl);
        Ok(())
    }

    /// Whether writes of event `E` are enabled.
    #[inline(always)]
    pub fn is_enabled<E: Event>(&self) -> bool {
        // Relaxed: see `enable_event`.
        self.events[E::DESC.id as usize].load(Ordering::Relaxed)
    }

    /// Writes `event` on `cpu`'s buffer if the event is enabled and the buffer writable;
    /// `counter` is read only then. Returns whether the event was written.
    #[inline(always)]
    pub fn emit<E: Event>(&self, cpu: usize, counter: impl FnOnce() -> u64, event: &E) -> bool {
        if !self.is_enabled::<E>() {
            return false;
        }
        self.emit_enabled(cpu, counter(), event)
    }

    /// The part of [`emit`](Self::emit) after the enable check.
    #[inline]
    fn emit_enabled<E: Event>(&self, cpu: usize, counter: u64, event: &E) -> bool {
        let Some(ring) = self.rings.get(cpu) else {
            return false;
        };
        let ts = self.clock.cycles_to_ns(counter);
        let Some(slot) = ring.reserve(ts, E::PAYLOAD_LEN) else {
            return false;
        };
        fill(slot, event);
        true
    }

    /// Opens a batch on `cpu`'s buffer: the events of one exception under one status
    /// handshake and one read of the clock parameters (see [`EventBatch`]). `None` when the
    /// buffer is not writable; callers check first that one of the batch's events is
    /// enabled, so that tracing loaded but disabled costs what no tracing does.
    #[inline(always)]
    pub fn batch(&self, cpu: usize) -> Option<EventBatch<'_>> {
        let batch = self.rings.get(cpu)?.batch()?;
        Some(EventBatch {
            batch,
            clock: self.clock.read(),
            events: &self.events,
        })
    }

    /// Writes a `hyp_printk` event of the site at `site` with `args` on `cpu`'s buffer, if
    /// the printk event is enabled and the buffer writable. Returns whether it was written.
    /// One instance per argument count, so the payload's length and every offset are
    /// constants, as an ordinary event's are.
    #[inline(always)]
    pub fn write_printk<const N: usize>(
        &self,
        cpu: usize,
        counter: u64,
        site: u64,
        args: &[u64; N],
    ) -> bool {
        const { assert!(N <= printk::MAX_ARGS, "hyp_printk: at most 8 arguments") };
        // Relaxed: see `enable_event`.
        if !self.events[printk::ID as usize].load(Ordering::Relaxed) {
            return false;
        }
        let Some(ring) = self.rings.get(cpu) else {
            return false;
        };
        let len = printk::payload_len(N);
        let ts = self.clock.cycles_to_ns(counter);
        let Some(mut slot) = ring.reserve(ts, len) else {
            return false;
        };
        // Straight into the page, word by word at constant offsets (the layout of
        // `printk::encode_header`, which the tests check this against).
        let head = u32::from(printk::ID) | (N as u32) << 16;
        slot.write_at(0, &head.to_le_bytes());
        slot.write_at(printk::IP_OFFSET, &site.to_le_bytes());
        slot.write_at(printk::FMT_OFFSET, &site.to_le_bytes());
        for (i, a) in args.iter().enumerate() {
            slot.write_at(printk::ARGS_OFFSET + 8 * i, &a.to_le_bytes());
        }
        slot.commit();
        true
    }

    /// `printk_formats(page_pa, first)`: writes the entries of `sites` from `first` on into
    /// the host page at `page_pa`, as many as fit (the rest of the page is zeroed).
    ///
    /// Errors: those of the page checks ([`HypError::PageMisaligned`],
    /// [`HypError::PageNotRam`], [`HypError::PageInHyp`]), [`HypError::PageShared`] for a
    /// page of the loaded buffer, [`HypError::InvalidArgument`] for `first` past the table,
    /// [`HypError::NoMemory`] when the EL2 tables cannot map the page. Nothing is written then.
    ///
    /// # Safety
    ///
    /// As [`load`](Self::load) for `rules`.
    pub unsafe fn printk_formats(
        &self,
        page_pa: u64,
        first: u64,
        rules: &MemoryRules,
        sites: &'static [printk::Site],
    ) -> Result<PrintkFormats, HypError> {
        let total = sites.len() as u64;
        let rest = usize::try_from(first)
            .ok()
            .and_then(|f| sites.get(f..))
            .ok_or(HypError::InvalidArgument)?;
        // SAFETY: the caller's contract for `rules`.
        unsafe {
            self.write_host_page(page_pa, rules, |page| {
                let (mut at, mut written) = (0, 0);
                for site in rest {
                    let addr = crate::printk::site_address(site);
                    match printk::write_entry(&mut page[at..], addr, site.format, site.location) {
                        Some(len) => at += len,
                        None => break,
                    }
                    written += 1;
                }
                PrintkFormats {
                    written,
                    total,
                    bytes: at as u64,
                }
            })
        }
    }

    /// Fills a private copy of the host page at `pa` with `fill` (zeroed first), then copies
    /// it into the page: only a page of host RAM outside the hypervisor that the host alone
    /// owns, mapped writable for the copy alone.
    ///
    /// # Safety
    ///
    /// As [`load`](Self::load) for `rules`.
    unsafe fn write_host_page<R>(
        &self,
        pa: u64,
        rules: &MemoryRules,
        fill: impl FnOnce(&mut [u8]) -> R,
    ) -> Result<R, HypError> {
        rules.check_page(pa, &(0..0))?;
        // The scratch lock orders this against load and teardown (see `read_host_word`); its
        // pack buffer, free outside `load`, is the private copy.
        let mut scratch = self.storage.scratch.lock();
        if scratch.states.state(pa) == Some(ownership::PageState::Shared) {
            return Err(HypError::PageShared);
        }
        let staging = &mut scratch.pack[..PAGE_SIZE];
        staging.fill(0);
        let result = fill(staging);
        let dst = host_pointer(pa).ok_or(HypError::PageNotRam)?;
        self.memory.map(pa..pa + PAGE_SIZE_U64, true)?;
        for (i, chunk) in scratch.pack[..PAGE_SIZE].chunks_exact(8).enumerate() {
            let word = u64::from_ne_bytes(chunk.try_into().unwrap_or_default());
            // SAFETY: `pa` is a page of host RAM outside the hypervisor that is not shared
            // (checked above under the scratch lock), which the caller guarantees is host
            // memory reachable at its own address while mapped; mapped just above; `8 * i`
            // stays inside the page. Volatile: the host may be reading it.
            unsafe { core::ptr::write_volatile(dst.as_ptr().cast::<u64>().add(i), word) };
        }
        self.memory.unmap(pa..pa + PAGE_SIZE_U64);
        drop(scratch);
        Ok(result)
    }

    /// `write_selftest(first_seq, count)`: writes `count` selftest events with sequence
    /// numbers `first_seq..first_seq + count` on `cpu`, as fast as possible, in one batch.
    /// Returns how many were written: 0 when the event is disabled or the buffer not
    /// writable, fewer than `count` when a control operation on another CPU stopped the
    /// buffer or the event meanwhile (the batch then ends). Errors:
    /// [`HypError::NotLoaded`], [`HypError::InvalidArgument`] for `count` above
    /// [`MAX_SELFTEST_BATCH`] or sequence numbers that would pass `u64::MAX`.
    // Out of line: inlined into the hypercall dispatcher, the batch's registers made every
    // hypercall save more of them (8 instructions on the null hypercall when measured, at
    // 4caf22b).
    #[inline(never)]
    pub fn write_selftest(
        &self,
        cpu: usize,
        counter: impl Fn() -> u64,
        first_seq: u64,
        count: u64,
    ) -> Result<u64, HypError> {
        if !self.control.lock().loaded {
            return Err(HypError::NotLoaded);
        }
        // Every number of the batch must exist: a range that saturated would write fewer
        // events than asked and look like tracing being off.
        let end = first_seq.checked_add(count);
        let Some(end) = end.filter(|_| count <= MAX_SELFTEST_BATCH) else {
            return Err(HypError::InvalidArgument);
        };
        // One batch for the whole call: one status handshake and one clock read. A control
        // operation waiting for the writer (from another CPU) ends it early through the
        // ring's stop flag, so it waits for one event, not for the batch.
        if !self.is_enabled::<events::Selftest>() {
            return Ok(0);
        }
        let Some(mut batch) = self.batch(cpu) else {
            return Ok(0);
        };
        let mut written = 0;
        for seq in first_seq..end {
            let e = events::Selftest {
                seq,
                payload: events::selftest_payload(seq),
            };
            if !batch.emit(&counter, &e) {
                break;
            }
            written += 1;
        }
        Ok(written)
    }

    /// How many host pages are shared with the hypervisor (those of the loaded buffer).
    pub fn shared_pages(&self) -> usize {
        self.storage.scratch.lock().states.shared_pages()
    }

    /// Who owns the page containing `pa`, as the ownership table says; `None` outside the RAM
    /// it tracks (nothing before the first load).
    pub fn page_state(&self, pa: u64) -> Option<ownership::PageState> {
        self.storage.scratch.lock().states.state(pa)
    }

    /// Reads the 8-byte word at host address `pa` (8-aligned) for the hypervisor's own use
    /// (the software walk of the host's stage-1 tables, [`crate::s1walk`]): only from a page
    /// of host RAM outside the hypervisor that the host owns (not shared: its EL2 mapping is
    /// the tracing buffer's), mapped read-only for the read alone. `None` otherwise, or when
    /// the EL2 tables have no room for the mapping.
    ///
    /// # Safety
    ///
    /// As [`load`](Self::load) for `rules`.
    pub unsafe fn read_host_word(&self, pa: u64, rules: &MemoryRules) -> Option<u64> {
        if !pa.is_multiple_of(8) {
            return None;
        }
        let page = pa & !(PAGE_SIZE_U64 - 1);
        rules.check_page(page, &(0..0)).ok()?;
        // The scratch lock orders this against load and teardown, which share, map and unmap
        // pages only while holding it: a page found host-owned here stays unmapped at EL2
        // until the lock is released.
        let scratch = self.storage.scratch.lock();
        if scratch.states.state(page) == Some(ownership::PageState::Shared) {
            return None;
        }
        // Before mapping: nothing may return between the map and the unmap.
        let word_ptr = host_pointer(pa)?.cast::<u64>();
        self.memory.map(page..page + PAGE_SIZE_U64, false).ok()?;
        // SAFETY: `page` is host RAM outside the hypervisor (checked above), which the
        // caller guarantees is host memory reachable at its own address while mapped; mapped
        // just above; `pa` is 8-aligned inside it. Volatile: the host may be writing it.
        let word = unsafe { core::ptr::read_volatile(word_ptr.as_ptr()) };
        self.memory.unmap(page..page + PAGE_SIZE_U64);
        drop(scratch);
        Some(word)
    }

    /// The clock's current parameters.
    pub fn clock(&self) -> ClockParams {
        self.clock.read()
    }
}

/// Copies `out.len()` bytes of host memory at `pa` with volatile 8-byte reads (the host may be
/// writing them concurrently; whatever it writes is only data to be validated).
///
/// # Safety
///
/// `[pa, pa + out.len())` must be mapped and readable; `pa` and `out.len()` multiples of 8.
unsafe fn copy_from_host(out: &mut [u8], pa: u64) {
    for (i, chunk) in out.chunks_exact_mut(8).enumerate() {
        // SAFETY: inside the range the caller guarantees; aligned because `pa` is.
        let word = unsafe { core::ptr::read_volatile((pa as usize + 8 * i) as *const u64) };
        chunk.copy_from_slice(&word.to_ne_bytes());
    }
}

/// Test-only benchmarks (the `fault-injection` build).
#[cfg(feature = "fault-injection")]
impl TracingService {
    /// The `writer_bench` call's raw events: `count` events of `N` payload bytes (no event
    /// ID: never exported) on `cpu`'s buffer in one batch, each with its own counter read.
    /// Returns how many were written.
    pub fn write_bench_events<const N: usize>(
        &self,
        cpu: usize,
        counter: impl Fn() -> u64,
        count: u64,
    ) -> u64 {
        let Some(mut batch) = self.batch(cpu) else {
            return 0;
        };
        let mut written = 0;
        for seq in 0..count {
            let mut payload = [0x5a; N];
            payload[..4].copy_from_slice(&(seq as u32).to_le_bytes());
            let ts = batch.clock.cycles_to_ns(counter());
            if !batch.batch.write(ts, &payload) {
                break;
            }
            written += 1;
        }
        written
    }
}

/// Copies `event`'s payload into `slot` and commits it.
#[inline(always)]
fn fill<E: Event>(mut slot: Reservation<'_, '_>, event: &E) {
    // Encoded on the stack, then copied: the compiler forwards the constant-offset stores
    // straight into the page (read from the release image: no stack buffer is left in
    // `emit_enabled`).
    let mut payload = [0u8; 64];
    event.encode(&mut payload);
    slot.write_at(0, &payload[..E::PAYLOAD_LEN]);
    slot.commit();
}

/// Events written on one CPU's buffer under one status handshake (`hyptrace_ring::Batch`)
/// and one read of the clock parameters: what one exception writes at entry. Control
/// operations that must keep the writer out (disable, reset, teardown, from any CPU) wait
/// for it, so it lives for a few events and never across a hypercall's handler, which may
/// run one of them on this very buffer.
///
/// An `update_clock` that races a batch applies from the next batch on: the events of this
/// one use the parameters it read when it opened.
#[derive(Debug)]
pub struct EventBatch<'s> {
    batch: Batch<'s, 'static>,
    clock: ClockParams,
    events: &'s [AtomicBool; EVENT_SLOTS],
}

impl EventBatch<'_> {
    /// Writes `event` if it is enabled; `counter` is read only then. Returns whether the
    /// event was written.
    #[inline(always)]
    pub fn emit<E: Event>(&mut self, counter: impl FnOnce() -> u64, event: &E) -> bool {
        // Relaxed: see `TracingService::enable_event`.
        if !self.events[E::DESC.id as usize].load(Ordering::Relaxed) {
            return false;
        }
        let ts = self.clock.cycles_to_ns(counter());
        let Some(slot) = self.batch.reserve(ts, E::PAYLOAD_LEN) else {
            return false;
        };
        fill(slot, event);
        true
    }
}

#[cfg(test)]
mod tests;
