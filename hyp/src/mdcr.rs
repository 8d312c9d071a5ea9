//! MDCR_EL2 for a hypervisor that lends the whole PMU to its host but hides its own work.
//!
//! The host owns every PMU counter (HPMN = PMCR_EL0.N, no traps). What the counters must not
//! see is the hypervisor: counting EL2 events would let the host measure what the hypervisor
//! did on its behalf, and for whom (a side channel). Arm provides two controls:
//! - **HPMD** (bit 17, FEAT_PMUv3p1): event counters do not count at EL2 (and, without
//!   FEAT_PMUv3p5, neither does the cycle counter);
//! - **HCCD** (bit 23, FEAT_PMUv3p5): the cycle counter does not count at EL2.
//!
//! Both are set exactly when the PMU has them (`ID_AA64DFR0_EL1.PMUVer`, bits 11:8: 4 is
//! PMUv3p1, 6 PMUv3p5; 0xF is an IMPLEMENTATION DEFINED PMU, which has neither). A PMUv3
//! without p1 (Cortex-A53) has no such control: there the host can count EL2 events by
//! setting the NSH filter bit, and only trapping and emulating every PMU access would hide
//! them (not done; docs/security.md says so).

/// MDCR_EL2.HPMD: event counting prohibited at EL2.
pub const HPMD: u64 = 1 << 17;
/// MDCR_EL2.HCCD: cycle counting prohibited at EL2.
pub const HCCD: u64 = 1 << 23;

/// The MDCR_EL2 value for a CPU with `PMCR_EL0` = `pmcr` and `ID_AA64DFR0_EL1` = `dfr0`.
pub const fn mdcr_el2(pmcr: u64, dfr0: u64) -> u64 {
    let hpmn = (pmcr >> 11) & 0x1f;
    let pmuver = (dfr0 >> 8) & 0xf;
    let mut value = hpmn;
    if pmuver != 0xf && pmuver >= 4 {
        value |= HPMD;
    }
    if pmuver != 0xf && pmuver >= 6 {
        value |= HCCD;
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    const N6: u64 = 6 << 11;

    #[test]
    fn every_counter_is_the_hosts() {
        assert_eq!(mdcr_el2(N6, 0) & 0x1f, 6);
        assert_eq!(mdcr_el2(31 << 11, 0) & 0x1f, 31);
    }

    #[test]
    fn el2_is_hidden_exactly_where_the_pmu_can() {
        let ver = |v: u64| v << 8;
        // No PMU, PMUv3 (Cortex-A53): nothing to set.
        assert_eq!(mdcr_el2(N6, ver(0)), 6);
        assert_eq!(mdcr_el2(N6, ver(1)), 6);
        // PMUv3p1 .. p4: events hidden.
        assert_eq!(mdcr_el2(N6, ver(4)), 6 | HPMD);
        assert_eq!(mdcr_el2(N6, ver(5)), 6 | HPMD);
        // PMUv3p5 and later: events and cycles.
        for v in [6, 7, 8] {
            assert_eq!(mdcr_el2(N6, ver(v)), 6 | HPMD | HCCD);
        }
        // IMPLEMENTATION DEFINED PMU: neither control exists.
        assert_eq!(mdcr_el2(N6, ver(0xf)), 6);
        // Other ID fields do not matter.
        assert_eq!(mdcr_el2(N6, !0xf00 | ver(4)), 6 | HPMD);
    }
}
