//! `ring_buffer_pack` / `trace_buffer_pack`: the host's description of its per-CPU pages.
//!
//! ```text
//! trace_buffer_pack (16-byte header)      ring_buffer_pack (24-byte header + 8 * nr_pages)
//!  0  u32 nr_cpus                          0  u32 cpu
//!  4  u32 padding                          4  u32 padding
//!  8  u64 total_pages                      8  u64 reader_page_va
//! 16  ring_buffer_pack[nr_cpus] ...       16  u64 nr_pages      (ring pages, reader excluded)
//!                                         24  u64 page_va[nr_pages]  (ring order)
//! ```
//!
//! `total_pages` counts **every** page of every CPU, the reader pages included:
//! `total_pages = sum over CPUs of (nr_pages + 1)`.
//!
//! [`TraceBufferPack::parse`] checks structure only (counts, CPU numbers, sizes) and never
//! reads outside the slice or overflows: counts are compared by division against the bytes
//! left. Whether the page addresses are acceptable memory is the hypervisor's business. It
//! must parse a copy (or memory the host can no longer write), never live host memory.
//!
//! [`PackBuilder`] is the host side: size and serialize a pack into a caller-supplied buffer.

use super::HypError;
use core::fmt;
use core::mem::{offset_of, size_of};

/// Size of the `trace_buffer_pack` header.
pub const TRACE_PACK_HEADER_SIZE: usize = 16;
/// Size of the `ring_buffer_pack` header.
pub const RING_PACK_HEADER_SIZE: usize = 24;
/// Size of one `page_va` entry.
pub const PAGE_VA_SIZE: usize = 8;
/// Smallest number of ring pages per CPU (reader page excluded).
pub const MIN_RING_PAGES: u64 = 2;
/// Largest `max_cpus` the parser supports (size of its duplicate bitmap).
pub const MAX_PACK_CPUS: usize = 256;

/// Wire layout of the `trace_buffer_pack` header.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TraceBufferPackHeader {
    /// Number of per-CPU packs that follow.
    pub nr_cpus: u32,
    /// Padding, written as zero, ignored.
    pub pad: u32,
    /// All pages of all CPUs, reader pages included.
    pub total_pages: u64,
}

/// Wire layout of the `ring_buffer_pack` header (the `page_va` array follows).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RingBufferPackHeader {
    /// CPU number (a C `int`; validated as unsigned).
    pub cpu: u32,
    /// Padding, written as zero, ignored.
    pub pad: u32,
    /// Host address of the initial reader page.
    pub reader_page_va: u64,
    /// Number of ring pages (the reader page excluded).
    pub nr_pages: u64,
}

const _: () = {
    assert!(size_of::<TraceBufferPackHeader>() == TRACE_PACK_HEADER_SIZE);
    assert!(offset_of!(TraceBufferPackHeader, nr_cpus) == 0);
    assert!(offset_of!(TraceBufferPackHeader, total_pages) == 8);
    assert!(size_of::<RingBufferPackHeader>() == RING_PACK_HEADER_SIZE);
    assert!(offset_of!(RingBufferPackHeader, cpu) == 0);
    assert!(offset_of!(RingBufferPackHeader, reader_page_va) == 8);
    assert!(offset_of!(RingBufferPackHeader, nr_pages) == 16);
};

/// Why a pack was rejected. Converts into the matching [`HypError`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PackError {
    /// A header or page array runs past the end, or non-zero bytes follow the last record.
    Truncated,
    /// `nr_cpus` is 0 or above `max_cpus`.
    CpuCount,
    /// A CPU number is out of range or appears twice.
    Cpu,
    /// A CPU has fewer than two ring pages, or page counts overflow.
    PageCount,
    /// `total_pages` differs from the sum of `nr_pages + 1`.
    TotalPages,
}

impl PackError {
    /// Short description for humans.
    pub const fn description(self) -> &'static str {
        match self {
            Self::Truncated => "a record runs past the end, or non-zero bytes follow the last",
            Self::CpuCount => "nr_cpus is zero or above the CPU count",
            Self::Cpu => "a CPU number is out of range or appears twice",
            Self::PageCount => "a CPU has fewer than two ring pages, or page counts overflow",
            Self::TotalPages => "total_pages differs from the pages described",
        }
    }
}

