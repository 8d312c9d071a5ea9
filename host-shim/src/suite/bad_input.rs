//! `bad_input::` — hostile hypercall arguments. Every case checks the specific error code,
//! that the hypervisor's state did not change (still unloaded, or still loaded and working),
//! that the next valid call works, and that host memory outside the named pages is untouched.

use alloc::format;
use alloc::vec::Vec;

use host_shim::harness::{TestCase, TestResult};
use host_shim::page_pool::{PagePool, PAGE_SIZE};
use hyptrace_abi::limits::MAX_LOAD_PAGES;
use hyptrace_abi::{HypError, HypercallId};
use hyptrace_platform::memmap::{HYP_BASE, HYP_SIZE};

use super::{expect_eq, Ctx};
use crate::arch::boot::machine;
use crate::record::{call, page_pool};

/// Pages the fixture's packs may name.
const RING_PAGES: usize = 12;
/// Contiguous pages for packs (room for the largest one, the pool-exhaustion case).
const PACK_PAGES: usize = 160;
/// Pages filled with a pattern nobody may change.
const CANARY_PAGES: usize = 4;
const CANARY: u64 = 0x0bad_cafe_feed_face;

/// Memory for one case: pages to name, a pack area, and canary pages.
pub struct Fixture {
    pool: PagePool,
    page: Vec<u64>,
    pack: u64,
    canary: Vec<u64>,
}

/// One CPU record of a hand-written pack: (cpu, reader page, nr_pages as written, pages).
type Record<'a> = (u32, u64, u64, &'a [u64]);

impl Fixture {
    fn new() -> Result<Self, alloc::string::String> {
        let mut pool = page_pool();
        let mut take = |n: usize| -> Result<Vec<u64>, alloc::string::String> {
            (0..n)
                .map(|_| pool.alloc().map_err(|e| format!("{e:?}")))
                .collect()
        };
        let page = take(RING_PAGES)?;
        let canary = take(CANARY_PAGES)?;
        let pack = pool
            .alloc_contiguous(PACK_PAGES)
            .map_err(|e| format!("{e:?}"))?;
        for &c in &canary {
            // SAFETY: a pool page this fixture owns.
            unsafe { core::slice::from_raw_parts_mut(c as *mut u64, 512) }.fill(CANARY);
        }
        Ok(Self {
            pool,
            page,
            pack,
            canary,
        })
    }

    /// Writes `bytes` (zero-padded to whole pages) into the pack area; returns its address
    /// and the padded size.
    fn place(&mut self, bytes: &[u8]) -> [u64; 2] {
        let size = bytes.len().div_ceil(PAGE_SIZE as usize).max(1) * PAGE_SIZE as usize;
        // SAFETY: the pack area is PACK_PAGES contiguous pool pages this fixture owns, and
        // every caller's pack fits in it.
        let area = unsafe { core::slice::from_raw_parts_mut(self.pack as *mut u8, size) };
        area.fill(0);
        area[..bytes.len()].copy_from_slice(bytes);
        [self.pack, size as u64]
    }

    /// A hand-written pack: header fields as given (they may lie) and the records.
    fn raw(&mut self, nr_cpus: u32, total_pages: u64, records: &[Record]) -> [u64; 2] {
        let mut b = Vec::new();
        b.extend_from_slice(&nr_cpus.to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(&total_pages.to_le_bytes());
        for (cpu, reader, nr_pages, pages) in records {
            b.extend_from_slice(&cpu.to_le_bytes());
            b.extend_from_slice(&0u32.to_le_bytes());
            b.extend_from_slice(&reader.to_le_bytes());
            b.extend_from_slice(&nr_pages.to_le_bytes());
            pages
                .iter()
                .for_each(|p| b.extend_from_slice(&p.to_le_bytes()));
        }
        self.place(&b)
    }

    /// A valid pack: CPU 0 with reader page 0 and ring pages 1 and 2.
    fn good(&mut self) -> [u64; 2] {
        let (reader, ring) = (self.page[0], [self.page[1], self.page[2]]);
        self.raw(1, 3, &[(0, reader, 2, &ring)])
    }

    /// A one-CPU pack whose ring pages are `ring` (reader page 0).
    fn ring(&mut self, ring: &[u64]) -> [u64; 2] {
        let reader = self.page[0];
        self.raw(
            1,
            ring.len() as u64 + 1,
            &[(0, reader, ring.len() as u64, ring)],
        )
    }

    fn canary_intact(&self) -> TestResult {
        for &c in &self.canary {
            // SAFETY: a pool page this fixture owns.
            let words = unsafe { core::slice::from_raw_parts(c as *const u64, 512) };
            if let Some(i) = words.iter().position(|w| *w != CANARY) {
                return Err(format!("canary page {c:#x} word {i} changed"));
            }
        }
        Ok(())
    }

    fn free(mut self) {
        let pages = self
            .page
            .iter()
            .chain(&self.canary)
            .copied()
            .collect::<Vec<_>>();
        for p in pages
            .into_iter()
            .chain((0..PACK_PAGES as u64).map(|i| self.pack + i * PAGE_SIZE))
        {
            let _ = self.pool.free(p);
        }
    }
}

/// In which state a case runs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    /// Nothing loaded.
    Unloaded,
    /// A valid one-CPU buffer loaded and enabled.
    Loaded,
    /// Loaded, then torn down.
    TornDown,
}

