//! Ring-buffer page layout: the ftrace page header, the gen-1 footer and their flags.
//!
//! Binary-compatible with Android's gen-1 `ring_buffer_ext.h` on arm64 LP64 with 4 KiB pages:
//!
//! | Offset | Size | Field |
//! |---|---|---|
//! | 0 | 8 | [`PageHeader::time_stamp`]: absolute time (ns) of the page's first event |
//! | 8 | 8 | [`PageHeader::commit`]: bytes of record data from offset 16; bits 31/30 are flags |
//! | 16 | 4048 | event records ([`DATA_SIZE`]) |
//! | 4064 | 32 | [`PageFooter`] |
//!
//! The structs only describe the layout. The protocols that access these fields (which
//! ordering, who writes what) live in the ring writer (`hyp::ring`); the host's reader follows
//! the same rules.

pub mod decode;

use core::mem::{offset_of, size_of};
use core::sync::atomic::{AtomicU32, AtomicU64};

/// Size of a ring-buffer page.
pub const PAGE_SIZE: usize = 4096;
/// [`PAGE_SIZE`] as a physical-address quantity, for address arithmetic in `u64`.
pub const PAGE_SIZE_U64: u64 = PAGE_SIZE as u64;
/// Size of the ftrace page header (`time_stamp` + `commit`).
pub const HEADER_SIZE: usize = 16;
/// Size of the gen-1 page footer.
pub const FOOTER_SIZE: usize = 32;
/// Page offset of the footer.
pub const FOOTER_OFFSET: usize = PAGE_SIZE - FOOTER_SIZE;
/// Bytes of event data a page holds (4096 − 16 − 32).
pub const DATA_SIZE: usize = PAGE_SIZE - HEADER_SIZE - FOOTER_SIZE;
/// Size of the ftrace data area of an exported page (no footer): 4080.
pub const EXPORT_DATA_SIZE: usize = PAGE_SIZE - HEADER_SIZE;

/// Footer `reader_status` flag: this page is the head (oldest unread ring page).
pub const FOOTER_HEAD: u32 = 1;
/// Footer `reader_status` flag: this page is the reader page.
pub const FOOTER_READER: u32 = 2;
/// Footer `writer_status` flag: the writer's tail (the page it is committing to).
pub const FOOTER_COMMIT: u32 = 4;

/// `commit` bit 31: events were lost between the previous page and this one. Set only in
/// pages the reader exports, never by the writer.
pub const COMMIT_MISSED_EVENTS: u64 = 1 << 31;
/// `commit` bit 30: the number of lost events is stored as a u64 right after the record data.
pub const COMMIT_MISSED_STORED: u64 = 1 << 30;
/// Mask of the byte count in `commit` (the kernel's `RB_MISSED_FLAGS` complement).
pub const COMMIT_LENGTH_MASK: u64 = (1 << 27) - 1;

/// The ftrace page header (16 bytes at offset 0).
#[repr(C)]
#[derive(Debug)]
pub struct PageHeader {
    /// Absolute timestamp of the page (ns); record deltas add up from it.
    pub time_stamp: AtomicU64,
    /// Bytes of committed record data; published with a release store after the payload.
    pub commit: AtomicU64,
}

/// Statistics carried in the footer; meaningful only on the reader page.
#[repr(C)]
#[derive(Debug)]
pub struct FooterStats {
    /// Events written on this CPU since load or reset.
    pub entries: AtomicU64,
    /// Tail moves since load or reset.
    pub pages_touched: AtomicU64,
    /// Events lost to overwrite, as of the last swap.
    pub overrun: AtomicU64,
}

/// The gen-1 page footer (`rb_ext_page_footer`, 32 bytes at offset 4064).
#[repr(C)]
#[derive(Debug)]
pub struct PageFooter {
    /// [`FOOTER_COMMIT`] on the writer's tail page, 0 elsewhere. Written by the writer only.
    pub writer_status: AtomicU32,
    /// [`FOOTER_READER`] on the reader page, [`FOOTER_HEAD`] on the head, 0 elsewhere.
    pub reader_status: AtomicU32,
    /// Statistics (see [`FooterStats`]).
    pub stats: FooterStats,
}

