//! The firmware's SMC conduit (QEMU's built-in PSCI when the machine has no EL3).

use hyp::psci::Firmware;

/// PSCI through `SMC #0` from EL2.
pub struct Smc;

impl Firmware for Smc {
    fn call(&self, function: u32, args: [u64; 3]) -> u64 {
        let mut all = [0u64; 17];
        all[..3].copy_from_slice(&args);
        smccc::smc64(function, all)[0]
    }
}
