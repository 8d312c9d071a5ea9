//! The host's boot CPU: from `_start` to the harness or the workload.

use host_shim::harness::{Cmdline, Mode};
use hyptrace_platform::dtb::Machine;
use hyptrace_platform::memmap::HOST_BASE;
use spin::Once;

use super::console::{println, CONSOLE};
use super::{cpu, exceptions, heap, semihosting, smp};

/// Bytes of the boot CPU's stack.
pub const BOOT_STACK_SIZE: usize = 64 << 10;

/// The boot CPU's stack (referenced by `_start`).
#[repr(C, align(16))]
pub struct BootStack([u8; BOOT_STACK_SIZE]);

/// The boot CPU's stack memory.
pub static mut BOOT_STACK: BootStack = BootStack([0; BOOT_STACK_SIZE]);

static MACHINE: Once<Machine> = Once::new();

/// The machine description read from the DTB at boot.
pub fn machine() -> &'static Machine {
    MACHINE
        .get()
        .expect("machine() used before boot read the DTB")
}

/// Semihosting exit status when the boot itself fails (bad DTB, CPU bring-up).
const EXIT_BOOT_FAILED: u32 = 7;

/// Rust entry of the boot CPU; `dtb` is the address the hypervisor passed in X0.
pub extern "C" fn boot_main(dtb: u64) -> ! {
    cpu::set_index(0);
    exceptions::install();
    heap::init();
    // SAFETY: the hypervisor passes the address of QEMU's DTB, which nothing modifies; the
    // header is checked before the blob's size is trusted.
    let machine = match unsafe { Machine::from_dtb_ptr(dtb as *const u8, cpu::mpidr(), HOST_BASE) }
    {
        Ok(m) => MACHINE.call_once(|| m),
        Err(e) => {
            println!("host: cannot use the DTB at {dtb:#x}: {}", e.description());
            semihosting::exit(EXIT_BOOT_FAILED)
        }
    };
    // SAFETY: the DTB names the PL011, and the host map (`super::mmu`) maps its page as
    // device memory at its own address.
    unsafe { CONSOLE.set_base(machine.uart as usize) };
    smp::mark_boot_cpu_online();
    println!(
        "host: hyptrace host shim at EL{}, {} CPUs, RAM {:#x}..{:#x}, counter {} Hz",
        cpu::current_el(),
        machine.cpus.count(),
        machine.ram.start,
        machine.ram.end,
        cpu::counter_frequency()
    );
    let mut buf = [0u8; host_shim::harness::MAX_CMDLINE];
    let Some(line) = semihosting::cmdline(&mut buf) else {
        // Before, a line too long for the buffer read as empty, which means `run` with
        // every default: another recording than the one asked for.
        println!(
            "host: the semihosting command line is missing, not UTF-8, or longer than {} bytes",
            host_shim::harness::MAX_CMDLINE - 1
        );
        semihosting::exit(host_shim::harness::EXIT_BAD_CMDLINE)
    };
    let cmd = match Cmdline::parse(line) {
        Ok(cmd) => cmd,
        Err(e) => {
            println!("host: bad semihosting command line {line:?}: {e}");
            semihosting::exit(host_shim::harness::EXIT_BAD_CMDLINE)
        }
    };
    if let Err(e) = smp::bring_up_secondaries() {
        println!("host: CPU bring-up failed: {e}");
        semihosting::exit(EXIT_BOOT_FAILED)
    }
    let code = match cmd.mode {
        Mode::Test => crate::suite::run(&cmd),
        Mode::Run => crate::record::run(&cmd.run),
        Mode::Soak => crate::soak::run(&cmd.run, cmd.seed.unwrap_or_else(cpu::counter)),
        Mode::Bench if cmd.bench_icount => crate::qemu_bench::run_icount(),
        Mode::Bench => crate::qemu_bench::run(),
        Mode::Crash => {
            println!("host: executing an undefined instruction on purpose (crash mode)");
            // SAFETY: `udf` raises an undefined-instruction exception, which the EL1 vectors
            // report before ending QEMU; nothing after it runs.
            unsafe { core::arch::asm!("udf #0x4854", options(nomem, nostack)) };
            println!("host: the undefined instruction did not trap");
            1
        }
        Mode::Fault => fault(cmd.fault, cmd.fault_traced),
    };
    semihosting::exit(code)
}

/// A host page that is never shared with the hypervisor: the target of the `write-host-page`
/// fault.
#[repr(C, align(4096))]
struct UnsharedPage([u8; 4096]);

static mut UNSHARED_PAGE: UnsharedPage = UnsharedPage([0; 4096]);

/// `fault` mode: asks a hypervisor built with `fault-injection` to commit `kind` at EL2. Its
/// fatal report ends QEMU; returning means it did not fault.
fn fault(kind: Option<hyptrace_abi::FaultKind>, traced: bool) -> u32 {
    let Some(kind) = kind else {
        println!("host: fault mode needs kind=NAME");
        return EXIT_BOOT_FAILED;
    };
    let page = core::ptr::addr_of!(UNSHARED_PAGE) as u64;
    if traced {
        if let Err(e) = crate::record::trace_every_cpu() {
            println!("host: tracing before the fault failed: {e}");
            return EXIT_BOOT_FAILED;
        }
    }
    println!(
        "host: asking the hypervisor to commit a fault: {} (host page {page:#x})",
        kind.name()
    );
    let mut args = [0u64; 17];
    args[0] = kind as u64;
    args[1] = page;
    let r = smccc::hvc64(hyptrace_abi::FAULT_INJECTION_FID, args);
    println!(
        "host: the hypervisor answered {:#x} and did not fault (is it built with the \
         fault-injection feature?)",
        r[0]
    );
    1
}
