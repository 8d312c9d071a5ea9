//! The QEMU command line and one supervised QEMU run.
//!
//! The machine: QEMU 7.2's `virt` with EL2 (`virtualization=on`) and GICv3, `-cpu max` with the
//! cheap IMPDEF pointer-authentication algorithm (QARMA is slow under TCG). `hyp` is the
//! `-kernel` (ELF boot: CPU 0 starts at its entry at EL2), `host-shim` is loaded at its link
//! address by the generic loader. The guest's mode travels as semihosting command-line words:
//! `hyptrace <mode> [words...]`.

use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::build::Images;
use crate::supervise::{self, Captured, Echo, StopRequest, Supervision};
use crate::tools;
use crate::workspace;

/// The machine model pinned to QEMU 7.2 behaviour, when the installed QEMU knows it.
const PINNED_MACHINE: &str = "virt-7.2";

/// The unversioned machine model (the newest `virt` of the installed QEMU).
const FALLBACK_MACHINE: &str = "virt";

/// Guest RAM.
const MEMORY: &str = "1G";

/// The CPU model unless `--cpu-model` says otherwise.
pub const DEFAULT_CPU_MODEL: &str = "max";

/// The 64-bit CPU models of QEMU 7.2 with EL2 that hyptrace runs on (checked by `--cpu-model`).
pub const CPU_MODELS: [&str; 8] = [
    "max",
    "cortex-a35",
    "cortex-a53",
    "cortex-a57",
    "cortex-a72",
    "cortex-a76",
    "neoverse-n1",
    "a64fx",
];

/// QEMU's `-cpu` value for a model: `max` gets the implementation-defined pointer
/// authentication algorithm, which TCG emulates far faster than QARMA.
pub fn cpu_option(model: &str) -> String {
    if model == "max" {
        "max,pauth-impdef=on".to_string()
    } else {
        model.to_string()
    }
}

/// The guest program name: first semihosting command-line word.
const GUEST_PROGRAM: &str = "hyptrace";

/// Everything that varies between QEMU runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QemuConfig {
    /// Machine model: [`PINNED_MACHINE`] or [`FALLBACK_MACHINE`].
    pub machine: &'static str,
    /// Number of vCPUs.
    pub cpus: u16,
    /// CPU model (one of [`CPU_MODELS`]).
    pub cpu_model: String,
    /// Semihosting words after `hyptrace`: the mode (`run`, `test`) and its options.
    pub guest_words: Vec<String>,
    /// The EL2 image, booted as `-kernel`.
    pub hyp_image: String,
    /// The EL1 image, loaded with `-device loader`.
    pub host_image: String,
    /// More QEMU options, appended as they are (e.g. `-gdb tcp:...`).
    pub extra_args: Vec<String>,
}

impl QemuConfig {
    /// A configuration for the built images on the installed QEMU (probing its machine list).
    pub fn new(images: &Images, cpus: u16, guest_words: Vec<String>) -> Result<Self> {
        for word in &guest_words {
            check_guest_word(word)?;
        }
        check_line_length(&guest_words)?;
        Ok(Self {
            machine: machine()?,
            cpus,
            cpu_model: DEFAULT_CPU_MODEL.to_string(),
            guest_words,
            hyp_image: utf8_path(&images.hyp)?,
            host_image: utf8_path(&images.host_shim)?,
            extra_args: Vec::new(),
        })
    }

    /// The same configuration on CPU model `model`.
    pub fn with_cpu_model(mut self, model: &str) -> Self {
        self.cpu_model = model.to_string();
        self
    }

