//! Decoding ftrace ring-buffer pages: records, events and the page header.
//!
//! Works on a private copy of a page (a [`PageBuf`]) or on any byte slice: every read is
//! bounds-checked, so a page the host (or anyone) scribbled on yields an error, never a panic.

use crate::page::{
    record, COMMIT_LENGTH_MASK, COMMIT_MISSED_EVENTS, COMMIT_MISSED_STORED, EXPORT_DATA_SIZE,
    HEADER_SIZE, PAGE_SIZE,
};

/// A page-sized, 8-aligned buffer: a private copy of a ring page, or an exported page.
#[derive(Clone)]
#[repr(C, align(8))]
pub struct PageBuf(pub [u8; PAGE_SIZE]);

impl PageBuf {
    /// A zeroed page.
    pub const fn zeroed() -> Self {
        Self([0; PAGE_SIZE])
    }

    /// A view of this page for decoding.
    pub fn view(&self) -> PageView<'_> {
        PageView::new(&self.0)
    }
}

impl Default for PageBuf {
    fn default() -> Self {
        Self::zeroed()
    }
}

impl core::fmt::Debug for PageBuf {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let v = self.view();
        f.debug_struct("PageBuf")
            .field("time_stamp", &v.time_stamp())
            .field("commit", &v.raw_commit())
            .finish_non_exhaustive()
    }
}

/// Why a record could not be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// The record at this data offset runs past the committed data.
    Truncated {
        /// Data offset of the record.
        offset: usize,
    },
    /// The record at this data offset has an impossible length word.
    BadLength {
        /// Data offset of the record.
        offset: usize,
    },
    /// The page's `commit` exceeds the page's data area.
    BadCommit,
}

impl core::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Truncated { offset } => {
                write!(
                    f,
                    "record at data offset {offset} runs past the committed data"
                )
            }
            Self::BadLength { offset } => {
                write!(
                    f,
                    "record at data offset {offset} has an impossible length word"
                )
            }
            Self::BadCommit => f.write_str("commit exceeds the page's data area"),
        }
    }
}

impl core::error::Error for DecodeError {}

/// One decoded record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Record<'a> {
    /// An event: its absolute timestamp and its payload (a multiple of 4 bytes: the writer
    /// pads payloads with zeros).
    Data {
        /// Absolute timestamp (ns).
        ts: u64,
        /// Payload bytes, padding included.
        payload: &'a [u8],
    },
    /// A TIME_EXTEND record; `ts` is the running time after it.
    TimeExtend {
        /// Running time after the record.
        ts: u64,
    },
    /// A TIME_STAMP record; `ts` is the absolute time it sets.
    TimeStamp {
        /// Absolute time set.
        ts: u64,
    },
    /// A padding / discarded record of `len` bytes (its delta is ignored, as the kernel's
    /// reader does). A padding record with delta 0 ends the page.
    Padding {
        /// Bytes the record occupies.
        len: usize,
    },
}

/// Iterator over the records of committed data.
///
/// Yields `(data offset, record)` pairs, or one error after which it stops.
#[derive(Clone, Debug)]
pub struct Records<'a> {
    data: &'a [u8],
    off: usize,
    ts: u64,
    done: bool,
}

