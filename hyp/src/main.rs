//! The hyptrace EL2 image (placeholder while the foundation is written).
#![cfg_attr(all(target_arch = "aarch64", target_os = "none"), no_std, no_main)]

#[cfg(not(all(target_arch = "aarch64", target_os = "none")))]
fn main() {}
