//! Recording a hypervisor trace, the host's side: allocate the buffer, pack it, load it into
//! the hypervisor, enable events, poll and drain every CPU while the workload runs, check the
//! accounting, and write trace.dat through semihosting.
//!
//! Everything here talks to the hypervisor through its hypercalls; the page-level logic is
//! the portable [`host_shim::reader`], [`host_shim::trace_buffer`] and
//! [`host_shim::tracedat`].

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use core::ptr::NonNull;

use host_shim::harness::{RunOptions, STOPPED_LINE, STOP_BYTE};
use host_shim::host_trace::LocalControl;
use host_shim::page_pool::{PagePool, PAGE_SIZE};
use host_shim::reader::{CpuReader, IdentityMemory, PageBuf, PageMemory, RingControl};
use host_shim::trace_buffer::{ring_pages_for, ExtBuffer};
use hyptrace_abi::calls::{status_from_regs, Call};
use hyptrace_abi::host_events::{self, Phase, ReaderPoll, ReaderSwap, Workload};
use hyptrace_abi::{events, printk, HypError, HypercallId, PrintkFormats, SwapResult};
use hyptrace_platform::memmap::{HOST_POOL_BASE, MAX_CPUS};
use hyptrace_ring::clock::ClockParams;
use hyptrace_ring::{PageDesc, DESC_SIZE};
use hyptrace_tracedat::writer::{self as tracedat, Buffer, CpuData, CpuStats as FileStats, System};
use hyptrace_tracedat::PrintkFormat;

use crate::arch::boot::machine;
use crate::arch::calls::hypercall_args;
use crate::arch::console::{println, CONSOLE};
use crate::arch::semihosting::File;
use crate::arch::{cpu, smp};
use crate::own_trace::{self, HOST};

/// One `hyp_printk` call site of the hypervisor, as `printk_formats` described it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrintkSite {
    /// The site address (`ip` and `fmt` of its events).
    pub addr: u64,
    /// Its C format.
    pub format: String,
    /// Its module path.
    pub location: String,
}

/// Fetches the hypervisor's `hyp_printk` format table, one page at a time, through a page of
/// `pool`. Checks what comes back: the counts, the byte count, every entry.
pub fn fetch_printk_formats(pool: &mut PagePool) -> Result<Vec<PrintkSite>, String> {
    let page = pool
        .alloc()
        .map_err(|e| format!("printk formats page: {e:?}"))?;
    let result = (|| {
        let mut sites = Vec::new();
        loop {
            let regs = issue(Call::PrintkFormats {
                page_pa: page,
                first: sites.len() as u64,
            })
            .map_err(|e| format!("printk_formats: {e}"))?;
            let answer = PrintkFormats::from_regs(regs);
            let first = sites.len() as u64;
            if answer.bytes > PAGE_SIZE
                || first
                    .checked_add(answer.written)
                    .is_none_or(|end| end > answer.total)
            {
                return Err(format!("printk_formats answered nonsense: {answer:?}"));
            }
            // SAFETY: `page` is a pool page this CPU owns, identity-mapped; the hypervisor
            // wrote it before returning.
            let bytes =
                unsafe { core::slice::from_raw_parts(page as *const u8, answer.bytes as usize) };
            for e in printk::entries(bytes, answer.written as usize) {
                let e = e.map_err(|e| format!("printk_formats: {e}"))?;
                sites.push(PrintkSite {
                    addr: e.addr,
                    format: e.format.into(),
                    location: e.location.into(),
                });
            }
            if sites.len() as u64 == answer.total {
                return Ok(sites);
            }
            if answer.written == 0 {
                return Err("printk_formats wrote nothing before the table's end".into());
            }
        }
    })();
    pool.free(page)
        .map_err(|e| format!("printk formats page: {e:?}"))?;
    result
}

/// A hyptrace hypercall; `Err` with the decoded code when X0 is negative.
pub fn call(id: HypercallId, args: &[u64]) -> Result<[u64; 3], HypError> {
    status_from_regs(hypercall_args(id, args))
}

/// Issues `call` (its registers from `Call::to_regs`); returns X1..X3 or the error X0 names.
pub fn issue(call: Call) -> Result<[u64; 3], HypError> {
    let [_, args @ ..] = call.to_regs();
    self::call(call.id(), &args)
}

/// The reader's control calls, as hypercalls.
#[derive(Clone, Copy, Debug, Default)]
pub struct HvcControl;

