//! The Rust side of every exception taken to EL2.

use aarch64_cpu::registers::*;
use hyp::esr::{Esr, ExceptionKind, VectorSlot, EC_HVC64, EC_SMC64};
use hyp::hypercall::{handle_hvc, CallerInfo};
use hyp::psci::Relay;

use super::fatal::unexpected_exception;
use super::firmware::Smc;
use super::platform::{platform, HYP_REGION, POWER};
use super::regs::cpu_index;
use hyp::trap_frame::TrapFrame;

/// SMCCC `NOT_SUPPORTED` as a register image.
const NOT_SUPPORTED: u64 = u64::MAX;

/// Entry from the vector table: `slot` is the vector slot (0..16), `frame` the saved state.
pub extern "C" fn hyp_trap(slot: u64, frame: &mut TrapFrame) {
    if VectorSlot::from_index(slot) != Some(VectorSlot::LowerA64(ExceptionKind::Sync)) {
        unexpected_exception(slot, frame);
    }
    let esr = Esr(ESR_EL2.get());
    match esr.ec() {
        EC_HVC64 => host_hvc(esr, frame),
        EC_SMC64 => {
            host_smc(esr, frame);
            // A trapped SMC leaves ELR at the SMC itself: step over it.
            frame.elr += esr.instruction_len();
        }
        // Anything else the host did that trapped (an instruction or register access the
        // hypervisor does not emulate): hand it back to the host as an undefined
        // instruction, as EL1 would have taken it without a hypervisor.
        _ => inject_undef(frame),
    }
}

/// Injects an undefined-instruction exception into the host at the trapping instruction.
fn inject_undef(frame: &mut TrapFrame) {
    let injection = hyp::inject::sync_exception(VBAR_EL1.get(), frame.elr, frame.spsr);
    ESR_EL1.set(hyp::inject::ESR_UNDEF);
    ELR_EL1.set(injection.elr_el1);
    SPSR_EL1.set(injection.spsr_el1);
    frame.elr = injection.elr_el2;
    frame.spsr = injection.spsr_el2;
}

fn args(frame: &TrapFrame) -> [u64; 4] {
    [frame.x[0], frame.x[1], frame.x[2], frame.x[3]]
}

/// HVC from the host: hyptrace's hypercalls. SMCCC requires immediate 0.
fn host_hvc(esr: Esr, frame: &mut TrapFrame) {
    if esr.iss() & 0xffff != 0 {
        frame.x[0] = NOT_SUPPORTED;
        return;
    }
    let caller = CallerInfo {
        cpu: cpu_index(),
        nr_cpus: platform().cpus.count(),
    };
    let out = handle_hvc(args(frame), &caller);
    frame.x[..4].copy_from_slice(&out);
}

/// SMC from the host (trapped by HCR_EL2.TSC): the PSCI relay. SMCCC requires immediate 0.
fn host_smc(esr: Esr, frame: &mut TrapFrame) {
    if esr.iss() & 0xffff != 0 {
        frame.x[0] = NOT_SUPPORTED;
        return;
    }
    let p = platform();
    let relay = Relay {
        cpus: &p.cpus,
        power: &POWER,
        hyp_secondary_entry: super::boot::secondary_entry_address(),
        ram: p.ram.clone(),
        hyp_region: HYP_REGION,
    };
    frame.x[0] = relay.handle(cpu_index(), args(frame), &Smc);
}