impl fmt::Display for PackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.description())
    }
}

impl core::error::Error for PackError {}

impl From<PackError> for HypError {
    fn from(e: PackError) -> Self {
        match e {
            PackError::Truncated => HypError::PackTruncated,
            PackError::CpuCount => HypError::PackCpuCount,
            PackError::Cpu => HypError::PackCpu,
            PackError::PageCount => HypError::PackPageCount,
            PackError::TotalPages => HypError::PackTotalPages,
        }
    }
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

fn read_u64(bytes: &[u8], at: usize) -> Option<u64> {
    let b = bytes.get(at..at.checked_add(8)?)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    Some(u64::from_le_bytes(a))
}

/// A validated `trace_buffer_pack` borrowed from a byte slice.
#[derive(Clone, Copy, Debug)]
pub struct TraceBufferPack<'a> {
    nr_cpus: u32,
    total_pages: u64,
    /// The per-CPU records, exactly (no trailing bytes).
    records: &'a [u8],
}

impl<'a> TraceBufferPack<'a> {
    /// Parses and validates `bytes` (the pack proper, starting at `nr_cpus`).
    ///
    /// Rules: `1 <= nr_cpus <= max_cpus`; each CPU record fits in what is left; `cpu <
    /// max_cpus` and no CPU twice (so any subset of the hypervisor's CPUs, e.g. CPUs 0 and 3
    /// of 4 on a host with CPUs offline, as Android's gen-1 hypervisor accepts);
    /// `nr_pages >= 2`; `total_pages == sum(nr_pages + 1)`; bytes after the last record
    /// (page-size padding) must be zero. `max_cpus` above [`MAX_PACK_CPUS`] is treated as
    /// [`MAX_PACK_CPUS`].
    ///
    /// # Errors
    /// The [`PackError`] of the first rule broken: [`PackError::CpuCount`],
    /// [`PackError::Truncated`], [`PackError::Cpu`], [`PackError::PageCount`] or
    /// [`PackError::TotalPages`].
    pub fn parse(bytes: &'a [u8], max_cpus: usize) -> Result<Self, PackError> {
        let nr_cpus = read_u32(bytes, 0).ok_or(PackError::Truncated)?;
        let total_pages = read_u64(bytes, 8).ok_or(PackError::Truncated)?;
        let max_cpus = max_cpus.min(MAX_PACK_CPUS);
        if nr_cpus == 0 || nr_cpus as usize > max_cpus {
            return Err(PackError::CpuCount);
        }
        let body = &bytes[TRACE_PACK_HEADER_SIZE..];
        let mut seen = [0u64; MAX_PACK_CPUS / 64];
        let mut at = 0usize;
        let mut sum: u64 = 0;
        for _ in 0..nr_cpus {
            let rest = &body[at..];
            if rest.len() < RING_PACK_HEADER_SIZE {
                return Err(PackError::Truncated);
            }
            let cpu = read_u32(rest, 0).ok_or(PackError::Truncated)?;
            let nr_pages = read_u64(rest, 16).ok_or(PackError::Truncated)?;
            if cpu as usize >= max_cpus {
                return Err(PackError::Cpu);
            }
            let (word, bit) = (cpu as usize / 64, cpu % 64);
            if seen[word] & (1 << bit) != 0 {
                return Err(PackError::Cpu);
            }
            seen[word] |= 1 << bit;
            if nr_pages < MIN_RING_PAGES {
                return Err(PackError::PageCount);
            }
            // Division, not multiplication: nr_pages may be anything up to u64::MAX.
            let room = ((rest.len() - RING_PACK_HEADER_SIZE) / PAGE_VA_SIZE) as u64;
            if nr_pages > room {
                return Err(PackError::Truncated);
            }
            // nr_pages <= room < usize::MAX / 8, so this cannot overflow.
            at += RING_PACK_HEADER_SIZE + nr_pages as usize * PAGE_VA_SIZE;
            sum = sum
                .checked_add(nr_pages)
                .and_then(|s| s.checked_add(1))
                .ok_or(PackError::PageCount)?;
        }
        if body[at..].iter().any(|&b| b != 0) {
            return Err(PackError::Truncated);
        }
        if sum != total_pages {
            return Err(PackError::TotalPages);
        }
        Ok(Self {
            nr_cpus,
            total_pages,
            records: &body[..at],
        })
    }

