//! The hypervisor's console: the PL011, behind one lock shared by every CPU.

use core::fmt::{self, Write};

use hyp::uart::Pl011;
use spin::Mutex;

/// QEMU `virt`'s PL011, used until the DTB has been read (and for faults before that).
const DEFAULT_UART: usize = 0x0900_0000;

// SAFETY: DEFAULT_UART is QEMU virt's PL011; the MMU is off at EL2 so the address is accessed
// as device memory, and every user goes through this lock.
static CONSOLE: Mutex<Pl011> = Mutex::new(unsafe { Pl011::new(DEFAULT_UART) });

/// Switches the console to the UART the DTB names.
pub fn set_uart(base: usize) {
    // SAFETY: `base` comes from the DTB's PL011 node; the MMU is off, so it is device memory,
    // and the lock serialises all users.
    *CONSOLE.lock() = unsafe { Pl011::new(base) };
}

/// Prints formatted text atomically with respect to other CPUs.
pub fn print(args: fmt::Arguments) {
    // Writing to the PL011 cannot fail.
    let _ = CONSOLE.lock().write_fmt(args);
}

/// Prints on the fatal path: takes the lock if it can within a bounded wait, and otherwise
/// writes anyway (the holder may be the very code that faulted).
pub fn print_fatal(args: fmt::Arguments) {
    for _ in 0..1_000_000 {
        if let Some(mut uart) = CONSOLE.try_lock() {
            let _ = uart.write_fmt(args);
            return;
        }
        core::hint::spin_loop();
    }
    // SAFETY: the lock looks stuck; printing the fatal report matters more than interleaving.
    // Nobody returns from the fatal path, so the forced unlock cannot break a live holder's
    // invariants beyond mixing characters.
    unsafe { CONSOLE.force_unlock() };
    let _ = CONSOLE.lock().write_fmt(args);
}

/// `println!` for the hypervisor console, prefixed with `hyp: `.
macro_rules! hyp_println {
    ($($arg:tt)*) => {
        $crate::arch::console::print(format_args!("hyp: {}\n", format_args!($($arg)*)))
    };
}
pub(crate) use hyp_println;
