//! The host's ring buffer for an external writer: `ring_buffer_alloc_ext` and
//! `trace_buffer_pack`.
//!
//! [`ExtBuffer::alloc`] takes per-CPU pages from the [`PagePool`] (a reader page and at least
//! two ring pages per CPU) and [`ExtBuffer::pack`] serialises them into the
//! `trace_buffer_pack` the hypervisor loads. From then on the hypervisor is the buffer's only
//! writer: the host may read it (through [`crate::reader`]) but every operation that would
//! write, resize or take pages out of it is refused with [`ExtError::ExternalWriter`].

use alloc::vec::Vec;

use hyptrace_abi::pack::{CpuPages, PackBuilder, PackError};
use hyptrace_abi::page::DATA_SIZE;

use crate::page_pool::{PagePool, PoolError, PAGE_SIZE};

/// Why a buffer operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExtError {
    /// The buffer has an external writer: the host may not write, resize it or extract its
    /// pages.
    ExternalWriter,
    /// The page pool ran out.
    OutOfPages,
    /// No CPU, or a size of zero.
    InvalidSize,
    /// The pack could not be serialised.
    Pack(PackError),
}

impl From<PoolError> for ExtError {
    fn from(_: PoolError) -> Self {
        Self::OutOfPages
    }
}

/// One CPU's pages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpuBuffer {
    /// CPU number.
    pub cpu: u32,
    /// Initial reader page.
    pub reader_page: u64,
    /// Ring pages, in ring order.
    pub ring_pages: Vec<u64>,
}

/// A per-CPU ring buffer whose writer is the hypervisor.
#[derive(Debug)]
pub struct ExtBuffer {
    cpus: Vec<CpuBuffer>,
}

/// Ring pages for `size` bytes of event data per CPU: enough pages of 4048 data bytes, and
/// at least two (the head-page protocol needs a head distinct from the tail).
pub fn ring_pages_for(size: usize) -> usize {
    size.div_ceil(DATA_SIZE).max(2)
}

impl ExtBuffer {
    /// `ring_buffer_alloc_ext`: pages for CPUs `0..nr_cpus` with `size` bytes of data each.
    /// On failure every page taken so far goes back to the pool.
    pub fn alloc(pool: &mut PagePool, size: usize, nr_cpus: usize) -> Result<Self, ExtError> {
        let cpus: Vec<u32> = (0..nr_cpus as u32).collect();
        Self::alloc_cpus(pool, size, &cpus)
    }

    /// Pages for the CPUs `cpus` only (a host with CPUs offline), in that order, with `size`
    /// bytes of data each. On failure every page taken so far goes back to the pool.
    pub fn alloc_cpus(pool: &mut PagePool, size: usize, cpus: &[u32]) -> Result<Self, ExtError> {
        if size == 0 || cpus.is_empty() {
            return Err(ExtError::InvalidSize);
        }
        let per_cpu = ring_pages_for(size) + 1;
        if per_cpu.saturating_mul(cpus.len()) > pool.free_pages() {
            return Err(ExtError::OutOfPages);
        }
        let mut buffer = Self { cpus: Vec::new() };
        for &cpu in cpus {
            let mut pages = Vec::with_capacity(per_cpu);
            for _ in 0..per_cpu {
                match pool.alloc() {
                    Ok(p) => pages.push(p),
                    Err(e) => {
                        pages.into_iter().for_each(|p| {
                            let _ = pool.free(p);
                        });
                        buffer.free(pool);
                        return Err(e.into());
                    }
                }
            }
            let reader_page = pages.remove(0);
            buffer.cpus.push(CpuBuffer {
                cpu,
                reader_page,
                ring_pages: pages,
            });
        }
        Ok(buffer)
    }

    /// The per-CPU pages.
    pub fn cpus(&self) -> &[CpuBuffer] {
        &self.cpus
    }

