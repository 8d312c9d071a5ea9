//! The hypervisor's console (see [`hyp::uart::Console`]).

use hyp::uart::Console;

/// The hypervisor's console.
pub static CONSOLE: Console = Console::new();

/// `println!` for the hypervisor console, prefixed with `hyp: `.
macro_rules! hyp_println {
    ($($arg:tt)*) => {
        $crate::arch::console::CONSOLE.print(format_args!("hyp: {}\n", format_args!($($arg)*)))
    };
}
pub(crate) use hyp_println;
