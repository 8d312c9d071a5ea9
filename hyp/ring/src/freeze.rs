//! [`RingBuffer::freeze`]: what a dying system's flight recorder may read of a ring.
//!
//! When the hypervisor meets a fatal error it prints the last events of every ring. The
//! writers of other CPUs may still be running and a control operation may be half done (on
//! the CPU that died, perhaps), so nothing here waits without bound: the control lock and
//! the writer handshake are each tried a fixed number of times. A frozen ring is left
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

impl<'a> RingBuffer<'a> {
    /// Stops this ring for good and holds its control lock, trying each at most `tries`
    /// times; for a flight recorder, on a system that is going down.
    ///
    /// # Errors
    /// [`FreezeError::NotLoaded`]; [`FreezeError::Busy`] when its control lock stayed taken
    /// (a control operation is running, perhaps on a CPU that died while holding it). When the
    /// writer is still in a write after `tries` attempts the result says so
    /// ([`Frozen::writer_stopped`]): the tail page may then hold a torn record, which a
    /// bounds-checked decoder reports as an error.
    pub fn freeze(&self, tries: u32) -> Result<Frozen<'_, 'a>, FreezeError> {
        let ctl = (0..tries)
            .find_map(|_| {
                let guard = self.control.0.try_lock();
                if guard.is_none() {
                    sync::spin_loop();
                }
                guard
            })
            .ok_or(FreezeError::Busy)?;
        if !ctl.loaded() {
            return Err(FreezeError::NotLoaded);
        }
        // Relaxed: a liveness hint, as in `disable`: the writer starts no new write.
        self.hot.0.stop.store(true, Ordering::Relaxed);
        let mut writer_stopped = false;
        for _ in 0..tries {
            // Acquire (success and failure): pairs with the writer's Release store of
            // WRITABLE on exit, so its page writes happen before the reads of the pages.
            match self.hot.0.status.compare_exchange(
                status::WRITABLE,
                status::NONWRITABLE,
                Ordering::Acquire,
                Ordering::Acquire,
            ) {
                Ok(_) | Err(status::NONWRITABLE) => {
                    writer_stopped = true;
                    break;
                }
                Err(_) => sync::spin_loop(),
            }
        }
        Ok(Frozen {
            ring: self,
            ctl,
            writer_stopped,
        })
    }
}

impl Frozen<'_, '_> {
    /// Whether the writer was out of a write (or left it) within the wait.
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
