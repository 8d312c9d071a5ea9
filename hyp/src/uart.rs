//! Transmit-only PL011 UART driver, shared by the EL2 and EL1 images.
//!
//! QEMU's PL011 accepts data-register writes without initialisation; on hardware the firmware
//! has configured the UART before either image runs. Only the transmit path is needed.

use core::fmt;

/// Data register offset.
const UARTDR: usize = 0x00;
/// Flag register offset.
const UARTFR: usize = 0x18;
/// Flag register: transmit FIFO full.
const UARTFR_TXFF: u32 = 1 << 5;

/// A PL011 at a fixed MMIO address.
pub struct Pl011 {
    base: usize,
}

impl Pl011 {
    /// Wraps the UART whose registers start at `base`.
    ///
    /// # Safety
    ///
    /// `base` must be the address of a PL011 register block mapped as device memory for the
    /// lifetime of the value, and no other code may use the UART concurrently without a lock
    /// shared with this value's users.
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