impl RingControl for HvcControl {
    fn swap_reader(&mut self, cpu: u32) -> Result<SwapResult, HypError> {
        let swap = SwapResult::from_regs(issue(Call::SwapReader { cpu: cpu.into() })?)?;
        own_trace::emit(&ReaderSwap {
            cpu,
            swapped: swap.swapped.into(),
            lost: swap.lost,
        });
        Ok(swap)
    }

    fn update_footers(&mut self, cpu: u32) -> Result<(), HypError> {
        issue(Call::UpdateFooters { cpu: cpu.into() }).map(drop)
    }
}

/// The host's page pool: everything after the host image up to the end of RAM.
pub fn page_pool() -> PagePool {
    PagePool::new(HOST_POOL_BASE..machine().ram.end)
}

/// The clock parameters both sides use: ns = counter ticks converted at CNTFRQ_EL0, counted
/// from counter 0 (so host and hypervisor share one timeline).
pub fn clock_params() -> ClockParams {
    ClockParams::for_frequency(cpu::counter_frequency(), 0, 0)
        .expect("CNTFRQ_EL0 is never 0 on a booted system")
}

/// A loaded buffer and one reader per CPU.
pub struct Session {
    buffer: Option<ExtBuffer>,
    /// One reader per CPU of the buffer, in the buffer's order: indexed by CPU number for a
    /// buffer of every CPU ([`Session::start`]).
    pub readers: Vec<CpuReader<HvcControl, IdentityMemory>>,
}

impl Session {
    /// Allocates `size` bytes of buffer per CPU for every CPU, loads it into the hypervisor and
    /// sets the clock. Events stay disabled and the buffer non-writable.
    pub fn start(pool: &mut PagePool, size: usize) -> Result<Self, String> {
        let cpus: Vec<u32> = (0..machine().cpus.count() as u32).collect();
        Self::start_cpus(pool, size, &cpus)
    }

    /// As [`Session::start`], for the CPUs `cpus` only, in that order.
    pub fn start_cpus(pool: &mut PagePool, size: usize, cpus: &[u32]) -> Result<Self, String> {
        let buffer = ExtBuffer::alloc_cpus(pool, size, cpus)
            .map_err(|e| format!("cannot allocate {size} bytes per CPU: {e:?}"))?;
        let pack_size = buffer.pack_size();
        let pack_pages = pack_size / PAGE_SIZE as usize;
        let pack_pa = match pool.alloc_contiguous(pack_pages) {
            Ok(pa) => pa,
            Err(e) => {
                buffer.free(pool);
                return Err(format!("no room for a {pack_size}-byte pack: {e:?}"));
            }
        };
        // SAFETY: the pack pages were just allocated from the pool (host RAM, identity
        // mapped, used by nothing else).
        let pack = unsafe { core::slice::from_raw_parts_mut(pack_pa as *mut u8, pack_size) };
        let packed = buffer.pack(pack);
        let loaded = packed.map_err(|e| format!("{e:?}")).and_then(|_| {
            issue(Call::LoadTracing {
                pack_pa,
                pack_size: pack_size as u64,
            })
            .map_err(|e| format!("load_tracing: {e}"))
        });
        // The hypervisor validated a copy: the pack pages are free again either way.
        for i in 0..pack_pages as u64 {
            let _ = pool.free(pack_pa + i * PAGE_SIZE);
        }
        if let Err(e) = loaded {
            buffer.free(pool);
            return Err(e);
        }
        let c = clock_params();
        let clock = Call::UpdateClock {
            mult: c.mult.into(),
            shift: c.shift.into(),
            epoch_ns: c.epoch_ns,
            epoch_cyc: c.epoch_cyc,
        };
        issue(clock).map_err(|e| format!("update_clock: {e}"))?;
        let readers = buffer
            .cpus()
            .iter()
            .map(|c| {
                // SAFETY: the pages of this buffer are identity-mapped host RAM; swap_reader
                // only ever returns pages of the pack the hypervisor validated.
                let mem = unsafe { IdentityMemory::new() };
                CpuReader::new(c.cpu, c.reader_page, HvcControl, mem)
            })
            .collect();
        Ok(Self {
            buffer: Some(buffer),
            readers,
        })
    }

    /// Enables the events named in `names` (comma-separated; all when `None`).
    pub fn enable_events(&self, names: Option<&str>) -> Result<(), String> {
        let mut ids = Vec::new();
        match names {
            None => ids.extend(events::ALL.iter().chain([&printk::DESC]).map(|e| e.id)),
            Some(list) => {
                for name in list.split(',').filter(|n| !n.is_empty()) {
                    let e = events::by_name(name)
                        .or((name == printk::NAME).then_some(&printk::DESC))
                        .ok_or_else(|| format!("no event {name:?}"))?;
                    ids.push(e.id);
                }
            }
        }
        for id in ids {
            issue(Call::EnableEvent {
                id: id.into(),
                enable: 1,
            })
            .map_err(|e| format!("enable_event({id}): {e}"))?;
        }
        Ok(())
    }

