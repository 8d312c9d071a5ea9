//! The host's EL1 exception vectors and its fatal-exception and panic reports.
//!
//! The host shim expects no exception at all for now: every one is reported with its vector
//! slot, the decoded ESR_EL1, ELR_EL1 and FAR_EL1, and QEMU is ended with a failure status.

use aarch64_cpu::asm::barrier;
use aarch64_cpu::registers::*;
use hyp::esr::{Esr, VectorSlot};
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

extern "C" fn host_trap(slot: u64, frame: &mut TrapFrame) {
    let esr = Esr(ESR_EL1.get());
    let far = FAR_EL1.get();
    let slot_name = VectorSlot::from_index(slot).map_or("unknown vector slot", VectorSlot::name);
    CONSOLE.print_fatal(format_args!(
        "host: EXCEPTION on CPU {cpu}: {slot_name}\n\
         host:   ESR_EL1  = {esr}\n\
         host:   ELR_EL1  = {elr:#018x}\n\
         host:   FAR_EL1  = {far:#018x}{far_note}\n\
         host:   SPSR_EL1 = {spsr:#018x}\n",
        cpu = cpu::index(),
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
