//! The contract between hyptrace's hypervisor and its host, defined once.
//!
//! Everything here is plain data and safe parsing, `no_std` and without dependencies:
//!
//! - [`hypercall`]: function IDs in the SMCCC vendor-specific hypervisor range and the wire
//!   convention (X0 = status, X1..X3 = results);
//! - [`calls`]: every call with its arguments ([`Call`](calls::Call)), and the status
//!   convention, each with one register encoding;
//! - [`results`]: the results of the calls that return values, each with one register
//!   encoding (`to_regs` / `from_regs`);
//! - [`error`]: the error codes ([`HypError`]) with their wire values;
//! - [`limits`]: the sizes of the hypervisor's private pools, which bound what a host asks for;
//! - [`page`]: the ftrace ring-buffer page — header, data, footer — and its event records;
//! - [`pack`]: the `trace_buffer_pack` the host hands over, with a builder and a validating
//!   parser;
//! - [`event_format`] and [`define_events!`]: event payloads, and the format text tracefs and
//!   trace.dat carry for them; [`events`]: the hypervisor's events; [`host_events`]: the
//!   host's own (one ID namespace for both);
//! - [`printk`]: `hyp_printk`'s `ftrace:bprint` event, its compile-time format conversion and
//!   the format table the host fetches; [`printf`]: C conversions rendered without allocation,
//!   as libtraceevent renders them.
//!
//! Both sides of hyptrace (the EL2 `hyp` and the EL1 `host-shim`, and `xtask`) use only these
//! definitions for the contract; `docs/abi.md` in the repository describes them byte by byte.
//!
//! # Example
//!
//! A host describes its buffers in a pack; the hypervisor parses (and validates) it:
//!
//! ```
//! use hyptrace_abi::pack::{CpuPages, PackBuilder, TraceBufferPack};
//! use hyptrace_abi::{HypError, HypercallId};
//!
//! // CPU 0: a reader page and three ring pages (physical addresses).
//! let ring = [0x4300_1000, 0x4300_2000, 0x4300_3000];
//! let cpus = [CpuPages { cpu: 0, reader_page_va: 0x4300_0000, page_vas: &ring }];
//! let builder = PackBuilder::new(&cpus);
//! let mut bytes = vec![0u8; builder.size().unwrap()];
//! builder.write(&mut bytes).unwrap();
//!
//! let pack = TraceBufferPack::parse(&bytes, 4)?;
//! assert_eq!(pack.total_pages(), 4);
//! assert_eq!(HypercallId::LoadTracing.function_id(), 0xC600_0010);
//! # Ok::<(), HypError>(())
//! ```

// Library crates document how each public function fails and panics.
#![warn(clippy::missing_errors_doc, clippy::missing_panics_doc)]
#![cfg_attr(not(test), no_std)]

/// The README's example, compiled and run as a doctest.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

pub mod calls;
pub mod error;
pub mod event_format;
pub mod events;
pub mod host_events;
pub mod hypercall;
pub mod limits;
pub mod pack;
pub mod page;
pub mod printf;
pub mod printk;
pub mod results;

pub use error::HypError;
pub use hypercall::{FaultKind, HypercallId, FAULT_INJECTION_FID};
pub use results::{Info, PrintkFormats, RingCounters, SwapResult};
