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
use hyp::abi::events;
use hyp::abi::hypercall::{HypercallId, ABI_VERSION, SMCCC_NOT_SUPPORTED};
use hyp::abi::limits::MAX_PACK_SIZE;
use hyp::abi::pack::TraceBufferPack;
use hyp::abi::page::{PAGE_SIZE, PAGE_SIZE_U64};
use hyp::abi::HypError;
use hyp::hypercall::{dispatch, Context, HvcOutcome};
use hyp::tracing::host_memory::HostMemory;
use hyp::tracing::memory_rules::MemoryRules;
use hyp::tracing::ownership::PageState;
use hyp::tracing::{TracingService, TracingStorage};

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
}

#[derive(Arbitrary, Debug)]
struct Input {
    ops: Vec<Op>,
}

/// What is loaded, as the fuzzer's own check of the pack says.
#[derive(Clone, Debug)]
struct Loaded {
    /// (cpu, every page of it: reader first).
    cpus: Vec<(u32, Vec<u64>)>,
}

impl Loaded {
    fn pages(&self) -> impl Iterator<Item = u64> + '_ {
        self.cpus.iter().flat_map(|(_, p)| p.iter().copied())
    }

    fn holds(&self, page: usize) -> bool {
        self.pages().any(|pa| arena_page(pa) == Some(page))
    }
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
        cpus.push((c.cpu, pages));
    }
    Some(Loaded { cpus })
}

/// The fuzzer's state: the model of what is loaded and the shadow copy of RAM.
struct State {
    loaded: Option<Loaded>,
    shadow: Vec<u8>,
}

fn ram() -> &'static mut [u8] {
    // SAFETY: the arena is ARENA_PAGES live pages. Only this single-threaded harness and the
    // service (inside `dispatch`/`emit`, never while this slice is used) touch it.
    unsafe { std::slice::from_raw_parts_mut(arena() as *mut u8, ARENA_PAGES * PAGE_SIZE) }
}

impl State {
    /// The host writes `bytes` at `pa`, if all of it is its own RAM.
    fn host_write(&mut self, pa: u64, bytes: &[u8]) -> bool {
        let Some(start) = pa.checked_sub(arena()) else {
            return false;
        };
        let Some(end) = start.checked_add(bytes.len() as u64) else {
            return false;
        };
        if end > (ARENA_PAGES * PAGE_SIZE) as u64 {
            return false;
        }
        let (start, end) = (start as usize, end as usize);
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
        for page in 0..ARENA_PAGES {
            let r = page * PAGE_SIZE..(page + 1) * PAGE_SIZE;
            let writable = before.is_some_and(|l| l.holds(page))
                || self.loaded.as_ref().is_some_and(|l| l.holds(page));
            if writable {
                self.shadow[r.clone()].copy_from_slice(&ram[r]);
            } else if ram[r.clone()] != self.shadow[r.clone()] {
                let off = (0..PAGE_SIZE)
                    .find(|&o| ram[r.start + o] != self.shadow[r.start + o])
                    .unwrap_or(0);
                panic!("the hypervisor wrote page {page} (offset {off}), which it was not given");
            }
        }
    }

