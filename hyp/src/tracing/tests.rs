//! Tests of the tracing service on real memory: pages are 4096-aligned heap allocations
//! whose addresses stand for physical addresses (the hypervisor maps host RAM 1:1).

use super::*;
use crate::abi::pack::{CpuPages, PackBuilder};
use crate::abi::page::PageHeader;
use crate::abi::page::PAGE_SIZE_U64 as PAGE_SIZE;
use std::vec::Vec;

/// "Host RAM" of these tests: one arena of pages, handed out by a bump allocator and never
/// reused (the ownership table tracks RAM as one contiguous range, as on the real machine).
struct HostRam {
    base: u64,
    next: std::sync::atomic::AtomicU64,
}

const HOST_RAM_PAGES: u64 = 4096;

fn host_ram() -> &'static HostRam {
    static RAM: std::sync::OnceLock<HostRam> = std::sync::OnceLock::new();
    RAM.get_or_init(|| {
        let layout =
            std::alloc::Layout::from_size_align((HOST_RAM_PAGES * 4096) as usize, 4096).unwrap();
        // SAFETY: non-zero size; the arena lives for the whole test process.
        let base = unsafe { std::alloc::alloc_zeroed(layout) } as u64;
        HostRam {
            base,
            next: std::sync::atomic::AtomicU64::new(base),
        }
    })
}

/// `n` contiguous zeroed pages of host RAM.
fn host_pages(n: usize) -> u64 {
    let ram = host_ram();
    let at = ram
        .next
        .fetch_add(n as u64 * 4096, std::sync::atomic::Ordering::Relaxed);
    assert!(
        at + n as u64 * 4096 <= ram.base + HOST_RAM_PAGES * 4096,
        "test host RAM exhausted"
    );
    at
}

/// Host memory for one test: pages and a pack, plus rules that accept them.
struct Host {
    pages: Vec<u64>,
}

fn rules() -> MemoryRules {
    // Page 0 plays the hypervisor; the arena is the host's RAM.
    let ram = host_ram();
    MemoryRules {
        ram: ram.base..ram.base + HOST_RAM_PAGES * 4096,
        hyp: 0..PAGE_SIZE,
    }
}

impl Host {
    fn new(pages: usize) -> Self {
        Self {
            pages: (0..pages).map(|_| host_pages(1)).collect(),
        }
    }

    fn addr(&self, i: usize) -> u64 {
        self.pages[i]
    }

    /// Writes a pack for `cpus` (each: CPU number, reader page index, ring page indexes) into
    /// contiguous pack pages; returns (address, size).
    fn pack(&mut self, cpus: &[(u32, usize, Vec<usize>)]) -> (u64, u64) {
        let vas: Vec<Vec<u64>> = cpus
            .iter()
            .map(|(_, _, ring)| ring.iter().map(|i| self.addr(*i)).collect())
            .collect();
        let descs: Vec<CpuPages> = cpus
            .iter()
            .zip(&vas)
            .map(|((cpu, reader, _), page_vas)| CpuPages {
                cpu: *cpu,
                reader_page_va: self.addr(*reader),
                page_vas,
            })
            .collect();
        let builder = PackBuilder::new(&descs);
        let size = builder.size().unwrap().next_multiple_of(4096);
        let mut bytes = vec![0u8; size];
        builder.write(&mut bytes).unwrap();
        self.pack_bytes(&bytes)
    }

    /// Places raw pack bytes in physically contiguous (here: one allocation of) pages.
    fn pack_bytes(&mut self, bytes: &[u8]) -> (u64, u64) {
        let pages = bytes.len().div_ceil(4096).max(1);
        let base = host_pages(pages);
        // SAFETY: `base` starts `pages` fresh arena pages, >= bytes.len() bytes.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), base as *mut u8, bytes.len()) };
        (base, (pages * 4096) as u64)
    }
}

fn two_cpus(host: &mut Host) -> (u64, u64) {
    host.pack(&[(0, 0, vec![1, 2, 3]), (1, 4, vec![5, 6, 7])])
}

macro_rules! service {
    () => {{
        static STORAGE: TracingStorage = TracingStorage::new();
        static S: TracingService =
            TracingService::new(&STORAGE, &crate::tracing::host_memory::IdentityMapped);
        &S
    }};
}