    /// Every page of the buffer (reader and ring pages of all CPUs).
    pub fn pages(&self) -> impl Iterator<Item = u64> + '_ {
        self.cpus
            .iter()
            .flat_map(|c| core::iter::once(c.reader_page).chain(c.ring_pages.iter().copied()))
    }

    /// Bytes of the serialised pack, rounded up to whole pages (what `load_tracing` takes).
    pub fn pack_size(&self) -> usize {
        let vas = self.page_lists();
        let descs = self.descs(&vas);
        PackBuilder::new(&descs)
            .size()
            .map_or(usize::MAX, |s| s.next_multiple_of(PAGE_SIZE as usize))
    }

    fn page_lists(&self) -> Vec<&[u64]> {
        self.cpus.iter().map(|c| c.ring_pages.as_slice()).collect()
    }

    fn descs<'a>(&self, vas: &'a [&'a [u64]]) -> Vec<CpuPages<'a>> {
        self.cpus
            .iter()
            .zip(vas)
            .map(|(c, page_vas)| CpuPages {
                cpu: c.cpu,
                reader_page_va: c.reader_page,
                page_vas,
            })
            .collect()
    }

    /// `trace_buffer_pack`: serialises the buffer into `out` (zero-padded); returns the bytes
    /// written before the padding.
    pub fn pack(&self, out: &mut [u8]) -> Result<usize, ExtError> {
        let vas = self.page_lists();
        let descs = self.descs(&vas);
        out.fill(0);
        PackBuilder::new(&descs).write(out).map_err(ExtError::Pack)
    }

    /// Host writes are refused: the hypervisor is the only writer.
    pub fn write(&mut self, _cpu: u32, _payload: &[u8]) -> Result<(), ExtError> {
        Err(ExtError::ExternalWriter)
    }

    /// Resizing is refused: the hypervisor holds the page list.
    pub fn resize(&mut self, _size: usize) -> Result<(), ExtError> {
        Err(ExtError::ExternalWriter)
    }

    /// Taking a page out of the buffer (as a splice or `ring_buffer_read_page` would) is
    /// refused: pages move only by the hypervisor's reader-page swap.
    pub fn extract_page(&mut self, _cpu: u32) -> Result<u64, ExtError> {
        Err(ExtError::ExternalWriter)
    }

    /// Returns every page to the pool (after `teardown_tracing`).
    pub fn free(self, pool: &mut PagePool) {
        for page in self.pages() {
            // Every page came from this pool.
            let _ = pool.free(page);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyptrace_abi::pack::TraceBufferPack;

    #[test]
    fn sizes_follow_the_data_per_page() {
        assert_eq!(ring_pages_for(1), 2);
        assert_eq!(ring_pages_for(7 * 1024), 2, "pKVM's default 7 KiB");
        assert_eq!(ring_pages_for(3 * DATA_SIZE), 3);
        assert_eq!(ring_pages_for(64 * 1024), 17);
    }

    #[test]
    fn alloc_pack_and_parse_back() {
        let mut pool = PagePool::new(0x4200_0000..0x4300_0000);
        let free = pool.free_pages();
        let buf = ExtBuffer::alloc(&mut pool, 3 * DATA_SIZE, 4).unwrap();
        assert_eq!(free - pool.free_pages(), 4 * 4);
        let mut bytes = vec![0xffu8; buf.pack_size()];
        assert_eq!(bytes.len(), 4096);
        buf.pack(&mut bytes).unwrap();
        let pack = TraceBufferPack::parse(&bytes, 4).unwrap();
        assert_eq!(pack.nr_cpus(), 4);
        assert_eq!(pack.total_pages(), 16);
        for (parsed, mine) in pack.cpus().zip(buf.cpus()) {
            assert_eq!(parsed.cpu, mine.cpu);
            assert_eq!(parsed.reader_page_va, mine.reader_page);
            assert_eq!(parsed.page_vas().collect::<Vec<_>>(), mine.ring_pages);
        }
        let mut all: Vec<u64> = buf.pages().collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 16, "no page twice");
        buf.free(&mut pool);
        assert_eq!(pool.free_pages(), free);
    }

    #[test]
    fn host_writes_resizes_and_extraction_are_refused() {
        let mut pool = PagePool::new(0x4200_0000..0x4210_0000);
        let mut buf = ExtBuffer::alloc(&mut pool, 1, 1).unwrap();
        assert_eq!(buf.write(0, b"x"), Err(ExtError::ExternalWriter));
        assert_eq!(buf.resize(1 << 20), Err(ExtError::ExternalWriter));
        assert_eq!(buf.extract_page(0), Err(ExtError::ExternalWriter));
    }

    #[test]
    fn exhaustion_returns_every_page() {
        let mut pool = PagePool::new(0x4200_0000..0x4200_a000); // 10 pages
        assert_eq!(
            ExtBuffer::alloc(&mut pool, 3 * DATA_SIZE, 3).unwrap_err(),
            ExtError::OutOfPages
        );
        assert_eq!(pool.free_pages(), 10);
        assert_eq!(
            ExtBuffer::alloc(&mut pool, 0, 1).unwrap_err(),
            ExtError::InvalidSize
        );
    }
}
