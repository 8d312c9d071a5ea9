//! Walking each CPU's pages in file order and merging the CPUs by time, the way trace-cmd
//! 3.1.6 (libtraceevent's kbuffer) does.
//!
//! - A page's records are decoded with [`crate::page`] from the page's
//!   `time_stamp`: deltas add up, TIME_EXTEND records carry the high bits.
//! - Missed events (`commit` bit 31; bit 30: the count stored right after the data) belong to
//!   the page's first record, and kbuffer reports them only when that record is at data
//!   offset 0 (`kbuffer_missed_events`): a page starting with a TIME_EXTEND shows no marker.
//!   The stored count is read as 4 bytes, as trace-cmd 3.1.6 reads it; a page whose data
//!   leaves no room for them holds no count, and its marker says `[EVENTS DROPPED]`
//!   (trace-cmd prints whatever lies past the page in its memory).
//! - Merge: the next record is the earliest of every CPU's next one; on equal timestamps the
//!   lower CPU wins (strict `<` in trace-cmd's loop over CPUs), also with `--cpu` given in
//!   another order (checked against trace-cmd 3.1.6). Within a CPU, file order. With several
//!   buffers, every CPU of the top-level buffer comes before the instances' in that order, so
//!   a tie goes to the top-level buffer (checked against trace-cmd 3.1.6).

use alloc::format;
use alloc::string::ToString;
use alloc::vec::Vec;
use core::fmt;

use crate::page::{DecodeError, Missed, PageView, Record, Records};
use hyptrace_abi::page::{EXPORT_DATA_SIZE, HEADER_SIZE};

/// A decoded event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Item<'a> {
    /// The buffer: 0 the top-level one, `i` the file's `i`-th instance.
    pub buffer: usize,
    /// The CPU.
    pub cpu: usize,
    /// Absolute timestamp (ns).
    pub ts: u64,
    /// Payload (record data, padded to 4 bytes).
    pub payload: &'a [u8],
    /// Missed events reported before it: 0 none, -1 an unknown number, else the count.
    pub missed: i64,
}

/// A page that did not decode completely.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageError {
    /// The CPU.
    pub cpu: usize,
    /// Index of the page in the CPU's data.
    pub page: usize,
    /// File offset of the page.
    pub file_offset: u64,
    /// What went wrong.
    pub error: DecodeError,
}

impl fmt::Display for PageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.error {
            DecodeError::Truncated { offset } => {
                format!("the record at data offset {offset} runs past the page's commit")
            }
            DecodeError::BadLength { offset } => {
                format!("the record at data offset {offset} has an impossible length")
            }
            DecodeError::BadCommit => "its commit is larger than a page".to_string(),
        };
        write!(
            f,
            "CPU {} page {} (file offset {:#x}): {what}; the rest of the page was skipped",
            self.cpu, self.page, self.file_offset
        )
    }
}

/// One CPU's events in file order.
pub struct CpuEvents<'a> {
    buffer: usize,
    cpu: usize,
    pages: &'a [u8],
    page_size: usize,
    base: u64,
    next_page: usize,
    records: Option<Records<'a>>,
    page_missed: i64,
    /// Pages read so far.
    pub pages_read: usize,
    /// Decoding problems met so far.
    pub errors: Vec<PageError>,
}

/// A little-endian u32 from 4 bytes, as a count.
fn le_u32(b: &[u8]) -> i64 {
    let mut raw = [0u8; 4];
    raw.copy_from_slice(b);
    i64::from(u32::from_le_bytes(raw))
}

impl<'a> CpuEvents<'a> {
    /// The events of `cpu` of the top-level buffer, whose whole pages are `pages`, at file
    /// offset `base`.
    pub fn new(cpu: usize, pages: &'a [u8], page_size: usize, base: u64) -> Self {
        Self::in_buffer(0, cpu, pages, page_size, base)
    }

    /// As [`CpuEvents::new`], for buffer `buffer` (0: the top-level one; `i`: the file's
    /// `i`-th instance).
    pub fn in_buffer(
        buffer: usize,
        cpu: usize,
        pages: &'a [u8],
        page_size: usize,
        base: u64,
    ) -> Self {
        Self {
            buffer,
            cpu,
            pages,
            page_size,
            base,
            next_page: 0,
            records: None,
            page_missed: 0,
            pages_read: 0,
            errors: Vec::new(),
        }
    }