#[test]
fn load_write_swap_teardown() {
    let s = service!();
    let mut host = Host::new(8);
    let (pa, size) = two_cpus(&mut host);
    // SAFETY: the test's pages and pack are live heap memory inside `rules().ram`.
    unsafe { s.load(pa, size, &rules(), 2) }.unwrap();
    assert_eq!(s.shared_pages(), 8, "every reader and ring page is shared");
    // SAFETY: as above.
    let again = unsafe { s.load(pa, size, &rules(), 2) };
    assert_eq!(again, Err(HypError::AlreadyLoaded));
    s.update_clock(1, 0, 0, 0).unwrap();
    s.enable_event(events::Selftest::DESC.id as u64, 1).unwrap();
    // Not writable before enable.
    assert_eq!(s.write_selftest(0, || 10, 0, 5), Ok(0));
    s.enable(1).unwrap();
    assert_eq!(s.write_selftest(0, || 10, 0, 5), Ok(5));
    assert_eq!(s.write_selftest(1, || 20, 100, 3), Ok(3));
    let stats = s.update_footers(0).unwrap();
    assert_eq!(stats.entries, 5);
    assert_eq!(s.update_footers(1).unwrap().entries, 3);
    // CPU 0 wrote on its first ring page: that page becomes the reader page.
    let swap = s.swap_reader(0).unwrap();
    assert!(swap.swapped);
    assert_eq!(swap.reader_page, host.addr(1));
    assert_eq!(swap.lost, 0);
    // SAFETY: page 1 is live; the header is read through its atomics.
    let header = unsafe { &*(host.addr(1) as *const PageHeader) };
    assert_eq!(
        header.time_stamp.load(std::sync::atomic::Ordering::Acquire),
        10
    );
    assert!(header.commit.load(std::sync::atomic::Ordering::Acquire) > 0);
    s.teardown().unwrap();
    assert_eq!(s.shared_pages(), 0, "teardown returns every page");
    assert_eq!(s.teardown(), Err(HypError::NotLoaded));
    assert_eq!(s.swap_reader(0), Err(HypError::NotLoaded));
    // Reload works after teardown, events start disabled again.
    // SAFETY: as above.
    unsafe { s.load(pa, size, &rules(), 2) }.unwrap();
    s.enable(1).unwrap();
    assert_eq!(s.write_selftest(0, || 30, 0, 5), Ok(0));
    s.teardown().unwrap();
}

#[test]
fn calls_before_load_are_refused() {
    let s = service!();
    assert_eq!(s.teardown(), Err(HypError::NotLoaded));
    assert_eq!(s.enable(1), Err(HypError::NotLoaded));
    assert_eq!(s.swap_reader(0), Err(HypError::NotLoaded));
    assert_eq!(s.update_footers(0), Err(HypError::NotLoaded));
    assert_eq!(s.reset(0), Err(HypError::NotLoaded));
    assert_eq!(s.enable_event(1, 1), Err(HypError::NotLoaded));
    assert_eq!(s.update_clock(1, 0, 0, 0), Err(HypError::NotLoaded));
    assert!(!s.emit(0, || 0, &events::HypEnter {}));
    assert_eq!(s.write_selftest(0, || 0, 0, 1), Err(HypError::NotLoaded));
}

#[test]
fn argument_errors_once_loaded() {
    let s = service!();
    let mut host = Host::new(8);
    let (pa, size) = two_cpus(&mut host);
    // SAFETY: live test memory inside the rules' RAM.
    unsafe { s.load(pa, size, &rules(), 4) }.unwrap();
    assert_eq!(
        s.swap_reader(2),
        Err(HypError::InvalidCpu),
        "no buffer for CPU 2"
    );
    assert_eq!(s.swap_reader(u64::MAX), Err(HypError::InvalidCpu));
    assert_eq!(s.reset(MAX_CPUS as u64), Err(HypError::InvalidCpu));
    assert_eq!(s.enable(2), Err(HypError::InvalidArgument));
    assert_eq!(s.enable_event(0, 1), Err(HypError::UnknownEvent));
    assert_eq!(s.enable_event(99, 1), Err(HypError::UnknownEvent));
    assert_eq!(s.enable_event(1 << 20, 1), Err(HypError::UnknownEvent));
    assert_eq!(s.enable_event(1, 7), Err(HypError::InvalidArgument));
    assert_eq!(s.update_clock(0, 0, 0, 0), Err(HypError::InvalidClock));
    assert_eq!(s.update_clock(1, 64, 0, 0), Err(HypError::InvalidClock));
    assert_eq!(
        s.write_selftest(0, || 0, 0, MAX_SELFTEST_BATCH + 1),
        Err(HypError::InvalidArgument)
    );
    s.teardown().unwrap();
}

/// Loads `pack` and expects `err`; then checks nothing stayed loaded.
fn refused(s: &'static TracingService, host: &mut Host, pack: (u64, u64), err: HypError) {
    // SAFETY: live test memory inside the rules' RAM (or rejected before any access).
    assert_eq!(unsafe { s.load(pack.0, pack.1, &rules(), 4) }, Err(err));
    assert_eq!(
        s.teardown(),
        Err(HypError::NotLoaded),
        "nothing half-loaded"
    );
    assert_eq!(s.shared_pages(), 0, "a refused load shares nothing");
    let good = two_cpus(host);
    // SAFETY: as above.
    unsafe { s.load(good.0, good.1, &rules(), 4) }.unwrap();
    s.teardown().unwrap();
}

