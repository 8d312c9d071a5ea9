//! The host's EL1 exception vectors and its fatal-exception and panic reports.
//!
//! The host shim expects no exception except the data aborts a test provokes on purpose with
//! [`probe_read`] / [`probe_write`] (an access the hypervisor's stage 2 refuses): those are
//! recorded and the access skipped. Every other exception is reported with its vector slot,
//! the decoded ESR_EL1, ELR_EL1 and FAR_EL1, and QEMU is ended with a failure status.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use aarch64_cpu::asm::barrier;
use aarch64_cpu::registers::*;
use hyptrace_platform::esr::{Esr, VectorSlot};
use hyptrace_platform::memmap::MAX_CPUS;
use hyptrace_platform::trap_frame::TrapFrame;

use super::console::CONSOLE;
use super::cpu;
use super::semihosting::exit;

/// Semihosting exit status for an unexpected exception at EL1.
pub const EXIT_HOST_EXCEPTION: u32 = 5;
/// Semihosting exit status for a host panic.
pub const EXIT_HOST_PANIC: u32 = 6;

hyptrace_platform::exception_vectors!("__host_vectors", "el1", host_trap);

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

/// Per CPU: the address of the one load or store that may abort now (0: none expected).
static EXPECT_PC: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
/// Per CPU: whether the expected abort happened, and its syndrome and address.
static ABORTED: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];
static ABORT_ESR: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
static ABORT_FAR: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

/// Issues the single access `$insn` (`ldr`/`str` of `{v}` at `{a}`) after recording its own
/// address as the one allowed to abort on this CPU; returns the abort if it happened.
macro_rules! probe {
    ($insn:literal, $($operands:tt)*) => {{
        let cpu = cpu::index();
        // Relaxed: these flags are used by this CPU only, in program order with its own
        // synchronous exception.
        ABORTED[cpu].store(false, Ordering::Relaxed);
        let slot = EXPECT_PC[cpu].as_ptr();
        // SAFETY: `adr` takes the address of label 2 (the access) and stores it in this CPU's
        // EXPECT_PC slot (a live static); then the one access runs. If it aborts, the EL1
        // handler sees ELR == EXPECT_PC and skips exactly that instruction. The caller
        // checked alignment; a fault anywhere else is reported as fatal.
        unsafe {
            core::arch::asm!(
                "adr {pc}, 2f",
                "str {pc}, [{slot}]",
                concat!("2: ", $insn),
                pc = out(reg) _,
                slot = in(reg) slot,
                $($operands)*
                options(nostack)
            )
        };
        EXPECT_PC[cpu].store(0, Ordering::Relaxed);
        ABORTED[cpu].load(Ordering::Relaxed).then(|| Abort {
            esr: ABORT_ESR[cpu].load(Ordering::Relaxed),
            far: ABORT_FAR[cpu].load(Ordering::Relaxed),
        })
    }};
}

/// Reads the u64 at `addr` (8-aligned); `Err` with the abort if the access faulted.
pub fn probe_read(addr: u64) -> Result<u64, Abort> {
    let mut value = 0u64;
    let abort = probe!("ldr {v}, [{a}]", a = in(reg) addr, v = inout(reg) value,);
    abort.map_or(Ok(value), Err)
}

/// Writes `value` to `addr` (8-aligned); `Err` with the abort if the access faulted.
pub fn probe_write(addr: u64, value: u64) -> Result<(), Abort> {
    let abort = probe!("str {v}, [{a}]", a = in(reg) addr, v = in(reg) value,);
    abort.map_or(Ok(()), Err)
}

extern "C" fn host_trap(slot: u64, frame: &mut TrapFrame) {
    let esr = Esr(ESR_EL1.get());
    let far = FAR_EL1.get();
    let cpu = cpu::index();
    let same_el_sync = VectorSlot::from_index(slot)
        == Some(VectorSlot::CurrentSpx(
            hyptrace_platform::esr::ExceptionKind::Sync,
        ));
    let expected_pc = EXPECT_PC[cpu].load(Ordering::Relaxed);
    if same_el_sync
        && esr.ec() == hyptrace_platform::esr::EC_DATA_ABORT_SAME
        && frame.elr == expected_pc
    {
        ABORT_ESR[cpu].store(esr.0, Ordering::Relaxed);
        ABORT_FAR[cpu].store(far, Ordering::Relaxed);
        ABORTED[cpu].store(true, Ordering::Relaxed);
        EXPECT_PC[cpu].store(0, Ordering::Relaxed);
        // Skip exactly the probing load or store.
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
