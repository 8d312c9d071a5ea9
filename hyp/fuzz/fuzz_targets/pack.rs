//! libFuzzer entry point of the `pack` target; the logic is [`hyptrace_fuzz::pack`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hyptrace_fuzz::pack::run(data));
