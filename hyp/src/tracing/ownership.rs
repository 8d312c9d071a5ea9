//! Who owns each page of host RAM, as the hypervisor tracks it.
//!
//! Three states, two bits per page: `HostOwned` (the default), `Shared` (the host shared it
//! with the hypervisor: a ring-buffer page, pinned while tracing is loaded) and `HypOwned`
//! (the hypervisor's own memory, never shareable). `load_tracing` shares every page it named
//! in one step — any page not `HostOwned`, including one named twice, refuses the whole load
//! and rolls the step back — and `teardown_tracing` returns them.
//!
//! The pack itself is not tracked: the hypervisor validates a private copy of it, so the host
//! keeps its pack pages throughout (see `docs/security.md`).

use core::ops::Range;

use crate::abi::page::PAGE_SIZE_U64 as PAGE_SIZE;
use crate::abi::HypError;

/// Pages of RAM the table can track (4 GiB).
pub const TRACKED_PAGES: usize = 1 << 20;

/// A page's owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageState {
    /// The host's (the default for all of RAM).
    HostOwned,
    /// Shared by the host with the hypervisor, which writes it (pinned while loaded).
    Shared,
    /// The hypervisor's own memory.
    HypOwned,
}

impl PageState {
    const fn bits(self) -> u8 {
        match self {
            Self::HostOwned => 0,
            Self::Shared => 1,
            Self::HypOwned => 2,
        }
    }

    const fn from_bits(b: u8) -> Self {
        match b {
            0 => Self::HostOwned,
            1 => Self::Shared,
            _ => Self::HypOwned,
        }
    }
}

/// The ownership table of the RAM bank starting at `base`.
pub struct PageStates {
    base: u64,
    pages: usize,
    bits: [u8; TRACKED_PAGES / 4],
}

impl Default for PageStates {
    fn default() -> Self {
        Self::new()
    }
}

impl PageStates {
    /// An empty table (tracks nothing until [`reset`](Self::reset)).
    pub const fn new() -> Self {
        Self {
            base: 0,
            pages: 0,
            bits: [0; TRACKED_PAGES / 4],
        }
    }

    /// Tracks `ram` (at most [`TRACKED_PAGES`] pages), all host-owned except `hyp`.
    pub fn reset(&mut self, ram: &Range<u64>, hyp: &Range<u64>) {
        self.base = ram.start;
        self.pages = (((ram.end - ram.start) / PAGE_SIZE) as usize).min(TRACKED_PAGES);
        self.bits.fill(0);
        let mut pa = hyp.start.max(ram.start);
        while pa < hyp.end.min(self.end()) {
            self.set(self.index(pa).unwrap_or(0), PageState::HypOwned);
            pa += PAGE_SIZE;
        }
    }

    /// Tracks `ram` and `hyp` unless it already does. Only call it while nothing is shared.
    pub fn ensure(&mut self, ram: &Range<u64>, hyp: &Range<u64>) {
        let pages = (((ram.end - ram.start) / PAGE_SIZE) as usize).min(TRACKED_PAGES);
        if self.base != ram.start || self.pages != pages {
            self.reset(ram, hyp);
        }
    }

    fn end(&self) -> u64 {
        self.base + self.pages as u64 * PAGE_SIZE
    }

    fn index(&self, pa: u64) -> Option<usize> {
        let i = (pa.checked_sub(self.base)? / PAGE_SIZE) as usize;
        (i < self.pages).then_some(i)
    }

    fn get(&self, i: usize) -> PageState {
        PageState::from_bits((self.bits[i / 4] >> (2 * (i % 4))) & 3)
    }

    fn set(&mut self, i: usize, s: PageState) {
        let shift = 2 * (i % 4);
        self.bits[i / 4] = (self.bits[i / 4] & !(3 << shift)) | (s.bits() << shift);
    }

    /// The state of the page containing `pa`; `None` outside the tracked RAM.
    pub fn state(&self, pa: u64) -> Option<PageState> {
        self.index(pa).map(|i| self.get(i))
    }

    /// Shares every page of `pages` with the hypervisor, all or nothing: a page outside RAM
    /// is [`HypError::PageNotRam`], a hypervisor page [`HypError::PageInHyp`], a page already
    /// shared (by an earlier entry of `pages` too) [`HypError::PageDuplicate`].
    pub fn share(&mut self, pages: &[u64]) -> Result<(), HypError> {
        for (done, &pa) in pages.iter().enumerate() {
            let refused = match self.index(pa).map(|i| (i, self.get(i))) {
                Some((i, PageState::HostOwned)) => {
                    self.set(i, PageState::Shared);
                    None
                }
                Some((_, PageState::Shared)) => Some(HypError::PageDuplicate),
                Some((_, PageState::HypOwned)) => Some(HypError::PageInHyp),
                None => Some(HypError::PageNotRam),
            };
            if let Some(e) = refused {
                self.unshare(&pages[..done]);
                return Err(e);
            }
        }
        Ok(())
    }

    /// Returns shared pages to the host (others are left as they are).
    pub fn unshare(&mut self, pages: &[u64]) {
        for &pa in pages {
            if let Some(i) = self.index(pa) {
                if self.get(i) == PageState::Shared {
                    self.set(i, PageState::HostOwned);
                }
            }
        }
    }

    /// How many pages are shared (for tests and diagnostics).
    pub fn shared_pages(&self) -> usize {
        (0..self.pages)
            .filter(|i| self.get(*i) == PageState::Shared)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Box<PageStates> {
        let mut t = Box::new(PageStates::new());
        t.reset(&(0x4000_0000..0x8000_0000), &(0x4020_0000..0x4100_0000));
        t
    }

    #[test]
    fn default_states() {
        let t = table();
        assert_eq!(t.state(0x4000_0000), Some(PageState::HostOwned));
        assert_eq!(t.state(0x4020_0000), Some(PageState::HypOwned));
        assert_eq!(t.state(0x40ff_ffff), Some(PageState::HypOwned));
        assert_eq!(t.state(0x4100_0000), Some(PageState::HostOwned));
        assert_eq!(t.state(0x8000_0000), None);
        assert_eq!(t.state(0x3fff_ffff), None);
    }

    #[test]
    fn share_then_unshare() {
        let mut t = table();
        let pages = [0x4200_0000, 0x4200_1000, 0x7fff_f000];
        t.share(&pages).unwrap();
        assert_eq!(t.shared_pages(), 3);
        assert_eq!(t.state(0x4200_1000), Some(PageState::Shared));
        assert_eq!(
            t.share(&[0x4300_0000, 0x4200_0000]),
            Err(HypError::PageDuplicate)
        );
        assert_eq!(
            t.state(0x4300_0000),
            Some(PageState::HostOwned),
            "rolled back"
        );
        t.unshare(&pages);
        assert_eq!(t.shared_pages(), 0);
    }

    #[test]
    fn refusals_roll_back_everything() {
        let mut t = table();
        for (bad, err) in [
            (0x4200_0000, HypError::PageDuplicate),
            (0x4020_0000, HypError::PageInHyp),
            (0x8000_0000, HypError::PageNotRam),
        ] {
            assert_eq!(t.share(&[0x4200_0000, 0x4300_0000, bad]), Err(err));
            assert_eq!(t.shared_pages(), 0, "{bad:#x}");
        }
    }
}
