//! Where things are, and how cargo is run.
//!
//! Every command xtask starts runs with the workspace root as its working directory; QEMU's
//! working directory matters more than most, because the guest's semihosting file I/O (e.g.
//! `trace.dat`) resolves relative names against it: see [`qemu_working_dir`].

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// The workspace root: the parent of xtask's own manifest directory.
pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask's manifest directory has a parent (the workspace root)")
}

/// The directory QEMU runs in. Files the guest writes through semihosting land here.
pub fn qemu_working_dir() -> PathBuf {
    root().to_path_buf()
}

/// Cargo's target directory: `CARGO_TARGET_DIR` if set (relative to the workspace root),
/// otherwise `<root>/target`.
pub fn target_dir() -> PathBuf {
    target_dir_from(root(), std::env::var_os("CARGO_TARGET_DIR"))
}

/// [`target_dir`] without the environment, for tests.
fn target_dir_from(root: &Path, cargo_target_dir: Option<OsString>) -> PathBuf {
    match cargo_target_dir {
        Some(dir) if !dir.is_empty() => root.join(dir),
        _ => root.join("target"),
    }
}

/// A `cargo` command (the cargo that runs xtask, from `CARGO`, else `cargo` on `PATH`) with
/// the given arguments, run from the workspace root.
pub fn cargo(args: &[&str]) -> Command {
    let program = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(program);
    command.args(args).current_dir(root());
    command
}

/// `path` relative to the current directory when it lies below it, else as it is.
pub fn display_path(path: &Path) -> String {
    let relative = std::env::current_dir()
        .ok()
        .and_then(|cwd| path.strip_prefix(cwd).ok().map(Path::to_path_buf));
    relative
        .unwrap_or_else(|| path.to_path_buf())
        .display()
        .to_string()
}

/// Renders a command as a shell-like line, for logs and error messages.
pub fn display_command(command: &Command) -> String {
    let mut words = Vec::new();
    for (key, value) in command.get_envs() {
        if let Some(value) = value {
            words.push(format!(
                "{}={}",
                key.to_string_lossy(),
                shell_quote(&value.to_string_lossy())
            ));
        }
    }
    let program = command.get_program().to_string_lossy();
    // Show `cargo` rather than the toolchain's full path: that is what a person would type.
    let program = if Path::new(program.as_ref()).file_name() == Some("cargo".as_ref()) {
        "cargo".into()
    } else {
        program
    };
    words.push(shell_quote(&program));
    words.extend(
        command
            .get_args()
            .map(|a| shell_quote(&a.to_string_lossy())),
    );
    words.join(" ")
}

/// Quotes a word for a POSIX shell when it needs quoting.
pub fn shell_quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// Runs a command with the terminal as its stdin/stdout/stderr and fails unless it exits 0.
///
/// `what` names the step for the error message (e.g. "clippy (host)").
pub fn run_checked(mut command: Command, what: &str) -> Result<()> {
    let line = display_command(&command);
    eprintln!("xtask: $ {line}");
    let status = command
        .status()
        .with_context(|| format!("{what}: could not start `{line}` (is it installed?)"))?;
    if !status.success() {
        bail!("{what} failed ({status}): `{line}`; fix what it reported above and rerun");
    }
    Ok(())
}

/// Runs `command` to completion capturing its output; fails, with the command line and both
/// streams, if it does not start or exits unsuccessfully.
pub fn output_checked(mut command: Command) -> Result<std::process::Output> {
    let line = display_command(&command);
    let out = command
        .output()
        .with_context(|| format!("could not run `{line}`"))?;
    if !out.status.success() {
        bail!(
            "`{line}` failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_holds_the_workspace_manifest() {
        assert!(root().join("Cargo.toml").is_file());
        assert!(root().join("xtask").is_dir());
    }

    #[test]
    fn target_dir_honours_cargo_target_dir() {
        let root = Path::new("/ws");
        assert_eq!(target_dir_from(root, None), Path::new("/ws/target"));
        assert_eq!(
            target_dir_from(root, Some("".into())),
            Path::new("/ws/target")
        );
        assert_eq!(
            target_dir_from(root, Some("out".into())),
            Path::new("/ws/out")
        );
        assert_eq!(
            target_dir_from(root, Some("/abs/t".into())),
            Path::new("/abs/t")
        );
    }

    #[test]
    fn shell_quote_only_when_needed() {
        assert_eq!(shell_quote("-M"), "-M");
        assert_eq!(
            shell_quote("virt-7.2,virtualization=on"),
            "virt-7.2,virtualization=on"
        );
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn display_command_shows_env_and_args() {
        let mut command = Command::new("/toolchain/bin/cargo");
        command
            .args(["test", "-p", "hyp"])
            .env("RUSTFLAGS", "--cfg loom");
        assert_eq!(
            display_command(&command),
            "RUSTFLAGS='--cfg loom' cargo test -p hyp"
        );
    }
}
