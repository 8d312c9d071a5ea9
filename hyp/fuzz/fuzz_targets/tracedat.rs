//! libFuzzer entry point of the `tracedat` target; the logic is [`hyptrace_fuzz::tracedat`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hyptrace_fuzz::tracedat::run(data));
