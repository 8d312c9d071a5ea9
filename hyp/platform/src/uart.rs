//! The console both images print through: a PL011 driver and a lock.
//!
//! QEMU's PL011 accepts data-register writes without initialisation; on hardware the firmware
//! has configured the UART (transmit and receive enabled) before either image runs. Output is
//! the console's job; input is one polled byte at a time, for a recorder that stops when asked
//! on the console ([`Console::try_read_byte`]).

use core::fmt;
use core::sync::atomic::{AtomicUsize, Ordering};

/// Data register offset.
const UARTDR: usize = 0x00;
/// Flag register offset.
const UARTFR: usize = 0x18;
/// Flag register: transmit FIFO full.
const UARTFR_TXFF: u32 = 1 << 5;
/// Flag register: receive FIFO empty.
const UARTFR_RXFE: u32 = 1 << 4;
/// Data register on a read: the received byte (bits 11..8 are its error flags).
const UARTDR_DATA: u32 = 0xff;

/// QEMU `virt`'s PL011, used until the DTB names the console.
pub const QEMU_VIRT_UART: usize = 0x0900_0000;

/// A PL011 at a fixed MMIO address.
pub struct Pl011 {
    base: usize,
}

impl Pl011 {
    /// Wraps the UART whose registers start at `base`.
    ///
    /// # Safety
    ///
    /// `base` must be the address of a PL011 register block, mapped as device memory for the
    /// lifetime of the value.
    pub const unsafe fn new(base: usize) -> Self {
        Self { base }
    }

    /// Sends one byte, waiting while the transmit FIFO is full.
    pub fn write_byte(&mut self, byte: u8) {
        // SAFETY: `new`'s contract makes base + UARTFR a readable device register.
        while unsafe { core::ptr::read_volatile((self.base + UARTFR) as *const u32) } & UARTFR_TXFF
            != 0
        {
            core::hint::spin_loop();
        }
        // SAFETY: as above, base + UARTDR is the writable data register.
        unsafe { core::ptr::write_volatile((self.base + UARTDR) as *mut u32, byte as u32) };
    }

    /// The next received byte, if one is waiting; never waits. A byte received with an
    /// error (framing, parity, break, overrun: bits 11..8 of the data register) is still
    /// returned, since only its value matters to the caller.
    pub fn read_byte(&mut self) -> Option<u8> {
        // SAFETY: `new`'s contract makes base + UARTFR a readable device register.
        let flags = unsafe { core::ptr::read_volatile((self.base + UARTFR) as *const u32) };
        if flags & UARTFR_RXFE != 0 {
            return None;
        }
        // SAFETY: as above, base + UARTDR is the data register; reading it pops the FIFO.
        let data = unsafe { core::ptr::read_volatile((self.base + UARTDR) as *const u32) };
        Some((data & UARTDR_DATA) as u8)
    }
}

impl fmt::Write for Pl011 {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            if b == b'\n' {
                self.write_byte(b'\r');
            }
            self.write_byte(b);
        }
        Ok(())
    }
}

/// A console shared by every CPU of one image: messages are printed whole, one at a time.
pub struct Console {
    base: AtomicUsize,
    lock: spin::Mutex<()>,
}

impl Console {
    /// A console on QEMU `virt`'s PL011 until [`set_base`](Self::set_base).
    pub const fn new() -> Self {
        Self {
            base: AtomicUsize::new(QEMU_VIRT_UART),
            lock: spin::Mutex::new(()),
        }
    }

    /// Moves the console to the PL011 at `base` (read from the DTB).
    ///
    /// # Safety
    ///
    /// `base` must be the address of a PL011 register block mapped as device memory for the
    /// rest of the image's life.
    pub unsafe fn set_base(&self, base: usize) {
        let _guard = self.lock.lock();
        // Relaxed: the lock orders it with every printer.
        self.base.store(base, Ordering::Relaxed);
    }

    fn uart(&self) -> Pl011 {
        // SAFETY: the base is QEMU virt's PL011 or the one `set_base` was given under its
        // contract. Several `Pl011` values may drive it at once: they only issue volatile
        // accesses through raw pointers, so at worst characters interleave.
        unsafe { Pl011::new(self.base.load(Ordering::Relaxed)) }
    }

    /// Prints a message atomically with respect to other CPUs.
    pub fn print(&self, args: fmt::Arguments) {
        let _guard = self.lock.lock();
        // Writing to the PL011 cannot fail.
        let _ = fmt::Write::write_fmt(&mut self.uart(), args);
    }

    /// The next byte received on the console, if one is waiting (never waits).
    pub fn try_read_byte(&self) -> Option<u8> {
        let _guard = self.lock.lock();
        self.uart().read_byte()
    }

    /// Prints on a fatal path: waits a bounded time for the lock (its holder may be the code
    /// that faulted), then prints regardless.
    pub fn print_fatal(&self, args: fmt::Arguments) {
        for _ in 0..1_000_000 {
            if let Some(_guard) = self.lock.try_lock() {
                let _ = fmt::Write::write_fmt(&mut self.uart(), args);
                return;
            }
            core::hint::spin_loop();
        }
        let _ = fmt::Write::write_fmt(&mut self.uart(), args);
    }
}

impl Console {
    /// Runs `f` with the console, on a fatal path: like [`print_fatal`](Self::print_fatal),
    /// waits a bounded time for the lock, then keeps it (if it got it) for all `f` prints, so
    /// a long report is not interleaved with other CPUs' messages.
    pub fn with_fatal(&self, f: impl FnOnce(&mut dyn fmt::Write)) {
        let mut guard = None;
        for _ in 0..1_000_000 {
            guard = self.lock.try_lock();
            if guard.is_some() {
                break;
            }
            core::hint::spin_loop();
        }
        f(&mut self.uart());
        drop(guard);
    }
}

impl Default for Console {
    fn default() -> Self {
        Self::new()
    }
}
