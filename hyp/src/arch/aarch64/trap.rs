//! The Rust side of every exception taken to EL2, and the events that trace it.

use aarch64_cpu::asm::barrier;
use aarch64_cpu::registers::*;
use hyp::abi::event_format::Event;
use hyp::abi::events::{HostHcall, HostMemAbort, HostSmc, HypEnter, HypExit, PsciCpuOn};
use hyp::abi::HypercallId;
use hyp::esr::{
    Esr, ExceptionKind, VectorSlot, EC_DATA_ABORT_LOWER, EC_HVC64, EC_INSN_ABORT_LOWER, EC_SMC64,
};
use hyp::hypercall::{handle_hvc, Context};
use hyp::psci::{is_relayed, Relay};
use hyp::trap_frame::TrapFrame;
use smccc::psci::{PSCI_CPU_ON_32, PSCI_CPU_ON_64};

use super::fatal::unexpected_exception;
use super::firmware::Smc;
use super::platform::{memory_rules, platform, HYP_REGION, POWER, TRACING};
use super::regs::cpu_index;

/// SMCCC `NOT_SUPPORTED` as a register image.
const NOT_SUPPORTED: u64 = u64::MAX;

/// The trace clock's counter: the physical count, which the host reads too. The ISB keeps
/// the read from being taken early, ahead of the instructions before it (Arm ARM D12.1.2:
/// counter reads are not ordered by program order otherwise).
pub(super) fn counter() -> u64 {
    barrier::isb(barrier::SY);
    CNTPCT_EL0.get()
}

/// Entry from the vector table: `slot` is the vector slot (0..16), `frame` the saved state.
pub extern "C" fn hyp_trap(slot: u64, frame: &mut TrapFrame) {
    if VectorSlot::from_index(slot) != Some(VectorSlot::LowerA64(ExceptionKind::Sync)) {
        unexpected_exception(slot, frame);
    }
    let cpu = cpu_index();
    let esr = Esr(ESR_EL2.get());
    match esr.ec() {
        EC_HVC64 => host_hvc(cpu, esr, frame),
        EC_SMC64 => {
            host_smc(cpu, esr, frame);
            // A trapped SMC leaves ELR at the SMC itself: step over it.
            frame.elr += esr.instruction_len();
        }
        EC_DATA_ABORT_LOWER | EC_INSN_ABORT_LOWER => host_abort(cpu, esr, frame),
        // Anything else the host did that trapped (an instruction or register access the
        // hypervisor does not emulate): hand it back to the host as an undefined
        // instruction, as EL1 would have taken it without a hypervisor.
        _ => {
            TRACING.emit(cpu, counter, &HypEnter {});
            inject_undef(frame)
        }
    }
    TRACING.emit(cpu, counter, &HypExit {});
}

/// The entry events of a trap: `hyp_enter`, then the trap's own event (`host_hcall`,
/// `host_smc`, `host_mem_abort`), each with its own counter read, in one batch: one status
/// handshake and one clock read for both. Written by the handler once it has decoded the
/// trap, before it acts on it; `hyp_enter`'s time is therefore a few instructions after the
/// exception was taken. Never held across the handler's work, which may disable or tear down
/// this very buffer.
#[inline(always)]
fn trace_entry<E: Event>(cpu: usize, cause: &E) {
    // The same two flag loads whether tracing is loaded or not: loaded but disabled costs
    // exactly what no tracing does.
    if !TRACING.is_enabled::<HypEnter>() && !TRACING.is_enabled::<E>() {
        return;
    }
    trace_entry_enabled(cpu, cause);
}

/// The part of [`trace_entry`] after the enable checks: out of line, so that the path with
/// tracing off keeps its registers (inlined, the batch's register pressure made every trap
/// spill the host's arguments, 8 instructions more with tracing off).
#[inline(never)]
fn trace_entry_enabled<E: Event>(cpu: usize, cause: &E) {
    if let Some(mut batch) = TRACING.batch(cpu) {
        batch.emit(counter, &HypEnter {});
        batch.emit(counter, cause);
    }
}

