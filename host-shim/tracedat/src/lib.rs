//! The trace-cmd `trace.dat` file format for ftrace ring-buffer pages, defined once: a
//! writer (version 6), a reader (versions 6 and 7, zstd-compressed or not) and the page
//! decoder, `no_std` with `alloc`.
//!
//! - [`format`]: the magic, section names, option IDs and header texts;
//! - [`writer`]: [`write_trace_dat`] lays out a file that trace-cmd 3.1.6 and KernelShark
//!   read from the event formats and each CPU's pages, strictly sequentially (a semihosting
//!   file, a socket, a `Vec`);
//! - [`reader`]: [`TraceFile::parse`] splits a file of either version back into its parts,
//!   bounds-checking every read;
//! - [`event_format`]: the event format texts (`field:` lines, `print fmt:`) and the printf
//!   subset they use, rendered as libtraceevent does;
//! - [`symbols`]: the kallsyms and printk formats sections, through which `ftrace:bprint`
//!   records (`hyp_printk`) name their call site and format;
//! - [`page`]: decoding the records of one ring-buffer page, and exporting a reader page in
//!   the form trace.dat stores;
//! - [`report`]: printing a whole file exactly as `trace-cmd report` does (CPUs merged by
//!   time, events rendered with the file's own formats, losses marked).
//!
//! The page layout itself (header, records, footer) comes from `hyptrace-abi`.
//!
//! # Example
//!
//! A file with one CPU holding one page of one event, read back:
//!
//! ```
//! use hyptrace_abi::events;
//! use hyptrace_tracedat::{write_trace_dat, CpuData, CpuStats, TraceFile, PAGE_SIZE};
//!
//! // A page: timestamp 1000 ns, `commit` 8, one compact record (type_len 1, delta 0) whose
//! // payload is event ID 1.
//! let mut page = vec![0u8; PAGE_SIZE];
//! page[..8].copy_from_slice(&1000u64.to_le_bytes());
//! page[8..16].copy_from_slice(&8u64.to_le_bytes());
//! page[16..24].copy_from_slice(&[1, 0, 0, 0, 1, 0, 0, 0]);
//!
//! let cpus = [CpuData { pages: &page, stats: CpuStats::default() }];
//! let mut file = Vec::new();
//! write_trace_dat(&mut file, events::SYSTEM, events::ALL, &cpus, "mono")?;
//!
//! let parsed = TraceFile::parse(&file)?;
//! assert_eq!(parsed.cpus, 1);
//! assert_eq!(parsed.clock.as_deref(), Some("mono"));
//! assert_eq!(parsed.cpu_data[0].size, PAGE_SIZE as u64);
//! # Ok::<(), Box<dyn core::error::Error>>(())
//! ```

// Library crates document how each public function fails and panics.
#![warn(clippy::missing_errors_doc, clippy::missing_panics_doc)]
#![cfg_attr(not(any(test, feature = "std")), no_std)]

extern crate alloc;

/// The README's example, compiled and run as a doctest.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

pub mod event_format;
pub mod format;
pub mod page;
pub mod reader;
pub mod report;
pub mod symbols;
pub mod writer;

#[cfg(test)]
mod tests;

pub use hyptrace_abi::page::PAGE_SIZE;
pub use reader::{FileError, TraceFile};
#[cfg(feature = "std")]
pub use writer::IoSink;
pub use writer::{
    write_trace, write_trace_dat, write_trace_with_printk, Buffer, CpuData, CpuStats, PrintkFormat,
    Sink, System, WriteError,
};
