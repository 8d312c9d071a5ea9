//! `pack`: [`TraceBufferPack::parse`] on structured and raw inputs, against a reference
//! validator written from the ABI's rules alone.
//!
//! The input is a list of CPU records plus the header's fields, each of which may be
//! inconsistent with the records (a wrong `nr_cpus`, `total_pages` or `nr_pages`), byte
//! patches, a truncation and trailing bytes, so that most inputs get past the first checks
//! (random bytes almost never do: `nr_cpus` must be 1..=max_cpus). Checked:
//!
//! - the parser never panics and agrees with the reference: the same verdict, the same
//!   [`PackError`] (the rules are ordered; the first one broken is the error);
//! - an accepted pack is what the bytes say: the same CPUs with the same pages, in order, and
//!   [`PackBuilder`] writes it back byte for byte.

use arbitrary::{Arbitrary, Unstructured};
use hyptrace_abi::pack::{
    CpuPages, PackBuilder, PackError, TraceBufferPack, MAX_PACK_CPUS, MIN_RING_PAGES, PAGE_VA_SIZE,
    RING_PACK_HEADER_SIZE, TRACE_PACK_HEADER_SIZE,
};

/// One CPU record as the input describes it.
#[derive(Arbitrary, Debug)]
struct CpuRecord {
    cpu: u8,
    /// Use this `cpu` instead (any value, out of range ones included).
    cpu_raw: Option<u32>,
    pad: u32,
    reader: u64,
    pages: Vec<u64>,
    /// Store this `nr_pages` instead of the length of `pages`.
    nr_pages: Option<u64>,
}

/// A whole input.
#[derive(Arbitrary, Debug)]
struct Input {
    /// The CPU count the hypervisor manages (the parser's `max_cpus`).
    max_cpus: u16,
    records: Vec<CpuRecord>,
    /// Store this `nr_cpus` instead of the number of records.
    nr_cpus: Option<u32>,
    /// Store this `total_pages` instead of the right sum.
    total_pages: Option<u64>,
    header_pad: u32,
    /// (offset, byte) written over the serialized pack.
    patches: Vec<(u16, u8)>,
    /// Cut the bytes to this length.
    truncate: Option<u16>,
    /// Bytes appended (zero ones are page padding the parser must accept).
    trailing: Vec<u8>,
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

impl Input {
    fn bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let right_total = self
            .records
            .iter()
            .fold(0u64, |s, r| s.wrapping_add(r.pages.len() as u64 + 1));
        put_u32(&mut out, self.nr_cpus.unwrap_or(self.records.len() as u32));
        put_u32(&mut out, self.header_pad);
        put_u64(&mut out, self.total_pages.unwrap_or(right_total));
        for r in &self.records {
            put_u32(&mut out, r.cpu_raw.unwrap_or(u32::from(r.cpu)));
            put_u32(&mut out, r.pad);
            put_u64(&mut out, r.reader);
            put_u64(&mut out, r.nr_pages.unwrap_or(r.pages.len() as u64));
            for &p in &r.pages {
                put_u64(&mut out, p);
            }
        }
        for &(at, byte) in &self.patches {
            if let Some(b) = out.get_mut(usize::from(at)) {
                *b = byte;
            }
        }
        if let Some(len) = self.truncate {
            out.truncate(usize::from(len));
        }
        out.extend_from_slice(&self.trailing);
        out
    }
}

/// A CPU record read back by the reference.
#[derive(Debug, PartialEq, Eq)]
struct RefCpu {
    cpu: u32,
    reader: u64,
    pages: Vec<u64>,
}

fn le_u32(b: &[u8]) -> u32 {
    u32::from_le_bytes(b.try_into().expect("4 bytes"))
}

fn le_u64(b: &[u8]) -> u64 {
    u64::from_le_bytes(b.try_into().expect("8 bytes"))
}

