//! Decoding ftrace ring-buffer pages: the ABI crate's allocation-free decoder
//! ([`hyptrace_abi::page::decode`]), which the hypervisor's flight recorder uses too.

pub use hyptrace_abi::page::decode::*;
