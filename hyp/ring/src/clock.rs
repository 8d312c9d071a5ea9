//! Trace-clock arithmetic: counter cycles to nanoseconds with host-provided parameters.
//!
//! `ns = ((cycles - epoch_cyc) * mult >> shift) + epoch_ns`, computed with a 128-bit product so
//! no epoch re-basing is ever needed (the hypervisor cannot re-base on its own), and saturating
//! rather than wrapping at the edges. The host derives `mult`/`shift` from CNTFRQ_EL0 with
//! [`ClockParams::for_frequency`] and timestamps its own records with the same conversion, so
//! host and hypervisor events share one timeline. How the hypervisor publishes a new set
//! without a writer ever seeing a torn one is in [`crate::clock_banks`].

use core::fmt;

/// Clock parameters refused by [`ClockParams::new`]: `mult` zero or above 32 bits, or
/// `shift` of 64 or more. Converts into `HypError::InvalidClock`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvalidClock;

impl fmt::Display for InvalidClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("clock parameters out of range (mult 0 or above 32 bits, or shift >= 64)")
    }
}

impl core::error::Error for InvalidClock {}

impl From<InvalidClock> for hyptrace_abi::HypError {
    fn from(_: InvalidClock) -> Self {
        Self::InvalidClock
    }
}

/// The four values of `update_clock(mult, shift, epoch_ns, epoch_cyc)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClockParams {
    /// Multiplier applied to elapsed cycles.
    pub mult: u32,
    /// Right shift applied after the multiplication (< 64).
    pub shift: u32,
    /// Nanoseconds at `epoch_cyc`.
    pub epoch_ns: u64,
    /// Counter value at `epoch_ns`.
    pub epoch_cyc: u64,
}

impl ClockParams {
    /// Checks parameters that come from the host: `mult` must be non-zero and fit in 32
    /// bits, and `shift` < 64.
    ///
    /// # Errors
    /// [`InvalidClock`] when they do not.
    pub fn new(mult: u64, shift: u64, epoch_ns: u64, epoch_cyc: u64) -> Result<Self, InvalidClock> {
        let mult = u32::try_from(mult).map_err(|_| InvalidClock)?;
        if mult == 0 || shift >= 64 {
            return Err(InvalidClock);
        }
        Ok(Self {
            mult,
            shift: shift as u32,
            epoch_ns,
            epoch_cyc,
        })
    }

    /// Parameters for a counter running at `freq_hz` with `epoch_cyc` mapped to `epoch_ns`:
    /// the largest shift for which `mult = round(1e9 << shift / freq)` still fits in 32 bits.
    /// `None` for a zero frequency.
    pub fn for_frequency(freq_hz: u64, epoch_ns: u64, epoch_cyc: u64) -> Option<Self> {
        if freq_hz == 0 {
            return None;
        }
        let mut best = None;
        for shift in 0..64u32 {
            let scaled = (1_000_000_000u128 << shift) + freq_hz as u128 / 2;
            let mult = scaled / freq_hz as u128;
            if mult > u32::MAX as u128 {
                break;
            }
            if mult > 0 {
                best = Some((mult as u32, shift));
            }
        }
        let (mult, shift) = best?;
        Some(Self {
            mult,
            shift,
            epoch_ns,
            epoch_cyc,
        })
    }

    /// Nanoseconds at counter value `cycles`. Before the epoch the result counts down from
    /// `epoch_ns` (saturating at 0); far beyond it, it saturates at `u64::MAX`.
    #[inline]
    pub fn cycles_to_ns(&self, cycles: u64) -> u64 {
        if cycles >= self.epoch_cyc {
            self.epoch_ns
                .saturating_add(self.scale(cycles - self.epoch_cyc))
        } else {
            self.before_epoch(cycles)
        }
    }

    /// `delta` cycles in ns, saturating.
    #[inline(always)]
    fn scale(&self, delta: u64) -> u64 {
        let ns = (delta as u128 * self.mult as u128) >> self.shift;
        u64::try_from(ns).unwrap_or(u64::MAX)
    }

    /// A counter value before the epoch: rare (the host sets the epoch at a counter value it
    /// has read), so out of line, which keeps the writer's path to one product.
    #[cold]
    #[inline(never)]
    fn before_epoch(&self, cycles: u64) -> u64 {
        self.epoch_ns
            .saturating_sub(self.scale(self.epoch_cyc - cycles))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn qemu_62_5_mhz_is_exact() {
        let c = ClockParams::for_frequency(62_500_000, 0, 0).unwrap();
        // 16 ns per tick exactly: mult / 2^shift == 16.
        assert_eq!(c.cycles_to_ns(1), 16);
        assert_eq!(c.cycles_to_ns(62_500_000), 1_000_000_000);
        assert_eq!(c.cycles_to_ns(u64::MAX / 16), (u64::MAX / 16) * 16);
    }

    #[test]
    fn one_ghz_and_odd_frequencies() {
        let c = ClockParams::for_frequency(1_000_000_000, 5, 100).unwrap();
        assert_eq!(c.cycles_to_ns(100), 5);
        assert_eq!(c.cycles_to_ns(1_000_000_100), 1_000_000_005);
        let c = ClockParams::for_frequency(19_200_000, 0, 0).unwrap();
        // 19.2 MHz: 52.083.. ns per tick; one second within 1 ns.
        assert!(c.cycles_to_ns(19_200_000).abs_diff(1_000_000_000) <= 1);
        assert!(ClockParams::for_frequency(0, 0, 0).is_none());
    }

    #[test]
    fn host_values_are_checked() {
        assert_eq!(ClockParams::new(0, 0, 0, 0), Err(InvalidClock));
        assert_eq!(ClockParams::new(1, 64, 0, 0), Err(InvalidClock));
        assert_eq!(ClockParams::new(1 << 32, 0, 0, 0), Err(InvalidClock));
        assert!(ClockParams::new(16, 63, 0, 0).is_ok());
    }

    #[test]
    fn saturates_instead_of_wrapping() {
        let c = ClockParams::new(u32::MAX as u64, 0, u64::MAX - 5, 0).unwrap();
        assert_eq!(c.cycles_to_ns(u64::MAX), u64::MAX);
        let c = ClockParams::new(16, 0, 100, 1_000).unwrap();
        assert_eq!(c.cycles_to_ns(995), 20);
        assert_eq!(c.cycles_to_ns(0), 0);
    }

    proptest! {
        #[test]
        fn monotonic_in_cycles(
            mult in 1u64..=u32::MAX as u64,
            shift in 0u64..64,
            epoch_ns: u64,
            epoch_cyc: u64,
            a: u64,
            b: u64,
        ) {
            let c = ClockParams::new(mult, shift, epoch_ns, epoch_cyc).unwrap();
            let (lo, hi) = (a.min(b), a.max(b));
            prop_assert!(c.cycles_to_ns(lo) <= c.cycles_to_ns(hi));
        }
    }
}
