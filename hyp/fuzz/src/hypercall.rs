//! `hypercall`: sequences of hypercalls from several simulated CPUs, run through the
//! hypervisor's own dispatcher ([`hyp::hypercall::dispatch`]) and tracing service over a
//! simulated host RAM in ordinary memory.
//!
//! The simulated RAM is [`ARENA_PAGES`] pages; pages [`HYP_PAGES`] of it play the
//! hypervisor's private region, which the host cannot write. The host builds packs from fuzz
//! bytes (CPUs, reader and ring pages anywhere: its own pages, hypervisor pages, misaligned or
//! far-away addresses, duplicates, the pack itself), places them anywhere, issues any call
//! with any registers from any CPU, scribbles over any of its pages (shared ring pages
//! included) and makes the hypervisor emit events. The EL2 mapping is simulated by a
//! [`HostMemory`] that records what is mapped and can be told to run out of tables.
//!
//! Checked after every call:
//! - the answer is documented: X0 is 0, SMCCC `NOT_SUPPORTED` or a [`HypError`] code, and a
//!   refused call leaves X1..X3 as they were; the calls that need a loaded buffer are refused
//!   with `NotLoaded` when none is, `load` with `AlreadyLoaded` when one is;
//! - `load` accepts exactly the packs an independent check of the ABI's rules accepts
//!   (unless the mapping was told to fail, then it is refused);
//! - no byte of simulated RAM changed except the host's own writes and the pages of the
//!   loaded buffer (a shadow copy of the RAM is compared);
//! - the ownership table and the EL2 mapping agree with what was loaded: exactly its pages
//!   shared and mapped writable, the hypervisor's pages its own, every other page the host's;
//! - a swap answers one of the pages the pack gave that CPU.
//!
//! At the end, teardown succeeds if anything is loaded and every page is the host's again.

use std::ops::Range;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::OnceLock;

use arbitrary::{Arbitrary, Unstructured};
use hyp::abi::calls::Call;
use hyp::abi::event_format::Event;
use hyp::abi::events;
use hyp::abi::hypercall::{HypercallId, ABI_VERSION, SMCCC_NOT_SUPPORTED};
use hyp::abi::limits::{MAX_PACK_SIZE, MAX_SELFTEST_BATCH};
use hyp::abi::pack::TraceBufferPack;
use hyp::abi::page::{PAGE_SIZE, PAGE_SIZE_U64};
use hyp::abi::HypError;
use hyp::hypercall::{handle_hvc, Context, HvcOutcome};
use hyp::tracing::host_memory::HostMemory;
use hyp::tracing::memory_rules::MemoryRules;
use hyp::tracing::ownership::PageState;
use hyp::tracing::{TracingService, TracingStorage};

/// Print every call and its answer (the replay example sets it).
pub static VERBOSE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Pages of simulated RAM.
pub const ARENA_PAGES: usize = 32;
/// The pages of the simulated RAM that are the hypervisor's.
pub const HYP_PAGES: Range<usize> = 12..16;
/// CPUs the simulated hypervisor manages.
pub const NR_CPUS: usize = 4;

/// The simulated RAM: page-aligned, allocated once and reused by every input.
fn arena() -> u64 {
    static BASE: OnceLock<u64> = OnceLock::new();
    *BASE.get_or_init(|| {
        let layout = std::alloc::Layout::from_size_align(ARENA_PAGES * PAGE_SIZE, PAGE_SIZE)
            .expect("arena layout");
        // SAFETY: non-zero size. The arena lives as long as the process: the service may keep
        // pointers into it between inputs only while loaded, and every input ends unloaded.
        let base = unsafe { std::alloc::alloc_zeroed(layout) };
        assert!(!base.is_null(), "arena allocation");
        base.expose_provenance() as u64
    })
}

fn page_addr(index: usize) -> u64 {
    arena() + (index * PAGE_SIZE) as u64
}

fn is_hyp_page(index: usize) -> bool {
    HYP_PAGES.contains(&index)
}

fn rules() -> MemoryRules {
    MemoryRules {
        ram: page_addr(0)..page_addr(ARENA_PAGES),
        hyp: page_addr(HYP_PAGES.start)..page_addr(HYP_PAGES.end),
    }
}

