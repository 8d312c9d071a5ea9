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

// ---------------------------------------------------------------------------------------
// hyp_printk: ftrace:bprint records, the kallsyms and printk formats sections

/// A page of data records `(delta, payload)`, each padded to 4 bytes, compact as the ring
/// writes records of up to 112 bytes.
fn records_page(ts: u64, records: &[(u32, Vec<u8>)]) -> Vec<u8> {
    let mut data = Vec::new();
    for (delta, payload) in records {
        let padded = payload.len().div_ceil(4) * 4;
        assert!(padded <= record::MAX_SMALL_DATA);
        data.extend(record::header((padded / 4) as u32, *delta).to_le_bytes());
        let start = data.len();
        data.extend_from_slice(payload);
        data.resize(start + padded, 0);
    }
    let mut p = vec![0u8; PAGE_SIZE];
    p[..8].copy_from_slice(&ts.to_le_bytes());
    p[8..16].copy_from_slice(&(data.len() as u64).to_le_bytes());
    p[HEADER_SIZE..HEADER_SIZE + data.len()].copy_from_slice(&data);
    p
}

/// A `bprint` payload with `ip`, `fmt` and 64-bit arguments.
fn bprint(ip: u64, fmt: u64, args: &[u64]) -> Vec<u8> {
    use hyptrace_abi::printk;
    let mut p = vec![0u8; printk::payload_len(args.len())];
    assert!(printk::encode_header(&mut p, ip, args.len() as u16));
    p[printk::FMT_OFFSET..printk::FMT_OFFSET + 8].copy_from_slice(&fmt.to_le_bytes());
    for (i, a) in args.iter().enumerate() {
        let at = printk::ARGS_OFFSET + 8 * i;
        p[at..at + 8].copy_from_slice(&a.to_le_bytes());
    }
    p
}

/// The sites of the printk fixture, unsorted (the writer sorts them).
const SITES: [crate::PrintkFormat<'static>; 4] = [
    crate::PrintkFormat {
        addr: 0x4000_1300,
        format: "eight %llu %lld %llx 0x%llx %llu %lld %llx 0x%llx 100%% {ok}",
        location: "hyp::selftest",
    },
    crate::PrintkFormat {
        addr: 0x4000_1000,
        format: "boot",
        location: "hyp::main",
    },
    crate::PrintkFormat {
        addr: 0x4000_1100,
        format: "cpu=%llu",
        location: "hyp::psci",
    },
    crate::PrintkFormat {
        addr: 0x4000_1200,
        format: "swap cpu=%llu lost=%lld at %llx",
        location: "hyp::trace",
    },
];

/// A file of the hypervisor's events in the top-level buffer (`cpus`), with [`SITES`]'
/// printk formats.
fn hyp_file_with_printk(cpus: &[CpuData]) -> Vec<u8> {
    use crate::{write_trace_with_printk, Buffer, System};
    let mut file = Vec::new();
    write_trace_with_printk(
        &mut file,
        &[System {
            name: events::SYSTEM,
            events: events::ALL,
        }],
        &[Buffer { name: "", cpus }],
        "mono",
        &SITES,
    )
    .unwrap();
    file
}

