//! The hypervisor's own address space: the EL2 stage-1 tables, what they map and with which
//! permissions.
//!
//! Identity-mapped (virtual address = physical address), 4 KiB granule, 39-bit addresses,
//! walks starting at level 1. What EL2 can reach, and nothing else:
//!
//! | Region | Memory type | Permissions |
//! |---|---|---|
//! | image `.text` | Normal write-back | read-only, executable |
//! | image `.rodata` | Normal write-back | read-only, never executable |
//! | image `.data`, `.bss` (pools, page tables) | Normal write-back | read-write, never executable |
//! | each CPU's stack | Normal write-back | read-write, never executable |
//! | the page below each stack | — | **unmapped** (guard) |
//! | the UART | Device-nGnRE | read-write, never executable |
//! | host RAM | — | **unmapped**, except pages the host named ([`El2Map::map_host`]) |
//!
//! Host pages are mapped only while the host shares them: the pack while `load_tracing` copies
//! it (read-only), the ring pages of a loaded trace (read-write) until `teardown_tracing`. So a
//! bug in the writer can reach only the pages the host named for the current trace.
//!
//! Tables come from a fixed [`TablePool`] in hypervisor memory and are built and edited with
//! the `aarch64-paging` crate, which does the break-before-make TLB maintenance
//! (`DSB ISHST`, `TLBI VAE2IS` per page, `DSB ISH`, `ISB`) once the map is live. Everything
//! here is plain Rust, tested on the development machine; turning the MMU on is the arch
//! layer's job ([`MmuConfig`] holds the register values it writes).

use core::fmt;
use core::ops::Range;

use aarch64_paging::descriptor::{El23Attributes, PhysicalAddress};
use aarch64_paging::paging::{Constraints, El2, MemoryRegion};
use aarch64_paging::{MapError, Mapping};

use crate::abi::page::PAGE_SIZE_U64 as PAGE_SIZE;

pub use hyptrace_platform::mmu::{MmuConfig, MAIR, MAIR_INDEX_DEVICE, MAIR_INDEX_NORMAL};

/// Bytes one level-2 entry spans.
const L2_BLOCK: usize = 2 << 20;

/// How many 2 MiB blocks `chunk` touches.
fn blocks_spanned(chunk: &MemoryRegion) -> usize {
    chunk.end().0.div_ceil(L2_BLOCK) - chunk.start().0 / L2_BLOCK
}

/// Size of the translated address space: 39 bits (TCR_EL2.T0SZ = 25, walks start at level 1).
pub const VA_BITS: u32 = 39;
/// Level at which table walks start for [`VA_BITS`].
const ROOT_LEVEL: usize = 1;

/// SCTLR_EL2 RES1 bits (non-VHE): 4, 5, 11, 16, 18, 22, 23, 28, 29.
pub const SCTLR_EL2_RES1: u64 = 0x30c5_0830;
/// SCTLR_EL2.M: stage-1 translation on.
pub const SCTLR_M: u64 = 1 << 0;
/// SCTLR_EL2.A: alignment checks on every load and store.
pub const SCTLR_A: u64 = 1 << 1;
/// SCTLR_EL2.C: data accesses cacheable.
pub const SCTLR_C: u64 = 1 << 2;
/// SCTLR_EL2.SA: SP alignment checks.
pub const SCTLR_SA: u64 = 1 << 3;
/// SCTLR_EL2.I: instruction fetches cacheable.
pub const SCTLR_I: u64 = 1 << 12;
/// SCTLR_EL2.WXN: writable memory is never executable.
pub const SCTLR_WXN: u64 = 1 << 19;
/// SCTLR_EL2 while the hypervisor runs: MMU, both caches, alignment and SP alignment checks,
/// write-implies-never-execute; little-endian.
pub const SCTLR_EL2_ON: u64 =
    SCTLR_EL2_RES1 | SCTLR_M | SCTLR_A | SCTLR_C | SCTLR_SA | SCTLR_I | SCTLR_WXN;