/// The arena page holding `pa`, if any.
fn arena_page(pa: u64) -> Option<usize> {
    let i = usize::try_from(pa.checked_sub(arena())? / PAGE_SIZE_U64).ok()?;
    (i < ARENA_PAGES).then_some(i)
}

/// The simulated EL2 mapping: which arena pages are mapped, and a budget of successful maps
/// after which it runs out of tables (negative: unlimited).
struct Mapping {
    pages: spin::Mutex<[Option<bool>; ARENA_PAGES]>,
    budget: AtomicI32,
}

impl HostMemory for Mapping {
    fn map(&self, range: Range<u64>, writable: bool) -> Result<(), HypError> {
        // Relaxed: one thread; a counter.
        match self.budget.load(Ordering::Relaxed) {
            0 => return Err(HypError::NoMemory),
            b if b > 0 => self.budget.store(b - 1, Ordering::Relaxed),
            _ => {}
        }
        let mut pages = self.pages.lock();
        let mut pa = range.start;
        while pa < range.end {
            let i = arena_page(pa).unwrap_or_else(|| {
                panic!("the hypervisor mapped {pa:#x}, outside host RAM ({range:x?})")
            });
            assert!(
                !is_hyp_page(i),
                "the hypervisor mapped its own page {i} for the host"
            );
            assert!(pages[i].is_none(), "page {i} mapped twice");
            pages[i] = Some(writable);
            pa += PAGE_SIZE_U64;
        }
        Ok(())
    }

    fn unmap(&self, range: Range<u64>) {
        let mut pages = self.pages.lock();
        let mut pa = range.start;
        while pa < range.end {
            let i = arena_page(pa).unwrap_or_else(|| panic!("unmap of {pa:#x}, never mapped"));
            assert!(pages[i].is_some(), "unmap of page {i}, which is not mapped");
            pages[i] = None;
            pa += PAGE_SIZE_U64;
        }
    }
}

static MAPPING: Mapping = Mapping {
    pages: spin::Mutex::new([None; ARENA_PAGES]),
    budget: AtomicI32::new(-1),
};
static STORAGE: TracingStorage = TracingStorage::new();
static SERVICE: TracingService = TracingService::new(&STORAGE, &MAPPING);

/// An address the host names.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Addr {
    /// A page of the simulated RAM (the hypervisor's included).
    Page(u8),
    /// Inside a page of the simulated RAM, at a byte offset.
    Inside(u8, u16),
    /// Just below or above the RAM.
    Outside(bool, u8),
    /// Anything.
    Raw(u64),
}

impl Addr {
    fn resolve(self) -> u64 {
        match self {
            Self::Page(i) => page_addr(usize::from(i) % ARENA_PAGES),
            Self::Inside(i, off) => page_addr(usize::from(i) % ARENA_PAGES) + u64::from(off % 4096),
            Self::Outside(below, n) => {
                let n = u64::from(n) * PAGE_SIZE_U64;
                if below {
                    arena().wrapping_sub(n + PAGE_SIZE_U64)
                } else {
                    page_addr(ARENA_PAGES).wrapping_add(n)
                }
            }
            Self::Raw(v) => v,
        }
    }
}

/// A hypercall argument.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Arg {
    Small(u8),
    Addr(Addr),
    Raw(u64),
}

impl Arg {
    fn resolve(self) -> u64 {
        match self {
            Self::Small(v) => u64::from(v % 8),
            Self::Addr(a) => a.resolve(),
            Self::Raw(v) => v,
        }
    }
}

#[derive(Arbitrary, Debug)]
struct PackCpu {
    cpu: u8,
    reader: Addr,
    pages: Vec<Addr>,
}

/// A pack the host builds, possibly inconsistent.
#[derive(Arbitrary, Debug)]
struct PackSpec {
    cpus: Vec<PackCpu>,
    nr_cpus: Option<u32>,
    total_pages: Option<u64>,
    patches: Vec<(u16, u8)>,
}

