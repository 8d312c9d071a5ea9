use super::*;

/// The layout of the real image, as `linker/hyp.ld` lays it out (addresses need not be real:
/// the tables are only data here).
fn layout() -> ImageLayout {
    let base = 0x4020_0000;
    ImageLayout {
        text: base..base + 0xc000,
        rodata: base + 0xc000..base + 0xf000,
        data: base + 0xf000..base + 0x60_0000,
        stacks: StackArea {
            slots: base + 0x60_0000..base + 0x60_0000 + 8 * 0x9000,
            stack_size: 0x8000,
            guard_size: 0x1000,
        },
        emergency_stacks: StackArea {
            slots: base + 0x64_8000..base + 0x64_8000 + 8 * 0x4000,
            stack_size: 0x3000,
            guard_size: 0x1000,
        },
    }
}

const UART: u64 = 0x0900_0000;

/// Counts the batched maintenance operations instead of doing them.
#[derive(Default)]
struct CountingTlb {
    published: core::sync::atomic::AtomicUsize,
    invalidated: core::sync::atomic::AtomicUsize,
}

impl TlbMaintenance for CountingTlb {
    fn publish(&self) {
        self.published
            .fetch_add(1, core::sync::atomic::Ordering::Relaxed);
    }

    fn invalidate_all(&self) {
        self.invalidated
            .fetch_add(1, core::sync::atomic::Ordering::Relaxed);
    }
}

impl CountingTlb {
    fn counts(&self) -> (usize, usize) {
        use core::sync::atomic::Ordering::Relaxed;
        (self.published.load(Relaxed), self.invalidated.load(Relaxed))
    }
}

static NO_TLB: CountingTlb = CountingTlb {
    published: core::sync::atomic::AtomicUsize::new(0),
    invalidated: core::sync::atomic::AtomicUsize::new(0),
};

fn boot_map(pool: &mut TablePool) -> El2Map<'_> {
    El2Map::boot(pool, &NO_TLB, &layout(), &[UART]).expect("boot map")
}

fn pages(range: &Range<u64>) -> impl Iterator<Item = u64> {
    range.clone().step_by(PAGE_SIZE as usize)
}

const RX: Permissions = Permissions {
    write: false,
    execute: true,
    device: false,
};
const RO: Permissions = Permissions {
    write: false,
    execute: false,
    device: false,
};
const RW: Permissions = Permissions {
    write: true,
    execute: false,
    device: false,
};

#[test]
fn every_part_of_the_image_has_its_permissions() {
    let mut pool = Box::new(TablePool::new());
    let map = boot_map(&mut pool);
    let l = layout();
    for (range, expected, name) in [
        (&l.text, RX, "text"),
        (&l.rodata, RO, "rodata"),
        (&l.data, RW, "data"),
    ] {
        for page in pages(range) {
            assert_eq!(
                map.permissions(page),
                Some(expected),
                "{name} page {page:#x}"
            );
        }
    }
    for cpu in 0..8 {
        for page in pages(&l.stacks.stack(cpu)) {
            assert_eq!(
                map.permissions(page),
                Some(RW),
                "CPU {cpu}'s stack at {page:#x}"
            );
        }
    }
}

#[test]
fn no_page_is_both_writable_and_executable() {
    let mut pool = Box::new(TablePool::new());
    let map = boot_map(&mut pool);
    let l = layout();
    let mut mapped = 0;
    for page in pages(&(l.range())).chain([UART]) {
        if let Some(p) = map.permissions(page) {
            mapped += 1;
            assert!(
                !(p.write && p.execute),
                "{page:#x} is writable and executable"
            );
        }
    }
    assert!(mapped > 100, "the walk saw the map ({mapped} pages)");
}

