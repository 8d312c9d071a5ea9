// Shared by the build scripts of `hyp` and `host-shim` (pulled in with `include!`).
//
// Writes `memmap.ld` into OUT_DIR from `hyp/platform/src/memmap.rs`, so the linker scripts and the Rust
// code read the same numbers, and passes the image's linker script to the binary only when
// building for bare metal (host builds and tests never see it).

#[allow(dead_code)]
mod memmap {
    include!(concat!(env!("CARGO_MANIFEST_DIR"), "/../hyp/platform/src/memmap.rs"));
}

fn link_bare_metal_image(script: &str) {
    use std::{env, fs, path::PathBuf};

    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let linker_dir = manifest.join("../linker");
    println!("cargo:rerun-if-changed={}", linker_dir.join(script).display());
    println!("cargo:rerun-if-changed={}", manifest.join("../hyp/platform/src/memmap.rs").display());
    println!("cargo:rerun-if-changed={}", linker_dir.join("build_support.rs").display());

    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let symbols = [
        ("RAM_BASE", memmap::RAM_BASE),
        ("HYP_BASE", memmap::HYP_BASE),
        ("HYP_SIZE", memmap::HYP_SIZE),
        ("HOST_BASE", memmap::HOST_BASE),
        ("HOST_IMAGE_SIZE", memmap::HOST_IMAGE_SIZE),
        ("HOST_POOL_BASE", memmap::HOST_POOL_BASE),
        ("MAX_CPUS", memmap::MAX_CPUS as u64),
        ("HYP_STACK_SIZE", memmap::HYP_STACK_SIZE),
        ("HYP_STACK_GUARD", memmap::HYP_STACK_GUARD),
        ("HYP_EMERGENCY_SLOT", 1u64 << memmap::HYP_EMERGENCY_SLOT_SHIFT),
    ];
    let text: String = symbols
        .iter()
        .map(|(name, value)| format!("{name} = {value:#x};\n"))
        .collect();
    fs::write(out.join("memmap.ld"), text).expect("write memmap.ld");

    let target_os = env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if target_os == "none" {
        println!("cargo:rustc-link-search={}", out.display());
        println!("cargo:rustc-link-arg-bins=-T{}", linker_dir.join(script).display());
    }
}