    /// Number of CPUs described.
    pub fn nr_cpus(&self) -> u32 {
        self.nr_cpus
    }

    /// All pages of all CPUs, reader pages included.
    pub fn total_pages(&self) -> u64 {
        self.total_pages
    }

    /// Size in bytes of the pack proper (headers and page arrays, without padding).
    pub fn len(&self) -> usize {
        TRACE_PACK_HEADER_SIZE + self.records.len()
    }

    /// Always false: a valid pack describes at least one CPU.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The per-CPU packs, in the order they appear.
    pub fn cpus(&self) -> CpuPacks<'a> {
        CpuPacks { rest: self.records }
    }
}

/// Iterator over the `ring_buffer_pack`s of a validated pack.
#[derive(Clone, Debug)]
pub struct CpuPacks<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for CpuPacks<'a> {
    type Item = RingBufferPack<'a>;

    fn next(&mut self) -> Option<Self::Item> {
        let cpu = read_u32(self.rest, 0)?;
        let reader_page_va = read_u64(self.rest, 8)?;
        let nr_pages = read_u64(self.rest, 16)?;
        let room = (self.rest.len() - RING_PACK_HEADER_SIZE) / PAGE_VA_SIZE;
        // Already validated by parse; re-checked so the iterator is safe on its own.
        let nr = usize::try_from(nr_pages).ok().filter(|&n| n <= room)?;
        let end = RING_PACK_HEADER_SIZE + nr * PAGE_VA_SIZE;
        let pages = &self.rest[RING_PACK_HEADER_SIZE..end];
        self.rest = &self.rest[end..];
        Some(RingBufferPack {
            cpu,
            reader_page_va,
            pages,
        })
    }
}

/// One CPU's `ring_buffer_pack`, borrowed from a validated pack.
#[derive(Clone, Copy, Debug)]
pub struct RingBufferPack<'a> {
    /// CPU number (below the hypervisor's CPU count; any subset of the CPUs may be listed).
    pub cpu: u32,
    /// Host address of the initial reader page.
    pub reader_page_va: u64,
    pages: &'a [u8],
}

impl<'a> RingBufferPack<'a> {
    /// Number of ring pages (reader page excluded).
    pub fn nr_pages(&self) -> usize {
        self.pages.len() / PAGE_VA_SIZE
    }

    /// Host address of ring page `i`, in ring order.
    pub fn page_va(&self, i: usize) -> Option<u64> {
        read_u64(self.pages, i.checked_mul(PAGE_VA_SIZE)?)
    }

    /// Host addresses of the ring pages, in ring order.
    pub fn page_vas(&self) -> impl ExactSizeIterator<Item = u64> + 'a {
        self.pages.chunks_exact(PAGE_VA_SIZE).map(|c| {
            let mut a = [0u8; 8];
            a.copy_from_slice(c);
            u64::from_le_bytes(a)
        })
    }
}

/// One CPU's pages, as the host describes them to [`PackBuilder`].
#[derive(Clone, Copy, Debug)]
pub struct CpuPages<'a> {
    /// CPU number.
    pub cpu: u32,
    /// Address of the initial reader page.
    pub reader_page_va: u64,
    /// Addresses of the ring pages, in ring order.
    pub page_vas: &'a [u64],
}

/// Host-side serializer of a `trace_buffer_pack`.
#[derive(Clone, Copy, Debug)]
pub struct PackBuilder<'a> {
    cpus: &'a [CpuPages<'a>],
}