#[test]
fn bad_packs_are_refused_whole() {
    let s = service!();
    let mut host = Host::new(8);
    let (pa, size) = two_cpus(&mut host);
    refused(s, &mut host, (pa + 8, size), HypError::PackMisaligned);
    refused(s, &mut host, (pa, 0), HypError::PackSize);
    refused(s, &mut host, (pa, 100), HypError::PackSize);
    refused(s, &mut host, (0, 4096), HypError::PageInHyp);
    refused(s, &mut host, (1 << 60, 4096), HypError::PageNotRam);
    // A page twice within one CPU, across CPUs, and the reader page also a ring page.
    let p = host.pack(&[(0, 0, vec![1, 2, 1])]);
    refused(s, &mut host, p, HypError::PageDuplicate);
    let p = host.pack(&[(0, 0, vec![1, 2]), (1, 3, vec![4, 2])]);
    refused(s, &mut host, p, HypError::PageDuplicate);
    let p = host.pack(&[(0, 0, vec![1, 0])]);
    refused(s, &mut host, p, HypError::PageDuplicate);
    // Too few ring pages, a CPU twice, a CPU beyond the hypervisor's.
    let p = host.pack(&[(0, 0, vec![1])]);
    refused(s, &mut host, p, HypError::PackPageCount);
    let p = host.pack(&[(0, 0, vec![1, 2]), (0, 3, vec![4, 5])]);
    refused(s, &mut host, p, HypError::PackCpu);
    let p = host.pack(&[(4, 0, vec![1, 2])]);
    refused(s, &mut host, p, HypError::PackCpu);
    // More CPUs than the hypervisor has (4 here).
    let cpus: Vec<(u32, usize, Vec<usize>)> = (0..5).map(|c| (c, 0, vec![1, 2])).collect();
    let p = host.pack(&cpus);
    refused(s, &mut host, p, HypError::PackCpuCount);
}

#[test]
fn a_subset_of_the_cpus_loads_and_traces() {
    let s = service!();
    let mut host = Host::new(12);
    // CPUs 3 and 1 of 4, as a host with CPUs 0 and 2 offline would describe them.
    let p = host.pack(&[(3, 0, vec![1, 2]), (1, 3, vec![4, 5])]);
    // SAFETY: the pack and pages are the test host's live heap memory.
    unsafe { s.load(p.0, p.1, &rules(), 4) }.unwrap();
    s.enable(1).unwrap();
    for cpu in [0, 2] {
        assert_eq!(s.swap_reader(cpu), Err(HypError::InvalidCpu), "cpu {cpu}");
    }
    // The swap answers with the host's address of the page it named.
    let swap = s.swap_reader(3).unwrap();
    assert_eq!((swap.swapped, swap.reader_page), (true, host.addr(1)));
    let swap = s.swap_reader(1).unwrap();
    assert_eq!((swap.swapped, swap.reader_page), (true, host.addr(4)));
    assert_eq!(s.swap_reader(4), Err(HypError::InvalidCpu));
    s.teardown().unwrap();
}

#[test]
fn bad_page_addresses_are_refused() {
    let s = service!();
    let mut host = Host::new(8);
    let good = two_cpus(&mut host);
    let mut raw = vec![0u8; 4096];
    // SAFETY: the pack copy is live heap memory of at least one page.
    unsafe { std::ptr::copy_nonoverlapping(good.0 as *const u8, raw.as_mut_ptr(), 4096) };
    // Ring page 0 of CPU 0 sits at byte 16 + 24 (header, CPU record header).
    let patch = |raw: &[u8], value: u64| {
        let mut r = raw.to_vec();
        r[40..48].copy_from_slice(&value.to_le_bytes());
        r
    };
    for (value, err) in [
        (host.addr(5) + 8, HypError::PageMisaligned),
        (0, HypError::PageInHyp),
        (1 << 60, HypError::PageNotRam),
        (!0xfff_u64, HypError::PageNotRam),
    ] {
        let p = host.pack_bytes(&patch(&raw, value));
        refused(s, &mut host, p, err);
    }
    // A ring page that is the pack itself.
    let mut bytes = patch(&raw, 0);
    let p = host.pack_bytes(&bytes);
    bytes[40..48].copy_from_slice(&p.0.to_le_bytes());
    // SAFETY: p is the live pack allocation of one page.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), p.0 as *mut u8, 4096) };
    refused(s, &mut host, p, HypError::PageDuplicate);
}

#[test]
fn disabled_events_are_not_written() {
    let s = service!();
    let mut host = Host::new(8);
    let (pa, size) = two_cpus(&mut host);
    // SAFETY: live test memory inside the rules' RAM.
    unsafe { s.load(pa, size, &rules(), 2) }.unwrap();
    s.enable(1).unwrap();
    let mut counter_reads = 0;
    assert!(!s.emit(
        0,
        || {
            counter_reads += 1;
            5
        },
        &events::HypEnter {}
    ));
    assert_eq!(
        counter_reads, 0,
        "a disabled event does not read the counter"
    );
    s.enable_event(events::HypEnter::DESC.id as u64, 1).unwrap();
    assert!(s.emit(0, || 5, &events::HypEnter {}));
    assert!(!s.emit(0, || 5, &events::HypExit {}));
    assert!(
        !s.emit(2, || 5, &events::HypEnter {}),
        "CPU without a buffer"
    );
    assert_eq!(s.update_footers(0).unwrap().entries, 1);
    s.reset(0).unwrap();
    assert_eq!(s.update_footers(0).unwrap().entries, 0);
    s.teardown().unwrap();
}

/// An arena of contiguous pages that is all the "host RAM" the rules allow: whatever a
/// hostile pack names, an accepted page lies inside it.
struct Arena {
    base: u64,
    pages: usize,
}