    /// Every page of the buffer.
    pub fn pages(&self) -> Vec<u64> {
        self.buffer.iter().flat_map(|b| b.pages()).collect()
    }

    /// Makes every CPU's buffer writable (or not).
    pub fn set_writable(&self, on: bool) -> Result<(), HypError> {
        issue(Call::EnableTracing { enable: on.into() }).map(drop)
    }

    /// Tears the buffer down in the hypervisor and returns its pages to `pool`.
    pub fn stop(mut self, pool: &mut PagePool) -> Result<(), HypError> {
        let result = issue(Call::TeardownTracing).map(drop);
        if let Some(buffer) = self.buffer.take() {
            if result.is_ok() {
                buffer.free(pool);
            }
        }
        result
    }
}

/// The host's own buffer: per CPU a reader page and ring pages (an [`ExtBuffer`]'s: the
/// host writes it only through the ring) and the ring's descriptors, from the pool, loaded
/// into [`HOST`]. The host is its only writer.
pub struct HostBuffer {
    pages: ExtBuffer,
    /// Per CPU loaded: the first page of its descriptor run.
    descs: Vec<u64>,
    desc_pages: usize,
}

impl HostBuffer {
    /// Allocates `size` bytes of buffer per CPU for `nr_cpus` CPUs and loads [`HOST`] with
    /// them (not recording yet: see [`HostBuffer::start`]).
    pub fn alloc(pool: &mut PagePool, size: usize, nr_cpus: usize) -> Result<Self, String> {
        let pages = ExtBuffer::alloc(pool, size, nr_cpus)
            .map_err(|e| format!("cannot allocate the host's {size} bytes per CPU: {e:?}"))?;
        let n = ring_pages_for(size);
        let mut buffer = Self {
            pages,
            descs: Vec::with_capacity(nr_cpus),
            desc_pages: ((n + 1) * DESC_SIZE).div_ceil(PAGE_SIZE as usize),
        };
        for cpu in 0..nr_cpus {
            if let Err(e) = buffer.load_cpu(pool, cpu) {
                buffer.free(pool);
                return Err(format!("host buffer of CPU {cpu}: {e}"));
            }
        }
        Ok(buffer)
    }

    /// Takes `cpu`'s descriptors from the pool and loads its ring.
    fn load_cpu(&mut self, pool: &mut PagePool, cpu: usize) -> Result<(), String> {
        let c = &self.pages.cpus()[cpu];
        let n = c.ring_pages.len();
        let descs = pool
            .alloc_contiguous(self.desc_pages)
            .map_err(|e| format!("{e:?}"))?;
        self.descs.push(descs);
        let base = descs as *mut PageDesc;
        for i in 0..=n {
            // SAFETY: slot `i` of the descriptor run just allocated (room for `n + 1`).
            unsafe { base.add(i).write(PageDesc::new()) };
        }
        // SAFETY: `n + 1` initialised descriptors in pool pages this buffer owns until `free`,
        // which runs only after `HOST.teardown()`: the ring never uses them after that.
        let desc_slice: &'static [PageDesc] = unsafe { core::slice::from_raw_parts(base, n + 1) };
        let ptr = |pa: u64| NonNull::new(pa as *mut u8).expect("pool pages are never at 0");
        // SAFETY: distinct, 4096-aligned pool pages, used only by this ring and the
        // recorder's reader until `HOST.teardown()`.
        unsafe {
            HOST.load(
                cpu,
                desc_slice,
                ptr(c.reader_page),
                c.ring_pages.iter().map(|&p| ptr(p)),
            )
        }
        .map_err(|e| format!("load: {e}"))
    }

    /// Starts recording the host's events, on the hypervisor's clock.
    pub fn start(&self) -> Result<(), String> {
        HOST.start(clock_params())
            .map_err(|e| format!("host buffer: {e}"))
    }

    /// One reader per CPU, CPU 0 first.
    pub fn readers(&self) -> Vec<CpuReader<LocalControl<MAX_CPUS>, IdentityMemory>> {
        self.pages
            .cpus()
            .iter()
            .map(|c| {
                // SAFETY: the ring's pages are identity-mapped host RAM, and its swap only
                // returns pages it was loaded with.
                let mem = unsafe { IdentityMemory::new() };
                CpuReader::new(c.cpu, c.reader_page, LocalControl(&HOST), mem)
            })
            .collect()
    }

