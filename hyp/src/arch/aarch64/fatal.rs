//! Fatal ends: unexpected exceptions and panics. Both print a decoded report and end QEMU with
//! a failure status through semihosting, so nothing ever hangs silently.

use aarch64_cpu::registers::*;
use core::sync::atomic::{AtomicU32, Ordering};
use hyp::el2_map::El2Fault;
use hyp::esr::{Esr, VectorSlot};

use hyp::memmap::MAX_CPUS;
use qemu_exit::QEMUExit;

use super::console::CONSOLE;
use super::platform::TRACING;
use super::regs::cpu_index;
use hyp::tracing::flight;
use hyp::trap_frame::TrapFrame;

/// Semihosting exit status for an unexpected exception in the hypervisor.
pub const EXIT_HYP_EXCEPTION: u32 = 3;
/// Semihosting exit status for a hypervisor panic.
pub const EXIT_HYP_PANIC: u32 = 4;
/// Semihosting exit status for a fatal condition the hypervisor detected itself (no usable
/// DTB, a CPU started without a pending CPU_ON, ...).
pub const EXIT_HYP_FATAL: u32 = 8;

/// Per CPU: the exit status of the fatal report being printed (0: none). A second fatal
/// entry on the same CPU (a fault while reporting, e.g. in the console or the flight
/// recorder) ends QEMU at once with the first report's status instead of looping: a fault
/// during the dump ends the dump, not the report printed before it. Plain loads and stores
/// only: no exclusive, which may run before the MMU is on.
static REPORTING: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(0) }; MAX_CPUS];

/// Marks this CPU as reporting; if it already was, ends QEMU with the first report's status
/// right away.
fn enter_report(status: u32) {
    let cpu = cpu_index() % MAX_CPUS;
    // Relaxed: only this CPU reads and writes its own slot.
    let first = REPORTING[cpu].load(Ordering::Relaxed);
    if first != 0 {
        CONSOLE.print_fatal(format_args!(
            "hyp: a second fatal error on CPU {cpu} during its report: stopping here\n"
        ));
        qemu_exit::AArch64::new().exit(first)
    }
    REPORTING[cpu].store(status, Ordering::Relaxed);
}

/// Spins a fatal CPU waits at most for another CPU's dump to end the system.
const DUMP_WAIT_SPINS: u64 = 1 << 32;

/// A `keep_waiting` that says yes until `us` microseconds from now have passed on the
/// generic counter (the one the trace clock reads). A counter whose frequency reads as zero
/// (firmware did not set `CNTFRQ_EL0`) is taken as 1 GHz, which waits longest.
fn deadline_in_us(us: u64) -> impl FnMut() -> bool {
    let freq = match CNTFRQ_EL0.get() {
        0 => 1_000_000_000,
        f => f,
    };
    let end = super::trap::counter().saturating_add(freq.saturating_mul(us) / 1_000_000);
    move || super::trap::counter() < end
}

/// After a fatal report: the last events of every CPU's ring (the flight recorder), then
/// QEMU ends with `status`. If another CPU is printing a dump already, this one waits for it
/// to end the system (bounded), so that the first dump is printed whole.
fn dump_and_exit(status: u32) -> ! {
    let mut dumped = true;
    if !flight::dump_in_progress() {
        let mut keep_waiting = deadline_in_us(flight::FREEZE_WAIT_US);
        CONSOLE.with_fatal(|out| {
            // SAFETY: a fatal path: this CPU never returns to the host, and the recorder
            // holds each ring's control lock while it reads its pages, so no teardown unmaps
            // them.
            dumped = unsafe {
                TRACING.flight_record(cpu_index(), flight::DEFAULT_EVENTS, &mut keep_waiting, out)
            }
            .unwrap_or(true);
        });
    } else {
        dumped = false;
    }
    if !dumped {
        CONSOLE.print_fatal(format_args!(
            "hyp: CPU {} waits for the dump of another CPU to end the system\n",
            cpu_index()
        ));
        for _ in 0..DUMP_WAIT_SPINS {
            if !flight::dump_in_progress() {
                break;
            }
            core::hint::spin_loop();
        }
    }
    qemu_exit::AArch64::new().exit(status)
}

/// Reports an exception the hypervisor does not handle and ends QEMU.
pub fn unexpected_exception(slot: u64, frame: &TrapFrame) -> ! {
    enter_report(EXIT_HYP_EXCEPTION);
    let esr = Esr(ESR_EL2.get());
    let far = FAR_EL2.get();
    let slot_name = VectorSlot::from_index(slot).map_or("unknown vector slot", VectorSlot::name);
    CONSOLE.print_fatal(format_args!(
        "hyp: EXCEPTION on CPU {cpu}: {slot_name}\n",
        cpu = cpu_index(),
    ));
    if let Some(cause) = El2Fault::classify(esr.0, far, &super::mmu::image_layout()) {
        CONSOLE.print_fatal(format_args!("hyp:   cause    = {cause}\n"));
    }
    CONSOLE.print_fatal(format_args!(
        "\
         hyp:   ESR_EL2  = {esr}\n\
         hyp:   ELR_EL2  = {elr:#018x}\n\
         hyp:   FAR_EL2  = {far:#018x}{far_note}\n\
         hyp:   HPFAR_EL2= {hpfar:#018x}\n\
         hyp:   SPSR_EL2 = {spsr:#018x}\n\
         hyp:   x0..x3   = {x0:#x} {x1:#x} {x2:#x} {x3:#x}\n",
        elr = frame.elr,
        far_note = if esr.far_valid() {
            ""
        } else {
            " (not valid for this class)"
        },
        hpfar = HPFAR_EL2.get(),
        spsr = frame.spsr,
        x0 = frame.x[0],
        x1 = frame.x[1],
        x2 = frame.x[2],
        x3 = frame.x[3],
    ));
    dump_and_exit(EXIT_HYP_EXCEPTION)
}

/// Ends QEMU with [`EXIT_HYP_FATAL`] before anything can be printed (no console yet, MMU
/// off): the boot map could not be built.
pub fn exit_early() -> ! {
    qemu_exit::AArch64::new().exit(EXIT_HYP_FATAL)
}

/// Reports a fatal condition found by the hypervisor itself and ends QEMU.
pub fn fatal(args: core::fmt::Arguments) -> ! {
    enter_report(EXIT_HYP_FATAL);
    CONSOLE.print_fatal(format_args!(
        "hyp: FATAL on CPU {}: {}\n",
        cpu_index(),
        args
    ));
    dump_and_exit(EXIT_HYP_FATAL)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    enter_report(EXIT_HYP_PANIC);
    CONSOLE.print_fatal(format_args!(
        "hyp: CPU {} panicked: {}\n",
        cpu_index(),
        info
    ));
    dump_and_exit(EXIT_HYP_PANIC)
}
