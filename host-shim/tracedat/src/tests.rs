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

/// A page of `n` records of host event `id` (ftrace header, pid `pid`, one u32 field),
/// timestamps `ts + 2 * i`.
fn host_page(ts: u64, n: usize, id: u16, pid: i32) -> Vec<u8> {
    let mut p = vec![0u8; PAGE_SIZE];
    p[..8].copy_from_slice(&ts.to_le_bytes());
    p[8..16].copy_from_slice(&(16 * n as u64).to_le_bytes());
    for i in 0..n {
        let at = HEADER_SIZE + 16 * i;
        let delta = if i == 0 { 0 } else { 2 };
        p[at..at + 4].copy_from_slice(&record::header(3, delta).to_le_bytes());
        p[at + 4..at + 6].copy_from_slice(&id.to_le_bytes());
        p[at + 8..at + 12].copy_from_slice(&pid.to_le_bytes());
        p[at + 12..at + 16].copy_from_slice(&(i as u32).to_le_bytes());
    }
    p
}

#[test]
fn two_buffers_read_back() {
    use crate::{write_trace, Buffer, System};
    use hyptrace_abi::host_events;
    let host: Vec<Vec<u8>> = (0..2)
        .map(|c| host_page(1001, 5, host_events::FIRST_ID + 6, 100 + c))
        .collect();
    // CPU 1's second hypervisor page says 9 events were lost before it.
    let hyp: Vec<Vec<u8>> = (0..2)
        .map(|c| {
            let mut pages = page(1001, 7, 1);
            let mut lossy = page(1020, 2, 2);
            if c == 1 {
                let len = 16u64;
                let commit = len | 1 << 31 | 1 << 30;
                lossy[8..16].copy_from_slice(&commit.to_le_bytes());
                let at = HEADER_SIZE + len as usize;
                lossy[at..at + 8].copy_from_slice(&9u64.to_le_bytes());
            }
            pages.extend(lossy);
            pages
        })
        .collect();
    fn cpus(pages: &[Vec<u8>]) -> Vec<CpuData<'_>> {
        pages
            .iter()
            .map(|p| CpuData {
                pages: p,
                stats: CpuStats::default(),
            })
            .collect()
    }
    let (host_cpus, hyp_cpus) = (cpus(&host), cpus(&hyp));
    let mut file = Vec::new();
    let len = write_trace(
        &mut file,
        &[
            System {
                name: events::SYSTEM,
                events: events::ALL,
            },
            System {
                name: host_events::SYSTEM,
                events: host_events::ALL,
            },
        ],
        &[
            Buffer {
                name: "",
                cpus: &host_cpus,
            },
            Buffer {
                name: "hypervisor",
                cpus: &hyp_cpus,
            },
        ],
        "mono",
    )
    .unwrap();
    assert_eq!(len, file.len() as u64);
    let parsed = TraceFile::parse(&file).unwrap();
    assert_eq!(parsed.buffer_count(), 2);
    assert_eq!(parsed.buffer_name(1), "hypervisor");
    assert_eq!(parsed.cpustats.len(), 5, "{:?}", parsed.cpustats);
    for cpu in 0..2 {
        assert_eq!(
            parsed.pages_of(parsed.buffer_cpu_data(0, cpu)),
            &host[cpu][..]
        );
        let d = parsed.buffer_cpu_data(1, cpu);
        assert_eq!(d.offset % PAGE_SIZE as u64, 0);
        assert_eq!(parsed.pages_of(d), &hyp[cpu][..]);
    }

    // What trace-cmd 3.1.6 prints for this file (its lines 1-4, 27 and 28): the top-level
    // buffer wins ties, an instance's events carry its name, and a drop marker takes the
    // name in place of the event line that follows it.
    let report = crate::report::Report::new(&file).unwrap();
    let mut lines = Vec::new();
    let summary = report.for_each_line(&crate::report::Selection::default(), |l| {
        lines.push(alloc::string::String::from(l));
        true
    });
    assert!(summary.is_clean(), "{}", summary.problems());
    assert_eq!(lines.len(), 30);
    assert_eq!(lines[0], "cpus=2");
    assert_eq!(
        lines[1],
        "                       <...>--1    [000]     0.000001: workload:             phase=0"
    );
    assert_eq!(
        lines[3],
        "hypervisor:            <...>--1    [000]     0.000001: hyp_enter:             "
    );
    assert_eq!(lines[26], "hypervisor: CPU:1 [9 EVENTS DROPPED]");
    assert_eq!(
        lines[27],
        "           <...>--1    [001]     0.000001: hyp_exit:              "
    );
    assert_eq!(summary.buffers[1][1].dropped, 9);
    assert_eq!(summary.buffers[0][0].events, 5);
    assert_eq!(summary.cpus[1].events, 5 + 9);
}
