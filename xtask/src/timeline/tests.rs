//! The matching rules on hand-made sequences, and on lines shaped like trace-cmd's.

use super::*;

const NULL: u64 = 0xc600_0000;
const PSCI_VERSION: u64 = 0x8400_0000;

fn ev(ts: u64, kind: Kind, id: u64) -> Ev {
    Ev { ts, kind, id }
}

/// One HVC on CPU 0 at `t` (call) with the hypervisor's events shifted by `skew` ns.
fn hvc(t: &mut Timeline, at: u64, skew: i64) {
    let hyp = |d: u64| (at as i64 + d as i64 + skew) as u64;
    t.push(0, true, ev(at, Kind::HvcCall, NULL));
    t.push(0, false, ev(hyp(10), Kind::HypEnter, 0));
    t.push(0, false, ev(hyp(20), Kind::HostHcall, NULL));
    t.push(0, false, ev(hyp(30), Kind::HypExit, 0));
    t.push(0, true, ev(at + 40, Kind::HvcReturn, NULL));
}

fn smc(t: &mut Timeline, at: u64) {
    t.push(0, true, ev(at, Kind::SmcCall, PSCI_VERSION));
    t.push(0, false, ev(at + 1, Kind::HypEnter, 0));
    t.push(0, false, ev(at + 2, Kind::HostSmc, PSCI_VERSION));
    t.push(0, false, ev(at + 3, Kind::HypExit, 0));
    t.push(0, true, ev(at + 4, Kind::SmcReturn, PSCI_VERSION));
}

#[test]
fn aligned_clocks_match_every_call() {
    let mut t = Timeline::default();
    for i in 0..5 {
        hvc(&mut t, 1000 + 100 * i, 0);
    }
    smc(&mut t, 2000);
    // A stage-2 abort between calls, and a handler's own events inside one.
    t.push(0, false, ev(2010, Kind::HypEnter, 0));
    t.push(0, false, ev(2011, Kind::OtherHyp, 0));
    t.push(0, false, ev(2012, Kind::HypExit, 0));
    t.push(0, true, ev(3000, Kind::HvcCall, NULL));
    t.push(0, false, ev(3000, Kind::HypEnter, 0));
    t.push(0, false, ev(3001, Kind::HostHcall, NULL));
    t.push(0, false, ev(3002, Kind::OtherHyp, 0));
    t.push(0, false, ev(3003, Kind::HypExit, 0));
    t.push(0, true, ev(3003, Kind::HvcReturn, NULL));
    let m = t.matching();
    let c = &m.cpus[&0];
    assert!(c.failures.is_empty(), "{:?}", c.failures);
    assert_eq!((c.hvc.len(), c.smc.len(), c.incomplete), (6, 1, 0));
    assert_eq!(
        c.hvc[0],
        Call {
            id: NULL,
            call: 1000,
            enter: 1010,
            exit: 1030,
            ret: 1040
        }
    );
    assert!(judge(&m, 1, 6, 1).is_ok());
    assert!(judge(&m, 1, 7, 1).is_err(), "too few sequences");
    assert!(judge(&m, 2, 1, 1).is_err(), "a CPU without events");
}

#[test]
fn a_clock_off_by_one_nanosecond_either_way_fails() {
    for skew in [-11, 11, -41, 41] {
        let mut t = Timeline::default();
        for i in 0..4 {
            hvc(&mut t, 1000 + 100 * i, if i == 2 { skew } else { 0 });
        }
        let c = &t.matching().cpus[&0];
        assert!(!c.failures.is_empty(), "skew {skew}: {c:?}");
    }
    // hyp_exit one step after the return.
    let mut t = Timeline::default();
    hvc(&mut t, 1000, 11);
    assert_eq!(t.matching().cpus[&0].failures.count, 1);
}

#[test]
fn wrong_ids_and_shapes_fail() {
    let mut t = Timeline::default();
    t.push(0, true, ev(10, Kind::HvcCall, NULL));
    t.push(0, false, ev(11, Kind::HypEnter, 0));
    t.push(0, false, ev(12, Kind::HostHcall, NULL + 1));
    t.push(0, false, ev(13, Kind::HypExit, 0));
    t.push(0, true, ev(14, Kind::HvcReturn, NULL));
    assert_eq!(t.matching().cpus[&0].failures.count, 1);
    // A host_hcall between a return and the next call.
    let mut t = Timeline::default();
    hvc(&mut t, 100, 0);
    t.push(0, false, ev(150, Kind::HostHcall, NULL));
    hvc(&mut t, 200, 0);
    let c = &t.matching().cpus[&0];
    assert_eq!((c.failures.count, c.hvc.len()), (1, 2));
}

#[test]
fn losses_make_windows_incomplete_not_failures() {
    let mut t = Timeline::default();
    hvc(&mut t, 100, 0);
    // The hypervisor lost this call's hyp_enter.
    t.push(0, true, ev(200, Kind::HvcCall, NULL));
    t.push(0, false, ev(130, Kind::Dropped, 0));
    t.push(0, false, ev(220, Kind::HostHcall, NULL));
    t.push(0, false, ev(230, Kind::HypExit, 0));
    t.push(0, true, ev(240, Kind::HvcReturn, NULL));
    // The host lost a call's hvc_call: its hypervisor events belong to no window, but a
    // marker is between the host events around them.
    t.push(0, true, ev(240, Kind::Dropped, 0));
    t.push(0, false, ev(310, Kind::HypEnter, 0));
    t.push(0, false, ev(320, Kind::HostHcall, NULL));
    t.push(0, false, ev(330, Kind::HypExit, 0));
    t.push(0, true, ev(340, Kind::HvcReturn, NULL));
    hvc(&mut t, 400, 0);
    let c = &t.matching().cpus[&0];
    assert!(c.failures.is_empty(), "{:?}", c.failures);
    assert_eq!((c.hvc.len(), c.incomplete), (2, 1));
}

#[test]
fn trace_cmd_lines_feed_the_timeline() {
    let lines = [
        "cpus=4",
        "                       <...>--1    [001]     0.151631728: hvc_call:             id=0xc6000000 arg0=0x0",
        "hypervisor:            <...>--1    [001]     0.151631900: hyp_enter:             ",
        "hypervisor:            <...>--1    [001]     0.151632000: host_hcall:           id=0xc6000000 invalid=0",
        "hypervisor:            <...>--1    [001]     0.151632100: hyp_exit:              ",
        "                       <...>--1    [001]     0.151632200: hvc_return:           id=0xc6000000 ret=0",
        "hypervisor: CPU:1 [882 EVENTS DROPPED]",
        "           <...>--1    [001]     0.151640000: selftest:             seq=1 payload=0x1",
    ];
    let mut t = Timeline::default();
    for l in lines {
        t.line(l);
    }
    assert!(t.unreadable.is_empty(), "{:?}", t.unreadable);
    let c = &t.matching().cpus[&1];
    assert_eq!(c.hvc.len(), 1);
    assert_eq!(c.hvc[0].enter, 151_631_900);
    assert_eq!(
        t.hyp[&1].iter().filter(|e| e.kind == Kind::Dropped).count(),
        1
    );
    // Microsecond timestamps cannot prove anything: they are refused.
    let mut t = Timeline::default();
    t.line("                       <...>--1    [001]     0.151631: hvc_call:             id=0x1 arg0=0x0");
    assert_eq!(t.unreadable.count, 1);
    assert_eq!(field_value("id=0x1f ret=-3", "ret"), Some(-3i64 as u64));
    assert_eq!(parse_ns("12.000000001"), Some(12_000_000_001));
}