#[test]
fn the_page_below_every_stack_is_unmapped() {
    let mut pool = Box::new(TablePool::new());
    let map = boot_map(&mut pool);
    let l = layout();
    for cpu in 0..8 {
        let stack = l.emergency_stacks.stack(cpu);
        assert_eq!(
            map.permissions(stack.start - PAGE_SIZE),
            None,
            "emergency guard {cpu}"
        );
        assert_eq!(
            map.permissions(stack.start),
            Some(RW),
            "emergency stack {cpu}"
        );
        assert_eq!(
            l.part_of(stack.start - 1),
            Some(ImagePart::EmergencyStackGuard(cpu))
        );
    }
    for cpu in 0..8 {
        let guard = l.stacks.stack(cpu).start - PAGE_SIZE;
        assert_eq!(map.permissions(guard), None, "guard of CPU {cpu}");
        assert_eq!(l.part_of(guard), Some(ImagePart::StackGuard(cpu)));
        assert_eq!(l.part_of(guard + PAGE_SIZE), Some(ImagePart::Stack(cpu)));
    }
}

#[test]
fn the_uart_is_device_memory_and_never_executable() {
    let mut pool = Box::new(TablePool::new());
    let map = boot_map(&mut pool);
    let uart = Permissions {
        write: true,
        execute: false,
        device: true,
    };
    assert_eq!(map.permissions(UART), Some(uart));
    assert_eq!(map.permissions(UART + 0xfff), Some(uart));
    assert_eq!(
        map.permissions(UART + PAGE_SIZE),
        None,
        "the next device page"
    );
    assert_eq!(map.permissions(0x0902_0000), None, "fw_cfg");
    assert_eq!(map.permissions(0x0800_0000), None, "GIC");
}

#[test]
fn no_host_ram_is_mapped_in_the_boot_map() {
    let mut pool = Box::new(TablePool::new());
    let map = boot_map(&mut pool);
    let l = layout();
    // Every RAM page of a 1 GiB machine outside the image: DTB, host image, page pool.
    let ram = 0x4000_0000..0x8000_0000u64;
    let mapped: Vec<u64> = pages(&ram)
        .filter(|p| !(l.range()).contains(p))
        .filter(|p| map.permissions(*p).is_some())
        .collect();
    assert!(mapped.is_empty(), "host pages mapped at boot: {mapped:x?}");
}

#[test]
fn shared_pages_are_mapped_while_shared_and_unmapped_after() {
    let mut pool = Box::new(TablePool::new());
    let mut map = boot_map(&mut pool);
    let ring = 0x4300_0000..0x4300_4000;
    map.map_host(&ring, true).unwrap();
    for page in pages(&ring) {
        assert_eq!(map.permissions(page), Some(RW), "{page:#x}");
    }
    assert_eq!(map.permissions(ring.end), None, "the page after the ring");
    assert_eq!(
        map.permissions(ring.start - PAGE_SIZE),
        None,
        "the page before"
    );
    map.unmap(&ring).unwrap();
    for page in pages(&ring) {
        assert_eq!(map.permissions(page), None, "{page:#x} after teardown");
    }
    // A pack is mapped read-only.
    map.map_host(&(0x4400_0000..0x4400_2000), false).unwrap();
    assert_eq!(map.permissions(0x4400_1000), Some(RO));
}

#[test]
fn host_mappings_never_touch_the_image() {
    let mut pool = Box::new(TablePool::new());
    let mut map = boot_map(&mut pool);
    let l = layout();
    let straddling = l.stacks.slots.end - PAGE_SIZE..l.stacks.slots.end + PAGE_SIZE;
    for range in [
        l.text.clone(),
        l.rodata.clone(),
        straddling,
        l.stacks.stack(3),
    ] {
        let before = map.permissions(range.start);
        assert_eq!(
            map.map_host(&range, true),
            Err(El2MapError::BadRange(range.clone()))
        );
        assert_eq!(map.unmap(&range), Err(El2MapError::BadRange(range.clone())));
        assert_eq!(map.permissions(range.start), before, "{range:x?}");
    }
}