/// A file with `bprint` records beside hypervisor and host events, in the top-level buffer
/// and in the `hypervisor` instance: 0, 1, 3 and 8 arguments; a `fmt` with no format; `ip`s
/// below, between and above the sites.
pub(crate) fn printk_file() -> Vec<u8> {
    use crate::{write_trace_with_printk, Buffer, System};
    use hyptrace_abi::event_format::{set_common_pid, Event};
    use hyptrace_abi::host_events;
    let [eight, boot, cpu, swap] = SITES.map(|s| s.addr);
    let mut workload = vec![0u8; host_events::Workload::PAYLOAD_LEN];
    host_events::Workload { phase: 1 }.encode(&mut workload);
    set_common_pid(&mut workload, 100);
    let enter = {
        let mut b = vec![0u8; events::HypEnter::PAYLOAD_LEN];
        events::HypEnter {}.encode(&mut b);
        b
    };
    let top = vec![
        records_page(
            1_000,
            &[
                (0, workload.clone()),
                (500, bprint(boot, boot, &[])),
                (500, bprint(cpu, cpu, &[3])),
                (1000, bprint(0x1000, cpu, &[4])),
            ],
        ),
        Vec::new(),
    ];
    let hyp = vec![
        records_page(
            1_200,
            &[
                (0, enter.clone()),
                (
                    100,
                    bprint(swap, swap, &[1, (-7i64) as u64, 0xdead_beef_cafe]),
                ),
                (
                    1000,
                    bprint(
                        eight,
                        eight,
                        &[
                            u64::MAX,
                            i64::MIN as u64,
                            0xabc,
                            0,
                            18,
                            (-1i64) as u64,
                            0xffff_ffff_ffff_ffff,
                            0x10,
                        ],
                    ),
                ),
                (1000, bprint(cpu, 0x4000_9999, &[5])),
                (1000, bprint(0x4000_1150, cpu, &[6])),
                (1000, bprint(0x5000_0000, cpu, &[7])),
            ],
        ),
        records_page(9_000, &[(0, bprint(boot, boot, &[])), (1, enter)]),
    ];
    fn cpus(pages: &[Vec<u8>]) -> Vec<CpuData<'_>> {
        pages
            .iter()
            .map(|p| CpuData {
                pages: p,
                stats: CpuStats::default(),
            })
            .collect()
    }
    let (top, hyp) = (cpus(&top), cpus(&hyp));
    let mut file = Vec::new();
    write_trace_with_printk(
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
                cpus: &top,
            },
            Buffer {
                name: "hypervisor",
                cpus: &hyp,
            },
        ],
        "mono",
        &SITES,
    )
    .unwrap();
    file
}

/// `bprint` records in both buffers print as trace-cmd 3.1.6 prints them: every line below
/// is `trace-cmd report`'s for [`printk_file`], byte for byte (checked against trace-cmd
/// 3.1.6 and libtraceevent 1.7.1). `%ps` prints the kallsyms symbol at or below `ip` if another
/// follows (`0x40001150` is inside `hyp::psci`), else `0x` and the address (below the first
/// site, past the last); a `fmt` without a format prints `(NO FORMAT FOUND at ADDR)`.
#[test]
fn bprint_records_print_as_trace_cmd_prints_them() {
    let file = printk_file();
    let report = crate::report::Report::new(&file).unwrap();
    let mut lines = Vec::new();
    let summary = report.for_each_line(&crate::report::Selection::default(), |l| {
        lines.push(alloc::string::String::from(l));
        true
    });
    assert!(summary.is_clean(), "{}", summary.problems());
    let trace_cmd = [
        "cpus=2",
        "                       <...>--1    [000]     0.000001: workload:             phase=1",
        "hypervisor:            <...>--1    [000]     0.000001: hyp_enter:             ",
        "hypervisor:            <...>--1    [000]     0.000001: bprint:               hyp::trace: swap cpu=1 lost=-7 at deadbeefcafe",
        "                       <...>--1    [000]     0.000002: bprint:               hyp::main: boot",
        "                       <...>--1    [000]     0.000002: bprint:               hyp::psci: cpu=3",
        "hypervisor:            <...>--1    [000]     0.000002: bprint:               hyp::selftest: eight 18446744073709551615 -9223372036854775808 abc 0x0 18 -1 ffffffffffffffff 0x10 100% {ok}",
        "                       <...>--1    [000]     0.000003: bprint:               0x1000: cpu=4",
        "hypervisor:            <...>--1    [000]     0.000003: bprint:               hyp::psci: (NO FORMAT FOUND at 40009999)",
        "hypervisor:            <...>--1    [000]     0.000004: bprint:               hyp::psci: cpu=6",
        "hypervisor:            <...>--1    [000]     0.000005: bprint:               0x50000000: cpu=7",
        "hypervisor:            <...>--1    [001]     0.000009: bprint:               hyp::main: boot",
        "hypervisor:            <...>--1    [001]     0.000009: hyp_enter:             ",
    ];
    assert_eq!(lines, trace_cmd);
    // `HYPTRACE_KEEP_FIXTURES=1`: the file, to run trace-cmd on.
    if std::env::var_os("HYPTRACE_KEEP_FIXTURES").is_some() {
        let path = std::env::temp_dir().join("hyptrace-printk.dat");
        std::fs::write(&path, &file).unwrap();
        std::eprintln!("fixture kept in {}", path.display());
    }
}

