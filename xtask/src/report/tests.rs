//! Tests of `cargo xtask report` on trace.dat files built here with hyptrace's own writer
//! (`hyptrace_tracedat::write_trace_dat`), pages built by hand or by the real ring writer.

use hyptrace_abi::event_format::Event;
use hyptrace_abi::events::{self, HostHcall, HostMemAbort, HostSmc, HypEnter, PsciCpuOn, Selftest};
use hyptrace_abi::page::record::{header, MAX_DELTA, TIME_EXTEND};
use hyptrace_tracedat::{write_trace_dat, CpuData, CpuStats, PAGE_SIZE};

use super::compare::{LineComparer, Mismatch};
use super::{Report, Selection};
use hyptrace_tracedat::event_format::{
    format_value, parse_format, parse_print_fmt, Conversion, Length, Piece,
};
use hyptrace_tracedat::{FileError, TraceFile};

// ---------------------------------------------------------------------------------------
// Building files

fn encode<E: Event>(e: E) -> Vec<u8> {
    let mut b = vec![0u8; E::PAYLOAD_LEN];
    e.encode(&mut b);
    b
}

fn hcall(id: u32) -> Vec<u8> {
    encode(HostHcall { id, invalid: 0 })
}

fn enter() -> Vec<u8> {
    encode(HypEnter {})
}

/// A data record as the writer lays it out: payload padded to 4 bytes, compact up to 112.
fn rec(delta: u32, payload: &[u8]) -> Vec<u8> {
    let padded = payload.len().div_ceil(4).max(1) * 4;
    let mut r = Vec::new();
    if padded <= 112 {
        r.extend(header((padded / 4) as u32, delta).to_le_bytes());
    } else {
        r.extend(header(0, delta).to_le_bytes());
        r.extend((padded as u32 + 4).to_le_bytes());
    }
    let start = r.len();
    r.extend_from_slice(payload);
    r.resize(start + padded, 0);
    r
}

/// A TIME_EXTEND record adding `delta`.
fn extend(delta: u64) -> Vec<u8> {
    let mut r = header(TIME_EXTEND, (delta & MAX_DELTA) as u32)
        .to_le_bytes()
        .to_vec();
    r.extend(((delta >> 27) as u32).to_le_bytes());
    r
}

/// Loss information of a built page.
#[derive(Clone, Copy)]
enum Loss {
    None,
    Unknown,
    Count(u64),
}

fn page(ts: u64, records: &[Vec<u8>], loss: Loss) -> Vec<u8> {
    let data: Vec<u8> = records.concat();
    let mut p = vec![0u8; PAGE_SIZE];
    p[..8].copy_from_slice(&ts.to_le_bytes());
    let mut commit = data.len() as u64;
    p[16..16 + data.len()].copy_from_slice(&data);
    match loss {
        Loss::None => {}
        Loss::Unknown => commit |= 1 << 31,
        Loss::Count(n) => {
            commit |= (1 << 31) | (1 << 30);
            p[16 + data.len()..24 + data.len()].copy_from_slice(&n.to_le_bytes());
        }
    }
    p[8..16].copy_from_slice(&commit.to_le_bytes());
    p
}

fn stats(read: u64) -> CpuStats {
    CpuStats {
        entries: 0,
        overrun: 3,
        read,
        bytes: 4096,
        oldest_ts: 1_000,
        now_ts: 2_000_000_000,
    }
}

/// A trace.dat with one entry of pages per CPU.
fn file(cpus: &[Vec<u8>], clock: &str) -> Vec<u8> {
    let data: Vec<CpuData> = cpus
        .iter()
        .enumerate()
        .map(|(i, p)| CpuData {
            pages: p,
            stats: stats(i as u64),
        })
        .collect();
    let mut out = Vec::new();
    write_trace_dat(&mut out, events::SYSTEM, events::ALL, &data, clock).unwrap();
    out
}

fn lines(bytes: &[u8], sel: &Selection) -> Vec<String> {
    let report = Report::new(bytes).unwrap();
    report.check(sel).unwrap();
    let mut out = Vec::new();
    let summary = report.for_each_line(sel, |l| {
        out.push(l.to_string());
        true
    });
    assert!(summary.is_clean(), "{}", summary.problems());
    out
}

fn all(bytes: &[u8]) -> Vec<String> {
    lines(bytes, &Selection::default())
}

