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

/// ESR_EL1 for an abort the hypervisor injects after a stage-2 fault it will not resolve.
///
/// The class becomes the one EL1 would have seen for a fault taken to itself: a data abort
/// (0x24/0x25) or instruction abort (0x20/0x21) "from a lower EL" if the host was at EL0,
/// "without a change in EL" if it was at EL1. The syndrome keeps only what is meaningful to
/// the host: WnR (bit 6, data aborts) and the fault status code (bits 5:0); IL is set.
/// `None` if `esr_el2` is not an abort from a lower EL.
pub fn abort_esr(esr_el2: u64, spsr: u64) -> Option<u64> {
    let from_el1 = (spsr & 0xf) >> 2 == 1;
    let ec = match (esr_el2 >> 26) & 0x3f {
        0x24 => 0x24 | from_el1 as u64,
        0x20 => 0x20 | from_el1 as u64,
        _ => return None,
    };
    let keep = if ec & !1 == 0x24 {
        (1 << 6) | 0x3f
    } else {
        0x3f
    };
    Some((ec << 26) | (1 << 25) | (esr_el2 & keep))
}

/// ESR_EL2.ISS.S1PTW: the stage-2 fault happened on the stage-1 table walk's own access.
pub const ISS_S1PTW: u64 = 1 << 7;

/// Fault status "synchronous external abort on translation table walk, level 0" (0b010100;
/// levels 1-3 add the level).
pub const FSC_SEA_ON_WALK: u64 = 0b01_0100;

/// ESR_EL1 for a stage-2 fault on the host's own stage-1 walk (`esr_el2` has S1PTW set): a
/// synchronous external abort on translation table walk at the stage-1 `level` (0..=3) that
/// read the refused descriptor, as a host without a hypervisor would see for a walk into
/// memory that does not answer. Reporting the stage-2 fault status instead would tell the host
/// of a translation fault at a level of its own tables, which it would try to fix forever.
/// The class is chosen as in [`abort_esr`]; WnR is kept. `None` if `esr_el2` is not an abort
/// from a lower EL.
pub fn walk_abort_esr(esr_el2: u64, spsr: u64, level: u8) -> Option<u64> {
    let esr = abort_esr(esr_el2, spsr)?;
    Some((esr & !0x3f) | FSC_SEA_ON_WALK | u64::from(level.min(3)))
}

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
    fn abort_syndromes() {
        // Observed stage-2 fault: load, ISV set, SRT x9, translation fault level 2.
        let esr = 0x93C9_8006;
        assert_eq!(abort_esr(esr, 0x3c5), Some((0x25 << 26) | (1 << 25) | 0x06));
        // A write keeps WnR; from EL0 the class stays "lower EL".
        assert_eq!(
            abort_esr(0x9200_0047, 0x0),
            Some((0x24 << 26) | (1 << 25) | 0x47)
        );
        // An instruction fetch.
        assert_eq!(
            abort_esr(0x8200_0007, 0x3c5),
            Some((0x21 << 26) | (1 << 25) | 0x07)
        );
        assert_eq!(abort_esr(0x5A00_0000, 0x3c5), None, "an HVC is no abort");
    }

    #[test]
    fn walk_aborts_are_external_aborts_at_the_stage_1_level() {
        // Stage-2 translation fault level 2 on a stage-1 walk (S1PTW) of a load from EL1.
        let esr = 0x9200_0086;
        assert_eq!(
            walk_abort_esr(esr, 0x3c5, 2),
            Some((0x25 << 26) | (1 << 25) | 0x16)
        );
        assert_eq!(walk_abort_esr(esr, 0x3c5, 0).map(|e| e & 0x3f), Some(0x14));
        assert_eq!(walk_abort_esr(esr, 0x3c5, 9).map(|e| e & 0x3f), Some(0x17));
        // From EL0, an instruction fetch.
        assert_eq!(
            walk_abort_esr(0x8200_0087, 0x0, 3),
            Some((0x20 << 26) | (1 << 25) | 0x17)
        );
        assert_eq!(walk_abort_esr(0x5A00_0000, 0x3c5, 1), None);
    }

    #[test]
    fn state_is_preserved_for_the_host() {
        let i = sync_exception(0x8000, 0x4100_1234, 0x6000_03c5);
        assert_eq!(i.elr_el1, 0x4100_1234);
        assert_eq!(i.spsr_el1, 0x6000_03c5);
        assert_eq!(i.spsr_el2, SPSR_EL1H_MASKED);
    }
}