/// Runs one case: sets up `state`, issues the call `make` builds, checks the refusal and that
/// nothing changed.
fn run_case(
    state: State,
    expect: HypError,
    make: fn(&mut Fixture) -> (HypercallId, Vec<u64>),
) -> TestResult {
    let mut f = Fixture::new()?;
    let result = (|| {
        if state != State::Unloaded {
            let good = f.good();
            call(HypercallId::LoadTracing, &good).map_err(|e| format!("valid load: {e}"))?;
            call(HypercallId::EnableTracing, &[1]).map_err(|e| format!("enable: {e}"))?;
        }
        if state == State::TornDown {
            call(HypercallId::TeardownTracing, &[]).map_err(|e| format!("teardown: {e}"))?;
        }
        let (id, args) = make(&mut f);
        let got = call(id, &args).err();
        expect_eq(&format!("{} {args:x?}", id.name()), got, Some(expect))?;
        // Still serving.
        call(HypercallId::Info, &[]).map_err(|e| format!("info after the refusal: {e}"))?;
        if state == State::Loaded {
            // Still loaded and working: the buffer answers and writes.
            call(HypercallId::UpdateFooters, &[0]).map_err(|e| format!("footers: {e}"))?;
            call(HypercallId::EnableEvent, &[7, 1]).map_err(|e| format!("enable_event: {e}"))?;
            let [n, _, _] =
                call(HypercallId::WriteSelftest, &[0, 5]).map_err(|e| format!("selftest: {e}"))?;
            expect_eq("selftest written after the refusal", n, 5)?;
            call(HypercallId::TeardownTracing, &[]).map_err(|e| format!("teardown: {e}"))?;
        } else {
            // Still unloaded, and a valid load works.
            let teardown = call(HypercallId::TeardownTracing, &[]).err();
            expect_eq(
                "state after the refusal",
                teardown,
                Some(HypError::NotLoaded),
            )?;
            let good = f.good();
            call(HypercallId::LoadTracing, &good).map_err(|e| format!("next valid load: {e}"))?;
            call(HypercallId::TeardownTracing, &[]).map_err(|e| format!("teardown: {e}"))?;
        }
        f.canary_intact()
    })();
    if result.is_err() {
        // Leave nothing loaded for the next test, whatever happened.
        let _ = call(HypercallId::TeardownTracing, &[]);
    }
    f.free();
    result
}

fn load(pack: [u64; 2]) -> (HypercallId, Vec<u64>) {
    (HypercallId::LoadTracing, pack.to_vec())
}

/// `expect` when the machine has two CPUs or more; with one, a two-CPU pack is refused first
/// for its CPU count.
fn two_cpus_or(expect: HypError) -> HypError {
    if machine().cpus.count() > 1 {
        expect
    } else {
        HypError::PackCpuCount
    }
}

fn uart() -> u64 {
    machine().uart
}

macro_rules! cases {
    ($($name:ident: $state:ident, $expect:expr, $make:expr;)*) => {
        $(
            fn $name(_: &Ctx) -> TestResult {
                #[allow(unused_imports)]
                use HypError::*;
                run_case(State::$state, $expect, $make)
            }
        )*
        /// The `bad_input::` group.
        pub const TESTS: &[TestCase<Ctx>] = &[
            $(TestCase { group: "bad_input", name: stringify!($name), run: $name },)*
        ];
    };
}

