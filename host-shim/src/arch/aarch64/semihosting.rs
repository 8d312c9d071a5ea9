//! Semihosting: the command line QEMU was given, files on the development machine, and exit
//! with a status.
//!
//! File names are resolved by QEMU against its working directory (xtask runs QEMU from the
//! workspace root). Semihosting gives the guest access to the host file system: hyptrace uses
//! it for its own trace output only.

use hyptrace_tracedat::Sink;
use qemu_exit::QEMUExit;

const SYS_OPEN: u64 = 0x01;
const SYS_CLOSE: u64 = 0x02;
const SYS_WRITE: u64 = 0x05;
const SYS_ERRNO: u64 = 0x13;
const SYS_GET_CMDLINE: u64 = 0x15;
/// SYS_OPEN mode "wb".
const MODE_WRITE_BINARY: u64 = 5;

/// Issues semihosting operation `op` with parameter block `block`; returns X0.
fn call(op: u64, block: &mut [u64]) -> u64 {
    let result: u64;
    // SAFETY: the semihosting trap reads (and for some operations writes) the parameter block,
    // which lives across the call; buffers the block points to are owned by the caller for the
    // call's duration. Semihosting is enabled for every QEMU run xtask starts.
    unsafe {
        core::arch::asm!(
            "hlt #0xf000",
            inout("x0") op => result,
            in("x1") block.as_mut_ptr(),
            options(nostack)
        );
    }
    result
}

/// A file on the development machine, open for writing.
pub struct File {
    handle: u64,
}

impl File {
    /// Creates (or truncates) `path`. On failure returns the host's errno.
    pub fn create(path: &str) -> Result<Self, i64> {
        // SYS_OPEN wants a NUL-terminated name plus its length without the NUL.
        let mut name = alloc::vec::Vec::with_capacity(path.len() + 1);
        name.extend_from_slice(path.as_bytes());
        name.push(0);
        let mut block = [name.as_ptr() as u64, MODE_WRITE_BINARY, path.len() as u64];
        match call(SYS_OPEN, &mut block) as i64 {
            -1 => Err(errno()),
            handle => Ok(Self {
                handle: handle as u64,
            }),
        }
    }

    /// Writes all of `bytes` in one call (the specification asks not to split writes).
    pub fn write_all(&mut self, bytes: &[u8]) -> Result<(), i64> {
        let mut block = [self.handle, bytes.as_ptr() as u64, bytes.len() as u64];
        // SYS_WRITE returns the number of bytes *not* written.
        match call(SYS_WRITE, &mut block) {
            0 => Ok(()),
            _ => Err(errno()),
        }
    }
}

impl Drop for File {
    fn drop(&mut self) {
        let mut block = [self.handle];
        call(SYS_CLOSE, &mut block);
    }
}

impl Sink for File {
    type Error = i64;
    fn write_all(&mut self, bytes: &[u8]) -> Result<(), i64> {
        File::write_all(self, bytes)
    }
}

/// The host's errno of the last failed operation.
fn errno() -> i64 {
    call(SYS_ERRNO, &mut [0u64]) as i64
}

/// Reads the semihosting command line (`-semihosting-config ...,arg=...`) into `buf`, returning
/// the text, or `None` if the debugger/emulator refused.
pub fn cmdline(buf: &mut [u8]) -> Option<&str> {
    // The trap writes at most `len` bytes into `buf` and the used length back into the block.
    let mut block = [buf.as_mut_ptr() as u64, buf.len() as u64];
    if call(SYS_GET_CMDLINE, &mut block) != 0 {
        return None;
    }
    let len = (block[1] as usize).min(buf.len());
    core::str::from_utf8(&buf[..len]).ok()
}

/// Ends QEMU with `code` as its exit status.
pub fn exit(code: u32) -> ! {
    qemu_exit::AArch64::new().exit(code)
}
