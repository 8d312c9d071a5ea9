//! One round of `cargo xtask bench`'s native comparison (docs/performance.md): hyptrace's
//! writer against the floor, on the development machine.
//!
//! `cargo bench -p hyptrace-ring --bench native [-- --events N]`. xtask runs this binary once per
//! round, alternating with the LTTng-UST driver, and takes medians over rounds; on its own
//! it prints one round. Asserts nothing about speed.
//!
//! For each payload size (4, 16, 64 bytes): a fresh 1 MiB ring (256 ring pages) and a
//! 1 MiB floor buffer, one warm-up pass of 500,000 events of each (the writer's wraps the
//! ring: steady-state overwrite), then `floor`, `hyptrace`, `floor_cas` and `hyptrace_batch`, `N` events each
//! (default 2,000,000). Output, one line per figure: `result NAME PAYLOAD NS_PER_EVENT`, after
//! `clock NAME`. `--only NAME --payload P` runs one loop on one payload size (after the
//! warm-up): what `cargo xtask bench` counts instructions of under callgrind.
//!
//! - floor: read the timestamp (RDTSC on x86_64), store it (8 bytes) and the payload into
//!   the byte ring.
//! - hyptrace: `RingBuffer::write(timestamp, payload)` with the same timestamp source: the
//!   code the hypervisor runs at EL2, built for the host.
//! - floor_cas: the floor plus an uncontended compare-and-swap and a Release store of a
//!   status word per event, the handshake the writer pays (docs/ring-buffer.md §13).
//! - hyptrace_batch: the writer in batches of three events under one status handshake
//!   (`RingBuffer::batch`), as the hypervisor writes a trap's events.

mod common;

use common::{floor, floor_buffer, floor_cas, ring, writer, writer_batch};

/// Events of each warm-up pass: the 1 MiB ring wraps about ten times.
const WARM_UP: u64 = 500_000;

/// The loops, by the name they print under.
const LOOPS: [&str; 4] = ["floor", "hyptrace", "floor_cas", "hyptrace_batch"];

fn run<const N: usize>(
    name: &str,
    events: u64,
    buf: &mut [u8],
    ring: &hyptrace_ring::RingBuffer<'_>,
) -> f64 {
    let payload = [0x5au8; N];
    match name {
        "floor" => floor(buf, &payload, events),
        "hyptrace" => writer(ring, &payload, events),
        "floor_cas" => floor_cas(buf, &payload, events),
        "hyptrace_batch" => writer_batch(ring, &payload, events),
        _ => unreachable!("checked against LOOPS"),
    }
}

fn case<const N: usize>(events: u64, only: Option<&str>) {
    let ring = ring();
    let mut buf = floor_buffer();
    // Warm-up: the writer's pass wraps the ring many times (steady-state overwrite). A
    // fixed length, so that the difference between two `--events` counts cancels it.
    run::<N>("hyptrace", WARM_UP, &mut buf, ring);
    run::<N>("floor", WARM_UP, &mut buf, ring);
    for name in LOOPS.iter().filter(|&&n| only.is_none_or(|o| o == n)) {
        println!(
            "result {name} {N} {:.4}",
            run::<N>(name, events, &mut buf, ring)
        );
    }
}

fn main() {
    // `cargo bench` passes `--bench`; ignore it and anything else but `--events N`,
    // `--only LOOP` and `--payload N` (the last two for counting one loop's instructions).
    let mut events: u64 = 2_000_000;
    let (mut only, mut payload) = (None, None);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--events" => {
                events = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .filter(|&n| n > 0)
                    .expect("--events takes a positive integer")
            }
            "--only" => {
                let name = args.next().expect("--only takes a loop name");
                assert!(LOOPS.contains(&name.as_str()), "--only: one of {LOOPS:?}");
                only = Some(name);
            }
            "--payload" => {
                payload = Some(
                    args.next()
                        .and_then(|n| n.parse::<usize>().ok())
                        .filter(|n| [4, 16, 64].contains(n))
                        .expect("--payload takes 4, 16 or 64"),
                )
            }
            _ => {}
        }
    }
    println!("clock {}", common::CLOCK);
    let only = only.as_deref();
    for n in [4, 16, 64]
        .into_iter()
        .filter(|&n| payload.is_none_or(|p| p == n))
    {
        match n {
            4 => case::<4>(events, only),
            16 => case::<16>(events, only),
            _ => case::<64>(events, only),
        }
    }
}