/// The u32-sized text section that starts at `at` in `file`, and the offset after it.
fn u32_section(file: &[u8], at: usize) -> (&str, usize) {
    let len = u32::from_le_bytes(file[at..at + 4].try_into().unwrap()) as usize;
    (
        core::str::from_utf8(&file[at + 4..at + 4 + len]).unwrap(),
        at + 4 + len,
    )
}

/// Offset of the ftrace events count: right after the `header_event` text.
fn ftrace_section(file: &[u8]) -> usize {
    let tag = b"header_event\0";
    let at = file.windows(tag.len()).position(|w| w == tag).unwrap() + tag.len();
    at + 8 + u64::from_le_bytes(file[at..at + 8].try_into().unwrap()) as usize
}

/// Offset of the kallsyms section: after the ftrace events and the systems.
fn kallsyms_section(file: &[u8]) -> usize {
    let mut at = ftrace_section(file);
    let count = |at: usize| u32::from_le_bytes(file[at..at + 4].try_into().unwrap()) as usize;
    let skip_formats = |mut at: usize, n: usize| {
        for _ in 0..n {
            at += 8 + u64::from_le_bytes(file[at..at + 8].try_into().unwrap()) as usize;
        }
        at
    };
    at = skip_formats(at + 4, count(at));
    let systems = count(at);
    at += 4;
    for _ in 0..systems {
        at += file[at..].iter().position(|&b| b == 0).unwrap() + 1;
        at = skip_formats(at + 4, count(at));
    }
    at
}

#[test]
fn printk_sections_are_the_kernels_texts() {
    use hyptrace_abi::printk;
    let file = printk_file();
    // ftrace events: one, bprint's format file byte for byte.
    let at = ftrace_section(&file);
    assert_eq!(u32::from_le_bytes(file[at..at + 4].try_into().unwrap()), 1);
    let len = u64::from_le_bytes(file[at + 4..at + 12].try_into().unwrap()) as usize;
    let mut want = alloc::string::String::new();
    printk::write_format(&mut want).unwrap();
    assert_eq!(&file[at + 12..at + 12 + len], want.as_bytes());
    // kallsyms and printk formats: one line per site, by address.
    let (kallsyms, next) = u32_section(&file, kallsyms_section(&file));
    assert_eq!(
        kallsyms,
        "0000000040001000 t hyp::main\n\
         0000000040001100 t hyp::psci\n\
         0000000040001200 t hyp::trace\n\
         0000000040001300 t hyp::selftest\n"
    );
    let (formats, next) = u32_section(&file, next);
    assert_eq!(
        formats,
        "0x40001000 : \"boot\"\n\
         0x40001100 : \"cpu=%llu\"\n\
         0x40001200 : \"swap cpu=%llu lost=%lld at %llx\"\n\
         0x40001300 : \"eight %llu %lld %llx 0x%llx %llu %lld %llx 0x%llx 100%% {ok}\"\n"
    );
    assert_eq!(&file[next..next + 8], &[0; 8], "no saved cmdlines");

    // Read back: bprint among the events, the sites in both tables.
    let parsed = TraceFile::parse(&file).unwrap();
    let bprint = parsed.event_by_name("bprint").unwrap();
    assert_eq!((bprint.id, bprint.system.as_str()), (printk::ID, "ftrace"));
    let b = bprint.bprint.unwrap();
    assert_eq!(
        (bprint.fields[b.ip].offset, bprint.fields[b.fmt].offset),
        (printk::IP_OFFSET, printk::FMT_OFFSET)
    );
    assert_eq!(bprint.fields[b.buf].offset, printk::ARGS_OFFSET);
    assert!(parsed.skipped_events.is_empty());
    // Without the file's tables, as libtraceevent prints an unknown site and format.
    let mut text = alloc::string::String::new();
    bprint
        .render(&self::bprint(0x4000_1000, 0x4000_1000, &[]), &mut text)
        .unwrap();
    assert_eq!(text, "0x40001000: (NO FORMAT FOUND at 40001000)\n");
    assert_eq!(parsed.kallsyms.len(), SITES.len());
    assert_eq!(parsed.printk_formats.len(), SITES.len());
    for site in SITES {
        assert_eq!(parsed.kallsyms.function(site.addr), Some(site.location));
        assert_eq!(parsed.printk_formats.format(site.addr), Some(site.format));
    }
}