impl PackSpec {
    fn bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let total: u64 = self.cpus.iter().map(|c| c.pages.len() as u64 + 1).sum();
        out.extend_from_slice(&self.nr_cpus.unwrap_or(self.cpus.len() as u32).to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&self.total_pages.unwrap_or(total).to_le_bytes());
        for c in &self.cpus {
            out.extend_from_slice(&u32::from(c.cpu % 8).to_le_bytes());
            out.extend_from_slice(&[0; 4]);
            out.extend_from_slice(&c.reader.resolve().to_le_bytes());
            out.extend_from_slice(&(c.pages.len() as u64).to_le_bytes());
            for p in &c.pages {
                out.extend_from_slice(&p.resolve().to_le_bytes());
            }
        }
        for &(at, byte) in &self.patches {
            if let Some(b) = out.get_mut(usize::from(at)) {
                *b = byte;
            }
        }
        out
    }
}

/// The `pack_size` the host passes.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Size {
    /// The pack's length rounded up to pages.
    Fit,
    Pages(u8),
    Raw(u64),
}

#[derive(Arbitrary, Debug)]
enum Op {
    /// Any registers.
    Raw { cpu: u8, regs: [u64; 5] },
    /// A hyptrace call (by index into the IDs) with chosen arguments.
    Call { cpu: u8, id: u8, args: [Arg; 4] },
    /// Writes a pack at `at` (where the host can write) and loads it.
    Load {
        cpu: u8,
        pack: PackSpec,
        at: Addr,
        size: Size,
        /// The EL2 mapping runs out of tables after this many maps.
        fail_map: Option<u8>,
    },
    /// The host writes 8 bytes into one of its pages (shared ones included).
    Scribble { page: u8, offset: u16, value: u64 },
    /// The hypervisor emits an event on a CPU, as its exception paths do.
    Emit { cpu: u8, counter: u64 },
    /// A whole valid session on the CPUs of `cpus` (a bit per CPU): a pack of distinct host
    /// pages from `first` on, load, the selftest event and tracing enabled, `count % 128`
    /// events written on each CPU (enough to fill a 2-page ring), `swaps % 8` swaps and a
    /// footer update on each.
    Session {
        cpus: u8,
        ring_pages: u8,
        first: u8,
        count: u8,
        swaps: u8,
    },
    /// The hypervisor reads a word of host memory for itself (the stage-1 walk's reads).
    ReadHostWord { at: Addr },
}

#[derive(Arbitrary, Debug)]
struct Input {
    ops: Vec<Op>,
}

/// One CPU's buffer as the model knows it.
#[derive(Clone, Debug)]
struct Ring {
    cpu: u32,
    /// Every page: the initial reader page first.
    pages: Vec<u64>,
    /// The current reader page.
    reader: u64,
}

/// What is loaded, as the fuzzer's own check of the pack says, and the switches the host set.
#[derive(Clone, Debug)]
struct Loaded {
    cpus: Vec<Ring>,
    /// `enable_tracing(1)` since the load.
    enabled: bool,
    /// `enable_event(selftest, 1)` since the load.
    selftest: bool,
}

impl Loaded {
    fn pages(&self) -> impl Iterator<Item = u64> + '_ {
        self.cpus.iter().flat_map(|r| r.pages.iter().copied())
    }

    fn holds(&self, page: usize) -> bool {
        self.mask() & (1 << page) != 0
    }

    /// The arena pages of the buffer, a bit per page (the checks run after every call, and
    /// a bitmap keeps them cheap under the fuzzer's instrumentation).
    fn mask(&self) -> u32 {
        self.pages()
            .filter_map(arena_page)
            .fold(0, |m, i| m | (1 << i))
    }
}

const _: () = assert!(ARENA_PAGES <= 32, "Loaded::mask has a bit per arena page");

fn mask(loaded: Option<&Loaded>) -> u32 {
    loaded.map_or(0, Loaded::mask)
}

