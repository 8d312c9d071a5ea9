//! Test-only faults at EL2 (feature `fault-injection`): each must end in a fatal report that
//! names its cause. See [`hyp::abi::FaultKind`].

use core::sync::atomic::{AtomicU32, Ordering};

use hyp::abi::FaultKind;

use super::console::hyp_println;
use super::platform::TRACING;
use super::regs::cpu_index;

/// Commits the fault `kind` names (`addr`: the host page for [`FaultKind::WriteHostPage`]).
/// Returns only for an unknown kind.
pub fn trigger(kind: u64, addr: u64) {
    let Some(kind) = FaultKind::from_u64(kind) else {
        return;
    };
    hyp_println!("fault injection on CPU {}: {}", cpu_index(), kind.name());
    // The last event of this CPU's ring, which the flight recorder must show.
    hyp::hyp_printk!(
        "fault injection: committing fault {} on CPU {}",
        kind as u64,
        cpu_index()
    );
    match kind {
        FaultKind::StackOverflow => {
            recurse(core::hint::black_box(1));
        }
        FaultKind::WriteText => {
            let text = trigger as *const () as *mut u32;
            // SAFETY: deliberately unsound: the store must fault (`.text` is read-only at EL2).
            unsafe { text.write_volatile(0xd503_201f) };
        }
        FaultKind::ExecuteData => {
            // Interior mutability keeps the word in writable data (a `static mut` that is
            // never written can end up in .rodata).
            static CODE: AtomicU32 = AtomicU32::new(0);
            CODE.store(0xd65f_03c0, Ordering::Relaxed); // `ret`
                                                        // SAFETY: deliberately unsound: the branch to data must fault (data is never
                                                        // executable at EL2).
            unsafe {
                let f: extern "C" fn() = core::mem::transmute(CODE.as_ptr());
                f();
            }
        }
        FaultKind::Panic => panic!("deliberate panic (fault injection)"),
        FaultKind::WriteHostPage => {
            // SAFETY: deliberately unsound: the store must fault (the host page is not shared,
            // so not mapped at EL2).
            unsafe { (addr as *mut u64).write_volatile(0x6879_7074_7261_6365) };
        }
    }
    hyp_println!("fault injection: {} did not fault", kind.name());
}

/// Recurses without end, 1 KiB of stack per level, until the guard page stops it.
#[inline(never)]
#[allow(unconditional_recursion, reason = "the overflow is the point")]
fn recurse(depth: u64) -> u64 {
    let mut frame = [0u8; 1024];
    frame[(depth % 1024) as usize] = depth as u8;
    core::hint::black_box(&mut frame);
    recurse(depth + 1) + frame[0] as u64
}

/// `printk_bench(count)`: `count` (at most `MAX_SELFTEST_BATCH`) `hyp_printk!` calls with two
/// arguments, for the benchmark that compares them with selftest events. Returns how many
/// calls it made.
pub fn printk_bench(count: u64) -> u64 {
    let count = count.min(hyp::abi::limits::MAX_SELFTEST_BATCH);
    for seq in 0..count {
        hyp::hyp_printk!("printk bench seq={} of {}", seq, count);
    }
    count
}

/// The EL2 floor's private ring (`writer_bench` kind `WRITER_BENCH_FLOOR`).
static FLOOR_RING: spin::Mutex<[u8; 1 << 16]> = spin::Mutex::new([0; 1 << 16]);

/// `writer_bench(kind, count, len)` (see `hyp::abi::hypercall::WRITER_BENCH_FID`): the
/// store-loop floor at EL2, or `count` raw events of `len` bytes on this CPU's buffer.
/// Returns how many iterations or events it did; 0 for an unknown kind or length.
pub fn writer_bench(cpu: usize, kind: u64, count: u64, len: u64) -> u64 {
    use hyp::abi::hypercall::{WRITER_BENCH_EVENTS, WRITER_BENCH_FLOOR};
    let count = count.min(hyp::abi::limits::MAX_SELFTEST_BATCH);
    let counter = super::trap::counter;
    match (kind, len) {
        (WRITER_BENCH_FLOOR, _) => {
            hyp::ring::floor::store_loop(&mut FLOOR_RING.lock()[..], count, counter);
            count
        }
        (WRITER_BENCH_EVENTS, 4) => TRACING.write_bench_events::<4>(cpu, counter, count),
        (WRITER_BENCH_EVENTS, 16) => TRACING.write_bench_events::<16>(cpu, counter, count),
        (WRITER_BENCH_EVENTS, 64) => TRACING.write_bench_events::<64>(cpu, counter, count),
        _ => 0,
    }
}