    /// Unloads [`HOST`] and gives every page back to `pool`.
    pub fn free(self, pool: &mut PagePool) {
        HOST.teardown();
        self.pages.free(pool);
        for base in self.descs {
            for i in 0..self.desc_pages as u64 {
                let _ = pool.free(base + i * PAGE_SIZE);
            }
        }
    }
}

/// Drained pages of one CPU, in a contiguous run of pool pages (trace.dat wants each CPU's
/// pages back to back).
pub struct PageStore {
    base: u64,
    capacity: usize,
    used: usize,
    /// Pages kept for the final drain: polls stop storing (and report the store full) this
    /// many pages before the end, so that what the ring still holds when recording stops
    /// always fits and the file keeps every event read.
    reserved: usize,
}

impl PageStore {
    /// Room for `capacity` pages from `pool`.
    pub fn new(pool: &mut PagePool, capacity: usize) -> Result<Self, String> {
        let base = pool
            .alloc_contiguous(capacity)
            .map_err(|e| format!("no room to store {capacity} pages: {e:?}"))?;
        Ok(Self {
            base,
            capacity,
            used: 0,
            reserved: 0,
        })
    }

    /// Keeps the last `pages` for the final drain (see [`drain`]): a ring's pages and its
    /// reader page.
    pub fn reserve_for_final_drain(&mut self, pages: usize) {
        self.reserved = pages.min(self.capacity);
    }

    /// Whether a poll may still store pages (the room beyond the final drain's reserve).
    pub fn has_room_before_reserve(&self) -> bool {
        self.used + self.reserved < self.capacity
    }

    /// Appends a page; `false` when full.
    pub fn push(&mut self, page: &PageBuf) -> bool {
        if self.used == self.capacity {
            return false;
        }
        let at = self.base + (self.used * PAGE_SIZE as usize) as u64;
        // SAFETY: page `used` of the run this store owns (allocated from the pool in `new`).
        unsafe {
            core::ptr::copy_nonoverlapping(page.0.as_ptr(), at as *mut u8, PAGE_SIZE as usize)
        };
        self.used += 1;
        true
    }

    /// Pages stored.
    pub fn pages(&self) -> usize {
        self.used
    }

    /// The stored pages as bytes.
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: the first `used` pages of the run this store owns, initialised by `push`.
        unsafe {
            core::slice::from_raw_parts(self.base as *const u8, self.used * PAGE_SIZE as usize)
        }
    }

    /// Timestamp of the first stored page (0 when empty).
    pub fn first_ts(&self) -> u64 {
        self.bytes()
            .get(..8)
            .map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
    }

    /// Gives the run back to the pool.
    pub fn free(self, pool: &mut PagePool) {
        for i in 0..self.capacity as u64 {
            let _ = pool.free(self.base + i * PAGE_SIZE);
        }
    }
}

/// `ring_buffer_poke`: refreshes `reader`'s footers through the hypervisor (which cannot
/// notify the host) and tells whether unread events are waiting.
pub fn poke<C: RingControl, M: PageMemory>(reader: &mut CpuReader<C, M>) -> Result<bool, HypError> {
    match reader.stats() {
        Ok(s) => Ok(s.entries > s.read + s.lost),
        // The head search lost every retry to a writer that keeps pushing the head: that
        // writer is busy, so there is certainly something to read.
        Err(HypError::Busy) => Ok(true),
        Err(e) => Err(e),
    }
}

/// Drains every complete or partial page `reader` has; returns the events stored. Sets
/// `full` when `store` ran out of room: for a poll (`last` false), when only the final
/// drain's reserve is left, before a page is taken (so nothing is read and dropped); for the
/// final drain (`last`), when even the reserve ran out (the page is then consumed but not
/// stored, which a reserve of the ring's pages rules out).
pub fn drain<C: RingControl, M: PageMemory>(
    reader: &mut CpuReader<C, M>,
    store: &mut PageStore,
    buf: &mut PageBuf,
    last: bool,
) -> Result<(u64, bool), HypError> {
    let mut events = 0;
    loop {
        if !last && !store.has_room_before_reserve() {
            return Ok((events, true));
        }
        let page = match reader.read_page(buf) {
            Ok(Some(page)) => page,
            Ok(None) => return Ok((events, false)),
            // The writer kept the head moving through the swap's whole retry budget: nothing
            // changed, try again at the next poll.
            Err(HypError::Busy) => return Ok((events, false)),
            Err(e) => return Err(e),
        };
        if !store.push(buf) {
            return Ok((events, true));
        }
        events += page.events;
    }
}

