//! [`RingBuffer::freeze`]: what a dying system's flight recorder may read of a ring.
//!
//! When the hypervisor meets a fatal error it prints the last events of every ring. The
//! writers of other CPUs may still be running and a control operation may be half done (on
//! the CPU that died, perhaps), so nothing here waits without bound: the control lock and
//! the writer handshake are each retried only while the caller's `keep_waiting` says so (a
//! deadline on a clock, or [`tries`]). A frozen ring is left
//! non-writable until a control operation enables it again (on a fatal path none follows):
//! its stop flag refuses new writes even when a writer that did not stop within the wait
//! sets the status back as it leaves.

use core::ptr::NonNull;

use crate::control::Control;
use crate::desc::link_index;
use crate::sync::{self, MutexGuard, Ordering};
use crate::{status, RingBuffer};

/// Why [`RingBuffer::freeze`] gave up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FreezeError {
    /// Nothing is loaded.
    NotLoaded,
    /// The control lock stayed taken.
    Busy,
}

impl core::fmt::Display for FreezeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::NotLoaded => "not loaded",
            Self::Busy => "a control operation holds its lock",
        })
    }
}

impl core::error::Error for FreezeError {}

/// A ring whose writer is stopped and whose control lock is held: its pages can be read in
/// order. See [`RingBuffer::freeze`].
#[derive(Debug)]
pub struct Frozen<'r, 'a> {
    ring: &'r RingBuffer<'a>,
    ctl: MutexGuard<'r, Control<'a>>,
    writer_stopped: bool,
}

/// A `keep_waiting` for [`RingBuffer::freeze`] and [`Frozen::wait_for_writer`] that allows
/// `n` more attempts after the first: a bound in spins, for code with no clock to hand.
///
/// ```
/// let mut wait = hyptrace_ring::tries(2);
/// assert!(wait() && wait() && !wait());
/// ```
pub fn tries(n: u32) -> impl FnMut() -> bool {
    let mut left = n;
    move || {
        let more = left > 0;
        left = left.saturating_sub(1);
        more
    }
}

impl<'a> RingBuffer<'a> {
    /// Stops this ring for good and holds its control lock; for a flight recorder, on a
    /// system that is going down.
    ///
    /// Takes the control lock, retrying while `keep_waiting()` returns true (it is asked
    /// after each failed attempt, so there is always one), raises the writer's stop hint and
    /// tries the writer handshake once. A writer in the middle of a write ends it at its next
    /// event; wait for that with [`Frozen::wait_for_writer`]. Freezing every ring first and
    /// waiting for the writers after lets them all stop at once.
    ///
    /// # Errors
    /// [`FreezeError::NotLoaded`]; [`FreezeError::Busy`] when its control lock stayed taken
    /// (a control operation is running, perhaps on a CPU that died while holding it).
    pub fn freeze(
        &self,
        mut keep_waiting: impl FnMut() -> bool,
    ) -> Result<Frozen<'_, 'a>, FreezeError> {
        let ctl = loop {
            if let Some(guard) = self.control.0.try_lock() {
                break guard;
            }
            if !keep_waiting() {
                return Err(FreezeError::Busy);
            }
            sync::spin_loop();
        };
        if !ctl.loaded() {
            return Err(FreezeError::NotLoaded);
        }
        // Relaxed: a liveness hint, as in `disable`: the writer starts no new write, and a
        // batch ends at its next event.
        self.hot.0.stop.store(true, Ordering::Relaxed);
        let mut frozen = Frozen {
            ring: self,
            ctl,
            writer_stopped: false,
        };
        frozen.try_stop_writer();
        Ok(frozen)
    }
}

impl Frozen<'_, '_> {
    /// One attempt at the writer handshake; true once the writer is out of a write.
    fn try_stop_writer(&mut self) -> bool {
        if !self.writer_stopped {
            // Acquire (success and failure): pairs with the writer's Release store of
            // WRITABLE on exit, so its page writes happen before the reads of the pages.
            let was = self.ring.hot.0.status.compare_exchange(
                status::WRITABLE,
                status::NONWRITABLE,
                Ordering::Acquire,
                Ordering::Acquire,
            );
            self.writer_stopped = matches!(was, Ok(_) | Err(status::NONWRITABLE));
        }
        self.writer_stopped
    }

    /// Waits for the writer to leave the write it is in, retrying while `keep_waiting()`
    /// returns true; returns [`writer_stopped`](Self::writer_stopped). When the wait runs
    /// out the tail page may hold a torn record, which a bounds-checked decoder reports as an
    /// error.
    pub fn wait_for_writer(&mut self, mut keep_waiting: impl FnMut() -> bool) -> bool {
        while !self.try_stop_writer() {
            if !keep_waiting() {
                return false;
            }
            sync::spin_loop();
        }
        true
    }

    /// Whether the writer was out of a write (or left it) within the waits so far.
    pub fn writer_stopped(&self) -> bool {
        self.writer_stopped
    }

    /// The ring pages in ring order, oldest first: from the page after the writer's tail
    /// round to the tail page itself, which comes last. The reader page is not among them.
    /// At most one pass over the descriptors, whatever their links say.
    ///
    /// When the writer did not stop ([`writer_stopped`](Self::writer_stopped) is false) it
    /// may go on writing for a while (`stop` is only a hint) into any of them: read none,
    /// unless that writer cannot run any more (it is the caller's own CPU, on a fatal path).
    pub fn pages(&self) -> impl Iterator<Item = NonNull<u8>> + '_ {
        let descs = self.ctl.descs;
        // Acquire: pairs with the writer's Release store of the tail on a page move (only
        // needed if the writer did not stop; harmless otherwise).
        let tail = self.ring.shared.0.tail.load(Ordering::Acquire);
        let reader = self.ctl.reader();
        let next_of = move |i: usize| {
            descs
                .get(i)
                // Relaxed: links change under the control lock (held) or by the writer (stopped,
                // or ordered by the Acquire above).
                .map(|d| link_index(d.link.load(Ordering::Relaxed)))
                .filter(|&n| n < descs.len())
        };
        let mut at = next_of(tail);
        let mut left = descs.len();
        let mut tail_done = false;
        core::iter::from_fn(move || {
            while left > 0 {
                left -= 1;
                let Some(i) = at else {
                    break;
                };
                if i == tail {
                    left = 0;
                    break;
                }
                at = next_of(i);
                if i != reader {
                    if let Some(p) = NonNull::new(descs[i].page_ptr()) {
                        return Some(p);
                    }
                }
            }
            if tail_done {
                return None;
            }
            tail_done = true;
            descs.get(tail).and_then(|d| NonNull::new(d.page_ptr()))
        })
    }
}
