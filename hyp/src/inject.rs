//! Injecting a synchronous exception into the host (EL1), as if EL1 had taken it itself.
//!
//! Used when the host does something the hypervisor traps but does not emulate: rather than
//! ending the system, the hypervisor hands the exception to the host's own vectors with the
//! syndrome EL1 would have seen. Pure arithmetic on the trapped state; the arch layer writes
//! the results to ESR_EL1, FAR_EL1, ELR_EL1, SPSR_EL1 and the trap frame.

/// SPSR value the host's handler starts with: EL1h, D, A, I, F masked.
pub const SPSR_EL1H_MASKED: u64 = 0x3c5;

/// ESR_EL1 for an "unknown reason" (undefined instruction) exception with a 32-bit
/// instruction: EC 0x00, IL 1.
pub const ESR_UNDEF: u64 = 1 << 25;

/// Where and how the host's vector table must be entered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Injection {
    /// New ELR_EL2: the host's vector slot.
    pub elr_el2: u64,
    /// New SPSR_EL2: EL1h, exceptions masked.
    pub spsr_el2: u64,
    /// ELR_EL1: the instruction that trapped.
    pub elr_el1: u64,
    /// SPSR_EL1: the interrupted PSTATE.
    pub spsr_el1: u64,
}

/// Computes the injection of a synchronous exception taken from the context described by
/// `spsr` (SPSR_EL2 of the trap) at `elr`, into a host whose VBAR_EL1 is `vbar_el1`.
///
/// The vector slot follows the architecture: from EL1 with SP_EL1 (EL1h) the "current EL,
/// SP_ELx" slot (+0x200), from EL1 with SP_EL0 (EL1t) the "current EL, SP_EL0" slot (+0x000),
/// from AArch64 EL0 the "lower EL, AArch64" slot (+0x400), from AArch32 the "lower EL,
/// AArch32" slot (+0x600).
pub fn sync_exception(vbar_el1: u64, elr: u64, spsr: u64) -> Injection {
    let aarch32 = spsr & (1 << 4) != 0;
    let offset = if aarch32 {
        0x600
    } else {
        match spsr & 0xf {
            0b0101 => 0x200, // EL1h
            0b0100 => 0x000, // EL1t
            _ => 0x400,      // EL0t
        }
    };
    Injection {
        elr_el2: vbar_el1.wrapping_add(offset),
        spsr_el2: SPSR_EL1H_MASKED,
        elr_el1: elr,
        spsr_el1: spsr,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vector_slots_by_origin() {
        let vbar = 0x4100_0800;
        assert_eq!(sync_exception(vbar, 0x1000, 0x3c5).elr_el2, vbar + 0x200);
        assert_eq!(sync_exception(vbar, 0x1000, 0x3c4).elr_el2, vbar);
        assert_eq!(sync_exception(vbar, 0x1000, 0x0).elr_el2, vbar + 0x400);
        assert_eq!(sync_exception(vbar, 0x1000, 0x10).elr_el2, vbar + 0x600);
    }

    #[test]
    fn state_is_preserved_for_the_host() {
        let i = sync_exception(0x8000, 0x4100_1234, 0x6000_03c5);
        assert_eq!(i.elr_el1, 0x4100_1234);
        assert_eq!(i.spsr_el1, 0x6000_03c5);
        assert_eq!(i.spsr_el2, SPSR_EL1H_MASKED);
    }
}
