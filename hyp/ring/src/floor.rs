//! The floor every benchmark of the writer compares it with: the least a timestamped
//! recorder can do, read a counter and store a record into a byte ring, with no protocol.
//!
//! One definition, so that the floor measured at EL1 by the host, at EL2 by the
//! hypervisor and in the instruction-count budgets is the same code: each 24-byte slot gets
//! the counter's low 32 bits (where a record header goes), an 8-byte sequence number and the
//! 8-byte counter value, 20 bytes of data like a selftest event's 4-byte header and 16 bytes
//! of payload.

/// Bytes of one slot.
pub const SLOT: usize = 24;

/// Writes `events` slots into `ring` (wrapping), each stamped with `counter()`. `ring` must
/// hold more than two slots.
///
/// # Panics
/// If `ring` is shorter than two slots.
#[inline(always)]
pub fn store_loop(ring: &mut [u8], events: u64, counter: impl Fn() -> u64) {
    assert!(
        ring.len() > 2 * SLOT,
        "the floor's ring holds at least two slots"
    );
    let mut at = 0;
    for seq in 0..events {
        let ts = counter();
        let rec = &mut ring[at..at + SLOT];
        rec[..4].copy_from_slice(&(ts as u32).to_le_bytes());
        rec[4..12].copy_from_slice(&seq.to_le_bytes());
        rec[12..20].copy_from_slice(&ts.to_le_bytes());
        at = (at + SLOT) % (ring.len() - SLOT);
    }
    core::hint::black_box(&ring);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_hold_the_stamp_and_the_sequence() {
        let mut ring = vec![0u8; 4 * SLOT];
        let clock = core::cell::Cell::new(100u64);
        store_loop(&mut ring, 4, || {
            clock.set(clock.get() + 1);
            clock.get()
        });
        // Slots at 0, 24, 48, then wrapping to 0 (the last slot is never used).
        assert_eq!(&ring[4..12], &3u64.to_le_bytes());
        assert_eq!(&ring[12..20], &104u64.to_le_bytes());
        assert_eq!(&ring[SLOT + 4..SLOT + 12], &1u64.to_le_bytes());
        assert_eq!(&ring[2 * SLOT..2 * SLOT + 4], &103u32.to_le_bytes());
    }
}