/// The file of the edge cases: ties between CPUs, rounding, an empty CPU, losses with and
/// without a count, a page starting with a TIME_EXTEND, negative and wide values.
fn edge_case_file() -> Vec<u8> {
    let cpu0 = [
        page(
            1_000,
            &[
                rec(0, &enter()),
                rec(499, &hcall(0xc600_0000)),
                rec(1, &enter()),
                rec(
                    0,
                    &encode(PsciCpuOn {
                        target: 0x8000_0101,
                        result: -4,
                    }),
                ),
            ],
            Loss::None,
        ),
        page(
            2_000_000_500,
            &[
                rec(
                    0,
                    &encode(HostMemAbort {
                        esr: 0x9200_0046,
                        addr: 0xffff_0000_dead_b000,
                    }),
                ),
                extend(5 << 27),
                rec(
                    3,
                    &encode(Selftest {
                        seq: u64::MAX,
                        payload: events::selftest_payload(u64::MAX),
                    }),
                ),
            ],
            Loss::Count(42),
        ),
        // Starts with a TIME_EXTEND: kbuffer does not report this page's loss.
        page(
            123_456_000_000_000,
            &[extend(7), rec(0, &hcall(1)), rec(2, &enter())],
            Loss::Count(9),
        ),
    ]
    .concat();
    let cpu2 = [
        page(
            1_000,
            &[
                rec(0, &enter()),
                rec(
                    500,
                    &encode(HostSmc {
                        id: 0x8400_0000,
                        forwarded: 1,
                    }),
                ),
            ],
            Loss::Unknown,
        ),
        page(2_000_000_500, &[rec(0, &hcall(0xc600_0018))], Loss::None),
        // An empty page with a loss: nothing to attach it to.
        page(2_000_000_600, &[], Loss::Count(5)),
        page(2_000_000_700, &[rec(0, &enter())], Loss::Count(1)),
    ]
    .concat();
    file(&[cpu0, Vec::new(), cpu2], "mono")
}

/// A `bprint` payload (`hyp_printk`'s record): `ip`, `fmt` and 64-bit arguments.
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

/// `hyp_printk` records with 0, 1, 2 and 8 arguments, signed, unsigned and hex, a `fmt`
/// without a format and `ip`s without a symbol, in the top-level buffer and in the
/// `hypervisor` instance, beside hypervisor events.
fn printk_file() -> Vec<u8> {
    use hyptrace_tracedat::{write_trace_with_printk, Buffer, PrintkFormat, System};
    let sites = [
        PrintkFormat {
            addr: 0xffff_8000_0810_0040,
            format: "cpu %llu is up",
            location: "hyp::psci",
        },
        PrintkFormat {
            addr: 0xffff_8000_0810_0000,
            format: "hello",
            location: "hyp::main",
        },
        PrintkFormat {
            addr: 0xffff_8000_0810_0080,
            format: "swap cpu=%llu lost=%lld",
            location: "hyp::tracing::swap",
        },
        PrintkFormat {
            addr: 0xffff_8000_0810_00c0,
            format: "%llu %lld %llx 0x%llx|%llu %lld %llx 0x%llx 100%%",
            location: "hyp::selftest",
        },
    ];
    let [up, hello, swap, eight] = sites.map(|s| s.addr);
    let top = vec![
        page(
            1_000,
            &[
                rec(0, &enter()),
                rec(10, &bprint(hello, hello, &[])),
                rec(10, &bprint(up, up, &[1])),
                rec(10, &bprint(0xffff_0000_0000_0000, up, &[2])),
            ],
            Loss::None,
        ),
        Vec::new(),
    ];
    let hyp = vec![
        page(
            1_005,
            &[
                rec(0, &bprint(swap, swap, &[3, (-2i64) as u64])),
                rec(10, &bprint(swap, 0xffff_8000_0810_1234, &[4, 5])),
                rec(
                    10,
                    &bprint(
                        eight,
                        eight,
                        &[
                            0,
                            i64::MAX as u64,
                            0xfeed,
                            u64::MAX,
                            7,
                            (-9i64) as u64,
                            0,
                            0xa,
                        ],
                    ),
                ),
            ],
            Loss::None,
        ),
        [
            page(2_000, &[rec(0, &bprint(u64::MAX, hello, &[]))], Loss::None),
            page(
                3_000,
                &[rec(0, &bprint(up, up, &[u64::MAX]))],
                Loss::Count(4),
            ),
        ]
        .concat(),
    ];
    fn cpus(pages: &[Vec<u8>]) -> Vec<CpuData<'_>> {
        pages
            .iter()
            .enumerate()
            .map(|(i, p)| CpuData {
                pages: p,
                stats: stats(i as u64),
            })
            .collect()
    }
    let (top, hyp) = (cpus(&top), cpus(&hyp));
    let mut out = Vec::new();
    write_trace_with_printk(
        &mut out,
        &[System {
            name: events::SYSTEM,
            events: events::ALL,
        }],
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
        &sites,
    )
    .unwrap();
    out
}

