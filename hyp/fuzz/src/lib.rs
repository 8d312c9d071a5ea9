//! hyptrace's fuzz targets, as a library.
//!
//! Each module is one target: `run(data)` decodes the fuzzer's bytes into a structured input
//! (with [`arbitrary`], so mutations stay meaningful), drives the code under test and panics on
//! anything it must never do. The libFuzzer entry points in `fuzz_targets/` only call `run`;
//! `cargo xtask fuzz [TARGET] [--seconds N]` builds and runs them with `cargo fuzz`.
//!
//! - [`hypercall`]: sequences of hypercalls from several simulated CPUs through the
//!   hypervisor's real dispatcher and tracing service, over simulated host RAM, with a shadow
//!   copy of that RAM and a model of what is loaded.
//! - [`pack`]: the `trace_buffer_pack` validator against an independent reference validator.
//! - [`ring`]: the ring writer under random writes, swaps, footer updates, resets and
//!   enable/disable, checked against a model of what the reader must get.
//! - [`tracedat`]: the trace.dat reader and `cargo xtask report`'s decoder on arbitrary files.
//!
//! The seed corpus (`corpus/TARGET/`) and every input that ever found a bug
//! (`regressions/TARGET/`) are replayed by this crate's tests, so `cargo test` keeps them
//! passing without libFuzzer.

pub mod hypercall;
pub mod pack;
pub mod ring;
pub mod tracedat;

/// A target: its name (of the `fuzz_targets/` binary and the corpus directories), its `run`,
/// and a function that shows the structured input a byte string decodes to.
pub type Target = (&'static str, fn(&[u8]), fn(&[u8]) -> String);

/// The fuzz targets.
pub const TARGETS: [Target; 4] = [
    ("hypercall", hypercall::run, hypercall::describe),
    ("pack", pack::run, pack::describe),
    ("ring", ring::run, ring::describe),
    ("tracedat", tracedat::run, tracedat::describe),
];