/// Tells the workload jobs to return.
pub static STOP: AtomicBool = AtomicBool::new(false);
static SELFTEST_WRITTEN: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
/// Slices each CPU ran, to space out the rare calls of the workload.
static SLICES: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
/// Every this many slices a CPU asks to start itself again: a CPU_ON the relay refuses
/// (ALREADY_ON), which the hypervisor reports with `hyp_printk`.
const REFUSED_CPU_ON_EVERY: u64 = 64;

/// First selftest sequence number CPU `cpu` uses: CPUs never share one.
fn selftest_base(cpu: usize) -> u64 {
    (cpu as u64) << 40
}

/// One slice of the default workload on the calling CPU: hypercalls (null, info, one refused),
/// a relayed PSCI call (and now and then a refused CPU_ON of itself), a refused read of
/// hypervisor memory, and a batch of selftest events.
pub fn workload_slice(cpu: usize) -> Result<(), String> {
    own_trace::emit(&Workload {
        phase: Phase::Slice as u32,
    });
    for i in 0..8 {
        issue(Call::Null { args: [i, 0, 0] }).map_err(|e| format!("null: {e}"))?;
    }
    issue(Call::Info).map_err(|e| format!("info: {e}"))?;
    // An unknown call: traced as host_hcall with invalid=1.
    let _ = hypercall_raw_unknown();
    crate::arch::calls::psci(smccc::psci::PSCI_VERSION, [0; 3]);
    // Relaxed: a per-CPU counter only its own CPU touches.
    if SLICES[cpu]
        .fetch_add(1, Ordering::Relaxed)
        .is_multiple_of(REFUSED_CPU_ON_EVERY)
    {
        let entry = hyptrace_platform::memmap::HOST_BASE;
        let x0 = crate::arch::calls::psci(
            smccc::psci::PSCI_CPU_ON_64,
            [crate::arch::cpu::mpidr(), entry, 0],
        );
        if x0 != i64::from(smccc::psci::error::ALREADY_ON) {
            return Err(format!("CPU_ON of a running CPU answered {:#x}", x0));
        }
    }
    // A read of hypervisor memory: stage 2 refuses it (traced as host_mem_abort) and the
    // abort comes back to our EL1 handler, which skips the load.
    if crate::arch::exceptions::probe_read(hyptrace_platform::memmap::HYP_BASE).is_ok() {
        return Err("read hypervisor memory: stage 2 is not protecting it".into());
    }
    let first = selftest_base(cpu) + SELFTEST_WRITTEN[cpu].load(Ordering::Relaxed);
    let [written, _, _] = issue(Call::WriteSelftest {
        first_seq: first,
        count: 64,
    })
    .map_err(|e| format!("selftest: {e}"))?;
    // Relaxed: a per-CPU counter read by the boot CPU after the worker's job completed.
    SELFTEST_WRITTEN[cpu].fetch_add(written, Ordering::Relaxed);
    Ok(())
}

fn hypercall_raw_unknown() -> u64 {
    let mut regs = [0u64; 18];
    regs[0] = 0xC600_00FF;
    crate::arch::calls::hvc_raw(regs)[0]
}

/// The workload job of a secondary CPU: slices until [`STOP`].
pub fn worker(cpu: usize) -> Result<(), String> {
    own_trace::emit(&Workload {
        phase: Phase::Start as u32,
    });
    // Acquire: pairs with the Release store of STOP by the recorder.
    while !STOP.load(Ordering::Acquire) {
        workload_slice(cpu)?;
    }
    own_trace::emit(&Workload {
        phase: Phase::Stop as u32,
    });
    Ok(())
}