// ---------------------------------------------------------------------------------------
// File parsing

#[test]
fn parses_the_writers_file() {
    let bytes = edge_case_file();
    let f = TraceFile::parse(&bytes).unwrap();
    assert_eq!(f.cpus, 3);
    assert_eq!(f.page_size, PAGE_SIZE);
    assert_eq!(f.clock.as_deref(), Some("mono"));
    assert!(f.time_in_usecs());
    assert_eq!(f.events.len(), events::ALL.len());
    assert_eq!(f.cpustats.len(), 3);
    assert!(f.cpustats[2].starts_with("CPU: 2\nentries: 0\n"));
    assert_eq!(f.cpu_data[0].size, 3 * PAGE_SIZE as u64);
    assert_eq!(f.cpu_data[1].size, 0);
    assert_eq!(f.cpu_pages(1), &[] as &[u8]);
    assert_eq!(
        f.cpu_data[2].offset,
        f.cpu_data[0].offset + 3 * PAGE_SIZE as u64
    );
}

#[test]
fn bad_magic_and_version_are_refused() {
    let good = edge_case_file();
    let mut bad = good.clone();
    bad[1] = 0x09;
    assert_eq!(TraceFile::parse(&bad).unwrap_err(), FileError::BadMagic);
    assert_eq!(TraceFile::parse(b"").unwrap_err(), FileError::BadMagic);
    let mut bad = good.clone();
    bad[3..10].copy_from_slice(b"tracinG");
    assert_eq!(TraceFile::parse(&bad).unwrap_err(), FileError::BadMagic);
    let mut v8 = good.clone();
    v8[10] = b'8';
    assert_eq!(
        TraceFile::parse(&v8).unwrap_err(),
        FileError::UnsupportedVersion("8".into())
    );
    let msg = Report::new(&v8).err().unwrap().to_string();
    assert!(msg.contains("versions 6 and 7 are"), "{msg}");
    // A version 6 file relabelled 7 is read as 7 and refused for what it lacks, not for
    // its version.
    let mut v7 = good.clone();
    v7[10] = b'7';
    assert!(!matches!(
        TraceFile::parse(&v7),
        Err(FileError::UnsupportedVersion(_)) | Ok(_)
    ));
}

#[test]
fn every_truncation_of_the_header_is_an_error() {
    let good = edge_case_file();
    let f = TraceFile::parse(&good).unwrap();
    let header_end = f.cpu_data[0].offset as usize;
    for cut in 0..header_end {
        let r = TraceFile::parse(&good[..cut]);
        assert!(r.is_err(), "a file cut at {cut} parsed");
    }
    // Cut inside the CPU data: the table points past the end.
    let cut = &good[..good.len() - 100];
    match TraceFile::parse(cut).unwrap_err() {
        FileError::BadCpuData { cpu: 2, why, .. } => assert!(why.contains("truncated"), "{why}"),
        e => panic!("{e:?}"),
    }
}

/// Offset of CPU `cpu`'s flyrecord entry.
fn fly_entry(bytes: &[u8], cpu: usize) -> usize {
    bytes.windows(10).position(|w| w == b"flyrecord\0").unwrap() + 10 + 16 * cpu
}

#[test]
fn bad_offsets_are_refused() {
    let good = edge_case_file();
    let patch = |cpu: usize, offset: u64, size: u64| {
        let mut b = good.clone();
        let at = fly_entry(&b, cpu);
        b[at..at + 8].copy_from_slice(&offset.to_le_bytes());
        b[at + 8..at + 16].copy_from_slice(&size.to_le_bytes());
        TraceFile::parse(&b).unwrap_err()
    };
    let len = good.len() as u64;
    let p = PAGE_SIZE as u64;
    for (cpu, offset, size, expect) in [
        (0, len, p, "past the end"),
        (0, u64::MAX - 10, p, "past the end"),
        (2, 16, p, "header"),
        (0, 2 * p, p + 1, "whole number"),
    ] {
        match patch(cpu, offset, size) {
            FileError::BadCpuData { cpu: c, why, .. } => {
                assert_eq!(c, cpu);
                assert!(why.contains(expect), "{why}");
            }
            e => panic!("{e:?}"),
        }
    }
    // The message names the CPU and the numbers.
    let msg = patch(0, len, p).to_string();
    assert!(msg.starts_with("CPU 0's data (offset"), "{msg}");
}