/// The ABI's rules for `load_tracing(pack_pa, size)`, checked independently of the service:
/// the pack is page-aligned, 1 page to [`MAX_PACK_SIZE`], in host RAM outside the hypervisor;
/// its bytes parse; every page is page-aligned host RAM outside the hypervisor and outside the
/// pack, and no page is named twice. `bytes` is RAM at `pack_pa` before the call.
fn expected_load(pack_pa: u64, size: u64, bytes: Option<&[u8]>) -> Option<Loaded> {
    let host_page = |pa: u64| {
        pa.is_multiple_of(PAGE_SIZE_U64) && arena_page(pa).is_some_and(|i| !is_hyp_page(i))
    };
    if size == 0 || !size.is_multiple_of(PAGE_SIZE_U64) || size > MAX_PACK_SIZE {
        return None;
    }
    let pack_pages = (size / PAGE_SIZE_U64) as usize;
    if !(0..pack_pages).all(|i| host_page(pack_pa.wrapping_add((i * PAGE_SIZE) as u64))) {
        return None;
    }
    let pack = TraceBufferPack::parse(bytes?, NR_CPUS).ok()?;
    let in_pack = |pa: u64| pa >= pack_pa && pa < pack_pa + size;
    let mut cpus = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for c in pack.cpus() {
        let pages: Vec<u64> = std::iter::once(c.reader_page_va)
            .chain(c.page_vas())
            .collect();
        for &pa in &pages {
            if !host_page(pa) || in_pack(pa) || !seen.insert(pa) {
                return None;
            }
        }
        cpus.push(Ring {
            cpu: c.cpu,
            reader: c.reader_page_va,
            pages,
        });
    }
    Some(Loaded {
        cpus,
        enabled: false,
        selftest: false,
    })
}

/// The fuzzer's state: the model of what is loaded and the shadow copy of RAM.
struct State {
    loaded: Option<Loaded>,
    shadow: Vec<u8>,
    /// Calls issued so far.
    calls: u64,
}

/// Calls that cannot change owners are followed by an ownership check this often.
const OWNERSHIP_EVERY: u64 = 4;

fn ram() -> &'static mut [u8] {
    // SAFETY: the arena is ARENA_PAGES live pages. Only this single-threaded harness and the
    // service (inside `dispatch`/`emit`, never while this slice is used) touch it.
    unsafe { std::slice::from_raw_parts_mut(arena() as *mut u8, ARENA_PAGES * PAGE_SIZE) }
}

impl State {
    /// The host writes `bytes` at `pa`, if all of it is its own RAM.
    fn host_write(&mut self, pa: u64, bytes: &[u8]) -> bool {
        let Some(span) = arena_span(pa, bytes.len() as u64) else {
            return false;
        };
        let (start, end) = (span.start, span.end);
        let touches_hyp = (start / PAGE_SIZE..end.div_ceil(PAGE_SIZE)).any(is_hyp_page);
        if touches_hyp {
            return false;
        }
        ram()[start..end].copy_from_slice(bytes);
        self.shadow[start..end].copy_from_slice(bytes);
        true
    }

    /// Every page outside `allowed` (and the loaded buffer) is as the shadow says.
    fn check_ram(&mut self, before: Option<&Loaded>) {
        let ram = ram();
        let allowed = mask(before) | mask(self.loaded.as_ref());
        for page in 0..ARENA_PAGES {
            let r = page * PAGE_SIZE..(page + 1) * PAGE_SIZE;
            if allowed & (1 << page) != 0 {
                self.shadow[r.clone()].copy_from_slice(&ram[r]);
            } else if ram[r.clone()] != self.shadow[r.clone()] {
                let off = (0..PAGE_SIZE)
                    .find(|&o| ram[r.start + o] != self.shadow[r.start + o])
                    .unwrap_or(0);
                panic!("the hypervisor wrote page {page} (offset {off}), which it was not given");
            }
        }
    }

    /// After a call: the ownership check after every call that may change owners (load,
    /// teardown) and after every [`OWNERSHIP_EVERY`]th other call. (Each check takes the
    /// table's lock once per page, which under coverage instrumentation cost as much as the
    /// rest of a call.)
    fn after_call(&mut self, owners_changed: bool) {
        self.calls += 1;
        if owners_changed || self.calls.is_multiple_of(OWNERSHIP_EVERY) {
            self.check_ownership();
        }
    }

    /// The ownership table and the EL2 mapping say what the model says.
    fn check_ownership(&self) {
        let mapped = *MAPPING.pages.lock();
        let loaded = mask(self.loaded.as_ref());
        for (page, mapped) in mapped.iter().enumerate() {
            let shared = loaded & (1 << page) != 0;
            let want = if shared {
                PageState::Shared
            } else if is_hyp_page(page) {
                PageState::HypOwned
            } else {
                PageState::HostOwned
            };
            let state = SERVICE.page_state(page_addr(page));
            // Before the first successful share the table may not track the arena yet.
            assert!(
                state == Some(want) || (state.is_none() && !shared),
                "page {page}: {state:?}, expected {want:?}"
            );
            let want_map = shared.then_some(true);
            assert_eq!(*mapped, want_map, "page {page}: EL2 mapping");
        }
        assert_eq!(
            SERVICE.shared_pages(),
            loaded.count_ones() as usize,
            "shared page count"
        );
    }
}