/// The ABI's rules, checked in the documented order, written for clarity rather than speed:
/// `nr_cpus` in `1..=max_cpus`; each record complete; `cpu < max_cpus`, never twice;
/// `nr_pages >= 2`; its page array complete; only zero bytes after the last record;
/// `total_pages == sum(nr_pages + 1)`.
fn reference(bytes: &[u8], max_cpus: usize) -> Result<Vec<RefCpu>, PackError> {
    if bytes.len() < TRACE_PACK_HEADER_SIZE {
        return Err(PackError::Truncated);
    }
    let max_cpus = max_cpus.min(MAX_PACK_CPUS);
    let nr_cpus = le_u32(&bytes[0..4]) as usize;
    let total_pages = le_u64(&bytes[8..16]);
    if nr_cpus == 0 || nr_cpus > max_cpus {
        return Err(PackError::CpuCount);
    }
    let mut cpus: Vec<RefCpu> = Vec::new();
    let mut at = TRACE_PACK_HEADER_SIZE;
    for _ in 0..nr_cpus {
        let Some(header) = bytes.get(at..at + RING_PACK_HEADER_SIZE) else {
            return Err(PackError::Truncated);
        };
        let cpu = le_u32(&header[0..4]);
        let reader = le_u64(&header[8..16]);
        let nr_pages = le_u64(&header[16..24]);
        if cpu as usize >= max_cpus || cpus.iter().any(|c| c.cpu == cpu) {
            return Err(PackError::Cpu);
        }
        if nr_pages < MIN_RING_PAGES {
            return Err(PackError::PageCount);
        }
        at += RING_PACK_HEADER_SIZE;
        let available = (bytes.len() - at) / PAGE_VA_SIZE;
        if u128::from(nr_pages) > available as u128 {
            return Err(PackError::Truncated);
        }
        let pages = bytes[at..at + nr_pages as usize * PAGE_VA_SIZE]
            .chunks_exact(PAGE_VA_SIZE)
            .map(le_u64)
            .collect();
        at += nr_pages as usize * PAGE_VA_SIZE;
        cpus.push(RefCpu { cpu, reader, pages });
    }
    if bytes[at..].iter().any(|&b| b != 0) {
        return Err(PackError::Truncated);
    }
    let sum: u128 = cpus.iter().map(|c| c.pages.len() as u128 + 1).sum();
    if sum != u128::from(total_pages) {
        return Err(PackError::TotalPages);
    }
    Ok(cpus)
}

/// Checks the parser on `bytes` against the reference.
fn check(bytes: &[u8], max_cpus: usize) {
    let parsed = TraceBufferPack::parse(bytes, max_cpus);
    let expected = reference(bytes, max_cpus);
    match (parsed, expected) {
        (Err(got), Err(want)) => assert_eq!(got, want, "different errors"),
        (Ok(_), Err(want)) => panic!("the parser accepted a pack the reference refuses: {want}"),
        (Err(got), Ok(_)) => panic!("the parser refused a valid pack: {got}"),
        (Ok(pack), Ok(want)) => {
            let got: Vec<RefCpu> = pack
                .cpus()
                .map(|c| RefCpu {
                    cpu: c.cpu,
                    reader: c.reader_page_va,
                    pages: c.page_vas().collect(),
                })
                .collect();
            assert_eq!(got, want, "the parsed pack is not what its bytes say");
            assert_eq!(pack.nr_cpus() as usize, want.len());
            let total: u64 = want.iter().map(|c| c.pages.len() as u64 + 1).sum();
            assert_eq!(pack.total_pages(), total);
            // Written back by the host's builder: the same bytes, up to the padding (the
            // pad words are the only bytes the parser ignores).
            let descs: Vec<CpuPages<'_>> = want
                .iter()
                .map(|c| CpuPages {
                    cpu: c.cpu,
                    reader_page_va: c.reader,
                    page_vas: &c.pages,
                })
                .collect();
            let mut out = vec![0xa5; bytes.len()];
            let written = PackBuilder::new(&descs)
                .write(&mut out)
                .expect("a valid pack fits where it was read from");
            assert_eq!(written, pack.len(), "pack length");
            let mut original = bytes.to_vec();
            original[4..8].fill(0);
            let mut at = TRACE_PACK_HEADER_SIZE;
            for c in &want {
                original[at + 4..at + 8].fill(0);
                at += RING_PACK_HEADER_SIZE + c.pages.len() * PAGE_VA_SIZE;
            }
            assert_eq!(
                out, original,
                "the builder does not write back the same pack"
            );
        }
    }
}

/// The structured input `data` decodes to.
pub fn describe(data: &[u8]) -> String {
    match Input::arbitrary(&mut Unstructured::new(data)) {
        Ok(input) => format!("{input:#?}"),
        Err(e) => format!("raw bytes only ({e})"),
    }
}

/// Runs one input: structured when it decodes as one, and the raw bytes themselves too.
pub fn run(data: &[u8]) {
    let mut u = Unstructured::new(data);
    if let Ok(input) = Input::arbitrary(&mut u) {
        let max_cpus = usize::from(input.max_cpus % (MAX_PACK_CPUS as u16 + 8));
        check(&input.bytes(), max_cpus);
    }
    for max_cpus in [1, 8, MAX_PACK_CPUS] {
        check(data, max_cpus);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_accepts_a_builder_pack_and_orders_its_errors() {
        let pages = [0x1000, 0x2000];
        let descs = [CpuPages {
            cpu: 1,
            reader_page_va: 0x3000,
            page_vas: &pages,
        }];
        let mut bytes = vec![0; 4096];
        PackBuilder::new(&descs).write(&mut bytes).unwrap();
        assert_eq!(reference(&bytes, 2).unwrap().len(), 1);
        assert_eq!(reference(&bytes, 1), Err(PackError::Cpu));
        assert_eq!(reference(&bytes[..40], 2), Err(PackError::Truncated));
        bytes[8] = 9;
        assert_eq!(reference(&bytes, 2), Err(PackError::TotalPages));
        bytes[0] = 0;
        assert_eq!(reference(&bytes, 2), Err(PackError::CpuCount));
        check(&bytes, 2);
    }
}