#[test]
fn corrupt_pages_are_reported_not_fatal() {
    let mut cpu0 = page(1_000, &[rec(0, &enter()), rec(1, &enter())], Loss::None);
    // The second record claims a length running past the commit.
    cpu0[16 + 8] = 0; // type_len 0: length word follows
    cpu0[16 + 12..16 + 16].copy_from_slice(&4000u32.to_le_bytes());
    let mut second = page(3_000, &[rec(0, &enter())], Loss::None);
    second[8..16].copy_from_slice(&5000u64.to_le_bytes()); // commit beyond the page
    cpu0.extend(second);
    cpu0.extend(page(4_000, &[rec(0, &enter())], Loss::None));
    let bytes = file(&[cpu0], "mono");
    let report = Report::new(&bytes).unwrap();
    let mut n = 0;
    let summary = report.for_each_line(&Selection::default(), |_| {
        n += 1;
        true
    });
    assert_eq!(n, 3, "cpus=1 and the two good events");
    assert_eq!(summary.page_errors.len(), 2);
    let text = summary.problems();
    assert!(text.contains("CPU 0 page 0"), "{text}");
    assert!(text.contains("CPU 0 page 1"), "{text}");
    assert!(text.contains("commit is larger than a page"), "{text}");
}

// ---------------------------------------------------------------------------------------
// Formats and printf

#[test]
fn every_event_format_parses_back_to_its_description() {
    for desc in events::ALL {
        let mut text = String::new();
        desc.write_format(&mut text).unwrap();
        let f = parse_format(&text, "hyp").unwrap();
        assert_eq!((f.id, f.name.as_str()), (desc.id, desc.name));
        assert_eq!(f.fields[0].name, "common_type");
        assert_eq!(f.fields.len(), desc.fields.len() + 1, "{}", desc.name);
        for (i, (got, want)) in f.fields[1..].iter().zip(desc.fields).enumerate() {
            assert_eq!(got.name, want.name);
            assert_eq!(got.c_type, want.c_type);
            assert_eq!(got.size, want.size);
            assert_eq!(got.signed, want.signed);
            assert_eq!(got.offset, desc.offset_of(i));
        }
        assert_eq!(f.print_fmt_text, desc.print_fmt);
    }
}

fn render(payload: &[u8]) -> String {
    let id = u16::from_le_bytes([payload[0], payload[1]]);
    let desc = events::by_id(id).unwrap();
    let mut text = String::new();
    desc.write_format(&mut text).unwrap();
    let f = parse_format(&text, "hyp").unwrap();
    let mut out = String::new();
    f.render(payload, &mut out).unwrap();
    out
}

#[test]
fn printf_rendering_of_every_event() {
    let cases: [(Vec<u8>, &str); 7] = [
        (enter(), " "),
        (encode(events::HypExit {}), " "),
        (
            encode(HostHcall {
                id: 0xc600_0000,
                invalid: 1,
            }),
            "id=0xc6000000 invalid=1",
        ),
        (
            encode(HostSmc {
                id: 0xc400_0003_0000_0001,
                forwarded: 0,
            }),
            "id=0xc400000300000001 forwarded=0",
        ),
        (
            encode(HostMemAbort {
                esr: 0x9200_0046,
                addr: 0xffff_0000_dead_b000,
            }),
            "esr=0x92000046 addr=0xffff0000deadb000",
        ),
        (
            encode(PsciCpuOn {
                target: 0x101,
                result: -4,
            }),
            "target=0x101 result=-4",
        ),
        (
            encode(Selftest {
                seq: u64::MAX,
                payload: 0,
            }),
            "seq=18446744073709551615 payload=0x0",
        ),
    ];
    assert_eq!(cases.len(), events::ALL.len(), "one case per event");
    for (payload, want) in cases {
        assert_eq!(render(&payload), want);
    }
}

fn conv(spec: &str) -> Conversion {
    let field = "\tfield:u64 v;\toffset:0;\tsize:8;\tsigned:0;";
    let fields = vec![parse_format(
        &format!("name: t\nID: 9\nformat:\n{field}\n\nprint fmt: \"{spec}\", REC->v\n"),
        "x",
    )
    .unwrap()
    .fields[0]
        .clone()];
    match &parse_print_fmt(&format!("\"{spec}\", REC->v"), &fields)
        .unwrap()
        .0[..]
    {
        [Piece::Value(c, 0)] => *c,
        other => panic!("{spec}: {other:?}"),
    }
}

