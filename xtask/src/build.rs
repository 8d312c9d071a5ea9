//! Building the two bare-metal images: `hyp` (EL2, soft-float target) and `host-shim` (EL1).
//!
//! The hypervisor uses the soft-float target so that EL2 code never touches the host's FP/SIMD
//! registers; the host shim uses the ordinary hard-float target.

use std::path::{Path, PathBuf};

use anyhow::{ensure, Result};

use crate::workspace;

/// A cargo profile for the images.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    /// `--release` (the default: the images are slow under TCG otherwise).
    Release,
    /// The dev profile.
    Debug,
}

impl Profile {
    /// The directory cargo puts this profile's output in.
    pub fn dir_name(self) -> &'static str {
        match self {
            Profile::Release => "release",
            Profile::Debug => "debug",
        }
    }

    /// The cargo flags selecting this profile.
    fn cargo_flags(self) -> &'static [&'static str] {
        match self {
            Profile::Release => &["--release"],
            Profile::Debug => &[],
        }
    }
}

/// One bare-metal binary: its package, binary name and target triple.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageSpec {
    /// Cargo package.
    pub package: &'static str,
    /// Binary target within the package.
    pub bin: &'static str,
    /// Target triple.
    pub target: &'static str,
}

/// The EL1 host image, loaded by QEMU's generic loader at its link address.
pub const HOST_SHIM: ImageSpec = ImageSpec {
    package: "host-shim",
    bin: "host-shim",
    target: "aarch64-unknown-none",
};

/// The EL2 hypervisor image, QEMU's `-kernel`.
pub const HYP: ImageSpec = ImageSpec {
    package: "hyp",
    bin: "hyp",
    target: "aarch64-unknown-none-softfloat",
};

impl ImageSpec {
    /// Where cargo leaves this image.
    pub fn path(&self, target_dir: &Path, profile: Profile) -> PathBuf {
        target_dir
            .join(self.target)
            .join(profile.dir_name())
            .join(self.bin)
    }

    /// Arguments to `cargo <subcommand>` selecting this image, e.g. for build or clippy.
    pub fn cargo_args(&self, subcommand: &'static str, profile: Profile) -> Vec<&'static str> {
        let mut args = vec![
            subcommand,
            "-p",
            self.package,
            "--bin",
            self.bin,
            "--target",
            self.target,
        ];
        args.extend_from_slice(profile.cargo_flags());
        args
    }
}

/// The paths of both built images.
#[derive(Clone, Debug)]
pub struct Images {
    /// The EL2 image (`-kernel`).
    pub hyp: PathBuf,
    /// The EL1 image (`-device loader`).
    pub host_shim: PathBuf,
}

/// Builds the host shim, then the hypervisor, and returns where they are.
pub fn build_images(profile: Profile) -> Result<Images> {
    let target_dir = workspace::target_dir();
    let mut paths = Vec::new();
    for spec in [HOST_SHIM, HYP] {
        let command = workspace::cargo(&spec.cargo_args("build", profile));
        workspace::run_checked(command, &format!("building the {} image", spec.bin))?;
        let path = spec.path(&target_dir, profile);
        ensure!(
            path.is_file(),
            "cargo built {} but {} does not exist; if CARGO_TARGET_DIR or build.target-dir \
             points elsewhere, set CARGO_TARGET_DIR so xtask looks in the same place",
            spec.bin,
            path.display()
        );
        paths.push(path);
    }
    let hyp = paths.pop().expect("two images were built");
    let host_shim = paths.pop().expect("two images were built");
    Ok(Images { hyp, host_shim })
}

/// Cargo feature of the test-only hypervisor that commits faults on request.
pub const FAULT_INJECTION_FEATURE: &str = "fault-injection";

/// Builds the test-only hypervisor with [`FAULT_INJECTION_FEATURE`] into its own target
/// directory (`<target>/fault-injection`), so the normal image is never replaced by it, and
/// returns its path.
pub fn build_fault_injection_hyp(profile: Profile) -> Result<PathBuf> {
    let target_dir = workspace::target_dir().join(FAULT_INJECTION_FEATURE);
    let mut args = HYP.cargo_args("build", profile);
    args.extend(["--features", FAULT_INJECTION_FEATURE]);
    let mut command = workspace::cargo(&args);
    command.env("CARGO_TARGET_DIR", &target_dir);
    workspace::run_checked(command, "building the fault-injection hypervisor")?;
    let path = HYP.path(&target_dir, profile);
    ensure!(
        path.is_file(),
        "cargo built {} but it is not there",
        path.display()
    );
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_paths() {
        let target = Path::new("/ws/target");
        assert_eq!(
            HYP.path(target, Profile::Release),
            Path::new("/ws/target/aarch64-unknown-none-softfloat/release/hyp")
        );
        assert_eq!(
            HOST_SHIM.path(target, Profile::Debug),
            Path::new("/ws/target/aarch64-unknown-none/debug/host-shim")
        );
    }

    #[test]
    fn cargo_arguments() {
        assert_eq!(
            HOST_SHIM.cargo_args("build", Profile::Release),
            [
                "build",
                "-p",
                "host-shim",
                "--bin",
                "host-shim",
                "--target",
                "aarch64-unknown-none",
                "--release"
            ]
        );
        assert_eq!(
            HYP.cargo_args("clippy", Profile::Debug),
            [
                "clippy",
                "-p",
                "hyp",
                "--bin",
                "hyp",
                "--target",
                "aarch64-unknown-none-softfloat"
            ]
        );
    }
}
