//! Publishing new clock parameters without a writer ever using a torn set.
//!
//! It lives in `ring` because it is the writer path's other lock-free protocol: every
//! hand-written atomics protocol of the hypervisor is in this module and its loom models.
//!
//! Two banks of [`ClockParams`] and a sequence number `seq`: bank `seq & 1` is current.
//! `update` (serialised by its caller: the tracing service's control lock) fills the idle bank and then
//! publishes it by incrementing `seq`. A reader loads `seq`, reads that bank, and checks that
//! `seq` did not move meanwhile; if it moved, a new set was published during the read (the bank
//! it read may be the one being refilled two updates later), so it reads again. It never waits
//! for a lock: a retry happens only when an update *completed* during its few-instruction read
//! window, and every update is a hypercall that takes far longer than that window.

use crate::clock::ClockParams;
use crate::sync::{AtomicU64, Ordering};

#[derive(Debug)]
struct Bank {
    mult: AtomicU64,
    shift: AtomicU64,
    epoch_ns: AtomicU64,
    epoch_cyc: AtomicU64,
}

impl Bank {
    crate::sync::const_unless_loom! {
        fn new() -> Self {
            Self {
                mult: AtomicU64::new(0),
                shift: AtomicU64::new(0),
                epoch_ns: AtomicU64::new(0),
                epoch_cyc: AtomicU64::new(0),
            }
        }
    }
}

/// Double-banked clock parameters. Until the first update the clock reads 0 for every cycle
/// count (mult 0), which the host replaces right after `load_tracing`.
#[derive(Debug)]
pub struct ClockBanks {
    seq: AtomicU64,
    banks: [Bank; 2],
}

impl Default for ClockBanks {
    fn default() -> Self {
        Self::new()
    }
}

impl ClockBanks {
    crate::sync::const_unless_loom! {
        /// Banks holding the all-zero set.
        pub fn new() -> Self {
            Self {
                seq: AtomicU64::new(0),
                banks: [Bank::new(), Bank::new()],
            }
        }
    }

    /// Publishes `p`. Callers must serialise updates (the service's control lock does).
    pub fn update(&self, p: ClockParams) {
        // Relaxed: only updaters write `seq`, and they are serialised by the caller's lock.
        let seq = self.seq.load(Ordering::Relaxed);
        // Release fence: pairs with the Acquire fence in `read`. A reader that sees any value
        // stored below also sees every `seq` store before this fence (the previous update's
        // increment), so its re-check of `seq` fails if it read this bank under the old `seq`.
        crate::sync::fence(Ordering::Release);
        let idle = &self.banks[((seq + 1) & 1) as usize];
        // Relaxed: ordered for readers by the fence above and the Release store below.
        idle.mult.store(p.mult as u64, Ordering::Relaxed);
        idle.shift.store(p.shift as u64, Ordering::Relaxed);
        idle.epoch_ns.store(p.epoch_ns, Ordering::Relaxed);
        idle.epoch_cyc.store(p.epoch_cyc, Ordering::Relaxed);
        // Release: pairs with the Acquire load of `seq` in `read`: a reader that sees the new
        // `seq` sees the whole bank.
        self.seq.store(seq + 1, Ordering::Release);
    }

    /// The current parameters, never a mix of two sets.
    pub fn read(&self) -> ClockParams {
        loop {
            // Acquire: pairs with the Release store in `update`.
            let seq = self.seq.load(Ordering::Acquire);
            let bank = &self.banks[(seq & 1) as usize];
            // Relaxed: validated by the `seq` re-check below.
            let p = ClockParams {
                mult: bank.mult.load(Ordering::Relaxed) as u32,
                shift: bank.shift.load(Ordering::Relaxed) as u32,
                epoch_ns: bank.epoch_ns.load(Ordering::Relaxed),
                epoch_cyc: bank.epoch_cyc.load(Ordering::Relaxed),
            };
            // Acquire fence: pairs with the Release fence in `update` (see there).
            crate::sync::fence(Ordering::Acquire);
            // Relaxed: ordered after the bank reads by the fence.
            if self.seq.load(Ordering::Relaxed) == seq {
                return p;
            }
            crate::sync::spin_loop();
        }
    }

    /// Nanoseconds at counter value `cycles` with the current parameters.
    #[inline]
    pub fn cycles_to_ns(&self, cycles: u64) -> u64 {
        self.read().cycles_to_ns(cycles)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn update_then_read() {
        let c = ClockBanks::new();
        assert_eq!(c.cycles_to_ns(1234), 0, "zero set before the first update");
        let a = ClockParams::new(16, 0, 100, 10).unwrap();
        c.update(a);
        assert_eq!(c.read(), a);
        let b = ClockParams::new(1, 1, 0, 0).unwrap();
        c.update(b);
        assert_eq!(c.read(), b);
        assert_eq!(c.cycles_to_ns(10), 5);
    }

    #[test]
    fn concurrent_readers_never_see_a_mix() {
        use std::sync::atomic::AtomicBool;
        let c = ClockBanks::new();
        // Every published set has all four fields derived from one k.
        let set = |k: u64| ClockParams::new(k % 1000 + 1, k % 7, k, k).unwrap();
        c.update(set(0));
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                for k in 1..200_000 {
                    c.update(set(k));
                }
                stop.store(true, std::sync::atomic::Ordering::Relaxed);
            });
            let mut reads = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) || reads < 1000 {
                let p = c.read();
                assert_eq!(p, set(p.epoch_ns), "torn read: {p:?}");
                reads += 1;
            }
        });
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;

    /// Two updates racing one reader: the reader sees one of the three sets, whole.
    #[test]
    fn reader_sees_whole_sets() {
        loom::model(|| {
            let set = |k: u64| ClockParams::new(k + 1, k, k, k).unwrap();
            let c = Arc::new(ClockBanks::new());
            c.update(set(0));
            let w = {
                let c = c.clone();
                loom::thread::spawn(move || {
                    c.update(set(1));
                    c.update(set(2));
                })
            };
            let p = c.read();
            assert_eq!(p, set(p.epoch_ns));
            w.join().unwrap();
            assert_eq!(c.read(), set(2));
        });
    }
}