#[test]
fn printf_subset_follows_c() {
    let cases: &[(&str, u64, &str)] = &[
        ("%d", 0xffff_fffc, "-4"),
        ("%u", 0xffff_fffc, "4294967292"),
        ("%lld", 0xffff_fffc, "4294967292"), // no sign extension of a 4-byte field
        ("%lld", u64::MAX, "-1"),
        ("%x", 0x1_2345_6789, "23456789"), // int: truncated to 32 bits
        ("%llx", 0x1_2345_6789, "123456789"),
        ("%lX", 0xabc, "ABC"),
        ("%5d", (-3i64) as u64, "   -3"),
        ("%-5d", 3, "3    "),
        ("%05d", (-42i64) as u64, "-0042"),
        ("%#x", 0, "0"),
        ("%#x", 255, "0xff"),
        ("%#08x", 255, "0x0000ff"),
        ("%.3u", 7, "007"),
        ("%.0u", 0, ""),
        ("%8.3x", 10, "     00a"),
        ("%o", 8, "10"),
        ("%#o", 8, "010"),
        ("%+d", 5, "+5"),
        ("% d", 5, " 5"),
        ("%hhd", 0xff, "-1"),
        ("%hu", 0x1_0001, "1"),
        ("%c", 65, "A"),
        ("%i", 7, "7"),
    ];
    for &(spec, raw, want) in cases {
        let c = conv(spec);
        let mut out = String::new();
        format_value(&mut out, &c, raw);
        assert_eq!(out, want, "{spec} of {raw:#x}");
    }
    assert_eq!(conv("%lu").length, Length::Long);
    assert_eq!(conv("%zu").length, Length::Long);
    assert_eq!(conv("%hhx").length, Length::Char);
}

/// A print format this reader does not render is kept with the reason, and the event's
/// records print their raw fields.
#[test]
fn unsupported_print_formats_are_kept_with_the_reason() {
    let text = |fmt: &str| {
        format!(
            "name: t\nID: 9\nformat:\n\tfield:u32 v;\toffset:2;\tsize:4;\tsigned:0;\n\
             \tfield:u8 a[4];\toffset:6;\tsize:4;\tsigned:0;\n\nprint fmt: {fmt}\n"
        )
    };
    for (fmt, reason) in [
        ("\"%s\", REC->v", "%s is not supported"),
        ("\"%d\", REC->w", "no field w"),
        ("\"%d %d\", REC->v", "more conversions"),
        ("\"%d\", REC->v, REC->v", "more arguments"),
        ("\"%d\", REC->v + 1", "not REC->field"),
        ("\"%*d\", REC->v", "`*` widths"),
        ("\"%d\", REC->a", "not a scalar"),
        ("no quotes", "quoted string"),
        ("\"open", "unterminated"),
    ] {
        let f = parse_format(&text(fmt), "x").expect("kept, to print raw fields");
        let err = f.print_error.as_ref().expect("the reason is kept");
        assert!(err.contains(reason), "{fmt}: {err}");
        let mut out = String::new();
        f.render(&[9, 0, 5, 0, 0, 0, b'h', b'i', 0, 0], &mut out)
            .unwrap();
        assert_eq!(out, "[FAILED TO PARSE] v=5 a=hi", "{fmt}");
    }
    // A u8 array that is not text prints as bytes.
    let f = parse_format(&text("\"%s\", REC->v"), "x").unwrap();
    let mut out = String::new();
    f.render(&[9, 0, 5, 0, 0, 0, 1, 0xff, 0, 0], &mut out)
        .unwrap();
    assert_eq!(out, "[FAILED TO PARSE] v=5 a=ARRAY[01, ff, 00, 00]");
    // Escapes and %% are literal text.
    let f = parse_format(&text("\"a\\tb %% \\\"q\\\" v=%u\\n\", REC->v"), "x").unwrap();
    let mut out = String::new();
    f.render(&[0, 0, 5, 0, 0, 0, 0, 0, 0, 0], &mut out).unwrap();
    assert_eq!(out, "a\tb % \"q\" v=5\n");
    assert!(
        f.render(&[0, 0, 5], &mut out).is_err(),
        "field outside the payload"
    );
}

// ---------------------------------------------------------------------------------------
// Lines, merge order, markers