impl Arena {
    fn new(pages: usize) -> Self {
        let layout = std::alloc::Layout::from_size_align(pages * 4096, 4096).unwrap();
        // SAFETY: non-zero size; leaked on purpose (test memory lives for the process).
        let base = unsafe { std::alloc::alloc_zeroed(layout) } as u64;
        Self { base, pages }
    }

    fn rules(&self) -> MemoryRules {
        MemoryRules {
            ram: self.base..self.base + self.pages as u64 * 4096,
            hyp: 0..PAGE_SIZE,
        }
    }

    /// Writes `bytes` as the pack in page 0; returns its size.
    fn put_pack(&self, bytes: &[u8]) -> u64 {
        assert!(bytes.len() <= 4096);
        // SAFETY: page 0 of the arena.
        let page = unsafe { std::slice::from_raw_parts_mut(self.base as *mut u8, 4096) };
        page.fill(0);
        page[..bytes.len()].copy_from_slice(bytes);
        4096
    }
}

mod hostile_packs {
    use super::*;
    use proptest::prelude::*;

    fn valid_words(a: &Arena) -> Vec<u64> {
        // One CPU: reader page 1, ring pages 2..5.
        let p = |i: u64| a.base + i * 4096;
        vec![1, 5, 0, p(1), 4, p(2), p(3), p(4), p(5)]
    }

    fn bytes(words: &[u64]) -> Vec<u8> {
        words.iter().flat_map(|w| w.to_le_bytes()).collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Arbitrary bytes as a pack: refused or accepted, never a panic, and an accepted
        /// pack only names arena pages.
        #[test]
        fn arbitrary_bytes(data in proptest::collection::vec(any::<u8>(), 0..4096)) {
            static STORAGE: TracingStorage = TracingStorage::new();
            static S: TracingService = TracingService::new(&STORAGE, &crate::tracing::host_memory::IdentityMapped);
            let arena = Arena::new(16);
            let size = arena.put_pack(&data);
            // SAFETY: the rules allow only the arena, which is live memory.
            let r = unsafe { S.load(arena.base, size, &arena.rules(), 4) };
            if r.is_ok() {
                S.teardown().unwrap();
            }
        }

        /// A valid pack with one word replaced by anything: refused with a documented code,
        /// or accepted and then torn down cleanly.
        #[test]
        fn one_word_mutated(index in 0usize..9, value in prop_oneof![
            any::<u64>(),
            Just(0u64), Just(u64::MAX), Just(1u64 << 63), (0u64..64),
        ], page in 0u64..16) {
            static STORAGE: TracingStorage = TracingStorage::new();
            static S: TracingService = TracingService::new(&STORAGE, &crate::tracing::host_memory::IdentityMapped);
            let arena = Arena::new(16);
            let mut words = valid_words(&arena);
            // Half the time the new value is an arena page (possibly a duplicate or the pack).
            words[index] = if value % 2 == 0 { arena.base + page * 4096 } else { value };
            let size = arena.put_pack(&bytes(&words));
            // SAFETY: the rules allow only the arena, which is live memory.
            match unsafe { S.load(arena.base, size, &arena.rules(), 4) } {
                Ok(()) => S.teardown().unwrap(),
                Err(e) => prop_assert!(HypError::from_code(e.code()).is_some()),
            }
        }
    }
}

/// The EL2 tables of a test: real `El2Map` tables in ordinary memory, with the test's host RAM
/// arena standing at 0x4000_0000 (heap addresses are beyond the tables' 39 bits).
struct TestEl2 {
    map: spin::Mutex<crate::el2_map::El2Map<'static>>,
}

const TEST_RAM_PA: u64 = 0x4000_0000;

impl TestEl2 {
    fn pa(addr: u64) -> u64 {
        addr - host_ram().base + TEST_RAM_PA
    }

    fn mapped(&self, addr: u64) -> Option<crate::el2_map::Permissions> {
        self.map.lock().permissions(Self::pa(addr))
    }
}

impl host_memory::HostMemory for TestEl2 {
    fn map(&self, range: core::ops::Range<u64>, writable: bool) -> Result<(), HypError> {
        let pa = Self::pa(range.start)..Self::pa(range.end);
        host_memory::HostMemory::map(&self.map, pa, writable)
    }

    fn unmap(&self, range: core::ops::Range<u64>) {
        host_memory::HostMemory::unmap(&self.map, Self::pa(range.start)..Self::pa(range.end));
    }
}

