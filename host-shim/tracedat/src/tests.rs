//! Round trips: what the writer writes, the reader and the page decoder give back.

use alloc::vec;
use alloc::vec::Vec;

use hyptrace_abi::events;
use hyptrace_abi::page::{record, HEADER_SIZE, PAGE_SIZE};
use proptest::prelude::*;

use crate::page::PageView;
use crate::{write_trace_dat, CpuData, CpuStats, TraceFile};

/// A page of `n` compact 8-byte records (event `id`), timestamps `ts + i`.
fn page(ts: u64, n: usize, id: u16) -> Vec<u8> {
    let mut p = vec![0u8; PAGE_SIZE];
    p[..8].copy_from_slice(&ts.to_le_bytes());
    p[8..16].copy_from_slice(&(8 * n as u64).to_le_bytes());
    for i in 0..n {
        let at = HEADER_SIZE + 8 * i;
        let delta = u32::from(i != 0);
        p[at..at + 4].copy_from_slice(&record::header(1, delta).to_le_bytes());
        p[at + 4..at + 6].copy_from_slice(&id.to_le_bytes());
    }
    p
}

proptest! {
    /// Any number of CPUs with any number of pages (some with none): the file parses back
    /// to the same CPU count, clock, statistics, event formats and pages, and every page's
    /// events decode.
    #[test]
    fn files_read_back_as_written(
        cpus in proptest::collection::vec((0usize..4, 0usize..40, any::<u64>()), 1..6),
        clock in prop_oneof![Just("mono"), Just("local"), Just("counter")],
    ) {
        let data: Vec<Vec<u8>> = cpus
            .iter()
            .enumerate()
            .map(|(c, &(pages, per_page, _))| {
                (0..pages)
                    .flat_map(|p| page(1000 * (p as u64 + 1), per_page, (c % 7 + 1) as u16))
                    .collect()
            })
            .collect();
        let stats: Vec<CpuStats> = cpus
            .iter()
            .map(|&(_, _, read)| CpuStats { read: read >> 1, ..CpuStats::default() })
            .collect();
        let records: Vec<CpuData> = data
            .iter()
            .zip(&stats)
            .map(|(pages, stats)| CpuData { pages, stats: *stats })
            .collect();
        let mut file = Vec::new();
        write_trace_dat(&mut file, events::SYSTEM, events::ALL, &records, clock).unwrap();

        let parsed = TraceFile::parse(&file).unwrap();
        prop_assert_eq!(parsed.cpus, cpus.len());
        prop_assert_eq!(parsed.clock.as_deref(), Some(clock));
        prop_assert_eq!(parsed.cpustats.len(), cpus.len());
        for (c, s) in stats.iter().enumerate() {
            let line = alloc::format!("read events: {}", s.read);
            prop_assert!(parsed.cpustats[c].contains(&line), "{}", parsed.cpustats[c]);
        }
        for e in events::ALL {
            let f = parsed.event_by_name(e.name).unwrap();
            prop_assert_eq!(f.id, e.id);
            prop_assert_eq!(f.system.as_str(), events::SYSTEM);
        }
        for (c, (pages, &(_, per_page, _))) in data.iter().zip(&cpus).enumerate() {
            let d = parsed.cpu_data[c];
            prop_assert_eq!(d.size as usize, pages.len());
            let bytes = &file[d.offset as usize..(d.offset + d.size) as usize];
            prop_assert_eq!(bytes, &pages[..]);
            for p in bytes.chunks_exact(PAGE_SIZE) {
                let got: Vec<_> = PageView::new(p).events().collect::<Result<_, _>>().unwrap();
                prop_assert_eq!(got.len(), per_page);
                for (i, e) in got.iter().enumerate() {
                    prop_assert_eq!(e.ts, PageView::new(p).time_stamp() + i as u64);
                }
            }
        }
    }

    /// Any prefix of a valid file is refused with an error, never a panic.
    #[test]
    fn truncated_files_are_errors(cut in 0usize..PAGE_SIZE + 64) {
        let pages = page(5, 3, 1);
        let cpus = [CpuData { pages: &pages, stats: CpuStats::default() }];
        let mut file = Vec::new();
        write_trace_dat(&mut file, events::SYSTEM, events::ALL, &cpus, "mono").unwrap();
        let cut = cut.min(file.len() - 1);
        prop_assert!(TraceFile::parse(&file[..cut]).is_err());
    }
}