/// Before a `fault ... trace=1`: loads tracing on every CPU with every event enabled
/// (`hyp_printk`'s too), starts the workload on every secondary CPU and runs it on this one
/// until every CPU has written events. Returns with the secondaries still writing, so the
/// fault that follows meets writers in flight; nothing is ever torn down (the fault ends the
/// run).
pub fn trace_every_cpu() -> Result<(), String> {
    let nr_cpus = machine().cpus.count();
    let mut pool = page_pool();
    let session = Session::start(&mut pool, 64 * 1024)?;
    session.enable_events(None)?;
    STOP.store(false, Ordering::Release);
    session
        .set_writable(true)
        .map_err(|e| format!("enable_tracing: {e}"))?;
    for worker_cpu in 1..nr_cpus {
        smp::start_job(
            worker_cpu,
            alloc::boxed::Box::new(move || worker(worker_cpu)),
        )?;
    }
    // Bounded: the workers write thousands of events per slice of ours.
    for _ in 0..10_000 {
        workload_slice(0)?;
        let mut traced = 0;
        for cpu in 0..nr_cpus as u64 {
            let counters = issue(Call::UpdateFooters { cpu }).map_err(|e| format!("{e}"))?;
            traced += usize::from(hyptrace_abi::RingCounters::from_regs(counters).entries > 0);
        }
        if traced == nr_cpus {
            println!("host: every CPU ({nr_cpus}) has written events; its workload goes on");
            // The buffer stays loaded for the fault: `session` is never torn down.
            return Ok(());
        }
    }
    Err("some CPU wrote no events".into())
}

/// `cargo xtask run`: records a trace of the default workload and writes trace.dat.
pub fn run(opts: &RunOptions) -> u32 {
    match record(opts) {
        Ok(()) => 0,
        Err(e) => {
            println!("trace: FAILED: {e}");
            1
        }
    }
}

/// One buffer being drained: its readers and where their pages go.
struct Drained<C: RingControl> {
    readers: Vec<CpuReader<C, IdentityMemory>>,
    stores: Vec<PageStore>,
}

impl<C: RingControl> Drained<C> {
    /// Polls every CPU and drains those with unread events; returns the events read and
    /// whether a store ran out of room. `trace_polls`: record a `reader_poll` event for each
    /// CPU polled (for the hypervisor's buffer; polling the host's own buffer records
    /// nothing, or reading it would feed it).
    fn poll(&mut self, buf: &mut PageBuf, trace_polls: bool) -> Result<(u64, bool), String> {
        let mut read = 0;
        let mut full = false;
        for (reader, store) in self.readers.iter_mut().zip(self.stores.iter_mut()) {
            let pending = poke(reader).map_err(|e| format!("poke: {e}"))?;
            if trace_polls {
                own_trace::emit(&ReaderPoll {
                    cpu: reader.cpu(),
                    pending: pending.into(),
                });
            }
            if !pending {
                continue;
            }
            let (n, f) = drain(reader, store, buf, false).map_err(|e| format!("drain: {e}"))?;
            read += n;
            full |= f;
        }
        Ok((read, full))
    }

    /// Drains every CPU completely (nothing is being written any more).
    fn final_drain(&mut self, buf: &mut PageBuf) -> Result<(), String> {
        for (reader, store) in self.readers.iter_mut().zip(self.stores.iter_mut()) {
            let (_, full) =
                drain(reader, store, buf, true).map_err(|e| format!("final drain: {e}"))?;
            if full {
                return Err("the host's page store filled up during the final drain".into());
            }
        }
        Ok(())
    }

    /// Prints each CPU's accounting (`trace: <label>cpu ...`) and returns the file's
    /// statistics; `balanced` is cleared when read + lost != written on a CPU.
    fn account(
        &mut self,
        label: &str,
        end_ns: u64,
        balanced: &mut bool,
    ) -> Result<Vec<FileStats>, String> {
        let mut files = Vec::new();
        for (cpu_index, (reader, store)) in self.readers.iter_mut().zip(&self.stores).enumerate() {
            let s = reader
                .stats()
                .map_err(|e| format!("stats of {label}CPU {cpu_index}: {e}"))?;
            println!(
                "trace: {label}cpu {cpu_index} written {} read {} lost {} pages {}",
                s.entries,
                s.read,
                s.lost,
                store.pages()
            );
            if s.read + s.lost != s.entries || s.lost != s.overrun {
                println!(
                    "trace: {label}cpu {cpu_index}: read + lost = {} but {} were written (overrun {})",
                    s.read + s.lost,
                    s.entries,
                    s.overrun
                );
                *balanced = false;
            }
            files.push(FileStats {
                entries: s.entries.saturating_sub(s.read + s.lost),
                overrun: s.lost,
                read: s.read,
                bytes: (store.pages() * PAGE_SIZE as usize) as u64,
                oldest_ts: store.first_ts(),
                now_ts: end_ns,
            });
        }
        Ok(files)
    }

    fn cpu_data<'a>(&'a self, stats: &[FileStats]) -> Vec<CpuData<'a>> {
        self.stores
            .iter()
            .zip(stats)
            .map(|(store, stats)| CpuData {
                pages: store.bytes(),
                stats: *stats,
            })
            .collect()
    }

    fn free(self, pool: &mut PagePool) {
        self.stores.into_iter().for_each(|s| s.free(pool));
    }
}