/// TCR_EL2 (non-VHE) for these tables, with the output size taken from
/// `ID_AA64MMFR0_EL1.PARange` (`pa_range`, bits 3:0 of the register).
///
/// RES1 bits 31 and 23; T0SZ = 64 - [`VA_BITS`]; IRGN0 = ORGN0 = write-back read/write-allocate
/// and SH0 = inner shareable, so table walks read through the same caches the hypervisor writes
/// the tables with; TG0 = 4 KiB; PS = the CPU's physical address size, capped at 48 bits (52
/// bits with a 4 KiB granule needs FEAT_LPA2 descriptors, which these tables do not use).
pub const fn tcr_el2(pa_range: u64) -> u64 {
    let ps = if pa_range & 0xf > 0b101 {
        0b101
    } else {
        pa_range & 0xf
    };
    const RES1: u64 = (1 << 31) | (1 << 23);
    const T0SZ: u64 = 64 - VA_BITS as u64;
    const IRGN0_WBWA: u64 = 0b01 << 8;
    const ORGN0_WBWA: u64 = 0b01 << 10;
    const SH0_INNER: u64 = 0b11 << 12;
    const TG0_4K: u64 = 0b00 << 14;
    RES1 | T0SZ | IRGN0_WBWA | ORGN0_WBWA | SH0_INNER | TG0_4K | (ps << 16)
}

/// Attributes every valid EL2 leaf has: accessed, AP[1] (RES1 at EL2).
const LEAF: El23Attributes = El23Attributes::VALID
    .union(El23Attributes::ACCESSED)
    .union(El23Attributes::USER_RES1);
/// Normal write-back memory, inner shareable.
const NORMAL: El23Attributes = LEAF
    .union(El23Attributes::ATTRIBUTE_INDEX_1)
    .union(El23Attributes::INNER_SHAREABLE);
const _: () = assert!(MAIR_INDEX_NORMAL == 1 && MAIR_INDEX_DEVICE == 0);
/// Code: read-only, executable.
const TEXT: El23Attributes = NORMAL.union(El23Attributes::READ_ONLY);
/// Constants: read-only, never executable.
const RODATA: El23Attributes = NORMAL
    .union(El23Attributes::READ_ONLY)
    .union(El23Attributes::XN);
/// Data, stacks, shared ring pages: read-write, never executable.
const DATA: El23Attributes = NORMAL.union(El23Attributes::XN);
/// MMIO: Device-nGnRE (attribute index 0), never executable.
const DEVICE: El23Attributes = LEAF
    .union(El23Attributes::ATTRIBUTE_INDEX_0)
    .union(El23Attributes::XN);

/// Page tables in [`TablePool`]. Enough for the image, the UART and 1 GiB of host RAM shared
/// page by page in 512 different 2 MiB blocks (each needs its own level-3 table), with room
/// to spare; a share that needs more fails with [`El2MapError::OutOfTables`].
pub const TABLE_POOL_PAGES: usize = 576;

/// The EL2 tables' pool (a `static` of it lives in BSS).
pub type TablePool = crate::table_pool::TablePool<El23Attributes, TABLE_POOL_PAGES>;

type PoolTranslation<'a> = crate::table_pool::PoolTranslation<'a, El23Attributes, TABLE_POOL_PAGES>;

/// The barriers and TLB invalidations of batched changes to a live map, which the arch layer
/// provides (this library has no assembly). aarch64-paging does the per-page maintenance of
/// every other change itself.
pub trait TlbMaintenance: Sync {
    /// After invalid entries became valid: make the stores visible to every CPU's table walks
    /// and to this CPU's next instructions (`DSB ISHST; ISB`).
    fn publish(&self);

    /// After valid entries became invalid: remove every EL2 translation from every CPU's TLBs
    /// (`DSB ISHST; TLBI ALLE2IS; DSB ISH; ISB`), so that none of them reaches the pages.
    fn invalidate_all(&self);
}

/// Why the EL2 map could not be changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum El2MapError {
    /// The table pool has no free table left for the new mapping (the mapping is not made).
    OutOfTables,
    /// An address range the tables cannot describe, or that is not page-aligned.
    BadRange(Range<u64>),
    /// aarch64-paging refused the change (e.g. it would break a live mapping).
    Paging(MapError),
}

impl fmt::Display for El2MapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::OutOfTables => write!(f, "no free page table in the EL2 pool"),
            Self::BadRange(r) => write!(f, "range {:#x}..{:#x} cannot be mapped", r.start, r.end),
            Self::Paging(e) => write!(f, "page-table update refused: {e}"),
        }
    }
}

impl core::error::Error for El2MapError {}

/// An area of per-CPU stacks: `slots` holds one slot per CPU, each a guard of `guard_size`
/// bytes (never mapped) below `stack_size` bytes of stack.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StackArea {
    /// All slots.
    pub slots: Range<u64>,
    /// Bytes of one stack.
    pub stack_size: u64,
    /// Bytes of the guard below each stack.
    pub guard_size: u64,
}

