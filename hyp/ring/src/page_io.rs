//! Access to the shared data pages: write-only from the writer's point of view.
//!
//! Nothing here ever reads page memory: the ring's control state lives in hypervisor memory
//! and the pages are data only. [`PageRef`] is the only place that turns a page pointer into
//! a reference. Under `--cfg loom` a "page" is a [`LoomPage`] whose header and footer are loom
//! atomics and whose data words are loom cells, so the model checker sees every access (a
//! reader touching a word the writer has not published yet is reported as a data race).

#[cfg(not(loom))]
pub(crate) use real::PageRef;

#[cfg(not(loom))]
mod real {
    use hyptrace_abi::page::{PageFooter, PageHeader, DATA_SIZE, FOOTER_OFFSET, HEADER_SIZE};

    // `write_aligned`'s word stores rely on the data area starting word-aligned.
    const _: () = assert!(HEADER_SIZE.is_multiple_of(4));

    /// Longest copy `write_aligned` makes in word stores.
    pub(crate) const WORD_COPY_MAX: usize = 64;

    /// A page of the ring: a pointer (with the provenance `load` was given) to it.
    #[derive(Clone, Copy, Debug)]
    pub(crate) struct PageRef(*mut u8);

    impl PageRef {
        /// # Safety
        /// `page` must point to a 4096-aligned page that is valid for reads and writes, is
        /// not used as any Rust object other than through [`PageHeader`] / [`PageFooter`]
        /// atomics and raw writes, and stays so while the ring is loaded.
        #[inline(always)]
        pub(crate) unsafe fn new(page: *mut u8) -> Self {
            Self(page)
        }

        #[inline(always)]
        pub(crate) fn header(&self) -> &PageHeader {
            // SAFETY: `new`'s contract: a valid, aligned page; the header is two atomics at
            // offset 0, so shared references to them are sound even if the host writes too.
            unsafe { &*self.0.cast::<PageHeader>() }
        }

        #[inline(always)]
        pub(crate) fn footer(&self) -> &PageFooter {
            // SAFETY: as for `header`; the footer is atomics at offset 4064, 8-aligned.
            unsafe { &*self.0.add(FOOTER_OFFSET).cast::<PageFooter>() }
        }

        /// Writes one record word at data offset `off` (4-aligned, `off + 4 <= DATA_SIZE`).
        #[inline(always)]
        pub(crate) fn write_u32(&self, off: usize, v: u32) {
            debug_assert!(off.is_multiple_of(4) && off + 4 <= DATA_SIZE);
            // SAFETY: in bounds of the data area (callers keep `off + 4 <= DATA_SIZE`),
            // 4-aligned because the page is 4096-aligned and `off` is a multiple of 4. The
            // writer owns the bytes above `commit`; nobody else in Rust reads them yet (a
            // flight recorder reads a ring's pages only once its writer stopped or cannot run:
            // see `Frozen::pages`).
            unsafe { self.0.add(HEADER_SIZE + off).cast::<u32>().write(v.to_le()) }
        }

        /// Copies `src` to the word-aligned data offset `off` (`off % 4 == 0`,
        /// `off + src.len() <= DATA_SIZE`). Up to [`WORD_COPY_MAX`] bytes (every hyptrace
        /// event): one 32-bit store per word, bytes only for a tail shorter than a word. The
        /// words are assembled from `src`'s bytes, so `src` needs no alignment; inlined with a
        /// constant length, the loops unroll and the words are built in registers from the
        /// encoded event, where the strict-alignment target would inline a `memcpy` of
        /// unknown alignment as one byte store per byte. The stores are volatile so the
        /// compiler cannot turn the loop back into that. Longer payloads go to `memcpy`,
        /// whose library copy is word-wise (and vectorised on the development machine).
        #[inline(always)]
        pub(crate) fn write_aligned(&self, off: usize, src: &[u8]) {
            debug_assert!(off.is_multiple_of(4) && off + src.len() <= DATA_SIZE);
            // SAFETY: in bounds of the page (checked by the caller).
            let dst = unsafe { self.0.add(HEADER_SIZE + off) };
            if src.len() > WORD_COPY_MAX {
                // SAFETY: in bounds (checked by the caller); `src` is not page memory, so
                // they cannot overlap; the writer owns the bytes above `commit`.
                unsafe { core::ptr::copy_nonoverlapping(src.as_ptr(), dst, src.len()) };
                return;
            }
            let words = src.len() / 4;
            for i in 0..words {
                let w = [src[4 * i], src[4 * i + 1], src[4 * i + 2], src[4 * i + 3]];
                // SAFETY: word `i` is inside [off, off + src.len()) of the data area (in
                // bounds, checked by the caller), 4-aligned: the page is 4096-aligned,
                // HEADER_SIZE and `off` are multiples of 4. The writer owns the bytes above
                // `commit`.
                unsafe {
                    dst.cast::<u32>()
                        .add(i)
                        .write_volatile(u32::from_le_bytes(w))
                };
            }
            for (i, b) in src.iter().enumerate().skip(4 * words) {
                // SAFETY: as above, byte `i` of the range.
                unsafe { dst.add(i).write_volatile(*b) };
            }
        }