/// A host access stage 2 refused (the hypervisor's memory, or nothing at all): traced, then
/// handed back to the host as the abort it would have taken without a hypervisor.
fn host_abort(cpu: usize, esr: Esr, frame: &mut TrapFrame) {
    let far = FAR_EL2.get();
    let s1ptw = esr.0 & hyp::inject::ISS_S1PTW != 0;
    // On the stage-1 walk's own access FAR is the VA being translated, so only the page of
    // the descriptor's IPA is known (HPFAR_EL2).
    let ipa = match s1ptw {
        true => hyp::stage2::fault_ipa(HPFAR_EL2.get(), 0),
        false => hyp::stage2::fault_ipa(HPFAR_EL2.get(), far),
    };
    trace_entry(
        cpu,
        &HostMemAbort {
            esr: esr.0,
            addr: ipa,
        },
    );
    let esr_el1 = if s1ptw {
        let level = walk_level(far, ipa);
        hyp::inject::walk_abort_esr(esr.0, frame.spsr, level)
    } else {
        hyp::inject::abort_esr(esr.0, frame.spsr)
    };
    let Some(esr_el1) = esr_el1 else {
        return inject_undef(frame);
    };
    let injection = hyp::inject::sync_exception(VBAR_EL1.get(), frame.elr, frame.spsr);
    ESR_EL1.set(esr_el1);
    FAR_EL1.set(far);
    ELR_EL1.set(injection.elr_el1);
    SPSR_EL1.set(injection.spsr_el1);
    frame.elr = injection.elr_el2;
    frame.spsr = injection.spsr_el2;
}

/// The level of the host's stage-1 lookup for `va` that read a descriptor in the page stage 2
/// refused (`ipa`), found by repeating the host's walk in software; when that cannot be
/// followed, the walk's first level.
fn walk_level(va: u64, ipa: u64) -> u8 {
    let host = hyp::s1walk::HostTranslation {
        tcr: TCR_EL1.get(),
        ttbr0: TTBR0_EL1.get(),
        ttbr1: TTBR1_EL1.get(),
    };
    let rules = memory_rules();
    // SAFETY: the rules' host RAM is host memory, reached only through the EL2 tables.
    let read = |pa| unsafe { TRACING.read_host_word(pa, rules) };
    hyp::s1walk::faulting_level(&host, va, ipa, read)
        .or_else(|| host.start_level(va))
        .unwrap_or(0)
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

/// HVC from the host: hyptrace's hypercalls. SMCCC requires immediate 0.
fn host_hvc(cpu: usize, esr: Esr, frame: &mut TrapFrame) {
    let x = [frame.x[0], frame.x[1], frame.x[2], frame.x[3], frame.x[4]];
    let valid = esr.iss() & 0xffff == 0 && HypercallId::from_x0(x[0]).is_some();
    trace_entry(
        cpu,
        &HostHcall {
            id: x[0] as u32,
            invalid: !valid as u8,
        },
    );
    if esr.iss() & 0xffff != 0 {
        frame.x[0] = NOT_SUPPORTED;
        return;
    }
    let ctx = Context {
        cpu,
        nr_cpus: platform().cpus.count(),
        tracing: &TRACING,
        rules: memory_rules(),
        counter,
    };
    #[cfg(feature = "fault-injection")]
    if x[0] as u32 == hyp::abi::FAULT_INJECTION_FID {
        super::fault_injection::trigger(x[1], x[2]);
    }
    #[cfg(feature = "fault-injection")]
    if x[0] as u32 == hyp::abi::hypercall::WRITER_BENCH_FID {
        frame.x[0] = 0;
        frame.x[1] = super::fault_injection::writer_bench(cpu, x[1], x[2], x[3]);
        return;
    }
    #[cfg(feature = "fault-injection")]
    if x[0] as u32 == hyp::abi::hypercall::PRINTK_BENCH_FID {
        frame.x[0] = 0;
        frame.x[1] = super::fault_injection::printk_bench(x[1]);
        return;
    }
    // SAFETY: the rules' host RAM is host memory, which the tracing service reaches only
    // through the EL2 tables (`El2HostMemory`), mapped while shared.
    let out = unsafe { handle_hvc(&x, &ctx) };
    frame.x[..4].copy_from_slice(&out);
}

/// SMC from the host (trapped by HCR_EL2.TSC): the PSCI relay. SMCCC requires immediate 0.
fn host_smc(cpu: usize, esr: Esr, frame: &mut TrapFrame) {
    let x = [frame.x[0], frame.x[1], frame.x[2], frame.x[3]];
    let immediate_ok = esr.iss() & 0xffff == 0;
    trace_entry(
        cpu,
        &HostSmc {
            id: x[0],
            forwarded: (immediate_ok && is_relayed(x[0])) as u8,
        },
    );
    if !immediate_ok {
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
    let result = relay.handle(cpu, x, &Smc);
    if matches!(x[0] as u32, PSCI_CPU_ON_32 | PSCI_CPU_ON_64) {
        TRACING.emit(
            cpu,
            counter,
            &PsciCpuOn {
                target: x[1],
                result: result as i32,
            },
        );
    }
    frame.x[0] = result;
}
