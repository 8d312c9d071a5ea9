//! Exception Syndrome Register decoding, shared by the EL2 and EL1 fault reporters.
//!
//! Pure functions over the raw register value, so the exact text a fatal-exception report
//! prints is unit-tested on the development machine.

use core::fmt;

/// A raw ESR_ELx value.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Esr(pub u64);

/// Exception class: HVC executed in AArch64 state.
pub const EC_HVC64: u8 = 0x16;
/// Exception class: SMC executed in AArch64 state (trapped by HCR_EL2.TSC at EL2).
pub const EC_SMC64: u8 = 0x17;
/// Exception class: data abort from a lower exception level.
pub const EC_DATA_ABORT_LOWER: u8 = 0x24;
/// Exception class: data abort taken without a change of exception level.
pub const EC_DATA_ABORT_SAME: u8 = 0x25;
/// Exception class: instruction abort from a lower exception level.
pub const EC_INSN_ABORT_LOWER: u8 = 0x20;

impl Esr {
    /// Exception class, `ESR[31:26]`.
    pub const fn ec(self) -> u8 {
        ((self.0 >> 26) & 0x3f) as u8
    }

    /// Instruction-length bit, `ESR[25]`: 1 for a 32-bit instruction.
    pub const fn il(self) -> bool {
        (self.0 >> 25) & 1 == 1
    }

    /// Instruction-specific syndrome, `ESR[24:0]`.
    pub const fn iss(self) -> u32 {
        (self.0 & 0x1ff_ffff) as u32
    }

    /// Size in bytes of the trapping instruction (for stepping ELR over it).
    pub const fn instruction_len(self) -> u64 {
        if self.il() {
            4
        } else {
            2
        }
    }

    /// Whether FAR holds a valid faulting address for this syndrome. True for aborts unless
    /// ISS.FnV (bit 10) says otherwise; false for every other class.
    pub const fn far_valid(self) -> bool {
        match self.ec() {
            // Aborts: FAR is valid unless ISS.FnV says otherwise.
            0x20 | 0x21 | 0x24 | 0x25 => (self.iss() >> 10) & 1 == 0,
            // PC alignment and watchpoints always set FAR.
            0x22 | 0x34 | 0x35 => true,
            // Everything else (SP alignment included) leaves FAR UNKNOWN.
            _ => false,
        }
    }

    /// The name of this exception class.
    pub const fn ec_name(self) -> &'static str {
        ec_name(self.ec())
    }
}

impl fmt::Debug for Esr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:#010x} (EC {:#04x} {})",
            self.0,
            self.ec(),
            self.ec_name()
        )
    }
}

impl fmt::Display for Esr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Name of an exception class (Arm ARM, ESR_ELx.EC).
pub const fn ec_name(ec: u8) -> &'static str {
    match ec {
        0x00 => "unknown reason",
        0x01 => "trapped WFI/WFE",
        0x03 => "trapped MCR/MRC (cp15)",
        0x04 => "trapped MCRR/MRRC (cp15)",
        0x05 => "trapped MCR/MRC (cp14)",
        0x06 => "trapped LDC/STC",
        0x07 => "SVE/SIMD/FP access trapped",
        0x09 => "pointer authentication instruction trapped",
        0x0a => "trapped LD64B/ST64B",
        0x0c => "trapped MRRC (cp14)",
        0x0d => "branch target exception",
        0x0e => "illegal execution state",
        0x11 => "SVC (AArch32)",
        0x12 => "HVC (AArch32)",
        0x13 => "SMC (AArch32)",
        0x15 => "SVC (AArch64)",
        0x16 => "HVC (AArch64)",
        0x17 => "SMC (AArch64)",
        0x18 => "trapped MSR/MRS/system instruction",
        0x19 => "SVE access trapped",
        0x1a => "ERET/ERETAA/ERETAB trapped",
        0x1d => "SME access trapped",
        0x1c => "pointer authentication failure",
        0x20 => "instruction abort from a lower EL",
        0x21 => "instruction abort at the same EL",
        0x22 => "PC alignment fault",
        0x24 => "data abort from a lower EL",
        0x25 => "data abort at the same EL",
        0x26 => "SP alignment fault",
        0x28 => "FP exception (AArch32)",
        0x2c => "FP exception (AArch64)",
        0x2f => "SError",
        0x30 => "breakpoint from a lower EL",
        0x31 => "breakpoint at the same EL",
        0x32 => "software step from a lower EL",
        0x33 => "software step at the same EL",
        0x34 => "watchpoint from a lower EL",
        0x35 => "watchpoint at the same EL",
        0x38 => "BKPT (AArch32)",
        0x3c => "BRK (AArch64)",
        _ => "reserved exception class",
    }
}

