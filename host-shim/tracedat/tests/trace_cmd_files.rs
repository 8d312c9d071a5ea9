//! Files trace-cmd 3.1.6 itself wrote, read as trace-cmd reads them.
//!
//! The fixtures in `tests/data` come from one 4 ms hyptrace recording on 2 CPUs (host events
//! in the top-level buffer, the hypervisor's `selftest` events in the `hypervisor`
//! instance), passed through trace-cmd 3.1.6:
//!
//! - `two-buffers-v7-zstd.dat`: `trace-cmd convert -i rec.dat -o F --compression any` (file
//!   version 7, zstd 1.5.4: compressed sections, CPU data in compressed chunks);
//! - `split-v6.dat`: `trace-cmd split -i rec.dat -o F -e 300`, the first part (version 6,
//!   whose `hypervisor` BUFFER option trace-cmd cannot open: it prints the top level only);
//! - `*.report.zst`: what `trace-cmd report -i F` printed on each, zstd-compressed.
//!
//! `cargo xtask test` makes such files afresh from its own recording and compares again; these
//! fixtures keep the reader honest without trace-cmd installed.
#![cfg(feature = "zstd")]

use hyptrace_tracedat::report::{Report, Selection};
use hyptrace_tracedat::TraceFile;

const V7_ZSTD: &[u8] = include_bytes!("data/two-buffers-v7-zstd.dat");
const V7_ZSTD_REPORT: &[u8] = include_bytes!("data/two-buffers-v7-zstd.report.zst");
const SPLIT: &[u8] = include_bytes!("data/split-v6.dat");
const SPLIT_REPORT: &[u8] = include_bytes!("data/split-v6.report.zst");

/// trace-cmd's report text, inflated.
fn expected(zst: &[u8]) -> String {
    let mut out = Vec::with_capacity(4 << 20);
    ruzstd::decoding::FrameDecoder::new()
        .decode_all_to_vec(zst, &mut out)
        .expect("a zstd frame");
    String::from_utf8(out).expect("text")
}

/// Our report of `file`, line by line.
fn report(file: &[u8]) -> Vec<String> {
    let report = Report::new(file).expect("the file parses");
    let mut lines = Vec::new();
    let summary = report.for_each_line(&Selection::default(), |l| {
        lines.push(l.to_string());
        true
    });
    assert!(summary.is_clean(), "{}", summary.problems());
    lines
}

/// Line for line; with `unknown_counts`, our `[EVENTS DROPPED]` may stand for trace-cmd's
/// count of a full page that has no room for one (trace-cmd prints what lies past the page
/// in its memory). Returns how many lines were such.
fn assert_same(ours: &[String], theirs: &str, unknown_counts: bool) -> usize {
    let theirs: Vec<&str> = theirs.lines().collect();
    let mut tolerated = 0;
    for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
        let head = a.strip_suffix("[EVENTS DROPPED]");
        let count = head.and_then(|h| b.strip_prefix(h)).and_then(|t| {
            t.strip_prefix('[')?
                .strip_suffix(" EVENTS DROPPED]")?
                .parse::<u64>()
                .ok()
        });
        if unknown_counts && count.is_some() {
            tolerated += 1;
            continue;
        }
        assert_eq!(a, b, "line {}", i + 1);
    }
    assert_eq!(ours.len(), theirs.len(), "line count");
    tolerated
}

#[test]
fn a_compressed_version_7_file_reads_as_trace_cmd_prints_it() {
    let f = TraceFile::parse(V7_ZSTD).unwrap();
    assert_eq!(f.version, 7);
    assert_eq!(
        f.compression,
        Some(("zstd".to_string(), "1.5.4".to_string()))
    );
    assert_eq!((f.cpus, f.instances.len()), (2, 1));
    assert_eq!(f.instances[0].name, "hypervisor");
    assert_eq!(f.clock.as_deref(), Some("mono"));
    assert!(f.cpu_data.iter().all(|d| d.is_inflated()));
    let ours = report(V7_ZSTD);
    let theirs = expected(V7_ZSTD_REPORT);
    assert!(theirs.contains("EVENTS DROPPED]"), "the fixture has losses");
    assert_eq!(assert_same(&ours, &theirs, false), 0);
}

#[test]
fn a_split_file_reads_as_trace_cmd_prints_it() {
    let f = TraceFile::parse(SPLIT).unwrap();
    assert_eq!(f.version, 6);
    assert!(f.instances.is_empty());
    assert_eq!(f.dropped_instances, ["hypervisor", "hypervisor"]);
    assert!(f.warnings[0].starts_with("could not retrieve handle hypervisor"));
    // Its drop markers all hold their counts in their pages: every line is trace-cmd's.
    assert_eq!(
        assert_same(&report(SPLIT), &expected(SPLIT_REPORT), true),
        0
    );
}

/// Whatever a cut or a flipped byte does to a compressed file, reading it is an error or a
/// report, never a panic, and never more lines than there are records.
#[test]
fn damaged_compressed_files_never_panic() {
    let whole = report(V7_ZSTD).len();
    for cut in (0..V7_ZSTD.len()).step_by(97) {
        if let Ok(r) = Report::new(&V7_ZSTD[..cut]) {
            let mut n = 0;
            r.for_each_line(&Selection::default(), |_| {
                n += 1;
                true
            });
            assert!(n <= whole, "cut at {cut}");
        }
    }
    let mut bytes = V7_ZSTD.to_vec();
    for at in (0..bytes.len()).step_by(31) {
        for flip in [0x01u8, 0x80, 0xff] {
            bytes[at] ^= flip;
            if let Ok(r) = Report::new(&bytes) {
                r.for_each_line(&Selection::default(), |_| true);
            }
            bytes[at] ^= flip;
        }
    }
}