fn word(data: &[u8], at: usize) -> Option<u32> {
    let b = data.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// Decodes the record at `off` of `data` with running time `ts`.
/// Returns the record, its size in bytes and the running time after it.
///
/// # Errors
/// [`DecodeError::Truncated`] when the record runs past `data`, [`DecodeError::BadLength`]
/// for an impossible length word.
pub fn decode_record(
    data: &[u8],
    off: usize,
    ts: u64,
) -> Result<(Record<'_>, usize, u64), DecodeError> {
    let trunc = DecodeError::Truncated { offset: off };
    let h = word(data, off).ok_or(trunc)?;
    let type_len = h & record::TYPE_LEN_MASK;
    let delta = u64::from(h >> record::TYPE_LEN_BITS);
    match type_len {
        0 => {
            let len = word(data, off + 4).ok_or(trunc)? as usize;
            if len < 4 {
                return Err(DecodeError::BadLength { offset: off });
            }
            let payload_len = len - 4;
            let start = off + 8;
            let payload = data.get(start..start + payload_len).ok_or(trunc)?;
            // Records are 4-byte aligned: step by the rounded size.
            let size = (4 + len + 3) & !3;
            let ts = ts.wrapping_add(delta);
            Ok((Record::Data { ts, payload }, size, ts))
        }
        1..=record::DATA_MAX_TYPE_LEN => {
            let payload_len = type_len as usize * 4;
            let payload = data.get(off + 4..off + 4 + payload_len).ok_or(trunc)?;
            let ts = ts.wrapping_add(delta);
            Ok((Record::Data { ts, payload }, 4 + payload_len, ts))
        }
        record::PADDING => {
            if delta == 0 {
                let len = data.len() - off;
                return Ok((Record::Padding { len }, len, ts));
            }
            let len = word(data, off + 4).ok_or(trunc)? as usize;
            let size = len
                .checked_add(4)
                .map(|s| (s + 3) & !3)
                .filter(|&s| s >= 8 && off + s <= data.len())
                .ok_or(DecodeError::BadLength { offset: off })?;
            Ok((Record::Padding { len: size }, size, ts))
        }
        record::TIME_EXTEND => {
            let hi = u64::from(word(data, off + 4).ok_or(trunc)?);
            let ts = ts.wrapping_add((hi << record::TIME_DELTA_BITS) | delta);
            Ok((Record::TimeExtend { ts }, record::EXTEND_SIZE, ts))
        }
        _ => {
            // TIME_STAMP: 59 bits of absolute time; the top 5 come from the running time.
            let hi = u64::from(word(data, off + 4).ok_or(trunc)?);
            let abs = (hi << record::TIME_DELTA_BITS) | delta;
            let ts = (abs & record::MAX_EXTEND_DELTA) | (ts & !record::MAX_EXTEND_DELTA);
            Ok((Record::TimeStamp { ts }, record::EXTEND_SIZE, ts))
        }
    }
}

impl<'a> Records<'a> {
    /// Records of `data` (the committed bytes only), starting at time `ts`.
    pub fn new(data: &'a [u8], ts: u64) -> Self {
        Self {
            data,
            off: 0,
            ts,
            done: false,
        }
    }

    /// Records of `data` from data offset `off`, where the running time is `ts`.
    pub fn starting_at(data: &'a [u8], off: usize, ts: u64) -> Self {
        Self {
            data,
            off,
            ts,
            done: false,
        }
    }

    /// The events (data records) among these records.
    pub fn events(self) -> Events<'a> {
        Events(self)
    }

    /// Running time (the timestamp of the last record decoded).
    pub fn ts(&self) -> u64 {
        self.ts
    }

    /// Data offset of the next record.
    pub fn offset(&self) -> usize {
        self.off
    }
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<(usize, Record<'a>), DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.off >= self.data.len() {
            return None;
        }
        match decode_record(self.data, self.off, self.ts) {
            Ok((rec, size, ts)) => {
                let at = self.off;
                self.off += size;
                self.ts = ts;
                Some(Ok((at, rec)))
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// One event: timestamp and payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event<'a> {
    /// Absolute timestamp (ns).
    pub ts: u64,
    /// Payload, padded with zeros to a multiple of 4.
    pub payload: &'a [u8],
}

/// Iterator over the events (data records) of committed data.
#[derive(Clone, Debug)]
pub struct Events<'a>(Records<'a>);

impl<'a> Iterator for Events<'a> {
    type Item = Result<Event<'a>, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            match self.0.next()? {
                Ok((_, Record::Data { ts, payload })) => return Some(Ok(Event { ts, payload })),
                Ok(_) => continue,
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

/// Missed-events information of an exported page (`commit` bits 31 and 30).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Missed {
    /// No events were lost before this page.
    None,
    /// Events were lost, count unknown.
    Unknown,
    /// This many events were lost.
    Count(u64),
}

/// A decoding view of one page (a live copy or an exported page).
#[derive(Clone, Copy, Debug)]
pub struct PageView<'a> {
    page: &'a [u8],
}

