//! The writer status: the handshake between the writer and the control operations.
//!
//! One `AtomicU32` per buffer. The writer enters with a compare-and-swap WRITABLE → WRITING
//! (Acquire), once per event or once per batch of events, and leaves with a Release store of
//! WRITABLE; a control operation that must keep
//! the writer out (disable, reset, teardown) swaps WRITABLE → NONWRITABLE (Acquire), spinning
//! while it reads WRITING. These values are private to the writer: no page and no register
//! carries them.

/// Not writable: initial, disabled, torn down.
pub(crate) const NONWRITABLE: u32 = 0;
/// Writable and idle.
pub(crate) const WRITABLE: u32 = 1;
/// A write is in flight.
pub(crate) const WRITING: u32 = 2;
