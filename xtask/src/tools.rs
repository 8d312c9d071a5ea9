//! Making sure system tools (QEMU, trace-cmd) are installed.
//!
//! On a fresh Debian machine running as root (CI), a missing tool is installed with apt-get;
//! otherwise xtask stops and prints the command to run.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use anyhow::{anyhow, bail, Context, Result};

use crate::workspace;

/// QEMU's binary and the Debian package that provides it.
pub const QEMU: (&str, &str) = ("qemu-system-aarch64", "qemu-system-arm");

/// trace-cmd's binary and its Debian package (for checking recorded trace.dat files).
pub const TRACE_CMD: (&str, &str) = ("trace-cmd", "trace-cmd");

/// Ensures `binary` is on `PATH`; as root, installs `debian_package` with apt-get if it is not.
///
/// `apt-get update` runs at most once per xtask invocation.
pub fn ensure_tool(binary: &str, debian_package: &str) -> Result<PathBuf> {
    if let Some(path) = find_on_path(binary, std::env::var_os("PATH").as_deref()) {
        return Ok(path);
    }
    if !running_as_root()? {
        bail!(
            "`{binary}` is not installed (not found on PATH); install it with \
             `sudo apt-get install -y --no-install-recommends {debian_package}` and rerun"
        );
    }
    eprintln!(
        "xtask: `{binary}` is not installed; installing Debian package `{debian_package}` \
         because xtask needs it"
    );
    apt_get_update_once()?;
    let mut install = Command::new("apt-get");
    install
        .args(["install", "-y", "--no-install-recommends", debian_package])
        .env("DEBIAN_FRONTEND", "noninteractive");
    workspace::run_checked(install, &format!("installing {debian_package}"))?;
    find_on_path(binary, std::env::var_os("PATH").as_deref()).ok_or_else(|| {
        anyhow!(
            "installed `{debian_package}` but `{binary}` is still not on PATH; check the \
             package name for this distribution"
        )
    })
}

/// Runs `apt-get update` the first time it is called; later calls return the first result.
fn apt_get_update_once() -> Result<()> {
    static UPDATED: OnceLock<Result<(), String>> = OnceLock::new();
    UPDATED
        .get_or_init(|| {
            let mut update = Command::new("apt-get");
            update
                .arg("update")
                .env("DEBIAN_FRONTEND", "noninteractive");
            workspace::run_checked(update, "apt-get update").map_err(|e| format!("{e:#}"))
        })
        .clone()
        .map_err(|e| anyhow!(e))
}

/// Whether xtask runs as root, asked from `id -u` (no libc dependency).
fn running_as_root() -> Result<bool> {
    let output = Command::new("id")
        .arg("-u")
        .output()
        .context("could not run `id -u` to find out whether xtask runs as root")?;
    Ok(String::from_utf8_lossy(&output.stdout).trim() == "0")
}

/// The first executable file named `binary` in the directories of `path_var`.
pub fn find_on_path(binary: &str, path_var: Option<&OsStr>) -> Option<PathBuf> {
    let path_var = path_var?;
    std::env::split_paths(path_var)
        .map(|dir| dir.join(binary))
        .find(|candidate| is_executable(candidate))
}

#[cfg(unix)]
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

#[cfg(not(unix))]
fn is_executable(path: &Path) -> bool {
    path.is_file()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_sh_on_a_normal_path() {
        let found = find_on_path("sh", Some(OsStr::new("/nonexistent:/bin:/usr/bin")));
        assert!(found.is_some_and(|p| p.ends_with("sh")));
    }

    #[test]
    fn missing_binary_or_path_is_none() {
        assert_eq!(
            find_on_path("no-such-tool-hyptrace", Some(OsStr::new("/bin:/usr/bin"))),
            None
        );
        assert_eq!(find_on_path("sh", None), None);
        assert_eq!(find_on_path("sh", Some(OsStr::new(""))), None);
    }

    #[cfg(unix)]
    #[test]
    fn non_executable_files_are_skipped() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("xtask-tools-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        let file = dir.join("plain-file");
        std::fs::write(&file, b"").expect("write temp file");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644))
            .expect("chmod temp file");
        assert_eq!(find_on_path("plain-file", Some(dir.as_os_str())), None);
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755))
            .expect("chmod temp file");
        assert_eq!(
            find_on_path("plain-file", Some(dir.as_os_str())),
            Some(file)
        );
        std::fs::remove_dir_all(&dir).expect("remove temp dir");
    }
}