        /// Copies `src` to data offset `off` (`off + src.len() <= DATA_SIZE`), byte by byte:
        /// for offsets that are not word-aligned.
        #[inline(always)]
        pub(crate) fn write_bytes(&self, off: usize, src: &[u8]) {
            debug_assert!(off + src.len() <= DATA_SIZE);
            // SAFETY: in bounds of the page (checked by the caller).
            let dst = unsafe { self.0.add(HEADER_SIZE + off) };
            for (i, b) in src.iter().enumerate() {
                // SAFETY: byte `i` of [off, off + src.len()), in bounds of the data area
                // (checked by the caller); the writer owns the bytes above `commit`.
                unsafe { dst.add(i).write_volatile(*b) };
            }
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::PageRef;
    use hyptrace_abi::page::{DATA_SIZE, HEADER_SIZE};

    #[repr(C, align(4096))]
    struct Page([u8; 4096]);

    #[test]
    fn writes_copy_exactly_their_range_at_any_offset_and_length() {
        let all: Vec<u8> = (1..=201).map(|b| b as u8).collect();
        // Sources at any alignment, at aligned and misaligned offsets.
        for src in [&all[..200], &all[1..]] {
            for off in [0, 1, 2, 3, 4, 5, 7, 8, DATA_SIZE - 200] {
                for len in [0, 1, 2, 3, 4, 5, 8, 13, 16, 40, 64, 65, 200] {
                    let mut page = Box::new(Page([0xee; 4096]));
                    // SAFETY: a live, aligned page used only through `PageRef` here.
                    let p = unsafe { PageRef::new(page.0.as_mut_ptr()) };
                    if off % 4 == 0 {
                        p.write_aligned(off, &src[..len]);
                    } else {
                        p.write_bytes(off, &src[..len]);
                    }
                    let data = &page.0[HEADER_SIZE..HEADER_SIZE + DATA_SIZE];
                    assert_eq!(&data[off..off + len], &src[..len], "off {off} len {len}");
                    assert!(
                        data[..off].iter().all(|b| *b == 0xee),
                        "before, off {off} len {len}"
                    );
                    assert!(
                        data[off + len..].iter().all(|b| *b == 0xee),
                        "after, off {off} len {len}"
                    );
                }
            }
        }
    }
}

#[cfg(loom)]
pub use model::LoomPage;
#[cfg(loom)]
pub(crate) use model::PageRef;

#[cfg(loom)]
mod model {
    use crate::sync::{AtomicU32, AtomicU64, UnsafeCell};
    use crate::CAPACITY;

    /// Header of a modelled page (same field names as [`hyptrace_abi::page::PageHeader`]).
    #[derive(Debug)]
    pub struct Header {
        /// Page timestamp.
        pub time_stamp: AtomicU64,
        /// Committed bytes.
        pub commit: AtomicU64,
    }

    /// Footer statistics of a modelled page.
    #[derive(Debug)]
    pub struct Stats {
        /// Events written.
        pub entries: AtomicU64,
        /// Tail moves.
        pub pages_touched: AtomicU64,
        /// Overrun (live after `update_footers`, the swap's snapshot after a swap).
        pub overrun: AtomicU64,
    }

    /// Footer of a modelled page.
    #[derive(Debug)]
    pub struct Footer {
        /// COMMIT flag.
        pub writer_status: AtomicU32,
        /// HEAD / READER flags.
        pub reader_status: AtomicU32,
        /// Statistics.
        pub stats: Stats,
    }

    /// A page as seen by the loom model: loom atomics and one loom cell per data word.
    /// Page-aligned like a real page, so `RingBuffer::load` accepts its address.
    #[derive(Debug)]
    #[repr(C, align(4096))]
    pub struct LoomPage {
        /// ftrace header.
        pub header: Header,
        /// Data words.
        pub data: [UnsafeCell<u32>; CAPACITY / 4],
        /// gen-1 footer.
        pub footer: Footer,
    }

    impl LoomPage {
        /// A zeroed page.
        pub fn new() -> Self {
            Self {
                header: Header {
                    time_stamp: AtomicU64::new(0),
                    commit: AtomicU64::new(0),
                },
                data: core::array::from_fn(|_| UnsafeCell::new(0)),
                footer: Footer {
                    writer_status: AtomicU32::new(0),
                    reader_status: AtomicU32::new(0),
                    stats: Stats {
                        entries: AtomicU64::new(0),
                        pages_touched: AtomicU64::new(0),
                        overrun: AtomicU64::new(0),
                    },
                },
            }
        }
    }

    impl Default for LoomPage {
        fn default() -> Self {
            Self::new()
        }
    }

    #[derive(Clone, Copy, Debug)]
    pub(crate) struct PageRef(*mut u8);

    impl PageRef {
        /// # Safety
        /// `page` points to a live [`LoomPage`] that outlives the ring's use of it.
        pub(crate) unsafe fn new(page: *mut u8) -> Self {
            Self(page)
        }

        fn page(&self) -> &LoomPage {
            // SAFETY: `new`'s contract.
            unsafe { &*self.0.cast::<LoomPage>() }
        }

        pub(crate) fn header(&self) -> &Header {
            &self.page().header
        }

        pub(crate) fn footer(&self) -> &Footer {
            &self.page().footer
        }

        pub(crate) fn write_u32(&self, off: usize, v: u32) {
            // SAFETY: the writer owns the words above `commit`; loom checks that claim.
            self.page().data[off / 4].with_mut(|p| unsafe { *p = v });
        }

        pub(crate) fn write_aligned(&self, off: usize, src: &[u8]) {
            self.write_bytes(off, src)
        }

        pub(crate) fn write_bytes(&self, off: usize, src: &[u8]) {
            for (i, b) in src.iter().enumerate() {
                let at = off + i;
                let shift = (at % 4) * 8;
                self.page().data[at / 4].with_mut(|p| {
                    // SAFETY: as for `write_u32`.
                    unsafe { *p = (*p & !(0xff << shift)) | (u32::from(*b) << shift) }
                });
            }
        }
    }
}