impl<'a> PageView<'a> {
    /// A view of `page` (normally [`PAGE_SIZE`] bytes; shorter slices just fail to decode).
    pub fn new(page: &'a [u8]) -> Self {
        Self { page }
    }

    fn u64_at(&self, at: usize) -> u64 {
        self.page
            .get(at..at + 8)
            .map(|b| {
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                u64::from_le_bytes(a)
            })
            .unwrap_or(0)
    }

    /// The page's absolute timestamp.
    pub fn time_stamp(&self) -> u64 {
        self.u64_at(0)
    }

    /// `commit` as stored, flags included.
    pub fn raw_commit(&self) -> u64 {
        self.u64_at(8)
    }

    /// Bytes of committed record data (flags masked off).
    pub fn commit(&self) -> usize {
        (self.raw_commit() & COMMIT_LENGTH_MASK) as usize
    }

    /// The committed record bytes.
    ///
    /// # Errors
    /// [`DecodeError::BadCommit`] if `commit` is larger than the page's data area.
    pub fn data(&self) -> Result<&'a [u8], DecodeError> {
        let c = self.commit();
        if c > EXPORT_DATA_SIZE {
            return Err(DecodeError::BadCommit);
        }
        self.page
            .get(HEADER_SIZE..HEADER_SIZE + c)
            .ok_or(DecodeError::BadCommit)
    }

    /// The missed-events flags and stored count.
    pub fn missed(&self) -> Missed {
        let raw = self.raw_commit();
        if raw & COMMIT_MISSED_EVENTS == 0 {
            Missed::None
        } else if raw & COMMIT_MISSED_STORED != 0 {
            Missed::Count(self.u64_at(HEADER_SIZE + self.commit()))
        } else {
            Missed::Unknown
        }
    }

    /// Records of the page, starting from its timestamp.
    pub fn records(&self) -> Records<'a> {
        match self.data() {
            Ok(d) => Records::new(d, self.time_stamp()),
            Err(_) => Records {
                data: &[],
                off: 0,
                ts: 0,
                done: false,
            },
        }
    }

    /// Events of the page. A bad `commit` yields one [`DecodeError::BadCommit`].
    pub fn events(&self) -> impl Iterator<Item = Result<Event<'a>, DecodeError>> + 'a {
        let bad = self.data().err();
        bad.map(Err)
            .into_iter()
            .chain(Events(self.records()).take_while(move |_| bad.is_none()))
    }
}

/// Builds a trace.dat-ready page from records `[from..to)` of a page copy `src`, as the
/// kernel's `ring_buffer_read_page` does.
///
/// `base_ts` is the running time at `from` (the page's timestamp when `from == 0`): it becomes
/// the exported page's timestamp, so the deltas of the copied records stay right. Bytes after
/// the records, the gen-1 footer included, are zero. If `missed > 0`, `commit` gets bit 31 and,
/// when 8 bytes fit after the records, bit 30 with the count stored right after them.
/// Returns the exported `commit` (flags included). Ranges are clamped to the page.
pub fn export_page(
    src: &PageBuf,
    from: usize,
    to: usize,
    base_ts: u64,
    missed: u64,
    out: &mut PageBuf,
) -> u64 {
    let max = PAGE_SIZE - HEADER_SIZE;
    let to = to.min(max);
    let from = from.min(to);
    let len = to - from;
    out.0.fill(0);
    out.0[0..8].copy_from_slice(&base_ts.to_le_bytes());
    out.0[HEADER_SIZE..HEADER_SIZE + len]
        .copy_from_slice(&src.0[HEADER_SIZE + from..HEADER_SIZE + to]);
    let mut commit = len as u64;
    if missed > 0 {
        commit |= COMMIT_MISSED_EVENTS;
        if len + 8 <= EXPORT_DATA_SIZE {
            let at = HEADER_SIZE + len;
            out.0[at..at + 8].copy_from_slice(&missed.to_le_bytes());
            commit |= COMMIT_MISSED_STORED;
        }
    }
    out.0[8..16].copy_from_slice(&commit.to_le_bytes());
    commit
}
