//! Calls from the host to the hypervisor (HVC) and to the firmware through it (SMC).

use hyptrace_abi::HypercallId;

use crate::own_trace;

/// Defines a function that issues `$insn` with X0..X17 = its argument and returns X0..X17,
/// bracketed by the host's `$before`/`$after` events.
macro_rules! raw_call {
    ($(#[$meta:meta])* $name:ident, $insn:literal, $before:path, $after:path) => {
        $(#[$meta])*
        pub fn $name(regs: [u64; 18]) -> [u64; 18] {
            let mut r = regs;
            $before(regs[0], regs[1]);
            // SAFETY: both HVC and SMC (HCR_EL2.TSC) trap to our hypervisor, which reads and
            // writes only the saved frame's X0..X3 and restores every other register; neither
            // a hypercall nor a relayed PSCI call touches memory of ours.
            unsafe {
                core::arch::asm!(
                    $insn,
                    inout("x0") r[0], inout("x1") r[1], inout("x2") r[2], inout("x3") r[3],
                    inout("x4") r[4], inout("x5") r[5], inout("x6") r[6], inout("x7") r[7],
                    inout("x8") r[8], inout("x9") r[9], inout("x10") r[10], inout("x11") r[11],
                    inout("x12") r[12], inout("x13") r[13], inout("x14") r[14],
                    inout("x15") r[15], inout("x16") r[16], inout("x17") r[17],
                    options(nostack)
                );
            }
            $after(regs[0], r[0]);
            r
        }
    };
}

raw_call!(
    /// Issues `HVC #0` with X0..X17 = `regs` and returns X0..X17 after the call. Unlike the
    /// `smccc` crate's wrapper it passes all 64 bits of X0, so tests can put garbage there.
    hvc_raw,
    "hvc #0",
    own_trace::hvc_call,
    own_trace::hvc_return
);

raw_call!(
    /// Issues `SMC #0` with X0..X17 = `regs` and returns X0..X17 after the call.
    smc_raw,
    "smc #0",
    own_trace::smc_call,
    own_trace::smc_return
);

/// A hyptrace hypercall with three arguments; returns X0..X3.
pub fn hypercall(id: HypercallId, args: [u64; 3]) -> [u64; 4] {
    hypercall_args(id, &args)
}

/// A hyptrace hypercall with up to 17 arguments (X1..X17); returns X0..X3. Bracketed by
/// the host's `hvc_call`/`hvc_return` events.
pub fn hypercall_args(id: HypercallId, args: &[u64]) -> [u64; 4] {
    let mut all = [0u64; 17];
    all[..args.len()].copy_from_slice(args);
    let fid = id.function_id();
    own_trace::hvc_call(fid.into(), all[0]);
    let r = smccc::hvc64(fid, all);
    own_trace::hvc_return(fid.into(), r[0]);
    [r[0], r[1], r[2], r[3]]
}

/// A PSCI call through SMC (relayed by the hypervisor); returns X0 as a signed status.
/// Bracketed by the host's `smc_call`/`smc_return` events.
pub fn psci(function: u32, args: [u64; 3]) -> i64 {
    let mut all = [0u64; 17];
    all[..3].copy_from_slice(&args);
    own_trace::smc_call(function.into(), all[0]);
    let r = smccc::smc64(function, all)[0];
    own_trace::smc_return(function.into(), r);
    r as i64
}