#[test]
fn without_printk_the_sections_stay_empty() {
    use crate::{write_trace, write_trace_with_printk, Buffer, System};
    let pages = page(5, 3, 1);
    let cpus = [CpuData {
        pages: &pages,
        stats: CpuStats::default(),
    }];
    let systems = [System {
        name: events::SYSTEM,
        events: events::ALL,
    }];
    let buffers = [Buffer {
        name: "",
        cpus: &cpus,
    }];
    let mut plain = Vec::new();
    write_trace(&mut plain, &systems, &buffers, "mono").unwrap();
    let at = ftrace_section(&plain);
    assert_eq!(&plain[at..at + 4], &[0; 4], "no ftrace events");
    let k = kallsyms_section(&plain);
    assert_eq!(
        &plain[k..k + 16],
        &[0; 16],
        "empty kallsyms, printk, cmdlines"
    );
    let parsed = TraceFile::parse(&plain).unwrap();
    assert!(parsed.event_by_name("bprint").is_none());
    assert!(parsed.kallsyms.is_empty() && parsed.printk_formats.is_empty());
    // An empty slice of sites: bprint's format, empty tables.
    let mut with = Vec::new();
    write_trace_with_printk(&mut with, &systems, &buffers, "mono", &[]).unwrap();
    let parsed = TraceFile::parse(&with).unwrap();
    assert!(parsed.event_by_name("bprint").unwrap().bprint.is_some());
    assert!(parsed.kallsyms.is_empty() && parsed.printk_formats.is_empty());
}

#[test]
fn printk_formats_the_sections_cannot_carry_are_refused() {
    use crate::{write_trace_with_printk, Buffer, PrintkFormat, System, WriteError};
    let cpus = [CpuData {
        pages: &[],
        stats: CpuStats::default(),
    }];
    let site = |addr, format, location| PrintkFormat {
        addr,
        format,
        location,
    };
    for (sites, addr, why) in [
        (vec![site(1, "a\nb", "m")], 1, "control"),
        (vec![site(2, "say \"hi\"", "m")], 2, "quote"),
        (vec![site(3, "a\\tb", "m")], 3, "backslash"),
        (vec![site(4, "x", "")], 4, "empty location"),
        (vec![site(5, "x", "hyp psci")], 5, "blank"),
        (vec![site(6, "x", "$x")], 6, "`$`"),
        (vec![site(7, "x", "a"), site(7, "y", "b")], 7, "twice"),
    ] {
        let mut file = Vec::new();
        let err = write_trace_with_printk(
            &mut file,
            &[System {
                name: events::SYSTEM,
                events: events::ALL,
            }],
            &[Buffer {
                name: "",
                cpus: &cpus,
            }],
            "mono",
            &sites,
        )
        .unwrap_err();
        match &err {
            WriteError::BadPrintkFormat { addr: a, .. } => assert_eq!(*a, addr),
            e => panic!("{e:?}"),
        }
        let text = alloc::string::ToString::to_string(&err);
        assert!(text.contains(why), "{text}");
        assert!(file.is_empty(), "nothing written on refusal");
    }
}

