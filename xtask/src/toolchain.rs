//! The targets and components `rust-toolchain.toml` pins, installed when missing.
//!
//! rustup installs a pinned toolchain with its targets and components when the toolchain is
//! missing, but not when the toolchain is already installed without them (for instance by
//! an earlier `rustup toolchain install 1.95.0`): the first build of a bare-metal image then
//! fails with "can't find crate for `core`". Before anything builds, xtask asks rustup what
//! the pinned toolchain has and adds what `rust-toolchain.toml` names and it lacks.

use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::workspace;

/// What `rust-toolchain.toml`'s `[toolchain]` table pins.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pinned {
    /// `channel`, e.g. `1.95.0`.
    pub channel: String,
    /// `targets`.
    pub targets: Vec<String>,
    /// `components`.
    pub components: Vec<String>,
}

/// Reads the `[toolchain]` table of a `rust-toolchain.toml`: `key = "value"` and
/// `key = ["a", "b"]` lines (one line each, as this repository writes them).
///
/// # Errors
/// No `channel` in the table.
pub fn parse(text: &str) -> Result<Pinned> {
    let mut pinned = Pinned::default();
    let mut in_table = false;
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.starts_with('[') {
            in_table = line == "[toolchain]";
            continue;
        }
        let Some((key, value)) = line.split_once('=').filter(|_| in_table) else {
            continue;
        };
        let strings: Vec<String> = value
            .split('"')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect();
        match key.trim() {
            "channel" => pinned.channel = strings.into_iter().next().unwrap_or_default(),
            "targets" => pinned.targets = strings,
            "components" => pinned.components = strings,
            _ => {}
        }
    }
    if pinned.channel.is_empty() {
        bail!("rust-toolchain.toml names no channel in its [toolchain] table");
    }
    Ok(pinned)
}

/// The names of `wanted` that `installed` lacks. rustup lists targets by their name and
/// components with their host's triple appended (`clippy-x86_64-unknown-linux-gnu`): with
/// `suffixed`, a name followed by a dash matches too. Targets are compared whole, since one
/// target's name may begin another's (`aarch64-unknown-none`, `...-softfloat`).
pub fn missing(wanted: &[String], installed: &[String], suffixed: bool) -> Vec<String> {
    wanted
        .iter()
        .filter(|w| {
            !installed
                .iter()
                .any(|i| i == *w || (suffixed && i.starts_with(&format!("{w}-"))))
        })
        .cloned()
        .collect()
}

/// Lines of `rustup <args>`, or `None` when rustup is not there or fails (xtask then leaves
/// the toolchain to cargo, whose own error names what is missing).
fn rustup_lines(args: &[&str]) -> Option<Vec<String>> {
    let out = Command::new("rustup").args(args).output().ok()?;
    out.status.success().then(|| {
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect()
    })
}

/// Adds the pinned targets and components the pinned toolchain lacks, saying why first.
///
/// # Errors
/// `rust-toolchain.toml` unreadable, or a `rustup` install that fails.
pub fn ensure_pinned() -> Result<()> {
    let file = workspace::root().join("rust-toolchain.toml");
    let text = std::fs::read_to_string(&file)
        .with_context(|| format!("cannot read {}", file.display()))?;
    let pinned = parse(&text)?;
    let toolchain = pinned.channel.as_str();
    for (kind, wanted) in [
        ("target", &pinned.targets),
        ("component", &pinned.components),
    ] {
        let Some(installed) =
            rustup_lines(&[kind, "list", "--installed", "--toolchain", toolchain])
        else {
            return Ok(());
        };
        let lacking = missing(wanted, &installed, kind == "component");
        if lacking.is_empty() {
            continue;
        }
        eprintln!(
            "xtask: toolchain {toolchain} lacks the {kind}s rust-toolchain.toml pins: {}; \
             installing them (rustup {kind} add --toolchain {toolchain} ...)",
            lacking.join(", ")
        );
        let mut command = Command::new("rustup");
        command
            .args([kind, "add", "--toolchain", toolchain])
            .args(&lacking);
        workspace::run_checked(command, &format!("installing the pinned {kind}s"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_repositorys_pin() {
        let text = std::fs::read_to_string(workspace::root().join("rust-toolchain.toml"))
            .expect("rust-toolchain.toml");
        let p = parse(&text).expect("parse");
        assert!(!p.channel.is_empty());
        assert!(p
            .targets
            .iter()
            .any(|t| t == "aarch64-unknown-none-softfloat"));
        assert!(p.components.iter().any(|c| c == "clippy"));
    }

    #[test]
    fn parses_only_the_toolchain_table() {
        let p = parse(
            "# comment\n[other]\nchannel = \"nightly\"\n[toolchain]\nchannel = \"1.2.3\" # pin\n\
             components = [\"rustfmt\", \"clippy\"]\ntargets = [\"a\", \"b\"]\n",
        )
        .expect("parse");
        assert_eq!(p.channel, "1.2.3");
        assert_eq!(p.components, ["rustfmt", "clippy"]);
        assert_eq!(p.targets, ["a", "b"]);
        assert!(parse("[toolchain]\ntargets = [\"a\"]\n").is_err());
    }

    #[test]
    fn finds_what_is_missing() {
        let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let components = strings(&["clippy", "rustfmt"]);
        let installed = strings(&[
            "clippy-x86_64-unknown-linux-gnu",
            "cargo-x86_64-unknown-linux-gnu",
        ]);
        assert_eq!(missing(&components, &installed, true), ["rustfmt"]);
        let targets = strings(&["aarch64-unknown-none", "aarch64-unknown-none-softfloat"]);
        let installed = strings(&["aarch64-unknown-none-softfloat", "x86_64-unknown-linux-gnu"]);
        assert_eq!(
            missing(&targets, &installed, false),
            ["aarch64-unknown-none"],
            "a target whose name begins another's is still missing"
        );
        assert!(missing(&targets, &targets, false).is_empty());
    }
}