const _: () = {
    assert!(size_of::<PageHeader>() == HEADER_SIZE);
    assert!(offset_of!(PageHeader, time_stamp) == 0);
    assert!(offset_of!(PageHeader, commit) == 8);
    assert!(size_of::<FooterStats>() == 24);
    assert!(size_of::<PageFooter>() == FOOTER_SIZE);
    assert!(offset_of!(PageFooter, writer_status) == 0);
    assert!(offset_of!(PageFooter, reader_status) == 4);
    assert!(offset_of!(PageFooter, stats) == 8);
    assert!(offset_of!(PageFooter, stats) + offset_of!(FooterStats, entries) == 8);
    assert!(offset_of!(PageFooter, stats) + offset_of!(FooterStats, pages_touched) == 16);
    assert!(offset_of!(PageFooter, stats) + offset_of!(FooterStats, overrun) == 24);
    assert!(FOOTER_OFFSET == 4064);
    assert!(DATA_SIZE == 4048);
    assert!(HEADER_SIZE + DATA_SIZE == FOOTER_OFFSET);
    // The largest possible commit value must never collide with the flag bits.
    assert!((DATA_SIZE as u64) & !COMMIT_LENGTH_MASK == 0);
    assert!(COMMIT_MISSED_EVENTS & COMMIT_LENGTH_MASK == 0);
    assert!(COMMIT_MISSED_STORED & COMMIT_LENGTH_MASK == 0);
};

/// ftrace record header `type_len` values and limits (trace-dat.md section 2).
pub mod record {
    /// Size of a record header word.
    pub const HEADER: usize = 4;
    /// Bits of `type_len` in the header word.
    pub const TYPE_LEN_BITS: u32 = 5;
    /// Mask of `type_len`.
    pub const TYPE_LEN_MASK: u32 = (1 << TYPE_LEN_BITS) - 1;
    /// Bits of `time_delta` in the header word.
    pub const TIME_DELTA_BITS: u32 = 27;
    /// Largest delta that fits in a header word.
    pub const MAX_DELTA: u64 = (1 << TIME_DELTA_BITS) - 1;
    /// Largest `type_len` of a compact data record (payload = `type_len` * 4).
    pub const DATA_MAX_TYPE_LEN: u32 = 28;
    /// Largest payload written in the compact form (`RB_MAX_SMALL_DATA`).
    pub const MAX_SMALL_DATA: usize = DATA_MAX_TYPE_LEN as usize * 4;
    /// `type_len` of a padding / discarded record.
    pub const PADDING: u32 = 29;
    /// `type_len` of a TIME_EXTEND record (delta bits 27..58 in the next word).
    pub const TIME_EXTEND: u32 = 30;
    /// `type_len` of a TIME_STAMP record (absolute time, same split as TIME_EXTEND).
    pub const TIME_STAMP: u32 = 31;
    /// Size of a TIME_EXTEND or TIME_STAMP record.
    pub const EXTEND_SIZE: usize = 8;
    /// Largest delta a TIME_EXTEND can carry (59 bits).
    pub const MAX_EXTEND_DELTA: u64 = (1 << 59) - 1;

    /// Builds a record header word.
    pub const fn header(type_len: u32, delta: u32) -> u32 {
        (type_len & TYPE_LEN_MASK) | (delta << TYPE_LEN_BITS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_values_match_gen1() {
        assert_eq!(FOOTER_HEAD, 1);
        assert_eq!(FOOTER_READER, 2);
        assert_eq!(FOOTER_COMMIT, 4);
        assert_eq!(COMMIT_MISSED_EVENTS, 0x8000_0000);
        assert_eq!(COMMIT_MISSED_STORED, 0x4000_0000);
    }

    #[test]
    fn header_word_packs_type_len_and_delta() {
        assert_eq!(record::header(1, 0), 1);
        assert_eq!(record::header(0, 3), 3 << 5);
        assert_eq!(
            record::header(record::TIME_EXTEND, record::MAX_DELTA as u32),
            0xffff_fffe
        );
        assert_eq!(record::MAX_SMALL_DATA, 112);
    }
}