    /// The CPU.
    pub fn cpu(&self) -> usize {
        self.cpu
    }

    /// The buffer.
    pub fn buffer(&self) -> usize {
        self.buffer
    }

    fn load_next_page(&mut self) -> bool {
        let start = self.next_page * self.page_size;
        if start >= self.pages.len() {
            return false;
        }
        let page = &self.pages[start..(start + self.page_size).min(self.pages.len())];
        let view = PageView::new(page);
        self.pages_read += 1;
        self.next_page += 1;
        match view.data() {
            Ok(data) => {
                self.records = Some(Records::new(data, view.time_stamp()));
                self.page_missed = match view.missed() {
                    Missed::None => 0,
                    Missed::Unknown => -1,
                    // trace-cmd 3.1.6 reads the stored count as 4 bytes right after the data
                    // (checked: a stored 2^32 + 1345 prints 1345). A page flagged with a
                    // stored count that leaves no room for it (`trace-cmd split` writes full
                    // pages so) holds no count: the loss is unknown. (trace-cmd prints what
                    // its memory holds past the page, which depends on its mappings.)
                    Missed::Count(_) if data.len() + 4 <= EXPORT_DATA_SIZE => {
                        let at = start + HEADER_SIZE + data.len();
                        self.pages.get(at..at + 4).map_or(-1, le_u32)
                    }
                    Missed::Count(_) => -1,
                };
            }
            Err(error) => {
                self.records = None;
                self.errors.push(PageError {
                    cpu: self.cpu,
                    page: self.next_page - 1,
                    file_offset: self.base + start as u64,
                    error,
                });
            }
        }
        true
    }
}

impl<'a> Iterator for CpuEvents<'a> {
    type Item = Item<'a>;

    fn next(&mut self) -> Option<Item<'a>> {
        loop {
            if let Some(records) = &mut self.records {
                match records.next() {
                    Some(Ok((offset, Record::Data { ts, payload }))) => {
                        // kbuffer: only a first record at offset 0 reports the page's loss.
                        let missed = if offset == 0 { self.page_missed } else { 0 };
                        self.page_missed = 0;
                        return Some(Item {
                            buffer: self.buffer,
                            cpu: self.cpu,
                            ts,
                            payload,
                            missed,
                        });
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(error)) => {
                        self.errors.push(PageError {
                            cpu: self.cpu,
                            page: self.next_page - 1,
                            file_offset: self.base + ((self.next_page - 1) * self.page_size) as u64,
                            error,
                        });
                        self.records = None;
                    }
                    None => self.records = None,
                }
            }
            if !self.load_next_page() {
                return None;
            }
        }
    }
}

/// Events of several CPUs merged by timestamp.
pub struct Merged<'a> {
    /// The CPUs in priority order (ties go to the earlier one) with their next event.
    cpus: Vec<(CpuEvents<'a>, Option<Item<'a>>)>,
}

impl<'a> Merged<'a> {
    /// Merges `cpus`, listed in tie-breaking order.
    pub fn new(cpus: Vec<CpuEvents<'a>>) -> Self {
        Self {
            cpus: cpus
                .into_iter()
                .map(|mut c| {
                    let first = c.next();
                    (c, first)
                })
                .collect(),
        }
    }

    /// The per-CPU sources (for their page counts and errors).
    pub fn sources(&self) -> impl Iterator<Item = &CpuEvents<'a>> {
        self.cpus.iter().map(|(c, _)| c)
    }
}

impl<'a> Iterator for Merged<'a> {
    type Item = Item<'a>;

    fn next(&mut self) -> Option<Item<'a>> {
        let mut best: Option<(usize, u64)> = None;
        for (i, (_, head)) in self.cpus.iter().enumerate() {
            if let Some(item) = head {
                if best.is_none_or(|(_, ts)| item.ts < ts) {
                    best = Some((i, item.ts));
                }
            }
        }
        let (i, _) = best?;
        let (source, head) = &mut self.cpus[i];
        let item = head.take();
        *head = source.next();
        item
    }
}
