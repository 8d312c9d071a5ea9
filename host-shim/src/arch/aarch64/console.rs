//! The host's console (see [`hyptrace_platform::uart::Console`]).

use hyptrace_platform::uart::Console;

/// The host's console.
pub static CONSOLE: Console = Console::new();

/// `println!` for the host console.
macro_rules! println {
    ($($arg:tt)*) => {
        $crate::arch::console::CONSOLE.print(format_args!("{}\n", format_args!($($arg)*)))
    };
}
pub(crate) use println;