    /// QEMU's arguments (without the program name).
    pub fn args(&self) -> Vec<String> {
        let mut semihosting = format!("enable=on,target=native,arg={GUEST_PROGRAM}");
        for word in &self.guest_words {
            semihosting.push_str(",arg=");
            semihosting.push_str(&escape_option_value(word));
        }
        let owned = |s: &str| s.to_string();
        let mut args: Vec<String> = [
            "-M",
            &format!("{},virtualization=on,gic-version=3", self.machine),
            "-cpu",
            &cpu_option(&self.cpu_model),
            "-smp",
            &self.cpus.to_string(),
            "-m",
            MEMORY,
            // The default NIC needs efi-virtio.rom, which `--no-install-recommends` leaves out
            // (QEMU then exits 1 at start); the guest has no use for a network anyway.
            "-nic",
            "none",
            "-display",
            "none",
            "-serial",
            "stdio",
            "-monitor",
            "none",
            "-no-reboot",
            "-semihosting-config",
            &semihosting,
            "-kernel",
        ]
        .into_iter()
        .map(owned)
        .collect();
        // `-kernel` takes its value verbatim; `-device` options need commas doubled.
        args.push(self.hyp_image.clone());
        args.push("-device".into());
        args.push(format!(
            "loader,file={}",
            escape_option_value(&self.host_image)
        ));
        args.extend(self.extra_args.iter().cloned());
        args
    }

    /// The command, with QEMU's working directory set (see [`workspace::qemu_working_dir`]).
    pub fn command(&self) -> Command {
        let mut command = Command::new(tools::QEMU.0);
        command
            .args(self.args())
            .current_dir(workspace::qemu_working_dir());
        command
    }
}

/// Boots QEMU with `config`, streaming its console (if `echo`) until it exits or `timeout`
/// passes, and keeps the lines selected by `keep` (e.g. [`crate::harness_outcome::is_relevant`]),
/// the last lines, and the whole console up to [`supervise::CONSOLE_BYTES`] (for
/// [`crate::crash_log`]).
pub fn run(
    config: &QemuConfig,
    timeout: Duration,
    echo: bool,
    keep: fn(&str) -> bool,
) -> Result<Captured> {
    let echo = if echo { Echo::Same } else { Echo::Off };
    supervised(config, timeout, (echo, |_| false), keep, None)
}

/// [`run`] for a recording: at `timeout` or on Ctrl-C the guest is asked to stop (the stop
/// byte on its console: it drains its buffers and saves the file) and killed only when it
/// has not ended `grace` later, or on a second Ctrl-C. Lines `echo.1` selects are not echoed
/// (the summary prints them again).
pub fn run_recording(
    config: &QemuConfig,
    timeout: Duration,
    echo: (Echo, fn(&str) -> bool),
    keep: fn(&str) -> bool,
    grace: Duration,
) -> Result<Captured> {
    let stop = supervise::interrupts().map(|interrupts| StopRequest {
        byte: host_shim::harness::STOP_BYTE,
        grace,
        interrupts,
    });
    if stop.is_none() {
        eprintln!(
            "xtask: warning: no Ctrl-C handler: Ctrl-C will kill QEMU and lose the recording"
        );
    }
    supervised(config, timeout, echo, keep, stop)
}

fn supervised(
    config: &QemuConfig,
    timeout: Duration,
    (echo, quiet_lines): (Echo, fn(&str) -> bool),
    keep: fn(&str) -> bool,
    stop: Option<StopRequest>,
) -> Result<Captured> {
    tools::ensure_tool(tools::QEMU.0, tools::QEMU.1)?;
    let command = config.command();
    eprintln!(
        "xtask: (in {}) $ {}",
        workspace::qemu_working_dir().display(),
        workspace::display_command(&command)
    );
    let supervision = Supervision {
        timeout,
        echo,
        quiet_lines,
        keep,
        console_bytes: supervise::CONSOLE_BYTES,
        stop,
    };
    supervise::run(command, &supervision)
}

/// `cargo xtask qemu-check`: QEMU is installed, and which machine model it will get.
pub fn check_installation() -> Result<()> {
    let path = tools::ensure_tool(tools::QEMU.0, tools::QEMU.1)?;
    let version = Command::new(&path)
        .arg("--version")
        .output()
        .with_context(|| format!("could not run `{} --version`", path.display()))?;
    let version = String::from_utf8_lossy(&version.stdout);
    println!("qemu: {}", path.display());
    println!("version: {}", version.lines().next().unwrap_or("(unknown)"));
    println!("machine: {}", machine()?);
    Ok(())
}