fn context(cpu: u8, rules: &MemoryRules) -> Context<'_> {
    Context {
        cpu: usize::from(cpu) % NR_CPUS,
        nr_cpus: NR_CPUS,
        tracing: &SERVICE,
        rules,
        counter: || 1_000,
    }
}

/// The offsets into the simulated RAM of `[pa, pa + len)`, if all of it is simulated RAM.
fn arena_span(pa: u64, len: u64) -> Option<Range<usize>> {
    let start = pa.checked_sub(arena())?;
    let end = start.checked_add(len)?;
    (end <= (ARENA_PAGES * PAGE_SIZE) as u64).then_some(start as usize..end as usize)
}

/// RAM at `[pa, pa + size)`, if all of it is simulated RAM.
fn ram_copy(pa: u64, size: u64) -> Option<Vec<u8>> {
    arena_span(pa, size).map(|span| ram()[span].to_vec())
}

/// Whether `x0` names one of hyptrace's calls: its low 32 bits (SMCCC ignores the upper
/// ones) are one of the function IDs of the ABI. Stated apart from the dispatcher's decoder,
/// whose answer it checks.
fn is_known_id(x0: u64) -> bool {
    HypercallId::ALL
        .iter()
        .any(|id| id.function_id() == x0 as u32)
}

/// Issues one call through the trap path's entry point and checks its answer.
fn call(state: &mut State, cpu: u8, x: [u64; 5]) {
    let rules = rules();
    let before = state.loaded.clone();
    let call = Call::from_regs(&x);
    assert_eq!(
        call.is_some(),
        is_known_id(x[0]),
        "decoding of X0 {:#x}",
        x[0]
    );
    // What the hypervisor will copy and parse, if this is a load: RAM at the pack as the host
    // left it.
    let expect_load = match call {
        Some(Call::LoadTracing { pack_pa, pack_size }) => Some(expected_load(
            pack_pa,
            pack_size,
            ram_copy(pack_pa, pack_size).as_deref(),
        )),
        _ => None,
    };
    // SAFETY: every page-aligned address inside `rules.ram` and outside `rules.hyp` is a page
    // of the arena, live ordinary memory reachable at its own address; the service's
    // `HostMemory` is the simulated mapping, which maps nothing itself.
    let regs = unsafe { handle_hvc(&x, &context(cpu, &rules)) };
    if VERBOSE.load(Ordering::Relaxed) {
        eprintln!("cpu {cpu}: {call:x?} -> {regs:x?}");
    }
    let code = regs[0] as i64;
    let outcome = if code == 0 {
        HvcOutcome::Ok([regs[1], regs[2], regs[3]])
    } else {
        assert!(
            code == SMCCC_NOT_SUPPORTED || HypError::from_code(code).is_some(),
            "undocumented code {code}"
        );
        assert_eq!(regs[1..], x[1..4], "a refused call changed X1..X3");
        HvcOutcome::Err(code)
    };
    let Some(call) = call else {
        assert_eq!(outcome, HvcOutcome::Err(SMCCC_NOT_SUPPORTED), "unknown ID");
        state.check_ram(before.as_ref());
        return;
    };
    let err = |e: HypError| HvcOutcome::Err(e.code());
    let not_loaded = err(HypError::NotLoaded);
    let ok0 = HvcOutcome::Ok([0; 3]);
    match call {
        Call::Null { args } => assert_eq!(outcome, HvcOutcome::Ok(args)),
        Call::Info => assert_eq!(
            outcome,
            HvcOutcome::Ok([ABI_VERSION, NR_CPUS as u64, u64::from(cpu) % NR_CPUS as u64])
        ),
        Call::LoadTracing { .. } if before.is_some() => {
            assert_eq!(outcome, err(HypError::AlreadyLoaded));
        }
        Call::LoadTracing { .. } => {
            let want = expect_load.expect("computed above for a load");
            // Relaxed: one thread.
            let failing = MAPPING.budget.load(Ordering::Relaxed) >= 0;
            match (outcome, want) {
                (HvcOutcome::Ok(_), Some(l)) => state.loaded = Some(l),
                (HvcOutcome::Ok(_), None) => panic!("load accepted a pack the ABI refuses"),
                (HvcOutcome::Err(code), Some(_)) => assert!(
                    failing && code == HypError::NoMemory.code(),
                    "load refused a valid pack: {code}"
                ),
                (HvcOutcome::Err(_), None) => {}
            }
        }
        Call::PrintkFormats { page_pa, first } => {
            printk_formats(state, before.as_ref(), page_pa, first, outcome);
        }
        _ if before.is_none() => assert_eq!(outcome, not_loaded, "{call:?} while unloaded"),
        Call::TeardownTracing => {
            assert_eq!(outcome, ok0, "teardown of a loaded buffer");
            state.loaded = None;
        }
        Call::SwapReader { cpu } | Call::UpdateFooters { cpu } | Call::ResetTracing { cpu } => {
            let loaded = state.loaded.as_mut().expect("loaded (checked above)");
            let Some(ring) = loaded.cpus.iter_mut().find(|r| u64::from(r.cpu) == cpu) else {
                assert_eq!(
                    outcome,
                    err(HypError::InvalidCpu),
                    "{call:?} without a buffer"
                );
                state.check_ram(before.as_ref());
                state.after_call(false);
                return;
            };
            match (call, outcome) {
                (Call::SwapReader { .. }, HvcOutcome::Ok([page, lost, swapped])) => {
                    assert!(ring.pages.contains(&page), "swap answered {page:#x}");
                    match swapped {
                        0 => {
                            assert_eq!(page, ring.reader, "a swap that did not swap moved");
                            assert_eq!(lost, 0, "a swap that did not swap lost events");
                        }
                        1 => assert_ne!(page, ring.reader, "a swap kept the reader page"),
                        _ => panic!("swapped = {swapped}"),
                    }
                    ring.reader = page;
                }
                (Call::UpdateFooters { .. }, HvcOutcome::Ok([entries, overrun, _])) => {
                    assert!(overrun <= entries, "overrun {overrun} > entries {entries}");
                }
                (Call::ResetTracing { .. }, o) => assert_eq!(o, ok0, "reset"),
                (_, o) => assert_eq!(o, err(HypError::Busy), "{call:?} on a CPU with a buffer"),
            }
        }
        Call::EnableTracing { enable } => {
            let loaded = state.loaded.as_mut().expect("loaded (checked above)");
            match enable {
                0 | 1 => {
                    assert_eq!(outcome, ok0, "enable_tracing({enable})");
                    loaded.enabled = enable == 1;
                }
                _ => assert_eq!(outcome, err(HypError::InvalidArgument)),
            }
        }
        Call::EnableEvent { id, enable } => {
            let loaded = state.loaded.as_mut().expect("loaded (checked above)");
            // The hypervisor's events and `hyp_printk`'s, right after them.
            let known = (1..=events::ALL.len() as u64 + 1).contains(&id);
            match (known, enable) {
                (false, _) => assert_eq!(outcome, err(HypError::UnknownEvent), "event {id}"),
                (true, 0 | 1) => {
                    assert_eq!(outcome, ok0, "enable_event({id}, {enable})");
                    if id == u64::from(events::Selftest::DESC.id) {
                        loaded.selftest = enable == 1;
                    }
                }
                (true, _) => assert_eq!(outcome, err(HypError::InvalidArgument)),
            }
        }
        Call::UpdateClock { .. } => {
            assert!(
                outcome == ok0 || outcome == err(HypError::InvalidClock),
                "update_clock: {outcome:?}"
            );
        }
        Call::WriteSelftest { first_seq, count } => {
            let loaded = state.loaded.as_ref().expect("loaded (checked above)");
            if count > MAX_SELFTEST_BATCH || first_seq.checked_add(count).is_none() {
                assert_eq!(
                    outcome,
                    err(HypError::InvalidArgument),
                    "a batch of {count}"
                );
            } else {
                let me = u32::from(cpu) % NR_CPUS as u32;
                let writes =
                    loaded.enabled && loaded.selftest && loaded.cpus.iter().any(|r| r.cpu == me);
                let want = if writes { count } else { 0 };
                assert_eq!(outcome, HvcOutcome::Ok([want, 0, 0]), "selftest of {count}");
            }
        }
    }
    state.check_ram(before.as_ref());
    let owners_changed = matches!(call, Call::LoadTracing { .. } | Call::TeardownTracing);
    state.after_call(owners_changed);
}