/// A kernel's ftrace section holds formats this crate cannot render (`function` prints
/// with `%ps`): kept to print their raw fields, unless their ID is also an event this crate
/// renders (here hyp_enter's), which then wins; the file still reads, bprint and all.
#[test]
fn ftrace_formats_that_cannot_render_are_set_aside() {
    const FUNCTION: &str = "name: function\nID: 1\nformat:\n\
        \tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\
        \tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;\n\
        \tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;\n\
        \tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n\n\
        \tfield:unsigned long ip;\toffset:8;\tsize:8;\tsigned:0;\n\
        \tfield:unsigned long parent_ip;\toffset:16;\tsize:8;\tsigned:0;\n\n\
        print fmt: \" %ps <-- %ps\", (void *)REC->ip, (void *)REC->parent_ip\n";
    // No pages, so no offset moves when the format goes in.
    let cpus = [CpuData {
        pages: &[],
        stats: CpuStats::default(),
    }];
    let mut file = hyp_file_with_printk(&cpus);
    let at = ftrace_section(&file);
    file[at..at + 4].copy_from_slice(&2u32.to_le_bytes());
    let mut entry = (FUNCTION.len() as u64).to_le_bytes().to_vec();
    entry.extend_from_slice(FUNCTION.as_bytes());
    file.splice(at + 4..at + 4, entry);

    let parsed = TraceFile::parse(&file).unwrap();
    assert_eq!(parsed.skipped_events.len(), 1);
    let skipped = &parsed.skipped_events[0];
    assert_eq!(
        (skipped.name.as_deref(), skipped.id),
        (Some("function"), Some(1))
    );
    assert!(skipped.error.contains("%p"), "{}", skipped.error);
    assert!(
        skipped.error.contains("its ID 1 is also hyp_enter's"),
        "{}",
        skipped.error
    );
    // Its ID is hyp_enter's: set aside, it clashes with nothing.
    assert_eq!(parsed.event_by_name("hyp_enter").unwrap().id, 1);
    assert!(parsed.event_by_name("function").is_none());
    assert!(parsed.event_by_name("bprint").is_some());
    assert_eq!(parsed.kallsyms.len(), SITES.len());
}

/// A record holding fewer arguments than its format reads is an error, its line
/// `[FAILED TO PARSE]` (trace-cmd prints garbage for it, then fails every later bprint
/// record); one holding more prints as trace-cmd prints it.
#[test]
fn bprint_records_with_too_few_arguments_are_errors() {
    use crate::event_format::RenderProblem;
    use crate::report::{EventErrorKind, Report, Selection};
    let [_, boot, _, swap] = SITES.map(|s| s.addr);
    let pages = records_page(
        1_000,
        &[
            (0, bprint(swap, swap, &[1, 2])),
            (1, bprint(boot, boot, &[1, 2])),
            (1, bprint(swap, swap, &[])[..12].to_vec()),
        ],
    );
    let cpus = [CpuData {
        pages: &pages,
        stats: CpuStats::default(),
    }];
    let file = hyp_file_with_printk(&cpus);
    let report = Report::new(&file).unwrap();
    let mut lines = Vec::new();
    let summary = report.for_each_line(&Selection::default(), |l| {
        lines.push(alloc::string::String::from(l));
        true
    });
    let prefix = "           <...>--1    [000]     0.000001: bprint:               ";
    assert_eq!(lines[1], alloc::format!("{prefix}[FAILED TO PARSE]"));
    assert_eq!(lines[2], alloc::format!("{prefix}hyp::main: boot"));
    assert_eq!(lines[3], alloc::format!("{prefix}[FAILED TO PARSE]"));
    assert_eq!(summary.render_error_count, 2);
    match &summary.render_errors[0].kind {
        EventErrorKind::Render { name, error } => {
            assert_eq!((name.as_str(), error.field.as_str()), ("bprint", "buf"));
            assert_eq!(
                error.problem,
                RenderProblem::TooFewArguments {
                    format: "swap cpu=%llu lost=%lld at %llx".into(),
                    needed: 24,
                    held: 16,
                }
            );
        }
        k => panic!("{k:?}"),
    }
    match &summary.render_errors[1].kind {
        EventErrorKind::Render { error, .. } => {
            assert_eq!(error.field, "fmt");
            assert_eq!(error.problem, RenderProblem::OutsidePayload);
        }
        k => panic!("{k:?}"),
    }
    assert!(
        summary.problems().contains("reads 24"),
        "{}",
        summary.problems()
    );
}