#[test]
fn the_pool_is_never_overrun() {
    let mut pool = Box::new(TablePool::new());
    let mut map = boot_map(&mut pool);
    let boot_tables = map.tables_in_use();
    // One page in every 2 MiB block of 1 GiB of RAM: a level-3 table each.
    let image = layout().text.start..layout().range().end;
    let mut shared = 0;
    for block in 0..512u64 {
        let page = 0x4000_0000 + block * (2 << 20) + 0x1000;
        if (image.start & !0x1f_ffff..image.end).contains(&page) {
            continue; // the image's blocks (their tables exist already)
        }
        match map.map_host(&(page..page + PAGE_SIZE), true) {
            Ok(()) => shared += 1,
            Err(e) => panic!("block {block}: {e}"),
        }
    }
    assert_eq!(map.tables_in_use(), boot_tables + shared);
    assert!(map.tables_in_use() <= TABLE_POOL_PAGES);
    // A second GiB needs a level-2 table and a level-3 table per block: the pool runs out
    // cleanly, with nothing half-mapped.
    let mut refused = None;
    for block in 0..512u64 {
        let page = 0x8000_0000 + block * (2 << 20);
        let before = map.tables_in_use();
        if let Err(e) = map.map_host(&(page..page + PAGE_SIZE), true) {
            refused = Some((block, e, page, before));
            break;
        }
    }
    let (block, e, page, before) = refused.expect("the pool is finite");
    assert_eq!(e, El2MapError::OutOfTables);
    assert_eq!(
        map.permissions(page),
        None,
        "refused page {page:#x} (block {block})"
    );
    assert_eq!(
        map.tables_in_use(),
        before,
        "a refused share takes no table"
    );
    // The first GiB took one level-3 table per block (the image's blocks had theirs), the
    // second GiB a level-2 table and one level-3 table per block until the pool ran out.
    assert_eq!(before, boot_tables + shared + 1 + block as usize);
    assert!(
        before > TABLE_POOL_PAGES - 2,
        "the pool was used up: {before}"
    );
}

#[test]
#[allow(
    clippy::reversed_empty_ranges,
    reason = "a backwards range is one of the bad inputs"
)]
fn bad_ranges_are_refused() {
    let mut pool = Box::new(TablePool::new());
    let mut map = El2Map::new(&mut pool, &NO_TLB);
    for range in [
        0x1001..0x2000,
        0x1000..0x1001,
        0x2000..0x1000,
        0x1000..0x1000,
        (1 << 39)..(1 << 39) + 0x1000,
    ] {
        assert_eq!(
            map.map_host(&range, true),
            Err(El2MapError::BadRange(range.clone()))
        );
    }
}

#[test]
fn registers_say_what_the_issue_asks() {
    // Device-nGnRE at index 0, Normal WB RWA at index 1.
    assert_eq!(MAIR & 0xff, 0x04);
    assert_eq!((MAIR >> 8) & 0xff, 0xff);
    // 40-bit PA (PARange 2), T0SZ 25, inner-shareable write-back walks, 4 KiB granule.
    let tcr = tcr_el2(2);
    assert_eq!(tcr & 0x3f, 25);
    assert_eq!((tcr >> 8) & 0b11, 0b01, "IRGN0");
    assert_eq!((tcr >> 10) & 0b11, 0b01, "ORGN0");
    assert_eq!((tcr >> 12) & 0b11, 0b11, "SH0");
    assert_eq!((tcr >> 14) & 0b11, 0b00, "TG0");
    assert_eq!((tcr >> 16) & 0b111, 2, "PS");
    assert_eq!(
        tcr & ((1 << 31) | (1 << 23)),
        (1 << 31) | (1 << 23),
        "RES1 bits 31 and 23"
    );
    assert_eq!((tcr_el2(6) >> 16) & 0b111, 5, "52-bit PA capped at 48");
    for bit in [0, 1, 2, 3, 12, 19] {
        assert_ne!(SCTLR_EL2_ON & (1 << bit), 0, "SCTLR_EL2 bit {bit}");
    }
    assert_eq!(SCTLR_EL2_ON & (1 << 25), 0, "little-endian");
}