#[test]
fn ring_pages_are_mapped_at_el2_only_while_loaded() {
    use crate::el2_map::{El2Map, TablePool, TlbMaintenance};
    struct NoTlb;
    impl TlbMaintenance for NoTlb {
        fn publish(&self) {}
        fn invalidate_all(&self) {}
    }
    let pool: &'static mut TablePool = Box::leak(Box::new(TablePool::new()));
    let el2: &'static TestEl2 = Box::leak(Box::new(TestEl2 {
        map: spin::Mutex::new(El2Map::new(pool, &NoTlb)),
    }));
    static STORAGE: TracingStorage = TracingStorage::new();
    let s: &'static TracingService = Box::leak(Box::new(TracingService::new(&STORAGE, el2)));
    let mut host = Host::new(8);
    let (pa, size) = two_cpus(&mut host);
    let ring_pages = host.pages.clone();
    let unmapped_everywhere = |what: &str| {
        for (i, page) in ring_pages.iter().enumerate() {
            assert_eq!(el2.mapped(*page), None, "{what}: page {i}");
        }
        for page in (pa..pa + size).step_by(4096) {
            assert_eq!(el2.mapped(page), None, "{what}: pack page {page:#x}");
        }
    };
    unmapped_everywhere("before load");
    // SAFETY: the test's pages and pack are live heap memory inside `rules().ram`.
    unsafe { s.load(pa, size, &rules(), 2) }.unwrap();
    for i in 0..8 {
        let p = el2
            .mapped(host.addr(i))
            .expect("a ring page is mapped while loaded");
        assert!(p.write && !p.execute && !p.device, "page {i}: {p:?}");
    }
    for page in (pa..pa + size).step_by(4096) {
        assert_eq!(
            el2.mapped(page),
            None,
            "the pack is unmapped once load returns"
        );
    }
    s.enable(1).unwrap();
    s.enable_event(u64::from(events::Selftest::DESC.id), 1)
        .unwrap();
    assert_eq!(
        s.write_selftest(0, || 5, 0, 100),
        Ok(100),
        "the writer reaches its pages"
    );
    s.teardown().unwrap();
    unmapped_everywhere("after teardown");

    // A refused load (a page named twice) maps nothing either.
    let dup = host.pack(&[(0, 0, vec![1, 2]), (1, 3, vec![2, 4])]);
    // SAFETY: as above.
    let r = unsafe { s.load(dup.0, dup.1, &rules(), 2) };
    assert_eq!(r, Err(HypError::PageDuplicate));
    unmapped_everywhere("after a refused load");
}

/// Host memory that keeps a list of what is mapped and refuses the `fail_at`-th map call.
struct FailingMemory {
    calls: std::sync::atomic::AtomicUsize,
    fail_at: usize,
    mapped: std::sync::Mutex<Vec<core::ops::Range<u64>>>,
}

impl host_memory::HostMemory for FailingMemory {
    fn map(&self, range: core::ops::Range<u64>, _writable: bool) -> Result<(), HypError> {
        let n = self
            .calls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        if n == self.fail_at {
            return Err(HypError::NoMemory);
        }
        self.mapped.lock().unwrap().push(range);
        Ok(())
    }

    fn unmap(&self, range: core::ops::Range<u64>) {
        let mut mapped = self.mapped.lock().unwrap();
        let at = mapped.iter().position(|r| *r == range);
        mapped.remove(at.unwrap_or_else(|| panic!("unmapping {range:x?}, never mapped")));
    }
}

#[test]
fn a_mapping_failure_part_way_through_a_load_leaves_nothing_mapped_or_shared() {
    static STORAGE: TracingStorage = TracingStorage::new();
    // Call 1 maps the pack; the ring pages follow one per call (listed out of order, so no
    // two are adjacent): the 6th call, a ring page, fails.
    let memory: &'static FailingMemory = Box::leak(Box::new(FailingMemory {
        calls: Default::default(),
        fail_at: 6,
        mapped: Default::default(),
    }));
    let s: &'static TracingService = Box::leak(Box::new(TracingService::new(&STORAGE, memory)));
    let mut host = Host::new(8);
    let pack = host.pack(&[(0, 7, vec![5, 3, 1]), (1, 6, vec![4, 2, 0])]);
    // SAFETY: the test's pages and pack are live heap memory inside `rules().ram`.
    let r = unsafe { s.load(pack.0, pack.1, &rules(), 2) };
    assert_eq!(r, Err(HypError::NoMemory));
    assert!(
        memory.calls.load(std::sync::atomic::Ordering::Relaxed) >= 6,
        "it got that far"
    );
    assert!(
        memory.mapped.lock().unwrap().is_empty(),
        "everything mapped was unmapped"
    );
    assert_eq!(s.shared_pages(), 0, "nothing stays shared");
    assert_eq!(s.teardown(), Err(HypError::NotLoaded));
}

