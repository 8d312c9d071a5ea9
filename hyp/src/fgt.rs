//! The fine-grained trap registers (FEAT_FGT) for a hypervisor that traps nothing the host
//! does: computed from the CPU's ID registers, written by the arch layer.
//!
//! The registers reset to UNKNOWN values. Their ordinary bits trap when set, so they are
//! written zero. Their negative-polarity `n*` bits trap when *clear*, and are RES0 unless
//! their feature is implemented, so each is set exactly when its feature is (as Linux's
//! `__init_el2_fgt` does). Bit positions: Arm ARM D24.2 (HFGRTR_EL2, HFGWTR_EL2, HFGITR_EL2,
//! HDFGRTR_EL2, HDFGWTR_EL2). HAFGRTR_EL2 exists only with FEAT_AMUv1 as well; all its bits
//! trap when set.

/// The ID registers the values depend on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IdRegs {
    /// ID_AA64MMFR0_EL1 (FGT in bits 59:56).
    pub mmfr0: u64,
    /// ID_AA64MMFR3_EL1 (S1PIE 11:8, S1POE 19:16, S2POE 23:20, AIE 27:24).
    pub mmfr3: u64,
    /// ID_AA64PFR0_EL1 (AMU 47:44).
    pub pfr0: u64,
    /// ID_AA64PFR1_EL1 (SME 27:24, GCS 47:44, THE 51:48).
    pub pfr1: u64,
    /// ID_AA64ISAR1_EL1 (LS64 63:60).
    pub isar1: u64,
    /// ID_AA64DFR0_EL1 (PMSVer 35:32, BRBE 55:52).
    pub dfr0: u64,
}

/// The values to write, or which registers exist.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FgtValues {
    /// HFGRTR_EL2.
    pub hfgrtr: u64,
    /// HFGWTR_EL2.
    pub hfgwtr: u64,
    /// HFGITR_EL2.
    pub hfgitr: u64,
    /// HDFGRTR_EL2.
    pub hdfgrtr: u64,
    /// HDFGWTR_EL2.
    pub hdfgwtr: u64,
    /// HAFGRTR_EL2, when it exists (FEAT_AMUv1).
    pub hafgrtr: Option<u64>,
}

fn field(value: u64, shift: u32) -> u64 {
    (value >> shift) & 0xf
}

/// The registers' values for `ids`, or `None` without FEAT_FGT (the registers do not exist).
pub fn trap_nothing(ids: &IdRegs) -> Option<FgtValues> {
    if field(ids.mmfr0, 56) == 0 {
        return None;
    }
    let has = |value: u64, shift: u32| field(value, shift) != 0;
    let bits = |on: bool, bits: &[u32]| -> u64 {
        if on {
            bits.iter().map(|b| 1u64 << b).sum()
        } else {
            0
        }
    };
    // HFGRTR_EL2 and HFGWTR_EL2 share these positions.
    let fg_rw = bits(field(ids.isar1, 60) >= 0b0011, &[50]) // nACCDATA_EL1 (LS64_ACCDATA)
        | bits(has(ids.pfr1, 44), &[52, 53]) // nGCS_EL0, nGCS_EL1 (GCS)
        | bits(has(ids.pfr1, 24), &[54, 55]) // nSMPRI_EL1, nTPIDR2_EL0 (SME)
        | bits(has(ids.pfr1, 48), &[56]) // nRCWMASK_EL1 (THE)
        | bits(has(ids.mmfr3, 8), &[57, 58]) // nPIRE0_EL1, nPIR_EL1 (S1PIE)
        | bits(has(ids.mmfr3, 16), &[59, 60]) // nPOR_EL0, nPOR_EL1 (S1POE)
        | bits(has(ids.mmfr3, 20), &[61]) // nS2POR_EL1 (S2POE)
        | bits(has(ids.mmfr3, 24), &[62, 63]); // nMAIR2_EL1, nAMAIR2_EL1 (AIE)
    let brbe = has(ids.dfr0, 52);
    let spe_fne = field(ids.dfr0, 32) >= 0b0011; // SPEv1p2
    Some(FgtValues {
        hfgrtr: fg_rw,
        hfgwtr: fg_rw,
        // nBRBINJ, nBRBIALL.
        hfgitr: bits(brbe, &[55, 56]),
        // nBRBIDR, nBRBCTL, nBRBDATA; nPMSNEVFR_EL1.
        hdfgrtr: bits(brbe, &[59, 60, 61]) | bits(spe_fne, &[62]),
        // nBRBCTL, nBRBDATA; nPMSNEVFR_EL1 (BRBIDR0_EL1 is read-only).
        hdfgwtr: bits(brbe, &[60, 61]) | bits(spe_fne, &[62]),
        hafgrtr: has(ids.pfr0, 44).then_some(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FGT: u64 = 1 << 56;

    #[test]
    fn without_fgt_nothing_is_written() {
        assert_eq!(trap_nothing(&IdRegs::default()), None);
        let everything_but_fgt = IdRegs {
            pfr1: u64::MAX,
            ..IdRegs::default()
        };
        assert_eq!(trap_nothing(&everything_but_fgt), None);
    }

    #[test]
    fn a_plain_fgt_cpu_gets_zeros() {
        let v = trap_nothing(&IdRegs {
            mmfr0: FGT,
            ..IdRegs::default()
        })
        .unwrap();
        assert_eq!(v, FgtValues::default());
    }

    #[test]
    fn negative_bits_follow_their_features() {
        let sme = trap_nothing(&IdRegs {
            mmfr0: FGT,
            pfr1: 1 << 24,
            ..IdRegs::default()
        })
        .unwrap();
        assert_eq!(sme.hfgrtr, (1 << 54) | (1 << 55));
        assert_eq!(sme.hfgwtr, sme.hfgrtr);
        let brbe_spe_amu = trap_nothing(&IdRegs {
            mmfr0: FGT,
            dfr0: (1 << 52) | (3 << 32),
            pfr0: 1 << 44,
            ..IdRegs::default()
        })
        .unwrap();
        assert_eq!(brbe_spe_amu.hfgitr, (1 << 55) | (1 << 56));
        assert_eq!(brbe_spe_amu.hdfgrtr, 0b1111 << 59);
        assert_eq!(brbe_spe_amu.hdfgwtr, 0b111 << 60);
        assert_eq!(brbe_spe_amu.hafgrtr, Some(0));
        // SPEv1p1 has no PMSNEVFR_EL1.
        let spe_1p1 = trap_nothing(&IdRegs {
            mmfr0: FGT,
            dfr0: 2 << 32,
            ..IdRegs::default()
        })
        .unwrap();
        assert_eq!(spe_1p1.hdfgrtr, 0);
        let all = trap_nothing(&IdRegs {
            mmfr0: FGT,
            mmfr3: 0x1111_1100,
            pfr1: (1 << 24) | (1 << 44) | (1 << 48),
            isar1: 3 << 60,
            ..IdRegs::default()
        })
        .unwrap();
        assert_eq!(all.hfgrtr, 0xfff4 << 48, "bits 50 and 52..=63");
    }
}