/// Checks a `printk_formats` answer: the refusal the rules give, or the table written into
/// that page alone (which may then change).
fn printk_formats(
    state: &mut State,
    before: Option<&Loaded>,
    page_pa: u64,
    first: u64,
    outcome: HvcOutcome,
) {
    let total = hyp::printk::SITES.len() as u64;
    let page = arena_page(page_pa);
    let want = if first > total {
        Some(HypError::InvalidArgument)
    } else if !page_pa.is_multiple_of(PAGE_SIZE_U64) {
        Some(HypError::PageMisaligned)
    } else if page.is_some_and(is_hyp_page) {
        Some(HypError::PageInHyp)
    } else if page.is_none() {
        Some(HypError::PageNotRam)
    } else if page.is_some_and(|p| mask(before) & (1 << p) != 0) {
        Some(HypError::PageShared)
    } else {
        None
    };
    let (Some(page), None) = (page, want) else {
        assert_eq!(
            outcome,
            HvcOutcome::Err(want.map_or(0, HypError::code)),
            "printk_formats({page_pa:#x}, {first})"
        );
        return;
    };
    let HvcOutcome::Ok([written, answered_total, bytes]) = outcome else {
        panic!("printk_formats({page_pa:#x}, {first}) refused: {outcome:?}");
    };
    assert_eq!(answered_total, total);
    assert_eq!(written, total - first, "the whole table fits in a page");
    assert!(bytes <= PAGE_SIZE_U64);
    let r = page * PAGE_SIZE..(page + 1) * PAGE_SIZE;
    let ram = ram();
    let entries: Vec<_> = hyp::abi::printk::entries(&ram[r.clone()], written as usize)
        .map(|e| e.expect("the hypervisor's own table parses"))
        .collect();
    for (e, site) in entries.iter().zip(&hyp::printk::SITES[first as usize..]) {
        assert_eq!((e.format, e.location), (site.format, site.location));
    }
    assert!(ram[r.start + bytes as usize..r.end].iter().all(|&b| b == 0));
    // The named page is the one the call may write.
    state.shadow[r.clone()].copy_from_slice(&ram[r]);
}