impl<'a> PackBuilder<'a> {
    /// A builder for these CPUs (serialized in slice order).
    pub fn new(cpus: &'a [CpuPages<'a>]) -> Self {
        Self { cpus }
    }

    /// Bytes the pack needs (without page-size padding); `None` on overflow.
    pub fn size(&self) -> Option<usize> {
        self.cpus.iter().try_fold(TRACE_PACK_HEADER_SIZE, |acc, c| {
            c.page_vas
                .len()
                .checked_mul(PAGE_VA_SIZE)?
                .checked_add(RING_PACK_HEADER_SIZE)?
                .checked_add(acc)
        })
    }

    /// `total_pages` as the parser expects it: sum of `nr_pages + 1`.
    pub fn total_pages(&self) -> u64 {
        self.cpus.iter().map(|c| c.page_vas.len() as u64 + 1).sum()
    }

    /// Serializes into `out` and returns the bytes written. Bytes of `out` after them are
    /// zeroed, so a page-sized buffer is a ready-to-send pack.
    ///
    /// # Errors
    /// [`PackError::PageCount`] when the sizes overflow, [`PackError::CpuCount`] for more
    /// CPUs than a `u32` counts, [`PackError::Truncated`] when `out` is too short (nothing is
    /// written then).
    pub fn write(&self, out: &mut [u8]) -> Result<usize, PackError> {
        let size = self.size().ok_or(PackError::PageCount)?;
        if out.len() < size {
            return Err(PackError::Truncated);
        }
        let nr_cpus = u32::try_from(self.cpus.len()).map_err(|_| PackError::CpuCount)?;
        out[0..4].copy_from_slice(&nr_cpus.to_le_bytes());
        out[4..8].fill(0);
        out[8..16].copy_from_slice(&self.total_pages().to_le_bytes());
        let mut at = TRACE_PACK_HEADER_SIZE;
        for c in self.cpus {
            out[at..at + 4].copy_from_slice(&c.cpu.to_le_bytes());
            out[at + 4..at + 8].fill(0);
            out[at + 8..at + 16].copy_from_slice(&c.reader_page_va.to_le_bytes());
            out[at + 16..at + 24].copy_from_slice(&(c.page_vas.len() as u64).to_le_bytes());
            at += RING_PACK_HEADER_SIZE;
            for va in c.page_vas {
                out[at..at + 8].copy_from_slice(&va.to_le_bytes());
                at += PAGE_VA_SIZE;
            }
        }
        out[at..].fill(0);
        Ok(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn build(cpus: &[CpuPages<'_>], pad_to: usize) -> Vec<u8> {
        let b = PackBuilder::new(cpus);
        let mut out = vec![0xAAu8; b.size().unwrap().max(pad_to)];
        b.write(&mut out).unwrap();
        out
    }

    fn two_cpus() -> Vec<u8> {
        build(
            &[
                CpuPages {
                    cpu: 1,
                    reader_page_va: 0x9000,
                    page_vas: &[0xa000, 0xb000, 0xc000],
                },
                CpuPages {
                    cpu: 0,
                    reader_page_va: 0x1000,
                    page_vas: &[0x2000, 0x3000],
                },
            ],
            0,
        )
    }

    #[test]
    fn layout_bytes_are_exact() {
        let p = two_cpus();
        assert_eq!(p.len(), 16 + 24 + 3 * 8 + 24 + 2 * 8);
        assert_eq!(&p[0..8], &[2, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(u64::from_le_bytes(p[8..16].try_into().unwrap()), 7);
        assert_eq!(&p[16..20], &[1, 0, 0, 0]);
        assert_eq!(u64::from_le_bytes(p[24..32].try_into().unwrap()), 0x9000);
        assert_eq!(u64::from_le_bytes(p[32..40].try_into().unwrap()), 3);
        assert_eq!(u64::from_le_bytes(p[40..48].try_into().unwrap()), 0xa000);
    }

    #[test]
    fn parse_round_trips_and_accepts_zero_padding() {
        let mut p = two_cpus();
        let exact = p.len();
        p.resize(4096, 0);
        let pack = TraceBufferPack::parse(&p, 8).unwrap();
        assert_eq!(pack.nr_cpus(), 2);
        assert_eq!(pack.total_pages(), 7);
        assert_eq!(pack.len(), exact);
        let cpus: Vec<_> = pack.cpus().collect();
        assert_eq!(cpus.len(), 2);
        assert_eq!(cpus[0].cpu, 1);
        assert_eq!(cpus[0].nr_pages(), 3);
        assert_eq!(cpus[0].page_va(2), Some(0xc000));
        assert_eq!(cpus[0].page_va(3), None);
        assert_eq!(cpus[0].page_va(usize::MAX), None);
        assert_eq!(cpus[1].reader_page_va, 0x1000);
        assert_eq!(cpus[1].page_vas().collect::<Vec<_>>(), vec![0x2000, 0x3000]);
    }

    #[test]
    fn errors_convert_to_wire_codes() {
        assert_eq!(
            HypError::from(PackError::Truncated),
            HypError::PackTruncated
        );
        assert_eq!(HypError::from(PackError::CpuCount), HypError::PackCpuCount);
        assert_eq!(HypError::from(PackError::Cpu), HypError::PackCpu);
        assert_eq!(
            HypError::from(PackError::PageCount),
            HypError::PackPageCount
        );
        assert_eq!(
            HypError::from(PackError::TotalPages),
            HypError::PackTotalPages
        );
    }

    fn set_u32(p: &mut [u8], at: usize, v: u32) {
        p[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }
    fn set_u64(p: &mut [u8], at: usize, v: u64) {
        p[at..at + 8].copy_from_slice(&v.to_le_bytes());
    }

    #[test]
    fn any_subset_of_the_cpus_is_accepted() {
        // CPUs 0 and 3 of 4, in any order: a host with CPUs 1 and 2 offline.
        let ring = [0x2000, 0x3000];
        for order in [[0u32, 3], [3, 0]] {
            let cpus = order.map(|cpu| CpuPages {
                cpu,
                reader_page_va: 0x1000,
                page_vas: &ring,
            });
            let p = build(&cpus, 0);
            let pack = TraceBufferPack::parse(&p, 4).unwrap();
            assert_eq!(pack.nr_cpus(), 2);
            let got: Vec<u32> = pack.cpus().map(|c| c.cpu).collect();
            assert_eq!(got, order);
            // CPU 3 does not exist on a three-CPU hypervisor.
            assert_eq!(
                TraceBufferPack::parse(&p, 3).map(|_| ()),
                Err(PackError::Cpu)
            );
        }
    }

    #[test]
    fn every_error_path() {
        let good = two_cpus();
        let parse = |p: &[u8], max| TraceBufferPack::parse(p, max).map(|_| ());
        assert_eq!(parse(&good, 2), Ok(()));
        // Too short for the header.
        assert_eq!(parse(&good[..15], 8), Err(PackError::Truncated));
        assert_eq!(parse(&[], 8), Err(PackError::Truncated));
        // nr_cpus 0, above max_cpus, negative as an int.
        let mut p = good.clone();
        set_u32(&mut p, 0, 0);
        assert_eq!(parse(&p, 8), Err(PackError::CpuCount));
        assert_eq!(parse(&good, 1), Err(PackError::CpuCount));
        set_u32(&mut p, 0, u32::MAX);
        assert_eq!(parse(&p, usize::MAX), Err(PackError::CpuCount));
        // CPU out of range (including a negative int) and duplicate. A CPU number at or above
        // nr_cpus is fine while it is below max_cpus (a subset of the CPUs).
        let mut p = good.clone();
        set_u32(&mut p, 16, 2);
        assert_eq!(parse(&p, 3), Ok(()));
        assert_eq!(parse(&p, 2), Err(PackError::Cpu));
        set_u32(&mut p, 16, 8);
        assert_eq!(parse(&p, 8), Err(PackError::Cpu));
        set_u32(&mut p, 16, -1i32 as u32);
        assert_eq!(parse(&p, 8), Err(PackError::Cpu));
        set_u32(&mut p, 16, 0);
        assert_eq!(parse(&p, 8), Err(PackError::Cpu));
        // Fewer than two pages.
        let one = build(
            &[CpuPages {
                cpu: 0,
                reader_page_va: 0,
                page_vas: &[0x1000],
            }],
            0,
        );
        assert_eq!(parse(&one, 8), Err(PackError::PageCount));
        // nr_pages larger than the bytes left, including huge values.
        let mut p = good.clone();
        set_u64(&mut p, 32, 6);
        // The first CPU now swallows most of the second, whose header no longer fits.
        assert_eq!(parse(&p, 8), Err(PackError::Truncated));
        set_u64(&mut p, 32, u64::MAX);
        assert_eq!(parse(&p, 8), Err(PackError::Truncated));
        set_u64(&mut p, 32, u64::MAX / 8 + 1);
        assert_eq!(parse(&p, 8), Err(PackError::Truncated));
        // A record cut short.
        assert_eq!(parse(&good[..good.len() - 8], 8), Err(PackError::Truncated));
        assert_eq!(parse(&good[..16 + 20], 8), Err(PackError::Truncated));
        // Trailing garbage.
        let mut p = good.clone();
        p.push(1);
        assert_eq!(parse(&p, 8), Err(PackError::Truncated));
        // total_pages: the reader pages count.
        let mut p = good.clone();
        set_u64(&mut p, 8, 5);
        assert_eq!(parse(&p, 8), Err(PackError::TotalPages));
        set_u64(&mut p, 8, 8);
        assert_eq!(parse(&p, 8), Err(PackError::TotalPages));
    }

    #[test]
    fn builder_refuses_short_buffer() {
        let cpus = [CpuPages {
            cpu: 0,
            reader_page_va: 0,
            page_vas: &[1, 2],
        }];
        let b = PackBuilder::new(&cpus);
        let mut out = [0u8; 55];
        assert_eq!(b.write(&mut out), Err(PackError::Truncated));
        let mut out = [0xffu8; 64];
        assert_eq!(b.write(&mut out), Ok(56));
        assert!(out[56..].iter().all(|&b| b == 0));
    }

    proptest! {
        #[test]
        fn parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600),
                               max in 0usize..300) {
            if let Ok(pack) = TraceBufferPack::parse(&bytes, max) {
                let mut sum = 0u64;
                let mut n = 0;
                let mut seen = std::collections::BTreeSet::new();
                for c in pack.cpus() {
                    prop_assert!((c.cpu as usize) < max.min(MAX_PACK_CPUS));
                    prop_assert!(seen.insert(c.cpu), "CPU {} twice", c.cpu);
                    prop_assert!(c.nr_pages() >= 2);
                    sum += c.nr_pages() as u64 + 1;
                    n += 1;
                }
                prop_assert_eq!(n, pack.nr_cpus());
                prop_assert_eq!(sum, pack.total_pages());
            }
        }

        #[test]
        fn parser_survives_mutated_packs(
            nr in proptest::collection::vec(2usize..6, 1..5),
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
            cut in any::<usize>(),
        ) {
            let vas: Vec<Vec<u64>> = nr.iter().enumerate()
                .map(|(c, &n)| (0..n as u64).map(|i| (c as u64) << 32 | i << 12).collect())
                .collect();
            let cpus: Vec<CpuPages<'_>> = vas.iter().enumerate().map(|(c, v)| CpuPages {
                cpu: (nr.len() - 1 - c) as u32, reader_page_va: 0x1000 * c as u64, page_vas: v,
            }).collect();
            let mut p = build(&cpus, 0);
            let pack = TraceBufferPack::parse(&p, nr.len()).unwrap();
            let back: Vec<_> = pack.cpus().collect();
            prop_assert_eq!(back.len(), cpus.len());
            for (b, c) in back.iter().zip(&cpus) {
                prop_assert_eq!(b.cpu, c.cpu);
                prop_assert_eq!(b.reader_page_va, c.reader_page_va);
                prop_assert_eq!(b.page_vas().collect::<Vec<_>>(), c.page_vas.to_vec());
            }
            for (at, v) in flips {
                let len = p.len();
                p[at % len] ^= v;
            }
            let cut = cut % (p.len() + 1);
            let _ = TraceBufferPack::parse(&p[..cut], nr.len());
            let _ = TraceBufferPack::parse(&p, MAX_PACK_CPUS + 5);
        }
    }
}