/// The machine model to use, probed once per xtask invocation from `qemu-system-aarch64 -M
/// help`.
fn machine() -> Result<&'static str> {
    static MACHINE: OnceLock<&'static str> = OnceLock::new();
    if let Some(machine) = MACHINE.get() {
        return Ok(machine);
    }
    tools::ensure_tool(tools::QEMU.0, tools::QEMU.1)?;
    let output = Command::new(tools::QEMU.0)
        .args(["-M", "help"])
        .output()
        .context("could not run `qemu-system-aarch64 -M help` to list machine models")?;
    if !output.status.success() {
        bail!(
            "`qemu-system-aarch64 -M help` failed ({}); check the QEMU installation",
            output.status
        );
    }
    let chosen = choose_machine(&String::from_utf8_lossy(&output.stdout));
    if chosen != PINNED_MACHINE {
        eprintln!(
            "xtask: warning: this QEMU has no `{PINNED_MACHINE}` machine; using `{chosen}`, \
             whose behaviour may differ from QEMU 7.2 (see the QEMU reference notes)"
        );
    }
    Ok(MACHINE.get_or_init(|| chosen))
}

/// Picks [`PINNED_MACHINE`] if the `-M help` listing has it, else [`FALLBACK_MACHINE`].
fn choose_machine(help: &str) -> &'static str {
    let listed = help
        .lines()
        .any(|line| line.split_whitespace().next() == Some(PINNED_MACHINE));
    if listed {
        PINNED_MACHINE
    } else {
        FALLBACK_MACHINE
    }
}

/// Doubles commas, QEMU's escape inside `key=value,...` option strings.
fn escape_option_value(value: &str) -> String {
    value.replace(',', ",,")
}

/// Rejects semihosting words the guest could not receive intact: the guest gets the words
/// joined by spaces, so a word must be non-empty and free of whitespace.
fn check_guest_word(word: &str) -> Result<()> {
    if word.is_empty() || word.contains(char::is_whitespace) {
        bail!(
            "guest argument {word:?} is empty or contains whitespace; the guest receives its \
             words joined by spaces, so pass separate words instead"
        );
    }
    Ok(())
}

/// A path as UTF-8, which QEMU option strings need.
fn utf8_path(path: &Path) -> Result<String> {
    path.to_str().map(str::to_string).with_context(|| {
        format!(
            "image path {} is not UTF-8; move the checkout to a UTF-8 path",
            path.display()
        )
    })
}