/// Which of the 16 vector-table slots an exception came through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VectorSlot {
    /// Current EL using SP_EL0.
    CurrentSp0(ExceptionKind),
    /// Current EL using SP_ELx.
    CurrentSpx(ExceptionKind),
    /// Lower EL running AArch64.
    LowerA64(ExceptionKind),
    /// Lower EL running AArch32.
    LowerA32(ExceptionKind),
}

/// The four kinds of exception each vector group handles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExceptionKind {
    /// Synchronous exception.
    Sync,
    /// IRQ.
    Irq,
    /// FIQ.
    Fiq,
    /// System error.
    SError,
}

impl VectorSlot {
    /// Decodes a slot number 0..16 (offset / 0x80); `None` past the table.
    pub const fn from_index(index: u64) -> Option<Self> {
        let kind = match index % 4 {
            0 => ExceptionKind::Sync,
            1 => ExceptionKind::Irq,
            2 => ExceptionKind::Fiq,
            _ => ExceptionKind::SError,
        };
        Some(match index / 4 {
            0 => Self::CurrentSp0(kind),
            1 => Self::CurrentSpx(kind),
            2 => Self::LowerA64(kind),
            3 => Self::LowerA32(kind),
            _ => return None,
        })
    }

    /// Human-readable name, e.g. "synchronous exception from a lower EL (AArch64)".
    pub const fn name(self) -> &'static str {
        use ExceptionKind::*;
        match self {
            Self::CurrentSp0(Sync) => "synchronous exception at the current EL (SP_EL0)",
            Self::CurrentSp0(Irq) => "IRQ at the current EL (SP_EL0)",
            Self::CurrentSp0(Fiq) => "FIQ at the current EL (SP_EL0)",
            Self::CurrentSp0(SError) => "SError at the current EL (SP_EL0)",
            Self::CurrentSpx(Sync) => "synchronous exception at the current EL",
            Self::CurrentSpx(Irq) => "IRQ at the current EL",
            Self::CurrentSpx(Fiq) => "FIQ at the current EL",
            Self::CurrentSpx(SError) => "SError at the current EL",
            Self::LowerA64(Sync) => "synchronous exception from a lower EL (AArch64)",
            Self::LowerA64(Irq) => "IRQ from a lower EL (AArch64)",
            Self::LowerA64(Fiq) => "FIQ from a lower EL (AArch64)",
            Self::LowerA64(SError) => "SError from a lower EL (AArch64)",
            Self::LowerA32(Sync) => "synchronous exception from a lower EL (AArch32)",
            Self::LowerA32(Irq) => "IRQ from a lower EL (AArch32)",
            Self::LowerA32(Fiq) => "FIQ from a lower EL (AArch32)",
            Self::LowerA32(SError) => "SError from a lower EL (AArch32)",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_observed_hvc_and_smc() {
        // Values observed on QEMU 7.2: `hvc #0x42` and `smc #0`.
        let hvc = Esr(0x5A00_0042);
        assert_eq!(hvc.ec(), EC_HVC64);
        assert_eq!(hvc.iss(), 0x42);
        assert_eq!(hvc.instruction_len(), 4);
        assert_eq!(hvc.ec_name(), "HVC (AArch64)");
        let smc = Esr(0x5E00_0000);
        assert_eq!(smc.ec(), EC_SMC64);
        assert!(!smc.far_valid());
    }

    #[test]
    fn decodes_stage2_data_abort() {
        let abort = Esr(0x93C9_8006);
        assert_eq!(abort.ec(), EC_DATA_ABORT_LOWER);
        assert!(abort.far_valid());
        assert_eq!(
            format!("{abort}"),
            "0x93c98006 (EC 0x24 data abort from a lower EL)"
        );
        // FnV set: FAR is not valid.
        assert!(!Esr(0x93C9_8006 | 1 << 10).far_valid());
    }

    #[test]
    fn fp_trap_and_unknown_classes_have_names() {
        assert_eq!(Esr(0x1fe0_0000).ec_name(), "SVE/SIMD/FP access trapped");
        assert_eq!(ec_name(0x3f), "reserved exception class");
        assert_eq!(ec_name(0x09), "pointer authentication instruction trapped");
        assert_eq!(ec_name(0x1d), "SME access trapped");
        // FAR is UNKNOWN for SP alignment faults, valid for watchpoints.
        assert!(!Esr(0x26 << 26).far_valid());
        assert!(Esr(0x35 << 26).far_valid());
    }

    #[test]
    fn vector_slots() {
        assert_eq!(
            VectorSlot::from_index(8),
            Some(VectorSlot::LowerA64(ExceptionKind::Sync))
        );
        assert_eq!(
            VectorSlot::from_index(5).map(VectorSlot::name),
            Some("IRQ at the current EL")
        );
        assert_eq!(VectorSlot::from_index(16), None);
    }
}
