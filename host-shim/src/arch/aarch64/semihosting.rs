//! Semihosting: the command line QEMU was given, and exit with a status.

use qemu_exit::QEMUExit;

/// SYS_GET_CMDLINE.
const SYS_GET_CMDLINE: u64 = 0x15;

/// Reads the semihosting command line (`-semihosting-config ...,arg=...`) into `buf`, returning
/// the text, or `None` if the debugger/emulator refused.
pub fn cmdline(buf: &mut [u8]) -> Option<&str> {
    let mut block: [u64; 2] = [buf.as_mut_ptr() as u64, buf.len() as u64];
    let result: u64;
    // SAFETY: the semihosting trap reads the two-word block (buffer address, length), writes at
    // most `len` bytes into our buffer and the used length back into the block. Both stay
    // alive across the call; semihosting is enabled for every QEMU run xtask starts.
    unsafe {
        core::arch::asm!(
            "hlt #0xf000",
            inout("x0") SYS_GET_CMDLINE => result,
            in("x1") block.as_mut_ptr(),
            options(nostack)
        );
    }
    if result != 0 {
        return None;
    }
    let len = (block[1] as usize).min(buf.len());
    core::str::from_utf8(&buf[..len]).ok()
}

/// Ends QEMU with `code` as its exit status.
pub fn exit(code: u32) -> ! {
    qemu_exit::AArch64::new().exit(code)
}