/// Control calls racing the writers of every CPU and a swapping reader, on real threads:
/// load, enable, reset, disable and teardown in a loop while four writers emit as fast as they
/// can and another thread swaps and refreshes footers on every CPU.
///
/// Checked: every answer is the documented one for the state (`NotLoaded` between sessions,
/// `Busy` only from the bounded retries); a swapped-in reader page always belongs to the
/// CPU's own pages; after each teardown no writer touches a page (a canary written right
/// after teardown survives while the writers keep trying) and nothing is shared; pages that
/// were never in a pack never change.
#[test]
fn control_calls_race_writers_and_a_reader() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
    use std::time::Duration;

    const CPUS: usize = 4;
    const ROUNDS: usize = 100;
    let s = service!();
    // CPU c: reader page 4c, ring pages 4c+1..=4c+3; pages 16..20 are never in a pack.
    let mut host = Host::new(4 * CPUS + 4);
    let cpus: Vec<(u32, usize, Vec<usize>)> = (0..CPUS)
        .map(|c| (c as u32, 4 * c, vec![4 * c + 1, 4 * c + 2, 4 * c + 3]))
        .collect();
    let (pa, size) = host.pack(&cpus);
    let own: Vec<Vec<u64>> = (0..CPUS)
        .map(|c| (4 * c..4 * c + 4).map(|i| host.addr(i)).collect())
        .collect();
    let outside: Vec<u64> = (4 * CPUS..4 * CPUS + 4).map(|i| host.addr(i)).collect();
    let fill = |pages: &[u64], byte: u8| {
        for &p in pages {
            // SAFETY: a test page of host RAM; the service does not own it now (outside any
            // pack, or after teardown).
            unsafe { std::ptr::write_bytes(p as *mut u8, byte, 4096) };
        }
    };
    let intact = |pages: &[u64], byte: u8| {
        pages.iter().all(|&p| {
            // SAFETY: as above; reads of a page no writer may touch.
            let bytes = unsafe { std::slice::from_raw_parts(p as *const u8, 4096) };
            bytes.iter().all(|b| *b == byte)
        })
    };
    fill(&outside, 0x5a);

    let stop = AtomicBool::new(false);
    let clock = AtomicU64::new(1);
    let written = AtomicU64::new(0);
    let swaps = AtomicU64::new(0);
    std::thread::scope(|scope| {
        for cpu in 0..CPUS {
            let (stop, clock, written) = (&stop, &clock, &written);
            scope.spawn(move || {
                let mut seq = 0;
                while !stop.load(Relaxed) {
                    let e = events::Selftest {
                        seq,
                        payload: events::selftest_payload(seq),
                    };
                    if s.emit(cpu, || clock.fetch_add(1, Relaxed), &e) {
                        written.fetch_add(1, Relaxed);
                    }
                    seq += 1;
                }
            });
        }
        let (stop, swaps, own) = (&stop, &swaps, &own);
        scope.spawn(move || {
            while !stop.load(Relaxed) {
                for (cpu, pages) in own.iter().enumerate() {
                    match s.swap_reader(cpu as u64) {
                        Ok(r) => {
                            assert!(pages.contains(&r.reader_page), "cpu {cpu}: {r:?}");
                            swaps.fetch_add(1, Relaxed);
                        }
                        Err(HypError::NotLoaded | HypError::Busy) => {}
                        Err(e) => panic!("swap_reader({cpu}): {e}"),
                    }
                    match s.update_footers(cpu as u64) {
                        Ok(_) | Err(HypError::NotLoaded | HypError::Busy) => {}
                        Err(e) => panic!("update_footers({cpu}): {e}"),
                    }
                }
            }
        });

        for round in 0..ROUNDS {
            // SAFETY: the pack and its pages are live heap memory inside `rules().ram`.
            unsafe { s.load(pa, size, &rules(), CPUS) }.unwrap();
            assert_eq!(s.shared_pages(), 4 * CPUS);
            if round == 0 {
                // Kept across teardown and reload.
                s.update_clock(1, 0, 0, 0).unwrap();
            }
            s.enable_event(events::Selftest::DESC.id as u64, 1).unwrap();
            s.enable(1).unwrap();
            std::thread::sleep(Duration::from_micros(200));
            s.reset((round % CPUS) as u64).unwrap();
            if round % 3 == 0 {
                s.enable(0).unwrap();
                s.enable(1).unwrap();
            }
            std::thread::sleep(Duration::from_micros(200));
            s.teardown().unwrap();
            assert_eq!(s.shared_pages(), 0, "round {round}: pages still shared");
            // No write after teardown returned, while the writers keep trying.
            let ring_pages: Vec<u64> = own.iter().flatten().copied().collect();
            fill(&ring_pages, 0xc3);
            std::thread::sleep(Duration::from_micros(100));
            assert!(
                intact(&ring_pages, 0xc3),
                "round {round}: a page written after teardown"
            );
            assert_eq!(s.swap_reader(0), Err(HypError::NotLoaded));
        }
        stop.store(true, Relaxed);
    });
    assert!(intact(&outside, 0x5a), "a page outside every pack changed");
    // The race was real: events were written and pages swapped while loaded.
    assert!(written.load(Relaxed) > 0 && swaps.load(Relaxed) > 0);
}

#[test]
fn host_words_are_read_only_from_pages_the_host_owns() {
    let s = service!();
    let mut host = Host::new(9);
    // Page 8: not in the pack `two_cpus` makes of pages 0..8.
    let page = host.addr(8);
    // SAFETY: page 8 is a live test page.
    unsafe { (page as *mut u64).add(3).write(0x1234_5678) };
    // SAFETY: the test's pages are live heap memory inside `rules().ram`.
    let read = |pa| unsafe { s.read_host_word(pa, &rules()) };
    assert_eq!(read(page + 24), Some(0x1234_5678));
    assert_eq!(read(page + 4), None, "misaligned");
    assert_eq!(read(8), None, "the hypervisor's page");
    assert_eq!(read(1 << 60), None, "not RAM");
    let (pa, size) = two_cpus(&mut host);
    // SAFETY: as above.
    unsafe { s.load(pa, size, &rules(), 2) }.unwrap();
    assert_eq!(read(host.addr(1)), None, "a shared ring page");
    assert_eq!(
        read(page + 24),
        Some(0x1234_5678),
        "a page still the host's"
    );
    s.teardown().unwrap();
    assert!(
        read(host.addr(1)).is_some(),
        "the host's again after teardown"
    );
}