#[test]
fn image_parts_are_named_for_fault_reports() {
    let l = layout();
    assert_eq!(l.part_of(l.text.start), Some(ImagePart::Text));
    assert_eq!(l.part_of(l.rodata.start + 8), Some(ImagePart::Rodata));
    assert_eq!(l.part_of(l.data.end - 1), Some(ImagePart::Data));
    assert_eq!(l.part_of(l.stacks.slots.end - 1), Some(ImagePart::Stack(7)));
    assert_eq!(
        l.part_of(l.stacks.slots.end),
        Some(ImagePart::EmergencyStackGuard(0))
    );
    assert_eq!(
        l.part_of(l.range().end - 1),
        Some(ImagePart::EmergencyStack(7))
    );
    assert_eq!(l.part_of(l.range().end), None);
    assert_eq!(l.part_of(0x4300_0000), None);
    assert_eq!(
        ImagePart::StackGuard(2).to_string(),
        "the guard page below CPU 2's stack"
    );
}

/// ESR_EL2 of a data abort at EL2: EC 0x25, IL, WnR, DFSC.
fn data_abort(write: bool, dfsc: u64) -> u64 {
    (0x25 << 26) | (1 << 25) | ((write as u64) << 6) | dfsc
}

#[test]
fn el2_faults_are_named_by_cause() {
    let l = layout();
    let guard = l.stacks.stack(5).start - 8;
    // A push into the guard page: translation fault, level 3.
    let f = El2Fault::classify(data_abort(true, 0b000111), guard, &l).unwrap();
    assert_eq!(
        f,
        El2Fault::StackOverflow {
            cpu: 5,
            emergency: false
        }
    );
    assert_eq!(f.to_string(), "stack overflow on CPU 5");
    let emergency_guard = l.emergency_stacks.stack(2).start - 8;
    let f = El2Fault::classify(data_abort(true, 0b000111), emergency_guard, &l).unwrap();
    assert_eq!(f.to_string(), "emergency stack overflow on CPU 2");
    // A write to the image's code: permission fault, level 3.
    let f = El2Fault::classify(data_abort(true, 0b001111), l.text.start + 0x40, &l).unwrap();
    assert_eq!(
        f.to_string(),
        "permission fault: write at 0x40200040 in .text"
    );
    // A fetch from data: instruction abort, permission fault.
    let esr = (0x21 << 26) | (1 << 25) | 0b001111;
    let f = El2Fault::classify(esr, l.data.start + 0x100, &l).unwrap();
    assert_eq!(
        f.to_string(),
        "permission fault: instruction fetch at 0x4020f100 in .data/.bss"
    );
    // A host page that is not shared: translation fault outside the image.
    let f = El2Fault::classify(data_abort(true, 0b000111), 0x4300_0000, &l).unwrap();
    assert_eq!(
        f.to_string(),
        "translation fault: write at 0x43000000, which the hypervisor does not map"
    );
    let f = El2Fault::classify(data_abort(false, 0b100001), 0x4300_0001, &l).unwrap();
    assert_eq!(f, El2Fault::Alignment { addr: 0x4300_0001 });
    // Not an EL2 abort: a lower-EL data abort, an HVC, an unnamed fault status.
    assert_eq!(
        El2Fault::classify((0x24 << 26) | 0b000111, 0x4300_0000, &l),
        None
    );
    assert_eq!(El2Fault::classify(0x16 << 26, 0, &l), None);
    assert_eq!(
        El2Fault::classify(data_abort(false, 0b010000), 0x4300_0000, &l),
        None
    );
}