impl StackArea {
    /// Bytes from one slot to the next.
    pub fn stride(&self) -> u64 {
        self.guard_size + self.stack_size
    }

    /// Number of slots.
    pub fn count(&self) -> usize {
        ((self.slots.end - self.slots.start) / self.stride()) as usize
    }

    /// CPU `cpu`'s stack (above its guard).
    pub fn stack(&self, cpu: usize) -> Range<u64> {
        let start = self.slots.start + cpu as u64 * self.stride() + self.guard_size;
        start..start + self.stack_size
    }

    /// For `addr` in the area: its CPU, and whether it is in that CPU's guard.
    fn locate(&self, addr: u64) -> Option<(usize, bool)> {
        if !self.slots.contains(&addr) {
            return None;
        }
        let offset = addr - self.slots.start;
        Some((
            (offset / self.stride()) as usize,
            offset % self.stride() < self.guard_size,
        ))
    }
}

/// Where the linker placed the image's parts (all page-aligned), and the stack layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageLayout {
    /// `.text` (and the vector table).
    pub text: Range<u64>,
    /// `.rodata`.
    pub rodata: Range<u64>,
    /// `.data` and `.bss`, including the pools and these page tables.
    pub data: Range<u64>,
    /// The per-CPU stacks.
    pub stacks: StackArea,
    /// The per-CPU emergency stacks exceptions taken at EL2 are reported on.
    pub emergency_stacks: StackArea,
}

/// What an address of the hypervisor's own image is, for fault reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImagePart {
    /// Code.
    Text,
    /// Constants.
    Rodata,
    /// Data, BSS, pools.
    Data,
    /// CPU `n`'s stack.
    Stack(usize),
    /// The unmapped guard page below CPU `n`'s stack.
    StackGuard(usize),
    /// CPU `n`'s emergency stack.
    EmergencyStack(usize),
    /// The unmapped guard page below CPU `n`'s emergency stack.
    EmergencyStackGuard(usize),
}

impl fmt::Display for ImagePart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Text => f.write_str(".text"),
            Self::Rodata => f.write_str(".rodata"),
            Self::Data => f.write_str(".data/.bss"),
            Self::Stack(cpu) => write!(f, "CPU {cpu}'s stack"),
            Self::StackGuard(cpu) => write!(f, "the guard page below CPU {cpu}'s stack"),
            Self::EmergencyStack(cpu) => write!(f, "CPU {cpu}'s emergency stack"),
            Self::EmergencyStackGuard(cpu) => {
                write!(f, "the guard page below CPU {cpu}'s emergency stack")
            }
        }
    }
}

impl ImageLayout {
    /// The whole image, first to last byte.
    pub fn range(&self) -> Range<u64> {
        self.text.start..self.stacks.slots.end.max(self.emergency_stacks.slots.end)
    }

    /// The part of the image `addr` is in, if any.
    pub fn part_of(&self, addr: u64) -> Option<ImagePart> {
        if self.text.contains(&addr) {
            Some(ImagePart::Text)
        } else if self.rodata.contains(&addr) {
            Some(ImagePart::Rodata)
        } else if self.data.contains(&addr) {
            Some(ImagePart::Data)
        } else if let Some((cpu, guard)) = self.stacks.locate(addr) {
            Some(if guard {
                ImagePart::StackGuard(cpu)
            } else {
                ImagePart::Stack(cpu)
            })
        } else {
            let (cpu, guard) = self.emergency_stacks.locate(addr)?;
            Some(if guard {
                ImagePart::EmergencyStackGuard(cpu)
            } else {
                ImagePart::EmergencyStack(cpu)
            })
        }
    }
}

/// What an EL2 access to one page may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Permissions {
    /// Writes are allowed.
    pub write: bool,
    /// Instruction fetches are allowed.
    pub execute: bool,
    /// Device memory (otherwise Normal write-back).
    pub device: bool,
}

/// The hypervisor's stage-1 tables. See the module documentation.
pub struct El2Map<'a> {
    mapping: Mapping<PoolTranslation<'a>, El2>,
    tlb: &'a dyn TlbMaintenance,
    /// The hypervisor's image (empty before [`El2Map::boot`]): host mappings never touch it.
    image: Range<u64>,
}