#[test]
fn lines_have_trace_cmds_columns() {
    let cpu = page(2_500_000_000, &[rec(0, &hcall(0xc600_0000))], Loss::None);
    let bytes = file(&[Vec::new(), Vec::new(), cpu], "mono");
    assert_eq!(
        all(&bytes),
        [
            "cpus=3",
            "           <...>--1    [002]     2.500000: host_hcall:           id=0xc6000000 \
             invalid=0",
        ]
    );
    // A zero-field event: the padded name, then the format's single space.
    let cpu = page(1_000, &[rec(0, &enter())], Loss::None);
    assert_eq!(
        all(&file(&[cpu], "mono"))[1],
        format!(
            "           <...>--1    [000]     0.000001: hyp_enter:{}",
            " ".repeat(13)
        )
    );
}

#[test]
fn timestamps_round_to_microseconds_and_extend() {
    let cpu = page(
        499,
        &[
            rec(0, &enter()),
            rec(1, &enter()),
            rec(100_000_000, &enter()),
            extend(123_456 * 1_000_000_000),
            rec(0, &enter()),
        ],
        Loss::None,
    );
    let out = all(&file(&[cpu], "mono"));
    let want = [
        "     0.000000: hyp_enter:",
        "     0.000001: hyp_enter:",
        "     0.100001: hyp_enter:",
        " 123456.100001: hyp_enter:",
    ];
    for (line, want) in out[1..].iter().zip(want) {
        assert!(
            line.starts_with(&format!("           <...>--1    [000]{want}")),
            "{line}"
        );
    }
    assert_eq!(out.len(), 5);
}

#[test]
fn raw_counts_for_other_clocks() {
    let cpu = page(1_234_567, &[rec(0, &enter())], Loss::None);
    let line = &all(&file(&[cpu], "counter"))[1];
    assert!(
        line.starts_with("           <...>--1    [000]     1234567: hyp_enter:"),
        "{line}"
    );
}

#[test]
fn merge_is_by_time_ties_go_to_the_lower_cpu() {
    let a = page(
        100,
        &[rec(0, &hcall(1)), rec(0, &hcall(2)), rec(50, &hcall(3))],
        Loss::None,
    );
    let b = page(100, &[rec(0, &hcall(10)), rec(10, &hcall(11))], Loss::None);
    let bytes = file(&[a, b], "mono");
    let ids = |sel: &Selection| -> Vec<String> {
        lines(&bytes, sel)[1..]
            .iter()
            .map(|l| l.split_once(" id=").unwrap().1.to_string())
            .collect()
    };
    let order =
        |v: &[&str]| -> Vec<String> { v.iter().map(|s| format!("{s} invalid=0")).collect() };
    assert_eq!(
        ids(&Selection::default()),
        order(&["0x1", "0x2", "0xa", "0xb", "0x3"])
    );
    let reversed = Selection {
        cpus: vec![1, 0],
        events: vec![],
    };
    // As trace-cmd: the order of --cpu does not matter.
    assert_eq!(ids(&reversed), order(&["0x1", "0x2", "0xa", "0xb", "0x3"]));
    let only1 = Selection {
        cpus: vec![1],
        events: vec![],
    };
    assert_eq!(ids(&only1), order(&["0xa", "0xb"]));
}

#[test]
fn missed_events_markers() {
    let out = all(&edge_case_file());
    let markers: Vec<(usize, &str)> = out
        .iter()
        .enumerate()
        .filter(|(_, l)| l.starts_with("CPU:"))
        .map(|(i, l)| (i, l.as_str()))
        .collect();
    assert_eq!(
        markers.iter().map(|m| m.1).collect::<Vec<_>>(),
        [
            "CPU:2 [EVENTS DROPPED]",
            "CPU:0 [42 EVENTS DROPPED]",
            "CPU:2 [1 EVENTS DROPPED]",
        ]
    );
    // Each marker comes right before the first event of its page, on its CPU.
    for (i, m) in markers {
        let cpu = &m[4..5];
        assert!(out[i + 1].contains(&format!("[00{cpu}]")), "{}", out[i + 1]);
    }
    assert_eq!(out[0], "cpus=3", "an empty CPU prints nothing");
}