fn load(state: &mut State, cpu: u8, pack: &PackSpec, at: Addr, size: Size, fail: Option<u8>) {
    let bytes = pack.bytes();
    let pa = at.resolve();
    state.host_write(pa, &bytes);
    let size = match size {
        Size::Fit => (bytes.len().max(1) as u64).next_multiple_of(PAGE_SIZE_U64),
        Size::Pages(n) => u64::from(n % 8) * PAGE_SIZE_U64,
        Size::Raw(v) => v,
    };
    if let Some(n) = fail {
        // Relaxed: one thread.
        MAPPING.budget.store(i32::from(n % 4), Ordering::Relaxed);
    }
    let id = HypercallId::LoadTracing.function_id() as u64;
    call(state, cpu, [id, pa, size, 0, 0]);
    MAPPING.budget.store(-1, Ordering::Relaxed);
}

/// The structured input `data` decodes to.
pub fn describe(data: &[u8]) -> String {
    match Input::arbitrary_take_rest(Unstructured::new(data)) {
        Ok(input) => format!("{input:#?}"),
        Err(e) => format!("no input ({e})"),
    }
}

/// A valid session (see [`Op::Session`]), through [`call`] so every answer is checked.
fn session(state: &mut State, cpus: u8, ring_pages: u8, first: u8, count: u8, swaps: u8) {
    let ring_pages = 2 + usize::from(ring_pages % 3);
    let chosen: Vec<u8> = (0..NR_CPUS as u8)
        .filter(|c| cpus & (1 << c) != 0)
        .collect();
    let needed = chosen.len() * (ring_pages + 1) + 1;
    // Distinct host pages, from `first` on, skipping the hypervisor's.
    let free: Vec<u8> = (0..ARENA_PAGES)
        .map(|i| (usize::from(first) + i) % ARENA_PAGES)
        .filter(|&i| !is_hyp_page(i))
        .map(|i| i as u8)
        .collect();
    if chosen.is_empty() || needed > free.len() {
        return;
    }
    let mut next = free.iter().copied();
    let mut page = || Addr::Page(next.next().expect("counted above"));
    let spec = PackSpec {
        cpus: chosen
            .iter()
            .map(|&cpu| PackCpu {
                cpu,
                reader: page(),
                pages: (0..ring_pages).map(|_| page()).collect(),
            })
            .collect(),
        nr_cpus: None,
        total_pages: None,
        patches: Vec::new(),
    };
    load(state, 0, &spec, page(), Size::Fit, None);
    let id = |id: HypercallId| id.function_id() as u64;
    let selftest = u64::from(events::Selftest::DESC.id);
    call(state, 0, [id(HypercallId::EnableEvent), selftest, 1, 0, 0]);
    call(state, 0, [id(HypercallId::EnableTracing), 1, 0, 0, 0]);
    for &cpu in &chosen {
        let first_seq = u64::from(cpu) << 32;
        call(
            state,
            cpu,
            [
                id(HypercallId::WriteSelftest),
                first_seq,
                u64::from(count % 128),
                0,
                0,
            ],
        );
    }
    for &cpu in &chosen {
        for _ in 0..swaps % 8 {
            call(
                state,
                cpu,
                [id(HypercallId::SwapReader), u64::from(cpu), 0, 0, 0],
            );
        }
        call(
            state,
            cpu,
            [id(HypercallId::UpdateFooters), u64::from(cpu), 0, 0, 0],
        );
    }
}