fn region(range: &Range<u64>) -> Result<MemoryRegion, El2MapError> {
    let aligned = range.start.is_multiple_of(PAGE_SIZE) && range.end.is_multiple_of(PAGE_SIZE);
    if !aligned || range.start >= range.end || range.end > 1 << VA_BITS {
        return Err(El2MapError::BadRange(range.clone()));
    }
    Ok(MemoryRegion::new(range.start as usize, range.end as usize))
}

impl<'a> El2Map<'a> {
    /// Empty tables (only the root allocated) over `pool`; `tlb` does the maintenance of
    /// batched changes once the map is live.
    pub fn new(pool: &'a mut TablePool, tlb: &'a dyn TlbMaintenance) -> Self {
        let translation = pool.translation();
        Self {
            mapping: Mapping::new(translation, ROOT_LEVEL, El2),
            tlb,
            image: 0..0,
        }
    }

    /// The boot map: the image with its per-part permissions, guard pages left unmapped, and
    /// the device pages `devices` (page-aligned addresses).
    pub fn boot(
        pool: &'a mut TablePool,
        tlb: &'a dyn TlbMaintenance,
        image: &ImageLayout,
        devices: &[u64],
    ) -> Result<Self, El2MapError> {
        let mut map = Self::new(pool, tlb);
        map.map(&image.text, TEXT)?;
        map.map(&image.rodata, RODATA)?;
        map.map(&image.data, DATA)?;
        for area in [&image.stacks, &image.emergency_stacks] {
            for cpu in 0..area.count() {
                map.map(&area.stack(cpu), DATA)?;
            }
        }
        for device in devices {
            map.map_device(*device)?;
        }
        map.image = image.range();
        Ok(map)
    }

    /// Page tables a change of `region` would have to allocate (none where they exist).
    fn tables_needed(&self, region: &MemoryRegion) -> usize {
        let mut needed = 0;
        // Walks stop at the first invalid descriptor of each chunk: a level-1 hole needs a
        // level-2 table plus a level-3 table per 2 MiB it spans, a level-2 hole one table.
        let _ = self
            .mapping
            .walk_range(region, &mut |chunk, descriptor, level| {
                if !descriptor.is_valid() {
                    needed += match level {
                        1 => 1 + blocks_spanned(chunk),
                        2 => 1,
                        _ => 0,
                    };
                }
                Ok(())
            });
        needed
    }

    /// Tables left in the pool.
    fn tables_free(&self) -> usize {
        TABLE_POOL_PAGES - self.tables_in_use()
    }

    /// Maps `range` with `flags` (valid), allocating the tables it needs.
    ///
    /// On a live map aarch64-paging invalidates every page it touches, one broadcast TLBI each.
    /// Entries that were all invalid need no TLB maintenance at all (invalid entries are never
    /// cached), only the stores made visible to the walkers: such a change is written as on an
    /// inactive map, then published once. Any other change goes through aarch64-paging's own
    /// checks and maintenance.
    fn map(&mut self, range: &Range<u64>, flags: El23Attributes) -> Result<(), El2MapError> {
        let region = region(range)?;
        if self.tables_needed(&region) > self.tables_free() {
            // Tables emptied by earlier unmaps are still allocated: give them back (with the
            // TLB maintenance a live map needs) and count again.
            self.mapping.compact_subtables();
            if self.tables_needed(&region) > self.tables_free() {
                return Err(El2MapError::OutOfTables);
            }
        }
        let pa = PhysicalAddress(range.start as usize);
        let constraints = Constraints::NO_BLOCK_MAPPINGS;
        if !(self.mapping.active() && self.all_unmapped(&region)) {
            return self
                .mapping
                .map_range(&region, pa, flags, constraints)
                .map_err(El2MapError::Paging);
        }
        // No valid entry is replaced (checked just above, with the caller's lock keeping
        // other changes out), so break-before-make has nothing to break.
        self.mapping.mark_inactive();
        let result = self.mapping.map_range(&region, pa, flags, constraints);
        self.mapping.mark_active();
        self.tlb.publish();
        result.map_err(El2MapError::Paging)
    }