/// Found by the `hypercall` fuzz target (hyp/fuzz/regressions/hypercall/
/// selftest-sequence-wraps): `write_selftest(u64::MAX, 1)` wrote nothing and answered 0, as
/// if tracing were off, because the sequence range saturated. A batch whose sequence numbers
/// would pass 2^64 is refused instead.
#[test]
fn selftest_batches_whose_sequence_wraps_are_refused() {
    let s = service!();
    let mut host = Host::new(8);
    let (pa, size) = two_cpus(&mut host);
    // SAFETY: the test's pages and pack are live heap memory inside `rules().ram`.
    unsafe { s.load(pa, size, &rules(), 2) }.unwrap();
    s.enable_event(events::Selftest::DESC.id as u64, 1).unwrap();
    s.enable(1).unwrap();
    assert_eq!(
        s.write_selftest(0, || 1, u64::MAX, 1),
        Err(HypError::InvalidArgument)
    );
    assert_eq!(
        s.write_selftest(0, || 1, u64::MAX - 9, 11),
        Err(HypError::InvalidArgument)
    );
    assert_eq!(s.write_selftest(0, || 1, u64::MAX - 10, 10), Ok(10));
    assert_eq!(s.write_selftest(0, || 1, u64::MAX - 1, 0), Ok(0));
    s.teardown().unwrap();
}

/// `s` loaded with [`two_cpus`]' buffer, the clock 1:1, selftest events enabled, writable.
fn tracing_two_cpus(s: &'static TracingService) -> Host {
    let mut host = Host::new(8);
    let (pa, size) = two_cpus(&mut host);
    // SAFETY: live test memory inside the rules' RAM.
    unsafe { s.load(pa, size, &rules(), 2) }.unwrap();
    s.update_clock(1, 0, 0, 0).unwrap();
    s.enable_event(events::Selftest::DESC.id as u64, 1).unwrap();
    s.enable(1).unwrap();
    host
}

fn flight_text(s: &TracingService, per_cpu: usize) -> String {
    flight_text_waiting(s, per_cpu, &mut crate::ring::tries(64))
}

/// A dump on CPU 0, waiting while `keep_waiting` says so.
fn flight_text_waiting(
    s: &TracingService,
    per_cpu: usize,
    keep_waiting: &mut dyn FnMut() -> bool,
) -> String {
    // One dump at a time in the whole process (the recorder's page copy is a static): the
    // tests that dump take turns.
    static ONE_DUMP: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = ONE_DUMP
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut out = String::new();
    // SAFETY: test memory stays mapped (identity, heap) and nothing tears down meanwhile.
    let dumped = unsafe { s.flight_record(0, per_cpu, keep_waiting, &mut out) }.unwrap();
    assert!(dumped, "no other dump runs");
    out
}

#[test]
fn flight_recorder_with_nothing_loaded_says_so() {
    let s = service!();
    assert_eq!(
        flight_text(s, 32),
        "hyp: flight recorder: tracing is not loaded: no events\n"
    );
}

std::thread_local! {
    /// The CPU `hyp_printk!` writes on in this test thread; on every other thread of the
    /// test binary (the PSCI tests reach `hyp_printk!` too) a CPU without a ring, so no
    /// other test's call lands in this test's rings.
    static PRINTK_CPU: core::cell::Cell<usize> = const { core::cell::Cell::new(usize::MAX) };
}

