//! The host's console: the PL011, behind one lock shared by every host CPU.

use core::fmt::{self, Write};

use hyp::uart::Pl011;
use spin::Mutex;

/// QEMU `virt`'s PL011, used until the DTB has been read.
const DEFAULT_UART: usize = 0x0900_0000;

// SAFETY: DEFAULT_UART is QEMU virt's PL011; the MMU is off, so it is device memory, and every
// host user goes through this lock.
static CONSOLE: Mutex<Pl011> = Mutex::new(unsafe { Pl011::new(DEFAULT_UART) });

/// Switches the console to the UART the DTB names.
pub fn set_uart(base: usize) {
    // SAFETY: `base` is the DTB's PL011; the lock serialises all host users.
    *CONSOLE.lock() = unsafe { Pl011::new(base) };
}

/// Prints formatted text atomically with respect to other host CPUs.
pub fn print(args: fmt::Arguments) {
    // Writing to the PL011 cannot fail.
    let _ = CONSOLE.lock().write_fmt(args);
}

/// Prints on the fatal path: bounded wait for the lock, then print regardless.
pub fn print_fatal(args: fmt::Arguments) {
    for _ in 0..1_000_000 {
        if let Some(mut uart) = CONSOLE.try_lock() {
            let _ = uart.write_fmt(args);
            return;
        }
        core::hint::spin_loop();
    }
    // SAFETY: the lock looks stuck (possibly held by the code that faulted); the fatal path
    // never returns, so breaking the lock can at worst interleave characters.
    unsafe { CONSOLE.force_unlock() };
    let _ = CONSOLE.lock().write_fmt(args);
}

/// `println!` for the host console.
macro_rules! println {
    ($($arg:tt)*) => {
        $crate::arch::console::print(format_args!("{}\n", format_args!($($arg)*)))
    };
}
pub(crate) use println;