cases! {
    // The pack's own location and size.
    pack_misaligned: Unloaded, PackMisaligned, |f| { let [pa, s] = f.good(); load([pa + 8, s]) };
    pack_misaligned_by_one: Unloaded, PackMisaligned, |f| { let [pa, s] = f.good(); load([pa + 1, s]) };
    pack_size_zero: Unloaded, PackSize, |f| { let [pa, _] = f.good(); load([pa, 0]) };
    pack_size_smaller_than_header: Unloaded, PackSize, |f| { let [pa, _] = f.good(); load([pa, 8]) };
    pack_size_not_page_multiple: Unloaded, PackSize, |f| { let [pa, _] = f.good(); load([pa, 4100]) };
    pack_size_above_limit: Unloaded, PackSize, |f| { let [pa, _] = f.good(); load([pa, 2 << 20]) };
    pack_size_lies_short: Unloaded, PackTruncated, |f| {
        let ring: Vec<u64> = (0..600).map(|i| f.page[1 + i % 2]).collect();
        let [pa, _] = f.ring(&ring);
        load([pa, 4096])
    };
    pack_size_lies_long: Unloaded, PackTruncated, |f| {
        let [pa, s] = f.good();
        // SAFETY: the second page of the fixture's pack area.
        unsafe { core::ptr::write_volatile((pa + 4096) as *mut u64, 0x5a5a) };
        load([pa, s + 4096])
    };
    pack_in_hypervisor: Unloaded, PageInHyp, |_| load([HYP_BASE, 4096]);
    pack_in_mmio: Unloaded, PageNotRam, |_| load([uart(), 4096]);
    pack_beyond_ram: Unloaded, PageNotRam, |_| load([machine().ram.end, 4096]);
    pack_wrapping_address: Unloaded, PageNotRam, |_| load([!0xfff, 8192]);
    // The header.
    nr_cpus_zero: Unloaded, PackCpuCount, |f| { let (r, p) = (f.page[0], [f.page[1], f.page[2]]); load(f.raw(0, 3, &[(0, r, 2, &p)])) };
    nr_cpus_above_cpu_count: Unloaded, PackCpuCount, |f| {
        let n = machine().cpus.count() as u32 + 1;
        let (r, p) = (f.page[0], [f.page[1], f.page[2]]);
        load(f.raw(n, 3, &[(0, r, 2, &p)]))
    };
    nr_cpus_negative: Unloaded, PackCpuCount, |f| { let (r, p) = (f.page[0], [f.page[1], f.page[2]]); load(f.raw(u32::MAX, 3, &[(0, r, 2, &p)])) };
    total_pages_too_high: Unloaded, PackTotalPages, |f| { let (r, p) = (f.page[0], [f.page[1], f.page[2]]); load(f.raw(1, 4, &[(0, r, 2, &p)])) };
    total_pages_zero: Unloaded, PackTotalPages, |f| { let (r, p) = (f.page[0], [f.page[1], f.page[2]]); load(f.raw(1, 0, &[(0, r, 2, &p)])) };
    total_pages_wrapping: Unloaded, PackTotalPages, |f| { let (r, p) = (f.page[0], [f.page[1], f.page[2]]); load(f.raw(1, u64::MAX, &[(0, r, 2, &p)])) };
    // CPU records.
    cpu_listed_twice: Unloaded, two_cpus_or(PackCpu), |f| {
        let (a, b) = ([f.page[1], f.page[2]], [f.page[4], f.page[5]]);
        let (ra, rb) = (f.page[0], f.page[3]);
        load(f.raw(2, 6, &[(0, ra, 2, &a), (0, rb, 2, &b)]))
    };
    // A CPU number only has to name one of the hypervisor's CPUs (any subset may be listed):
    // the first number beyond them is refused.
    cpu_out_of_range: Unloaded, PackCpu, |f| {
        let (r, p) = (f.page[0], [f.page[1], f.page[2]]);
        load(f.raw(1, 3, &[(machine().cpus.count() as u32, r, 2, &p)]))
    };
    cpu_negative: Unloaded, PackCpu, |f| { let (r, p) = (f.page[0], [f.page[1], f.page[2]]); load(f.raw(1, 3, &[(u32::MAX, r, 2, &p)])) };
    cpu_record_missing: Unloaded, two_cpus_or(PackCpu), |f| { let (r, p) = (f.page[0], [f.page[1], f.page[2]]); load(f.raw(2, 3, &[(0, r, 2, &p)])) };
    nr_pages_zero: Unloaded, PackPageCount, |f| { let r = f.page[0]; load(f.raw(1, 1, &[(0, r, 0, &[])])) };
    nr_pages_one: Unloaded, PackPageCount, |f| { let (r, p) = (f.page[0], [f.page[1]]); load(f.raw(1, 2, &[(0, r, 1, &p)])) };
    nr_pages_huge: Unloaded, PackTruncated, |f| { let (r, p) = (f.page[0], [f.page[1], f.page[2]]); load(f.raw(1, 3, &[(0, r, u64::MAX, &p)])) };
    nr_pages_times_eight_overflows: Unloaded, PackTruncated, |f| { let (r, p) = (f.page[0], [f.page[1], f.page[2]]); load(f.raw(1, 3, &[(0, r, 1 << 61, &p)])) };
    more_pages_than_the_pool: Unloaded, NoMemory, |f| {
        let n = MAX_LOAD_PAGES; // plus the reader page: one more than the pool holds
        let ring: Vec<u64> = (0..n).map(|i| f.page[1 + i % 2]).collect();
        let r = f.page[0];
        load(f.raw(1, n as u64 + 1, &[(0, r, n as u64, &ring)]))
    };
    // Page addresses.
    page_misaligned: Unloaded, PageMisaligned, |f| { let p = [f.page[1] + 8, f.page[2]]; load(f.ring(&p)) };
    page_outside_ram: Unloaded, PageNotRam, |f| { let p = [machine().ram.end, f.page[2]]; load(f.ring(&p)) };
    page_below_ram: Unloaded, PageNotRam, |f| { let p = [0x3fff_f000, f.page[2]]; load(f.ring(&p)) };
    page_in_hypervisor: Unloaded, PageInHyp, |f| { let p = [HYP_BASE + HYP_SIZE - 4096, f.page[2]]; load(f.ring(&p)) };
    page_in_mmio: Unloaded, PageNotRam, |f| { let p = [uart(), f.page[2]]; load(f.ring(&p)) };
    page_is_the_pack: Unloaded, PageDuplicate, |f| { let p = [f.pack, f.page[2]]; load(f.ring(&p)) };
    page_twice_in_one_cpu: Unloaded, PageDuplicate, |f| { let p = [f.page[1], f.page[2], f.page[1]]; load(f.ring(&p)) };
    page_twice_across_cpus: Unloaded, PageDuplicate, |f| {
        if machine().cpus.count() < 2 {
            // One CPU: the same page as reader of CPU 0 and ring page of the same CPU.
            let p = [f.page[0], f.page[2]];
            return load(f.ring(&p));
        }
        let (a, b) = ([f.page[1], f.page[2]], [f.page[4], f.page[2]]);
        let (ra, rb) = (f.page[0], f.page[3]);
        load(f.raw(2, 6, &[(0, ra, 2, &a), (1, rb, 2, &b)]))
    };
    reader_page_also_ring_page: Unloaded, PageDuplicate, |f| { let p = [f.page[0], f.page[1]]; load(f.ring(&p)) };
    reader_page_in_hypervisor: Unloaded, PageInHyp, |f| { let p = [f.page[1], f.page[2]]; load(f.raw(1, 3, &[(0, HYP_BASE, 2, &p)])) };
    page_wrapping_address: Unloaded, PageNotRam, |f| { let p = [!0xfff, f.page[2]]; load(f.ring(&p)) };
    // The page printk_formats fills: only one the host alone owns.
    printk_formats_page_misaligned: Unloaded, PageMisaligned, |f| (HypercallId::PrintkFormats, [f.page[3] + 8, 0].to_vec());
    printk_formats_in_hypervisor: Unloaded, PageInHyp, |_| (HypercallId::PrintkFormats, [HYP_BASE, 0].to_vec());
    printk_formats_in_mmio: Unloaded, PageNotRam, |_| (HypercallId::PrintkFormats, [uart(), 0].to_vec());
    printk_formats_beyond_ram: Unloaded, PageNotRam, |_| (HypercallId::PrintkFormats, [machine().ram.end, 0].to_vec());
    printk_formats_shared_page: Loaded, PageShared, |f| (HypercallId::PrintkFormats, [f.page[1], 0].to_vec());
    printk_formats_first_past_the_table: Unloaded, InvalidArgument, |f| (HypercallId::PrintkFormats, [f.page[3], u64::MAX].to_vec());
    // Calls in the wrong state.
    load_twice: Loaded, AlreadyLoaded, |f| load(f.good());
    swap_before_load: Unloaded, NotLoaded, |_| (HypercallId::SwapReader, [0].to_vec());
    footers_before_load: Unloaded, NotLoaded, |_| (HypercallId::UpdateFooters, [0].to_vec());
    enable_before_load: Unloaded, NotLoaded, |_| (HypercallId::EnableTracing, [1].to_vec());
    reset_before_load: Unloaded, NotLoaded, |_| (HypercallId::ResetTracing, [0].to_vec());
    enable_event_before_load: Unloaded, NotLoaded, |_| (HypercallId::EnableEvent, [1, 1].to_vec());
    clock_before_load: Unloaded, NotLoaded, |_| (HypercallId::UpdateClock, [16, 0, 0, 0].to_vec());
    selftest_before_load: Unloaded, NotLoaded, |_| (HypercallId::WriteSelftest, [0, 1].to_vec());
    teardown_before_load: Unloaded, NotLoaded, |_| (HypercallId::TeardownTracing, [].to_vec());
    swap_after_teardown: TornDown, NotLoaded, |_| (HypercallId::SwapReader, [0].to_vec());
    footers_after_teardown: TornDown, NotLoaded, |_| (HypercallId::UpdateFooters, [0].to_vec());
    enable_after_teardown: TornDown, NotLoaded, |_| (HypercallId::EnableTracing, [1].to_vec());
    reset_after_teardown: TornDown, NotLoaded, |_| (HypercallId::ResetTracing, [0].to_vec());
    enable_event_after_teardown: TornDown, NotLoaded, |_| (HypercallId::EnableEvent, [1, 1].to_vec());
    teardown_after_teardown: TornDown, NotLoaded, |_| (HypercallId::TeardownTracing, [].to_vec());
    // Arguments of calls on a loaded buffer.
    swap_cpu_without_buffer: Loaded, InvalidCpu, |_| (HypercallId::SwapReader, [machine().cpus.count() as u64].to_vec());
    swap_cpu_huge: Loaded, InvalidCpu, |_| (HypercallId::SwapReader, [u64::MAX].to_vec());
    footers_cpu_without_buffer: Loaded, InvalidCpu, |_| (HypercallId::UpdateFooters, [7].to_vec());
    reset_cpu_without_buffer: Loaded, InvalidCpu, |_| (HypercallId::ResetTracing, [1 << 32].to_vec());
    enable_not_boolean: Loaded, InvalidArgument, |_| (HypercallId::EnableTracing, [2].to_vec());
    event_id_zero: Loaded, UnknownEvent, |_| (HypercallId::EnableEvent, [0, 1].to_vec());
    event_id_unknown: Loaded, UnknownEvent, |_| (HypercallId::EnableEvent, [99, 1].to_vec());
    event_id_above_u16: Loaded, UnknownEvent, |_| (HypercallId::EnableEvent, [(1 << 16) | 1, 1].to_vec());
    event_enable_not_boolean: Loaded, InvalidArgument, |_| (HypercallId::EnableEvent, [1, 3].to_vec());
    clock_mult_zero: Loaded, InvalidClock, |_| (HypercallId::UpdateClock, [0, 0, 0, 0].to_vec());
    clock_shift_64: Loaded, InvalidClock, |_| (HypercallId::UpdateClock, [16, 64, 0, 0].to_vec());
    clock_mult_above_32_bits: Loaded, InvalidClock, |_| (HypercallId::UpdateClock, [1 << 32, 0, 0, 0].to_vec());
    selftest_batch_too_big: Loaded, InvalidArgument, |_| (HypercallId::WriteSelftest, [0, 1 << 17].to_vec());
    selftest_sequence_wraps: Loaded, InvalidArgument, |_| (HypercallId::WriteSelftest, [u64::MAX, 1].to_vec());
}
