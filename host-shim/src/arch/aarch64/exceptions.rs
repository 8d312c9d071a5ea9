//! The host's EL1 exception vectors and its fatal-exception and panic reports.
//!
//! The host shim expects no exception except the data aborts a test provokes on purpose with
//! [`probe_read`] / [`probe_write`] (an access the hypervisor's stage 2 refuses): those are
//! recorded and the access skipped. Every other exception is reported with its vector slot,
//! the decoded ESR_EL1, ELR_EL1 and FAR_EL1, and QEMU is ended with a failure status.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use aarch64_cpu::asm::barrier;
use aarch64_cpu::registers::*;
use hyp::esr::{Esr, VectorSlot};
use hyp::memmap::MAX_CPUS;
use hyp::trap_frame::TrapFrame;

use super::console::CONSOLE;
use super::cpu;
use super::semihosting::exit;

/// Semihosting exit status for an unexpected exception at EL1.
pub const EXIT_HOST_EXCEPTION: u32 = 5;
/// Semihosting exit status for a host panic.
pub const EXIT_HOST_PANIC: u32 = 6;

hyp::exception_vectors!("__host_vectors", "el1", host_trap);

/// Installs the EL1 vector table on this CPU.
pub fn install() {
    extern "C" {
        static __host_vectors: u8;
    }
    // Only the address is taken; the table is code.
    VBAR_EL1.set(core::ptr::addr_of!(__host_vectors) as u64);
    barrier::isb(barrier::SY);
}

/// A data abort this CPU provoked on purpose.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Abort {
    /// ESR_EL1 the abort was taken with.
    pub esr: u64,
    /// FAR_EL1: the faulting address.
    pub far: u64,
}

static EXPECT_ABORT: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];
static ABORT_ESR: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
static ABORT_FAR: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

/// Runs `access` (one load or store instruction) expecting it may abort; returns the abort.
fn probe(access: impl FnOnce()) -> Option<Abort> {
    let cpu = cpu::index();
    // Relaxed: the flags are only used by this CPU, in program order with its own exception.
    EXPECT_ABORT[cpu].store(true, Ordering::Relaxed);
    ABORT_ESR[cpu].store(0, Ordering::Relaxed);
    access();
    let expected = EXPECT_ABORT[cpu].swap(false, Ordering::Relaxed);
    (!expected).then(|| Abort {
        esr: ABORT_ESR[cpu].load(Ordering::Relaxed),
        far: ABORT_FAR[cpu].load(Ordering::Relaxed),
    })
}

/// Reads the u64 at `addr`; `Err` with the abort if the access faulted.
pub fn probe_read(addr: u64) -> Result<u64, Abort> {
    let mut value = 0u64;
    let abort = probe(|| {
        // SAFETY: a single load the caller expects may fault; the EL1 handler skips it when
        // it does (EXPECT_ABORT is set), leaving `value` as it was. Aligned by the caller.
        unsafe {
            core::arch::asm!("ldr {v}, [{a}]", a = in(reg) addr, v = inout(reg) value, options(nostack))
        };
    });
    abort.map_or(Ok(value), Err)
}

/// Writes `value` to `addr`; `Err` with the abort if the access faulted.
pub fn probe_write(addr: u64, value: u64) -> Result<(), Abort> {
    let abort = probe(|| {
        // SAFETY: a single store the caller expects to fault (it targets memory the host
        // does not own); if it does not fault, the caller reports a broken isolation.
        unsafe {
            core::arch::asm!("str {v}, [{a}]", a = in(reg) addr, v = in(reg) value, options(nostack))
        };
    });
    abort.map_or(Ok(()), Err)
}

extern "C" fn host_trap(slot: u64, frame: &mut TrapFrame) {
    let esr = Esr(ESR_EL1.get());
    let far = FAR_EL1.get();
    let cpu = cpu::index();
    let same_el_sync =
        VectorSlot::from_index(slot) == Some(VectorSlot::CurrentSpx(hyp::esr::ExceptionKind::Sync));
    if same_el_sync
        && esr.ec() == hyp::esr::EC_DATA_ABORT_SAME
        && EXPECT_ABORT[cpu].load(Ordering::Relaxed)
    {
        ABORT_ESR[cpu].store(esr.0, Ordering::Relaxed);
        ABORT_FAR[cpu].store(far, Ordering::Relaxed);
        EXPECT_ABORT[cpu].store(false, Ordering::Relaxed);
        // Skip the one faulting load or store.
        frame.elr += 4;
        return;
    }
    let slot_name = VectorSlot::from_index(slot).map_or("unknown vector slot", VectorSlot::name);
    CONSOLE.print_fatal(format_args!(
        "host: EXCEPTION on CPU {cpu}: {slot_name}\n\
         host:   ESR_EL1  = {esr}\n\
         host:   ELR_EL1  = {elr:#018x}\n\
         host:   FAR_EL1  = {far:#018x}{far_note}\n\
         host:   SPSR_EL1 = {spsr:#018x}\n",
        elr = frame.elr,
        far_note = if esr.far_valid() {
            ""
        } else {
            " (not valid for this class)"
        },
        spsr = frame.spsr,
    ));
    exit(EXIT_HOST_EXCEPTION)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    CONSOLE.print_fatal(format_args!(
        "host: CPU {} panicked: {}\n",
        cpu::index(),
        info
    ));
    exit(EXIT_HOST_PANIC)
}
