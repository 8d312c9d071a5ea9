//! The contract between hyptrace's hypervisor and its host, defined once.
//!
//! Everything here is plain data and safe parsing: hypercall function IDs and their wire
//! convention, error codes, the page/footer layout and the packs the host hands over. Both
//! `hyp` and `host-shim` (and `xtask`) use these definitions; `docs/abi.md` describes them byte
//! by byte.

pub mod error;
pub mod event_format;
pub mod events;
pub mod hypercall;
pub mod pack;
pub mod page;

pub use error::HypError;
pub use hypercall::{FaultKind, HypercallId, FAULT_INJECTION_FID};