/// Runs one input. The service is a `static` shared by every input; each input starts and
/// ends with nothing loaded, so what carries over is only the clock of the last
/// `update_clock`, which no check depends on.
pub fn run(data: &[u8]) {
    let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    ram().fill(0);
    let mut state = State {
        loaded: None,
        shadow: vec![0; ARENA_PAGES * PAGE_SIZE],
        calls: 0,
    };
    state.check_ownership();
    for op in &input.ops {
        match *op {
            Op::Raw { cpu, regs } => call(&mut state, cpu, regs),
            Op::Call { cpu, id, args } => {
                let id = HypercallId::ALL[usize::from(id) % HypercallId::ALL.len()];
                let x = [
                    id.function_id() as u64,
                    args[0].resolve(),
                    args[1].resolve(),
                    args[2].resolve(),
                    args[3].resolve(),
                ];
                call(&mut state, cpu, x);
            }
            Op::Load {
                cpu,
                ref pack,
                at,
                size,
                fail_map,
            } => load(&mut state, cpu, pack, at, size, fail_map),
            Op::Scribble {
                page,
                offset,
                value,
            } => {
                let pa = page_addr(usize::from(page) % ARENA_PAGES) + u64::from(offset % 4089);
                state.host_write(pa, &value.to_le_bytes());
            }
            Op::Emit { cpu, counter } => {
                let before = state.loaded.clone();
                // Mostly the simulated CPUs, sometimes CPUs beyond them.
                let cpu = usize::from(cpu) % (NR_CPUS + 2);
                SERVICE.emit(cpu, || counter, &events::HypEnter {});
                state.check_ram(before.as_ref());
            }
            Op::Session {
                cpus,
                ring_pages,
                first,
                count,
                swaps,
            } => session(&mut state, cpus, ring_pages, first, count, swaps),
            Op::ReadHostWord { at } => {
                let pa = at.resolve();
                let rules = rules();
                // SAFETY: as for `dispatch` in `call`.
                let got = unsafe { SERVICE.read_host_word(pa, &rules) };
                let readable = pa.is_multiple_of(8)
                    && arena_page(pa).is_some_and(|i| {
                        !is_hyp_page(i) && !state.loaded.as_ref().is_some_and(|l| l.holds(i))
                    });
                let want = readable
                    .then(|| ram_copy(pa, 8))
                    .flatten()
                    .map(|b| u64::from_ne_bytes(b.try_into().expect("8 bytes")));
                assert_eq!(got, want, "read_host_word({pa:#x})");
                state.check_ownership();
            }
        }
    }
    if state.loaded.is_some() {
        let id = HypercallId::TeardownTracing.function_id() as u64;
        call(&mut state, 0, [id, 0, 0, 0, 0]);
    }
    assert!(state.loaded.is_none());
    state.check_ownership();
    assert_eq!(SERVICE.shared_pages(), 0, "every page is the host's again");
}
