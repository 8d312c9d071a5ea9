//! libFuzzer entry point of the `ring` target; the logic is [`hyptrace_fuzz::ring`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hyptrace_fuzz::ring::run(data));
