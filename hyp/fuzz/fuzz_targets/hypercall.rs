//! libFuzzer entry point of the `hypercall` target; the logic is [`hyptrace_fuzz::hypercall`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hyptrace_fuzz::hypercall::run(data));