#[test]
fn live_changes_get_the_maintenance_they_need_once() {
    let mut pool = Box::new(TablePool::new());
    let tlb = CountingTlb::default();
    let mut map = El2Map::boot(&mut pool, &tlb, &layout(), &[UART]).unwrap();
    assert_eq!(
        tlb.counts(),
        (0, 0),
        "building an inactive map needs no maintenance"
    );
    map.mark_live();
    let ring = 0x4300_0000..0x4310_0000;
    map.map_host(&ring, true).unwrap();
    assert_eq!(
        tlb.counts(),
        (1, 0),
        "256 fresh pages: one publish, no invalidation"
    );
    map.unmap(&ring).unwrap();
    assert_eq!(
        tlb.counts(),
        (1, 1),
        "256 pages unmapped: one full invalidation"
    );
    for page in pages(&ring) {
        assert_eq!(map.permissions(page), None);
    }
    // One page: aarch64-paging's own per-page invalidation (nothing batched).
    map.map_host(&(0x4400_0000..0x4400_1000), false).unwrap();
    map.unmap(&(0x4400_0000..0x4400_1000)).unwrap();
    assert_eq!(tlb.counts(), (2, 1));
    // Remapping a live page is never batched: the crate's break-before-make checks apply.
    map.map_host(&(0x4500_0000..0x4500_2000), false).unwrap();
    map.map_host(&(0x4500_0000..0x4500_2000), true).unwrap();
    assert_eq!(tlb.counts(), (3, 1));
    assert_eq!(map.permissions(0x4500_1000), Some(RW));
    map.mapping.mark_inactive();
}

#[test]
fn tables_emptied_by_unmaps_are_reused_wherever_the_next_pages_lie() {
    let mut pool = Box::new(TablePool::new());
    let mut map = boot_map(&mut pool);
    map.mark_live();
    // Fill the pool with single pages, one per 2 MiB block (single-page unmaps, as for
    // scattered host pages): 1 GiB from 0x8000_0000 on, until no table is left.
    let block = 2u64 << 20;
    let mut shared = Vec::new();
    for b in 0..1024u64 {
        let page = 0x8000_0000 + b * block;
        match map.map_host(&(page..page + PAGE_SIZE), true) {
            Ok(()) => shared.push(page),
            Err(e) => {
                assert_eq!(e, El2MapError::OutOfTables);
                break;
            }
        }
    }
    assert_eq!(map.tables_in_use(), TABLE_POOL_PAGES, "the pool is full");
    for page in &shared {
        map.unmap(&(*page..page + PAGE_SIZE)).unwrap();
        assert_eq!(map.permissions(*page), None);
    }
    // A trace elsewhere (another GiB) gets the emptied tables back.
    for b in 0..100u64 {
        let page = 0x1_0000_0000 + b * block;
        map.map_host(&(page..page + PAGE_SIZE), true)
            .unwrap_or_else(|e| panic!("block {b} after compaction: {e}"));
    }
    assert!(
        map.tables_in_use() < TABLE_POOL_PAGES / 2,
        "{}",
        map.tables_in_use()
    );
    // The image's tables are not empty and stay.
    assert_eq!(map.permissions(layout().text.start), Some(RX));
    map.mapping.mark_inactive();
}

#[test]
fn unmapping_a_range_with_holes_allocates_nothing() {
    let mut pool = Box::new(TablePool::new());
    let mut map = boot_map(&mut pool);
    map.mark_live();
    map.map_host(&(0x4300_0000..0x4300_2000), true).unwrap();
    let before = map.tables_in_use();
    // 64 MiB over mostly unmapped blocks (and a GiB without a level-2 table).
    map.unmap(&(0x4300_0000..0x4700_0000)).unwrap();
    map.unmap(&(0x1_0000_0000..0x1_0400_0000)).unwrap();
    assert!(map.tables_in_use() <= before, "no table allocated");
    assert_eq!(map.permissions(0x4300_1000), None);
    map.mapping.mark_inactive();
}