/// An event whose print format cannot be parsed prints its raw fields, as libtraceevent
/// prints an event it failed to parse; the expected line is what trace-cmd 3.1.6 printed for
/// this very file (a scalar of every kind: u64, unsigned long, pointer, long, int, short,
/// s8, u8).
#[test]
fn an_unparsable_print_format_prints_the_raw_fields_as_trace_cmd_does() {
    use hyptrace_abi::event_format::{EventDesc, FieldDesc, Header};
    let field = |name, c_type, size, signed| FieldDesc {
        name,
        c_type,
        size,
        signed,
    };
    let fields = [
        field("u", "u64", 8, false),
        field("l", "unsigned long", 8, false),
        field("p", "void *", 8, false),
        field("s8b", "long", 8, true),
        field("i", "int", 4, true),
        field("h", "short", 2, true),
        field("c", "s8", 1, true),
        field("b", "u8", 1, false),
    ];
    let fields: &'static [FieldDesc] = Vec::leak(fields.to_vec());
    let broken = [EventDesc {
        id: 40,
        name: "broken",
        header: Header::Pkvm,
        fields,
        print_fmt: "\"%d\", ((REC->i",
    }];
    let mut payload = vec![40u8, 0];
    payload.extend_from_slice(&0xfedc_ba98_7654_3210u64.to_le_bytes());
    payload.extend_from_slice(&0x1234u64.to_le_bytes());
    payload.extend_from_slice(&0xffff_8000_0000_1000u64.to_le_bytes());
    payload.extend_from_slice(&(-5i64).to_le_bytes());
    payload.extend_from_slice(&(-7i32).to_le_bytes());
    payload.extend_from_slice(&(-3i16).to_le_bytes());
    payload.extend_from_slice(&[0xfe, 200]);
    let words = payload.len().div_ceil(4);
    let mut page = vec![0u8; PAGE_SIZE];
    page[..8].copy_from_slice(&1000u64.to_le_bytes());
    page[8..16].copy_from_slice(&((4 + 4 * words) as u64).to_le_bytes());
    page[16..20].copy_from_slice(&record::header(words as u32, 0).to_le_bytes());
    page[20..20 + payload.len()].copy_from_slice(&payload);
    let cpus = [CpuData {
        pages: &page,
        stats: CpuStats::default(),
    }];
    let mut file = Vec::new();
    write_trace_dat(&mut file, "probe", &broken, &cpus, "mono").unwrap();
    let report = crate::report::Report::new(&file).expect("an unparsable print format is kept");
    assert!(report.file.events[0].print_error.is_some());
    let mut lines = Vec::new();
    let summary = report.for_each_line(&crate::report::Selection::default(), |l| {
        lines.push(l.to_string());
        true
    });
    assert!(summary.is_clean(), "{}", summary.problems());
    assert_eq!(
        lines,
        [
            "cpus=1",
            "           <...>--1    [000]     0.000001: broken:               [FAILED TO PARSE] \
             u=18364758544493064720 l=0x1234 p=0xffff800000001000 s8b=-5 i=-7 h=-3 c=-2 b=200"
        ]
    );
}