/// One store of `per_cpu` pages per CPU, each keeping `reserve` pages for the final drain.
fn stores(
    pool: &mut PagePool,
    nr_cpus: usize,
    per_cpu: usize,
    reserve: usize,
) -> Result<Vec<PageStore>, String> {
    (0..nr_cpus)
        .map(|_| {
            let mut store = PageStore::new(pool, per_cpu)?;
            store.reserve_for_final_drain(reserve);
            Ok(store)
        })
        .collect()
}

fn record(opts: &RunOptions) -> Result<(), String> {
    let nr_cpus = machine().cpus.count();
    let mut pool = page_pool();
    let size = (opts.buffer_kb * 1024) as usize;
    let session = Session::start(&mut pool, size)?;
    session.enable_events(opts.events)?;
    let host = if opts.host_events {
        Some(HostBuffer::alloc(&mut pool, size, nr_cpus)?)
    } else {
        None
    };
    let buffers = if host.is_some() { 2 } else { 1 };
    // Whatever is left, split between the CPUs of each buffer, holds the drained pages.
    let per_cpu = (pool.free_pages() / (nr_cpus * buffers))
        .saturating_sub(16)
        .min(1 << 16);
    // What a CPU's ring can still hold when recording stops: its pages and the reader page
    // (and one for rounding): the final drain always has room for it.
    let final_drain_pages = size.div_ceil(PAGE_SIZE as usize) + 2;
    let mut hyp = Drained {
        readers: session.readers,
        stores: stores(&mut pool, nr_cpus, per_cpu, final_drain_pages)?,
    };
    let session = Session {
        buffer: session.buffer,
        readers: Vec::new(),
    };
    let mut own = match &host {
        Some(h) => Some(Drained {
            readers: h.readers(),
            stores: stores(&mut pool, nr_cpus, per_cpu, final_drain_pages)?,
        }),
        None => None,
    };
    let asked = if opts.duration_ms == 0 {
        String::from("until stopped")
    } else {
        format!("{} ms", opts.duration_ms)
    };
    println!(
        "trace: recording {asked} on {nr_cpus} CPUs, {} KiB per CPU, poll every {} ms, events {}, host events {}",
        opts.buffer_kb,
        opts.period_ms,
        opts.events.unwrap_or("all"),
        if host.is_some() { "on" } else { "off" }
    );
    STOP.store(false, Ordering::Release);
    session
        .set_writable(true)
        .map_err(|e| format!("enable_tracing: {e}"))?;
    // The host records only while the hypervisor does: every call bracketed by host events
    // has its hypervisor events in the file too (unless lost).
    if let Some(h) = &host {
        h.start()?;
    }
    own_trace::emit(&Workload {
        phase: Phase::Start as u32,
    });
    for worker_cpu in 1..nr_cpus {
        smp::start_job(
            worker_cpu,
            alloc::boxed::Box::new(move || worker(worker_cpu)),
        )?;
    }
    let start = cpu::counter();
    let duration = cpu::ticks_per_ms(opts.duration_ms);
    let period = cpu::ticks_per_ms(opts.period_ms);
    let progress_every = cpu::ticks_per_ms(250);
    let mut next_poll = start;
    let mut next_progress = start + progress_every;
    let mut buf = PageBuf::zeroed();
    let mut read_events = 0u64;
    let mut full = false;
    let mut stopped = false;
    // `duration` 0: until the console says stop (or the page store fills).
    while (duration == 0 || cpu::counter() - start < duration) && !full && !stopped {
        // The reader's CPU runs the workload too, between polls.
        workload_slice(0)?;
        let now = cpu::counter();
        if now >= next_poll {
            next_poll = now + period;
            let (n, f) = hyp.poll(&mut buf, true)?;
            read_events += n;
            full |= f;
            if let Some(own) = &mut own {
                let (n, f) = own.poll(&mut buf, false)?;
                read_events += n;
                full |= f;
            }
        }
        // One polled register read per slice: Ctrl-C in `cargo xtask run` (or its timeout)
        // ends the recording as its duration would.
        stopped = CONSOLE.try_read_byte() == Some(STOP_BYTE);
        if now >= next_progress {
            next_progress = now + progress_every;
            let lost: u64 = hyp
                .readers
                .iter_mut()
                .map(|r| r.stats().map_or(0, |s| s.lost))
                .sum();
            let pages: usize = hyp.stores.iter().map(PageStore::pages).sum();
            let ms = cpu::ticks_to_ns(now - start) / 1_000_000;
            let of = if opts.duration_ms == 0 {
                String::new()
            } else {
                format!("/{}", opts.duration_ms)
            };
            println!("trace: {ms}{of} ms, events read {read_events}, pages {pages}, lost {lost}");
        }
    }
    if full {
        println!("trace: the host's page store is full: stopping early");
    }
    if stopped {
        println!(
            "{STOPPED_LINE}{} ms",
            cpu::ticks_to_ns(cpu::counter() - start) / 1_000_000
        );
    }
    // How long the recording really ran (less than asked when the store filled): xtask's
    // loss advice divides by it.
    println!(
        "trace: recorded {} ms",
        cpu::ticks_to_ns(cpu::counter() - start) / 1_000_000
    );
    // Release: pairs with the workers' Acquire loads.
    STOP.store(true, Ordering::Release);
    for worker_cpu in 1..nr_cpus {
        smp::wait_job(worker_cpu, 30_000)?;
    }
    own_trace::emit(&Workload {
        phase: Phase::Stop as u32,
    });
    // The host stops before the hypervisor (see the start).
    HOST.stop();
    session
        .set_writable(false)
        .map_err(|e| format!("disable: {e}"))?;
    // Final drain: nothing is written any more, so this empties every buffer.
    hyp.final_drain(&mut buf)?;
    if let Some(own) = &mut own {
        own.final_drain(&mut buf)?;
    }
    let end_ns = clock_params().cycles_to_ns(cpu::counter());
    let mut balanced = true;
    let hyp_stats = hyp.account("", end_ns, &mut balanced)?;
    for (cpu_index, written) in SELFTEST_WRITTEN.iter().enumerate().take(nr_cpus) {
        let selftest = written.load(Ordering::Relaxed);
        if selftest > 0 {
            println!(
                "trace: selftest cpu {cpu_index} first {} count {selftest}",
                selftest_base(cpu_index)
            );
        }
    }
    let own_stats = match &mut own {
        Some(own) => Some(own.account("host ", end_ns, &mut balanced)?),
        None => None,
    };
    session
        .stop(&mut pool)
        .map_err(|e| format!("teardown: {e}"))?;
    let hyp_cpus = hyp.cpu_data(&hyp_stats);
    let own_cpus = match (&own, &own_stats) {
        (Some(own), Some(stats)) => own.cpu_data(stats),
        _ => Vec::new(),
    };
    let systems = [
        System {
            name: events::SYSTEM,
            events: events::ALL,
        },
        System {
            name: host_events::SYSTEM,
            events: host_events::ALL,
        },
    ];
    let (systems, buffers): (&[System], Vec<Buffer>) = if own.is_some() {
        (
            &systems,
            vec![
                Buffer {
                    name: "",
                    cpus: &own_cpus,
                },
                Buffer {
                    name: HYPERVISOR_INSTANCE,
                    cpus: &hyp_cpus,
                },
            ],
        )
    } else {
        (
            &systems[..1],
            vec![Buffer {
                name: "",
                cpus: &hyp_cpus,
            }],
        )
    };
    // The hypervisor's hyp_printk call sites: trace.dat's printk formats and kallsyms, so
    // trace-cmd prints its bprint events as text.
    let sites = fetch_printk_formats(&mut pool)?;
    println!("trace: {} hyp_printk formats", sites.len());
    let printk: Vec<PrintkFormat> = sites
        .iter()
        .map(|s| PrintkFormat {
            addr: s.addr,
            format: &s.format,
            location: &s.location,
        })
        .collect();
    let mut file = File::create(opts.output)
        .map_err(|errno| format!("cannot create {}: errno {errno}", opts.output))?;
    let bytes = tracedat::write_trace_with_printk(&mut file, systems, &buffers, "mono", &printk)
        .map_err(|e| format!("writing {}: {e:?}", opts.output))?;
    println!("trace: saved {} ({bytes} bytes)", opts.output);
    drop(buffers);
    drop(own_cpus);
    drop(hyp_cpus);
    hyp.free(&mut pool);
    if let Some(own) = own {
        own.free(&mut pool);
    }
    if let Some(h) = host {
        h.free(&mut pool);
    }
    if balanced {
        Ok(())
    } else {
        Err("read + lost != written on some CPU".into())
    }
}

/// The tracefs-style instance name of the hypervisor's buffer in trace.dat (as Android's
/// `hypervisor` instance).
pub const HYPERVISOR_INSTANCE: &str = "hypervisor";