#[test]
fn event_filter_keeps_the_loss_for_the_next_shown_event() {
    let cpu = [
        page(1_000, &[rec(0, &enter())], Loss::None),
        page(
            2_000,
            &[rec(0, &enter()), rec(1, &hcall(7))],
            Loss::Count(3),
        ),
    ]
    .concat();
    let bytes = file(&[cpu], "mono");
    let sel = Selection {
        cpus: vec![],
        events: vec!["host_hcall".into()],
    };
    let out = lines(&bytes, &sel);
    assert_eq!(out.len(), 3);
    assert_eq!(out[1], "CPU:0 [3 EVENTS DROPPED]");
    assert!(out[2].contains("host_hcall:"));
    let report = Report::new(&bytes).unwrap();
    let err = report
        .check(&Selection {
            cpus: vec![],
            events: vec!["nope".into()],
        })
        .unwrap_err()
        .to_string();
    assert!(err.contains("hyp_enter, hyp_exit"), "{err}");
    let err = report
        .check(&Selection {
            cpus: vec![1],
            events: vec![],
        })
        .unwrap_err()
        .to_string();
    assert!(err.contains("1 CPUs"), "{err}");
}

#[test]
fn stat_text_is_trace_cmds() {
    let bytes = edge_case_file();
    let f = TraceFile::parse(&bytes).unwrap();
    let text = f.stat_text();
    assert!(text.starts_with("\nKernel buffer statistics:\n  Note: \"entries\" are"));
    assert!(text.contains("read events: 2\n\n\nCPU0 data recorded at offset=0x"));
    assert!(text.contains("CPU1 data recorded at offset=0x0\n    0 bytes in size\n"));
    let report = Report::new(&bytes).unwrap();
    let summary = report.for_each_line(&Selection::default(), |_| true);
    let table = super::decoded_table(&report, &summary, &Selection::default());
    let rows: Vec<Vec<&str>> = table
        .lines()
        .skip(2)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows[0], ["0", "8", "3", "1", "42", "0"]);
    assert_eq!(rows[1], ["1", "0", "0", "0", "0", "1"]);
    assert_eq!(rows[2], ["2", "4", "4", "2", "1", "2"]);
}

// ---------------------------------------------------------------------------------------
// The real ring writer

#[test]
fn pages_of_the_real_ring_writer_decode() {
    use hyptrace_ring::{PageDesc, RingBuffer};
    use std::alloc::{alloc_zeroed, Layout};

    let layout = Layout::from_size_align(PAGE_SIZE, PAGE_SIZE).unwrap();
    let new_page = || {
        // SAFETY: non-zero size; leaked on purpose (test only).
        let p = unsafe { alloc_zeroed(layout) };
        std::ptr::NonNull::new(p).expect("allocation failed")
    };
    let descs: &'static [PageDesc] = Box::leak((0..4).map(|_| PageDesc::new()).collect());
    let ring: &'static RingBuffer<'static> = Box::leak(Box::new(RingBuffer::new()));
    let pages: Vec<std::ptr::NonNull<u8>> = (0..4).map(|_| new_page()).collect();
    // SAFETY: leaked, aligned, distinct pages that live for the rest of the process.
    unsafe { ring.load(descs, pages[0], pages[1..].iter().copied()) }.unwrap();
    ring.enable().unwrap();
    // Enough events to fill more than one page, with a gap that needs a TIME_EXTEND.
    let mut ts = 5_000;
    for seq in 0..300u64 {
        ts += if seq == 150 { 1 << 30 } else { 7 };
        let e = Selftest {
            seq,
            payload: events::selftest_payload(seq),
        };
        assert!(ring.write(ts, &encode(e)));
    }
    // Copy the written ring pages (footers cleared) as trace.dat pages, in ring order.
    let mut data = Vec::new();
    for &p in &pages[1..] {
        // SAFETY: the test's own page; no writer runs now.
        let bytes = unsafe { std::slice::from_raw_parts(p.as_ptr(), PAGE_SIZE) };
        if bytes[8..16] == [0; 8] {
            continue;
        }
        let mut copy = bytes.to_vec();
        copy[hyptrace_abi::page::FOOTER_OFFSET..].fill(0);
        data.extend(copy);
    }
    let out = all(&file(&[data], "mono"));
    let seqs: Vec<u64> = out[1..]
        .iter()
        .map(|l| {
            let seq = l.split("seq=").nth(1).unwrap();
            let (seq, payload) = seq.split_once(" payload=0x").unwrap();
            let seq: u64 = seq.parse().unwrap();
            assert_eq!(
                u64::from_str_radix(payload, 16).unwrap(),
                events::selftest_payload(seq)
            );
            seq
        })
        .collect();
    assert_eq!(seqs, (0..300).collect::<Vec<_>>());
    let last = out.last().unwrap();
    let expect_us = (5_000 + 300 * 7 - 7 + (1u64 << 30) + 500) / 1000;
    assert!(
        last.contains(&format!(
            "{:5}.{:06}: selftest:",
            expect_us / 1_000_000,
            expect_us % 1_000_000
        )),
        "{last}"
    );
}