    /// Makes every page of `range` invalid, allocating nothing: 2 MiB pieces without a
    /// level-3 table hold no mapping and are skipped. One page goes through aarch64-paging's
    /// own break-before-make (`TLBI VAE2IS`); more pages on a live map are written as on an
    /// inactive map, then invalidated with one `TLBI ALLE2IS` (as Linux's `flush_tlb_range`
    /// falls back to a full flush), before this returns.
    fn invalidate(&mut self, range: &Range<u64>) -> Result<(), El2MapError> {
        region(range)?;
        let batched = self.mapping.active() && range.end - range.start > PAGE_SIZE;
        if batched {
            self.mapping.mark_inactive();
        }
        let mut result = Ok(());
        let mut start = range.start;
        while start < range.end && result.is_ok() {
            let end = ((start | (L2_BLOCK as u64 - 1)) + 1).min(range.end);
            let piece = MemoryRegion::new(start as usize, end as usize);
            if self.tables_needed(&piece) == 0 {
                result = self.mapping.map_range(
                    &piece,
                    PhysicalAddress(0),
                    El23Attributes::empty(),
                    Constraints::NO_BLOCK_MAPPINGS,
                );
            }
            start = end;
        }
        if batched {
            // Until the invalidation completes other CPUs may still use the old entries, and
            // their walk caches may still point at a level-3 table aarch64-paging detached
            // and handed back to the pool (it does so when a piece covers a whole 2 MiB
            // block). Nothing reuses such a table before this invalidation completes: this
            // call allocates nothing, and the caller's lock keeps every other change out
            // until it returns. `TLBI ALLE2IS` drops cached walks as well as leaf entries.
            self.mapping.mark_active();
            self.tlb.invalidate_all();
        }
        result.map_err(El2MapError::Paging)
    }

    /// Whether no page of `region` is mapped.
    fn all_unmapped(&self, region: &MemoryRegion) -> bool {
        let mut any = false;
        let _ = self.mapping.walk_range(region, &mut |_, descriptor, _| {
            any |= descriptor.is_valid();
            Ok(())
        });
        !any
    }

    /// Maps one 4 KiB MMIO page as Device-nGnRE, read-write, never executable.
    pub fn map_device(&mut self, page: u64) -> Result<(), El2MapError> {
        self.map(&(page..page.saturating_add(PAGE_SIZE)), DEVICE)
    }

    /// Unmaps the MMIO page `page` (one page: break-before-make by aarch64-paging).
    pub fn unmap_device(&mut self, page: u64) -> Result<(), El2MapError> {
        self.check_host(&(page..page.saturating_add(PAGE_SIZE)))?;
        self.map(
            &(page..page.saturating_add(PAGE_SIZE)),
            El23Attributes::empty(),
        )
    }

    /// Maps host pages `range` as Normal write-back, never executable; writable or read-only.
    /// Refuses ranges that overlap the hypervisor's image.
    pub fn map_host(&mut self, range: &Range<u64>, writable: bool) -> Result<(), El2MapError> {
        self.check_host(range)?;
        self.map(range, if writable { DATA } else { RODATA })
    }

    fn check_host(&self, range: &Range<u64>) -> Result<(), El2MapError> {
        if range.start < self.image.end && self.image.start < range.end {
            return Err(El2MapError::BadRange(range.clone()));
        }
        Ok(())
    }

    /// Unmaps `range` (break-before-make: once this returns on a live map, no CPU's TLB holds
    /// a translation of it). Only for host pages: refuses ranges that overlap the image.
    /// Tables it leaves empty stay allocated until a later mapping needs them (it then
    /// compacts the tables first), so one trace's tables are free for the next wherever its
    /// pages lie. Unmapping never fails for lack of tables.
    pub fn unmap(&mut self, range: &Range<u64>) -> Result<(), El2MapError> {
        self.check_host(range)?;
        self.invalidate(range)
    }

    /// Physical address of the root table (for TTBR0_EL2).
    pub fn root_address(&self) -> u64 {
        self.mapping.root_address().0 as u64
    }

    /// Records that the tables are live on some CPU (from now on every change is made with
    /// TLB maintenance). Call once the first CPU turned its MMU on with them.
    pub fn mark_live(&self) {
        self.mapping.mark_active();
    }

    /// The register values that turn the MMU on with these tables (`pa_range` from
    /// `ID_AA64MMFR0_EL1`).
    pub fn mmu_config(&self, pa_range: u64) -> MmuConfig {
        MmuConfig {
            mair: MAIR,
            tcr: tcr_el2(pa_range),
            ttbr0: self.root_address(),
            sctlr: SCTLR_EL2_ON,
        }
    }

