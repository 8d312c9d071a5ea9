//! One round of `cargo xtask bench`'s native comparison (docs/performance.md): hyptrace's
//! writer against the floor, on the development machine.
//!
//! `cargo bench -p hyptrace-ring --bench native [-- --events N]`. xtask runs this binary once per
//! round, alternating with the LTTng-UST driver, and takes medians over rounds; on its own
//! it prints one round. Asserts nothing about speed.
//!
//! For each payload size (4, 16, 64 bytes): a fresh 1 MiB ring (256 ring pages) and a
//! 1 MiB floor buffer, one warm-up pass of each (the writer's wraps the ring: steady-state
//! overwrite), then `floor`, `hyptrace` and `floor_cas`, `N` events each (default
//! 2,000,000). Output, one line per figure: `result NAME PAYLOAD NS_PER_EVENT`, after `clock NAME`.
//!
//! - floor: read the timestamp (RDTSC on x86_64), store it (8 bytes) and the payload into
//!   the byte ring.
//! - hyptrace: `RingBuffer::write(timestamp, payload)` with the same timestamp source: the
//!   code the hypervisor runs at EL2, built for the host.
//! - floor_cas: the floor plus an uncontended compare-and-swap and a Release store of a
//!   status word per event, the handshake the writer pays (docs/ring-buffer.md §13).

mod common;

use common::{floor, floor_buffer, floor_cas, ring, writer};

fn case<const N: usize>(events: u64) {
    let payload = [0x5au8; N];
    let ring = ring();
    let mut buf = floor_buffer();
    writer(ring, &payload, events);
    floor(&mut buf, &payload, events);
    println!("result floor {N} {:.4}", floor(&mut buf, &payload, events));
    println!("result hyptrace {N} {:.4}", writer(ring, &payload, events));
    println!(
        "result floor_cas {N} {:.4}",
        floor_cas(&mut buf, &payload, events)
    );
}

fn main() {
    // `cargo bench` passes `--bench`; ignore it and anything else but `--events N`.
    let mut events: u64 = 2_000_000;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--events" {
            events = args
                .next()
                .and_then(|n| n.parse().ok())
                .filter(|&n| n > 0)
                .expect("--events takes a positive integer");
        }
    }
    println!("clock {}", common::CLOCK);
    case::<4>(events);
    case::<16>(events);
    case::<64>(events);
}