// ---------------------------------------------------------------------------------------
// Comparison

fn compare(ours: &[&str], theirs: &[&str]) -> Result<u64, Mismatch> {
    let mut c = LineComparer::new(theirs.iter().map(|s| s.to_string()));
    for l in ours {
        if !c.push(l) {
            break;
        }
    }
    c.finish()
}

#[test]
fn comparison_names_the_first_difference() {
    assert_eq!(compare(&["a", "b"], &["a", "b"]), Ok(2));
    let m = compare(&["a", "x", "c"], &["a", "b", "c"]).unwrap_err();
    assert_eq!(
        m,
        Mismatch {
            line: 2,
            ours: Some("x".into()),
            theirs: Some("b".into())
        }
    );
    assert_eq!(
        m.to_string(),
        "first difference at line 2:\n  hyptrace:  \"x\"\n  trace-cmd: \"b\""
    );
    let m = compare(&["a"], &["a", "b"]).unwrap_err();
    assert_eq!((m.line, m.ours, m.theirs), (2, None, Some("b".into())));
    let m = compare(&["a", "b"], &["a"]).unwrap_err();
    assert!(m.to_string().contains("(end of output)"));
    assert_eq!((m.line, m.ours, m.theirs), (2, Some("b".into()), None));
}

/// The edge cases against the real trace-cmd, when it is installed (CI installs it).
#[test]
fn edge_cases_match_the_real_trace_cmd() {
    let Some(trace_cmd) = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("trace-cmd"))
            .find(|p| p.is_file())
    }) else {
        eprintln!("trace-cmd is not installed: edge_cases_match_the_real_trace_cmd skipped");
        return;
    };
    let dir = std::env::temp_dir().join(format!("hyptrace-report-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (name, bytes) in [
        ("edge.dat", edge_case_file()),
        (
            "ties.dat",
            file(
                &[
                    page(100, &[rec(0, &hcall(1)), rec(0, &hcall(2))], Loss::None),
                    page(100, &[rec(0, &hcall(10))], Loss::Count(2)),
                ],
                "mono",
            ),
        ),
        (
            "counter.dat",
            file(
                &[page(
                    1_234_567,
                    &[
                        rec(0, &enter()),
                        extend(2_000_000_000_000),
                        rec(0, &hcall(3)),
                    ],
                    Loss::None,
                )],
                "counter",
            ),
        ),
        ("printk.dat", printk_file()),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, &bytes).unwrap();
        if std::env::var_os("HYPTRACE_KEEP_FIXTURES").is_some() {
            continue;
        }
        let lines = super::compare::against_trace_cmd(&trace_cmd, &path)
            .unwrap_or_else(|e| panic!("{name}: {e:#}"));
        assert!(lines >= 3, "{name}: {lines} lines");
    }
    if std::env::var_os("HYPTRACE_KEEP_FIXTURES").is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        eprintln!("fixtures kept in {}", dir.display());
    }
}

/// trace-cmd 3.1.6 reads a stored drop count as 4 bytes (checked: a stored 2^32 + 1345
/// prints 1345). A full page flagged with a stored count (as `trace-cmd split` writes them)
/// holds none: the loss is unknown (trace-cmd prints what lies past the page).
#[test]
fn drop_counts_are_read_as_trace_cmd_reads_them() {
    let cpu = [
        page(1_000, &[rec(0, &enter())], Loss::Count((1 << 32) + 1345)),
        page(2_000, &[rec(0, &enter())], Loss::None),
    ]
    .concat();
    let out = all(&file(&[cpu], "mono"));
    assert_eq!(out[1], "CPU:0 [1345 EVENTS DROPPED]");
    // A full page (commit 4080) flagged with a stored count: no room for it.
    let mut filling = enter();
    filling.resize(4072, 0);
    let mut full = page(1_000, &[rec(0, &filling)], Loss::None);
    let commit = 4080u64
        | hyptrace_abi::page::COMMIT_MISSED_EVENTS
        | hyptrace_abi::page::COMMIT_MISSED_STORED;
    full[8..16].copy_from_slice(&commit.to_le_bytes());
    let cpu = [full, page(0x1_0000_0007, &[], Loss::None)].concat();
    let out = all(&file(&[cpu], "mono"));
    assert_eq!(out[1], "CPU:0 [EVENTS DROPPED]", "{out:?}");
}