    /// What EL2 may do at `addr`, or `None` when it is unmapped.
    pub fn permissions(&self, addr: u64) -> Option<Permissions> {
        if addr >= 1 << VA_BITS {
            return None;
        }
        let flags = crate::table_pool::leaf_attributes(&self.mapping, addr)?;
        Some(Permissions {
            write: !flags.contains(El23Attributes::READ_ONLY),
            execute: !flags.contains(El23Attributes::XN),
            device: flags & El23Attributes::ATTRIBUTE_INDEX_MASK
                == El23Attributes::ATTRIBUTE_INDEX_0,
        })
    }

    /// Tables taken from the pool.
    pub fn tables_in_use(&self) -> usize {
        self.mapping.translation().in_use()
    }
}

/// Exception class: instruction abort taken without a change of exception level.
const EC_INSN_ABORT_SAME: u8 = 0x21;

/// Why an EL2 abort happened, in the words a fault report uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum El2Fault {
    /// An access to the guard page below CPU `cpu`'s stack (or, `emergency`, below its
    /// emergency stack).
    StackOverflow {
        /// The CPU whose stack overflowed.
        cpu: usize,
        /// Whether it was the emergency stack.
        emergency: bool,
    },
    /// A permission fault: a write to read-only memory or a fetch from never-executable memory.
    Permission {
        /// What was attempted.
        access: Access,
        /// The faulting address.
        addr: u64,
        /// The part of the image it is in, if any.
        part: Option<ImagePart>,
    },
    /// A translation fault: nothing is mapped there (e.g. a host page not shared).
    Unmapped {
        /// What was attempted.
        access: Access,
        /// The faulting address.
        addr: u64,
    },
    /// An alignment fault (SCTLR_EL2.A).
    Alignment {
        /// The faulting address.
        addr: u64,
    },
}

/// The kind of access that faulted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// A data read.
    Read,
    /// A data write.
    Write,
    /// An instruction fetch.
    Fetch,
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Read => "read",
            Self::Write => "write",
            Self::Fetch => "instruction fetch",
        })
    }
}

impl El2Fault {
    /// Classifies an abort taken at EL2 from EL2 (`esr`: ESR_EL2, `far`: FAR_EL2), or `None`
    /// for any other exception or a fault status this does not name.
    pub fn classify(esr: u64, far: u64, image: &ImageLayout) -> Option<Self> {
        let ec = ((esr >> 26) & 0x3f) as u8;
        let fsc = esr & 0x3f;
        let access = match ec {
            crate::esr::EC_DATA_ABORT_SAME if esr & (1 << 6) != 0 => Access::Write,
            crate::esr::EC_DATA_ABORT_SAME => Access::Read,
            EC_INSN_ABORT_SAME => Access::Fetch,
            _ => return None,
        };
        // FAR is valid for these fault statuses (ESR.FnV is only set for external aborts).
        match image.part_of(far) {
            Some(ImagePart::StackGuard(cpu)) => {
                return Some(Self::StackOverflow {
                    cpu,
                    emergency: false,
                })
            }
            Some(ImagePart::EmergencyStackGuard(cpu)) => {
                return Some(Self::StackOverflow {
                    cpu,
                    emergency: true,
                })
            }
            _ => {}
        }
        match fsc {
            // Translation fault, level 0..3.
            0b00_0100..=0b00_0111 => Some(Self::Unmapped { access, addr: far }),
            // Permission fault, level 0..3.
            0b00_1100..=0b00_1111 => Some(Self::Permission {
                access,
                addr: far,
                part: image.part_of(far),
            }),
            0b10_0001 => Some(Self::Alignment { addr: far }),
            _ => None,
        }
    }
}

impl fmt::Display for El2Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::StackOverflow {
                cpu,
                emergency: false,
            } => write!(f, "stack overflow on CPU {cpu}"),
            Self::StackOverflow {
                cpu,
                emergency: true,
            } => write!(f, "emergency stack overflow on CPU {cpu}"),
            Self::Permission {
                access,
                addr,
                part: Some(part),
            } => {
                write!(f, "permission fault: {access} at {addr:#x} in {part}")
            }
            Self::Permission {
                access,
                addr,
                part: None,
            } => {
                write!(f, "permission fault: {access} at {addr:#x}")
            }
            Self::Unmapped { access, addr } => write!(
                f,
                "translation fault: {access} at {addr:#x}, which the hypervisor does not map"
            ),
            Self::Alignment { addr } => write!(f, "alignment fault at {addr:#x}"),
        }
    }
}

#[cfg(test)]
mod tests;