    /// The ownership table and the EL2 mapping say what the model says.
    fn check_ownership(&self) {
        let mapped = *MAPPING.pages.lock();
        for (page, mapped) in mapped.iter().enumerate() {
            let shared = self.loaded.as_ref().is_some_and(|l| l.holds(page));
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
        let n = self.loaded.as_ref().map_or(0, |l| l.pages().count());
        assert_eq!(SERVICE.shared_pages(), n, "shared page count");
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

/// RAM at `[pa, pa + size)`, if all of it is simulated RAM.
fn ram_copy(pa: u64, size: u64) -> Option<Vec<u8>> {
    let start = pa.checked_sub(arena())?;
    let end = start.checked_add(size)?;
    (end <= (ARENA_PAGES * PAGE_SIZE) as u64).then(|| ram()[start as usize..end as usize].to_vec())
}

/// Issues one call and checks its answer.
fn call(state: &mut State, cpu: u8, x: [u64; 5]) {
    let rules = rules();
    let before = state.loaded.clone();
    // What the hypervisor will copy and parse, if this is a load: RAM at the pack as the host
    // left it.
    let expect_load = match Call::from_regs(&x) {
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
    let outcome = unsafe { dispatch(&x, &context(cpu, &rules)) };
    let regs = outcome.to_regs(&x);
    let call = Call::from_regs(&x);
    if let HvcOutcome::Err(code) = outcome {
        assert!(
            code == SMCCC_NOT_SUPPORTED || HypError::from_code(code).is_some(),
            "undocumented code {code}"
        );
        assert_eq!(regs[1..], x[1..4], "a refused call changed X1..X3");
    }
    let Some(call) = call else {
        assert_eq!(outcome, HvcOutcome::Err(SMCCC_NOT_SUPPORTED), "unknown ID");
        state.check_ram(before.as_ref());
        return;
    };
    let not_loaded = HvcOutcome::Err(HypError::NotLoaded.code());
    let loaded = before.is_some();
    match call {
        Call::Null { args } => assert_eq!(outcome, HvcOutcome::Ok(args)),
        Call::Info => assert_eq!(
            outcome,
            HvcOutcome::Ok([ABI_VERSION, NR_CPUS as u64, u64::from(cpu) % NR_CPUS as u64])
        ),
        Call::LoadTracing { .. } if loaded => {
            assert_eq!(outcome, HvcOutcome::Err(HypError::AlreadyLoaded.code()));
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
        Call::TeardownTracing => {
            if loaded {
                assert_eq!(
                    outcome,
                    HvcOutcome::Ok([0; 3]),
                    "teardown of a loaded buffer"
                );
                state.loaded = None;
            } else {
                assert_eq!(outcome, not_loaded);
            }
        }
        Call::SwapReader { cpu } | Call::UpdateFooters { cpu } | Call::ResetTracing { cpu } => {
            let pages = before
                .as_ref()
                .map(|l| l.cpus.iter().find(|(c, _)| u64::from(*c) == cpu));
            match (pages, outcome) {
                (None, o) => assert_eq!(o, not_loaded),
                (Some(None), o) => assert_eq!(o, HvcOutcome::Err(HypError::InvalidCpu.code())),
                (Some(Some((_, pages))), HvcOutcome::Ok(r)) => {
                    if matches!(call, Call::SwapReader { .. }) {
                        assert!(pages.contains(&r[0]), "swap answered {:#x}", r[0]);
                    }
                }
                (Some(Some(_)), HvcOutcome::Err(code)) => {
                    assert_eq!(code, HypError::Busy.code(), "on a CPU with a buffer");
                }
            }
        }
        Call::EnableTracing { .. }
        | Call::EnableEvent { .. }
        | Call::UpdateClock { .. }
        | Call::WriteSelftest { .. }
            if !loaded =>
        {
            assert_eq!(outcome, not_loaded);
        }
        Call::WriteSelftest { count, .. } => {
            if let HvcOutcome::Ok(r) = outcome {
                assert!(r[0] <= count, "wrote {} of {count}", r[0]);
            }
        }
        Call::EnableTracing { .. } | Call::EnableEvent { .. } | Call::UpdateClock { .. } => {}
    }
    state.check_ram(before.as_ref());
    state.check_ownership();
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

/// Runs one input.
pub fn run(data: &[u8]) {
    let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    ram().fill(0);
    let mut state = State {
        loaded: None,
        shadow: vec![0; ARENA_PAGES * PAGE_SIZE],
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
                SERVICE.emit(usize::from(cpu), || counter, &events::HypEnter {});
                state.check_ram(before.as_ref());
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