/// The guest reads its command line (`hyptrace` and the words, space-separated, and a NUL)
/// into `host_shim::harness::MAX_CMDLINE` bytes and refuses a longer one: say so here, with
/// the length, before QEMU starts.
fn check_line_length(words: &[String]) -> Result<()> {
    let len = GUEST_PROGRAM.len() + words.iter().map(|w| w.len() + 1).sum::<usize>() + 1;
    let max = host_shim::harness::MAX_CMDLINE;
    if len > max {
        bail!(
            "the guest's command line would be {len} bytes, above the {max} it reads; \
             shorten the output path or the extra words"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_line_too_long_for_the_guest_is_refused() {
        let max = host_shim::harness::MAX_CMDLINE;
        // "hyptrace" + " run" + " output=..." + NUL.
        let fits = max - "hyptrace".len() - " run".len() - " output=".len() - 1;
        let words = |n: usize| vec!["run".to_string(), format!("output={}", "x".repeat(n))];
        assert!(check_line_length(&words(fits)).is_ok());
        let e = check_line_length(&words(fits + 1)).unwrap_err().to_string();
        assert!(
            e.contains(&format!("{} bytes, above the {max}", max + 1)),
            "{e}"
        );
    }

    fn config(words: &[&str]) -> QemuConfig {
        QemuConfig {
            machine: PINNED_MACHINE,
            cpus: 4,
            cpu_model: DEFAULT_CPU_MODEL.to_string(),
            guest_words: words.iter().map(|w| w.to_string()).collect(),
            hyp_image: "/ws/target/aarch64-unknown-none-softfloat/release/hyp".into(),
            host_image: "/ws/target/aarch64-unknown-none/release/host-shim".into(),
            extra_args: Vec::new(),
        }
    }

    #[test]
    fn cpu_model_reaches_the_command_line() {
        let args = config(&["test"]).with_cpu_model("cortex-a53").args();
        let cpu = args.iter().position(|a| a == "-cpu").unwrap();
        assert_eq!(args[cpu + 1], "cortex-a53");
        let args = config(&["test"]).args();
        assert_eq!(args[cpu + 1], "max,pauth-impdef=on");
    }

    #[test]
    fn full_command_line() {
        let args = config(&["test", "filter=ring::", "seed=7"])
            .args()
            .join(" ");
        assert_eq!(
            args,
            "-M virt-7.2,virtualization=on,gic-version=3 -cpu max,pauth-impdef=on -smp 4 \
             -m 1G -nic none -display none -serial stdio -monitor none -no-reboot \
             -semihosting-config enable=on,target=native,arg=hyptrace,arg=test,\
             arg=filter=ring::,arg=seed=7 \
             -kernel /ws/target/aarch64-unknown-none-softfloat/release/hyp \
             -device loader,file=/ws/target/aarch64-unknown-none/release/host-shim"
        );
    }

    #[test]
    fn cpus_and_machine_are_used() {
        let mut c = config(&["run"]);
        c.cpus = 1;
        c.machine = FALLBACK_MACHINE;
        let args = c.args();
        let after = |flag: &str| {
            let i = args.iter().position(|a| a == flag).expect("flag present");
            args[i + 1].clone()
        };
        assert_eq!(after("-smp"), "1");
        assert_eq!(after("-M"), "virt,virtualization=on,gic-version=3");
        assert_eq!(
            after("-semihosting-config"),
            "enable=on,target=native,arg=hyptrace,arg=run"
        );
    }

    #[test]
    fn commas_are_escaped_in_option_values() {
        let mut c = config(&["run", "a,b"]);
        c.host_image = "/dir,x/host".into();
        c.hyp_image = "/dir,x/hyp".into();
        let args = c.args();
        assert!(args.contains(&"enable=on,target=native,arg=hyptrace,arg=run,arg=a,,b".into()));
        assert!(args.contains(&"loader,file=/dir,,x/host".into()));
        // -kernel is not an option string: its value is taken verbatim.
        assert!(args.contains(&"/dir,x/hyp".into()));
    }

    #[test]
    fn machine_choice() {
        let listing = "Supported machines are:\n\
                       virt-7.1             QEMU 7.1 ARM Virtual Machine\n\
                       virt                 QEMU 7.2 ARM Virtual Machine (alias of virt-7.2)\n\
                       virt-7.2             QEMU 7.2 ARM Virtual Machine\n";
        assert_eq!(choose_machine(listing), "virt-7.2");
        let old = "virt-7.1             QEMU 7.1 ARM Virtual Machine\n\
                   virt                 QEMU 7.1 ARM Virtual Machine (alias of virt-7.1)\n";
        assert_eq!(choose_machine(old), "virt");
        assert_eq!(choose_machine("virt-7.20  future\n"), "virt");
    }

    #[test]
    fn guest_words_must_survive_space_joining() {
        assert!(check_guest_word("filter=ring::swap").is_ok());
        assert!(check_guest_word("").is_err());
        assert!(check_guest_word("two words").is_err());
        assert!(check_guest_word("tab\there").is_err());
    }

    #[test]
    fn runs_in_the_workspace_root() {
        let command = config(&["run"]).command();
        assert_eq!(command.get_current_dir(), Some(workspace::root()));
        assert_eq!(command.get_program(), "qemu-system-aarch64");
    }
}
