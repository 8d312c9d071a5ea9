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

/// KernelShark's binary and its Debian package (the viewer `cargo xtask run` suggests).
pub const KERNELSHARK: (&str, &str) = ("kernelshark", "kernelshark");

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
    // Ask apt first what the install would do: it may remove installed packages to resolve
    // a conflict (a newer qemu-utils than the qemu-system-arm it pulls in, say).
    let mut simulate = Command::new("apt-get");
    simulate
        .args([
            "install",
            "-s",
            "-y",
            "--no-install-recommends",
            debian_package,
        ])
        .env("DEBIAN_FRONTEND", "noninteractive");
    let plan = workspace::output_checked(simulate)
        .with_context(|| format!("asking apt-get what installing {debian_package} does"))?;
    let removed = removals(&String::from_utf8_lossy(&plan.stdout));
    if !removed.is_empty() {
        let list = removed.join(", ");
        if std::env::var_os(ALLOW_REMOVALS).is_none_or(|v| v != "1") {
            bail!(
                "installing {debian_package} would make apt-get remove installed packages, to \
                 resolve a conflict with what {debian_package} needs: {list}. Install it \
                 yourself if that is fine (`apt-get install --no-install-recommends \
                 {debian_package}`), or rerun with {ALLOW_REMOVALS}=1 to let xtask do it"
            );
        }
        eprintln!(
            "xtask: installing {debian_package} removes these installed packages (apt-get \
             resolves a conflict with what {debian_package} needs; {ALLOW_REMOVALS}=1 allows \
             it): {list}"
        );
    }
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

/// The environment variable that lets an install remove packages apt-get says it must.
pub const ALLOW_REMOVALS: &str = "XTASK_APT_ALLOW_REMOVALS";

/// The packages a simulated `apt-get install -s` would remove: its `Remv NAME [VERSION]`
/// lines, as `NAME VERSION`.
pub fn removals(simulation: &str) -> Vec<String> {
    simulation
        .lines()
        .filter_map(|l| l.strip_prefix("Remv "))
        .map(|rest| {
            let mut words = rest.split_whitespace();
            let name = words.next().unwrap_or("");
            let version = words
                .next()
                .map(|v| v.trim_start_matches('[').trim_end_matches(']'));
            match version {
                Some(v) => format!("{name} {v}"),
                None => name.to_string(),
            }
        })
        .collect()
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
    fn a_simulated_install_names_what_it_would_remove() {
        // What apt-get 2.6 prints for `install -s` when a newer qemu-utils is in the way.
        let simulation = "Reading package lists...\nBuilding dependency tree...\n\
            The following packages will be REMOVED:\n  qemu-utils\n\
            The following NEW packages will be installed:\n  qemu-system-arm\n\
            Remv qemu-utils [1:8.2.2+ds-0ubuntu1]\n\
            Inst qemu-system-arm (1:7.2+dfsg-7+deb12u7 Debian:12/stable [amd64])\n\
            Conf qemu-system-arm (1:7.2+dfsg-7+deb12u7 Debian:12/stable [amd64])\n";
        assert_eq!(removals(simulation), ["qemu-utils 1:8.2.2+ds-0ubuntu1"]);
        assert!(removals("Inst trace-cmd (3.1.6-1 Debian:12/stable [amd64])\n").is_empty());
        assert_eq!(removals("Remv a\nRemv b [2]\n"), ["a", "b 2"]);
    }

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