/// The one test that installs a `hyp_printk!` sink (installing is once per process).
#[test]
fn printk_and_flight_recorder_end_to_end() {
    static SINK: crate::printk::Sink = crate::printk::Sink {
        tracing: service!(),
        cpu: || PRINTK_CPU.with(core::cell::Cell::get),
        counter: || 500,
    };
    PRINTK_CPU.with(|c| c.set(1));
    let s = SINK.tracing;
    crate::printk::install(&SINK);
    let host = tracing_two_cpus(s);
    assert!(
        !crate::printk::enabled(),
        "the printk event starts disabled"
    );
    crate::hyp_printk!("flight test not recorded {}", 1u8);
    s.enable_event(u64::from(crate::abi::printk::ID), 1)
        .unwrap();
    assert!(
        crate::printk::enabled(),
        "mirrors the installed service's flag"
    );
    for cpu in 0..2 {
        assert_eq!(s.write_selftest(cpu, || 100, 10 * cpu as u64, 5), Ok(5));
    }
    // Written on CPU 1 (the sink's CPU) at counter 500: the newest event of that CPU.
    crate::hyp_printk!(
        "flight test cpu={} err={:i} at {:#x}",
        1usize,
        -22i32,
        0xbeefu64
    );

    let text = flight_text(s, 4);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "hyp: flight recorder: the last 4 events of each CPU, newest last"
    );
    assert_eq!(
        lines[1],
        "hyp: flight recorder: CPU 0: 4 of 5 events in the ring"
    );
    let seq1 = events::selftest_payload(1);
    assert_eq!(
        lines[2],
        format!(
            "hypervisor:            <...>--1    [000]     0.000000: selftest:             seq=1 payload={seq1:#x}"
        )
    );
    assert!(lines[5].contains("seq=4 payload="), "{text}");
    assert_eq!(
        lines[6],
        "hyp: flight recorder: CPU 1: 4 of 6 events in the ring"
    );
    assert_eq!(
        lines[10],
        "hypervisor:            <...>--1    [001]     0.000001: bprint:               \
         hyp::tracing::tests: flight test cpu=1 err=-22 at 0xbeef"
    );
    assert_eq!(lines[11], "hyp: flight recorder: end");
    assert_eq!(lines.len(), 12, "{text}");
    // Frozen: nothing more is written.
    assert_eq!(s.write_selftest(0, || 900, 100, 1), Ok(0));

    // A page the host scribbled on: an error line, the other pages still printed.
    // SAFETY: page 2 is CPU 0's second ring page, live test memory; its commit word set to
    // 4000 bytes, most of them zero words, which do not decode as records.
    unsafe { ((host.addr(2) + 8) as *mut u64).write(4000) };
    let text = flight_text(s, 32);
    assert!(text.contains("CPU 0: page"), "{text}");
    assert!(text.contains("flight test cpu=1"), "{text}");
    crate::printk::flag_changed(s, false);
}

#[test]
fn flight_recorder_error_lines_are_bounded() {
    use super::flight::MAX_ERROR_LINES;
    let s = service!();
    let mut host = Host::new(10);
    let ring: Vec<usize> = (1..10).collect();
    let (pa, size) = host.pack(&[(0, 0, ring)]);
    // SAFETY: live test memory inside the rules' RAM.
    unsafe { s.load(pa, size, &rules(), 1) }.unwrap();
    s.update_clock(1, 0, 0, 0).unwrap();
    s.enable_event(events::Selftest::DESC.id as u64, 1).unwrap();
    s.enable(1).unwrap();
    // Enough events to fill every ring page (about 200 selftest events per page).
    assert_eq!(s.write_selftest(0, || 100, 0, 4000), Ok(4000));
    for page in 1..10 {
        // SAFETY: a ring page of the loaded buffer, live test memory: the host scribbles a
        // commit far beyond the data area on every one.
        unsafe { ((host.addr(page) + 8) as *mut u64).write(1 << 20) };
    }
    let text = flight_text(s, 32);
    let errors = text.lines().filter(|l| l.contains(": page ")).count();
    assert_eq!(errors, MAX_ERROR_LINES, "{text}");
    assert!(
        text.contains(&format!(
            "{} more pages did not decode",
            9 - MAX_ERROR_LINES
        )),
        "{text}"
    );
    assert!(text.contains("CPU 0: 0 of 0 events"), "{text}");
}

#[test]
fn flight_recorder_skips_a_ring_whose_writer_does_not_stop() {
    let s = service!();
    let _pages = tracing_two_cpus(s);
    assert_eq!(s.write_selftest(0, || 100, 0, 3), Ok(3));
    assert_eq!(s.write_selftest(1, || 100, 10, 3), Ok(3));
    // CPU 1's writer in the middle of a write (and never leaving it during the dump).
    let in_flight = s.rings[1].reserve(200, 8).expect("enabled");
    let text = flight_text(s, 32);
    assert!(
        text.contains("CPU 1: not dumped: its writer did not stop"),
        "{text}"
    );
    assert!(text.contains("CPU 0: 3 of 3 events"), "{text}");
    assert!(
        !text.contains("[001]"),
        "no line read off CPU 1's pages: {text}"
    );
    drop(in_flight);
}

/// The dying CPU 0 was in the middle of a write, and CPU 1's control lock is held (by a
/// control operation on a CPU that died): the wait goes to the held lock, within the
/// deadline, and none to CPU 0's writer, which never runs again; CPU 0 is dumped all the same.
#[test]
fn flight_recorder_waits_for_a_held_lock_and_not_for_the_dying_cpus_writer() {
    let s = service!();
    let _pages = tracing_two_cpus(s);
    assert_eq!(s.write_selftest(0, || 100, 0, 3), Ok(3));
    assert_eq!(s.write_selftest(1, || 100, 10, 3), Ok(3));
    let in_flight = s.rings[0].reserve(200, 8).expect("enabled");
    let held = s.rings[1].freeze(crate::ring::tries(0)).expect("free");
    let mut asked = 0;
    let text = flight_text_waiting(s, 32, &mut || {
        asked += 1;
        asked < 10
    });
    assert_eq!(asked, 10, "the whole wait went to CPU 1's lock: {text}");
    assert!(
        text.contains("CPU 1: not dumped: a control operation holds its lock"),
        "{text}"
    );
    assert!(text.contains("CPU 0: 3 of 3 events"), "{text}");
    drop(held);
    drop(in_flight);
}
