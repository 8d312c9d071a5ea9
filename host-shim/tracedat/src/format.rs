//! The constants of the trace.dat format (trace-cmd's file format, version 6), defined once:
//! the writer emits them and the reader checks them.
//!
//! ```text
//! 17 08 44 "tracing" "6" 00   magic, version
//! u8 endian  u8 sizeof(long)  u32 page size
//! "header_page" 00  u64 size  text      the ftrace page header   (header_page_text)
//! "header_event" 00 u64 size  text      the record header        (HEADER_EVENT)
//! u32 ftrace events (0, or 1: bprint), (u64 size, text)*
//! u32 systems, then per system: name 00, u32 count, (u64 size, text)*
//! u32 kallsyms size, text                 "ADDR t LOCATION\n" per printk site (or empty)
//! u32 printk formats size, text           "0xADDR : \"FORMAT\"\n" per printk site (or empty)
//! u64 saved cmdlines size (0)
//! u32 CPU count
//! "options  " 00  (u16 id, u32 size, data)* u16 0        CPUSTAT per CPU, TRACECLOCK
//! "flyrecord" 00  (u64 offset, u64 size) per CPU, u64 size + trace_clock text
//! ... padding to a page boundary, then every CPU's pages
//! ```

use alloc::format;
use alloc::string::String;

use hyptrace_abi::page::{EXPORT_DATA_SIZE, HEADER_SIZE};

/// The bytes before `tracing` at the start of every trace-cmd file.
pub const MAGIC: [u8; 3] = [0x17, 0x08, 0x44];

/// The word after [`MAGIC`]; the version follows it as a NUL-terminated string.
pub const TRACING: &[u8] = b"tracing";

/// The version this crate writes (and the first it reads).
pub const VERSION: &str = "6";

/// trace-cmd's sectioned version, which `trace-cmd record` and `convert` write by default:
/// read, not written. Its layout is in [`crate::reader`]'s `v7` module.
pub const VERSION_7: &str = "7";

/// The `header_page` section's name.
pub const SECTION_HEADER_PAGE: &[u8] = b"header_page\0";
/// The `header_event` section's name.
pub const SECTION_HEADER_EVENT: &[u8] = b"header_event\0";
/// The options section's name (two spaces, as trace-cmd writes it).
pub const SECTION_OPTIONS: &[u8] = b"options  \0";
/// The flyrecord section's name: the per-CPU data table follows.
pub const SECTION_FLYRECORD: &[u8] = b"flyrecord\0";

/// Option id: per-CPU statistics text (`trace-cmd report --stat`).
pub const OPTION_CPUSTAT: u16 = 2;

/// Option: an instance buffer (u64 offset of its `flyrecord` section, then its name).
pub const OPTION_BUFFER: u16 = 3;
/// Option id: the trace clock (`[name]`).
pub const OPTION_TRACECLOCK: u16 = 4;
/// Option id that ends the options section (in version 7 it holds the offset of the next
/// options section, 0 for none).
pub const OPTION_DONE: u16 = 0;
/// Version 7 option id: the system's CPU count (u32).
pub const OPTION_CPUCOUNT: u16 = 8;
/// Version 7 option ids 16..=21: the u64 offset of the section of the same id (header info,
/// ftrace event formats, event formats, kallsyms, printk formats, saved cmdlines).
pub const OPTION_HEADER_INFO: u16 = 16;
/// See [`OPTION_HEADER_INFO`].
pub const OPTION_FTRACE_EVENTS: u16 = 17;
/// See [`OPTION_HEADER_INFO`].
pub const OPTION_EVENT_FORMATS: u16 = 18;
/// See [`OPTION_HEADER_INFO`].
pub const OPTION_KALLSYMS: u16 = 19;
/// See [`OPTION_HEADER_INFO`].
pub const OPTION_PRINTK: u16 = 20;
/// See [`OPTION_HEADER_INFO`].
pub const OPTION_CMDLINES: u16 = 21;
/// Version 7 option id: a latency-format (text) buffer, which this crate does not read.
pub const OPTION_BUFFER_TEXT: u16 = 22;

/// Version 7 section id of an options section (the other sections carry their option's id).
pub const SECTION_ID_OPTIONS: u16 = 0;
/// Version 7 section id of a buffer's flyrecord data.
pub const SECTION_ID_BUFFER: u16 = 3;
/// Version 7 section flag: the body is compressed.
pub const SECTION_COMPRESSED: u16 = 1;

/// `header_event`: the ring-buffer record header description (the kernel's text).
pub const HEADER_EVENT: &str = "# compressed entry header\n\
\ttype_len    :    5 bits\n\
\ttime_delta  :   27 bits\n\
\tarray       :   32 bits\n\
\n\
\tpadding     : type == 29\n\
\ttime_extend : type == 30\n\
\ttime_stamp : type == 31\n\
\tdata max type_len  == 28\n";

/// `header_page`: the ftrace page header as the kernel describes it, generated from the page
/// layout of `hyptrace-abi`: an 8-byte timestamp, an 8-byte `commit` (whose low byte's top
/// bits are the overwrite flags), and [`EXPORT_DATA_SIZE`] bytes of data.
///
/// ```
/// let text = hyptrace_tracedat::format::header_page_text();
/// assert!(text.contains("\tfield: char data;\toffset:16;\tsize:4080;\tsigned:1;\n"));
/// ```
pub fn header_page_text() -> String {
    format!(
        "\tfield: u64 timestamp;\toffset:0;\tsize:8;\tsigned:0;\n\
         \tfield: local_t commit;\toffset:8;\tsize:8;\tsigned:1;\n\
         \tfield: int overwrite;\toffset:8;\tsize:1;\tsigned:1;\n\
         \tfield: char data;\toffset:{HEADER_SIZE};\tsize:{EXPORT_DATA_SIZE};\tsigned:1;\n"
    )
}

/// Clocks whose timestamps trace-cmd 3.1.6 prints as seconds with microseconds
/// (`extract_trace_clock`); any other clock is printed as a raw count.
pub const USECS_CLOCKS: [&str; 5] = ["local", "global", "uptime", "perf", "tsc2nsec"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_texts_match_the_kernel_for_4k_pages() {
        // The text a 64-bit kernel with 4 KiB pages writes, byte for byte.
        assert_eq!(
            header_page_text(),
            "\tfield: u64 timestamp;\toffset:0;\tsize:8;\tsigned:0;\n\
             \tfield: local_t commit;\toffset:8;\tsize:8;\tsigned:1;\n\
             \tfield: int overwrite;\toffset:8;\tsize:1;\tsigned:1;\n\
             \tfield: char data;\toffset:16;\tsize:4080;\tsigned:1;\n"
        );
        assert_eq!(HEADER_EVENT.len(), 205);
    }
}
