//! LTTng-UST for `cargo xtask bench`: packages, the C driver, a private session daemon, and
//! one measured round per channel layout.
//!
//! Everything LTTng touches lives in a private `LTTNG_HOME` (`<target>/bench/lttng/home`):
//! the session daemon's sockets, pid file and configuration, and the snapshot sessions. The
//! daemon is started by xtask as a child process (`lttng-sessiond --no-kernel`, foreground)
//! and stopped by its process id when [`Lttng`] is dropped, also on errors. As root, the
//! daemon, the `lttng` commands and the driver run as `nobody` (uid 65534): a root session
//! daemon would use the system-wide `/var/run/lttng` instead of the private home.
//!
//! Any failure here makes the bench print that LTTng-UST was skipped and why; it never
//! produces a number it did not measure.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use crate::workspace;

/// The Debian packages the comparison needs: the control tools (`lttng`, `lttng-sessiond`)
/// and the tracer's headers and library.
pub const PACKAGES: [&str; 2] = ["lttng-tools", "liblttng-ust-dev"];

/// The uid and gid the LTTng side runs as when xtask runs as root.
const NOBODY: u32 = 65534;

/// One overwrite channel layout: about 1 MiB per CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Sub-buffer size in bytes.
    pub subbuf_size: u32,
    /// Number of sub-buffers.
    pub num_subbuf: u32,
}

impl Layout {
    /// A short name for keys and session names: `4k`, `64k`.
    pub fn key(self) -> String {
        format!("{}k", self.subbuf_size / 1024)
    }
}

/// The layouts measured: 1 MiB per CPU as 4 KiB and as 64 KiB sub-buffers.
pub const LAYOUTS: [Layout; 2] = [
    Layout {
        subbuf_size: 4096,
        num_subbuf: 256,
    },
    Layout {
        subbuf_size: 65536,
        num_subbuf: 16,
    },
];

/// The driver's figures for one payload size in one round, ns/event.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct DriverFigures {
    /// The loop without the tracepoint.
    pub empty: f64,
    /// The enabled tracepoint loop, before subtracting `empty`.
    pub lttng_raw: f64,
    /// The C floor (RDTSC + the same stores as the Rust floor).
    pub c_floor: f64,
}

/// A running private session daemon and a built driver.
pub struct Lttng {
    home: PathBuf,
    driver: PathBuf,
    as_nobody: bool,
    sessiond: Child,
    /// A temporary directory to remove after the daemon stopped (see [`private_home`]).
    cleanup: Option<PathBuf>,
    /// What was installed, for the report.
    pub versions: String,
}

/// Installs the packages if needed and possible, builds the driver, starts the daemon.
///
/// `Err` is a reason to skip LTTng, already phrased for the reader.
pub fn prepare(bench_dir: &Path) -> Result<Lttng> {
    let versions = ensure_packages()?;
    let root = running_as_root();
    let dir = bench_dir.join("lttng");
    let driver = dir.join("driver");
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    build_driver(&driver)?;
    let (home, driver, cleanup) = private_home(&dir, driver, root)?;
    let log_path = dir.join("sessiond.log");
    let log =
        fs::File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
    let mut command = lttng_command("lttng-sessiond", &home, root);
    command
        .arg("--no-kernel")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    eprintln!(
        "xtask: starting a private session daemon: $ {}",
        workspace::display_command(&command)
    );
    let sessiond = command.spawn().context("could not start lttng-sessiond")?;
    let mut lttng = Lttng {
        cleanup,
        home,
        driver,
        as_nobody: root,
        sessiond,
        versions,
    };
    lttng.wait_ready(&log_path)?;
    Ok(lttng)
}

impl Lttng {
    /// The session daemon's process id.
    pub fn sessiond_pid(&self) -> u32 {
        self.sessiond.id()
    }

    /// The private LTTNG_HOME.
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// Whether the LTTng side runs as `nobody`.
    pub fn as_nobody(&self) -> bool {
        self.as_nobody
    }

    fn wait_ready(&mut self, log: &Path) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.sessiond.try_wait()? {
                let text = fs::read_to_string(log).unwrap_or_default();
                bail!(
                    "lttng-sessiond exited at start ({status}); its log ({}): {}",
                    log.display(),
                    text.trim()
                );
            }
            let ok = self
                .ctl(&["list"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("lttng-sessiond did not answer `lttng list` within 15 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// An `lttng` command talking to the private daemon only (`--no-sessiond`: never spawn one).
    fn ctl(&self, args: &[&str]) -> Command {
        let mut command = lttng_command("lttng", &self.home, self.as_nobody);
        command.arg("--no-sessiond").args(args);
        command
    }

    fn ctl_checked(&self, args: &[&str]) -> Result<()> {
        workspace::output_checked(self.ctl(args)).map(drop)
    }

    /// One round with one layout: a fresh snapshot session with one overwrite channel and the
    /// driver's events enabled, the driver run (pinned with `pin`, a taskset prefix, if any),
    /// the session destroyed. Returns the figures per payload size.
    pub fn round(
        &self,
        layout: Layout,
        events: u64,
        pin: &[String],
    ) -> Result<Vec<(usize, DriverFigures)>> {
        let session = format!("hyptrace-bench-{}", layout.key());
        self.ctl_checked(&["create", &session, "--snapshot"])?;
        let result = self.traced_round(&session, layout, events, pin);
        let destroyed = self.ctl_checked(&["destroy", &session]);
        let figures = result?;
        destroyed?;
        Ok(figures)
    }

    fn traced_round(
        &self,
        session: &str,
        layout: Layout,
        events: u64,
        pin: &[String],
    ) -> Result<Vec<(usize, DriverFigures)>> {
        self.ctl_checked(&[
            "enable-channel",
            "-u",
            "--overwrite",
            &format!("--subbuf-size={}", layout.subbuf_size),
            &format!("--num-subbuf={}", layout.num_subbuf),
            "-s",
            session,
            "bench",
        ])?;
        self.ctl_checked(&[
            "enable-event",
            "-u",
            "hyptrace_bench:*",
            "-c",
            "bench",
            "-s",
            session,
        ])?;
        self.ctl_checked(&["start", session])?;
        let mut command = match pin.split_first() {
            Some((program, args)) => {
                let mut c = lttng_command(program, &self.home, self.as_nobody);
                c.args(args).arg(&self.driver);
                c
            }
            None => lttng_command(&self.driver.to_string_lossy(), &self.home, self.as_nobody),
        };
        // Wait for the registration with the daemon before main (default 3 s).
        command
            .arg(events.to_string())
            .env("LTTNG_UST_REGISTER_TIMEOUT", "10000");
        let line = workspace::display_command(&command);
        let out = command
            .output()
            .with_context(|| format!("could not run the driver `{line}`"))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            bail!(
                "the driver failed ({}): {}{}",
                out.status,
                stdout.trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        self.ctl_checked(&["stop", session])?;
        parse_driver(&stdout)
    }
}

impl Drop for Lttng {
    /// Stops the session daemon by its pid: SIGTERM, then SIGKILL after 10 s.
    fn drop(&mut self) {
        let pid = self.sessiond.id();
        if let Ok(None) = self.sessiond.try_wait() {
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while matches!(self.sessiond.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            if matches!(self.sessiond.try_wait(), Ok(None)) {
                let _ = self.sessiond.kill();
                let _ = self.sessiond.wait();
            }
        }
        eprintln!("xtask: stopped the private lttng-sessiond (pid {pid})");
        if let Some(dir) = &self.cleanup {
            let _ = fs::remove_dir_all(dir);
        }
    }
}

/// The longest LTTNG_HOME used in place: the daemon's Unix sockets go up to about 30
/// characters below it, and a socket path must fit in 108 bytes.
const MAX_HOME_LEN: usize = 70;

/// Makes an empty private LTTNG_HOME and returns it with the driver to run. Normally
/// `<dir>/home` and `driver` in place; when `nobody` cannot reach them (e.g. a workspace
/// under /root) or the path is too long for the daemon's sockets, a fresh
/// `<tmp>/hyptrace-bench-lttng-<pid>` holding a copy of the driver instead.
/// The third value is the temporary directory to remove afterwards, if one was made.
fn private_home(
    dir: &Path,
    driver: PathBuf,
    as_nobody: bool,
) -> Result<(PathBuf, PathBuf, Option<PathBuf>)> {
    let fresh = |home: &Path| -> Result<()> {
        // Start from an empty home: no stale sockets, sessions or pid file.
        let _ = fs::remove_dir_all(home);
        fs::create_dir_all(home).with_context(|| format!("creating {}", home.display()))?;
        if as_nobody {
            std::os::unix::fs::chown(home, Some(NOBODY), Some(NOBODY))
                .with_context(|| format!("chown nobody {}", home.display()))?;
        }
        Ok(())
    };
    let home = dir.join("home");
    fresh(&home)?;
    let reachable = !as_nobody
        || lttng_command("test", &home, true)
            .arg("-w")
            .arg(&home)
            .args(["-a", "-x"])
            .arg(&driver)
            .status()
            .is_ok_and(|s| s.success());
    if reachable && home.as_os_str().len() <= MAX_HOME_LEN {
        return Ok((home, driver, None));
    }
    let _ = fs::remove_dir_all(&home);
    let tmp = std::env::temp_dir().join(format!("hyptrace-bench-lttng-{}", std::process::id()));
    let tmp_home = tmp.join("home");
    fresh(&tmp_home)?;
    let tmp_driver = tmp.join("driver");
    fs::copy(&driver, &tmp_driver)
        .with_context(|| format!("copying the driver to {}", tmp_driver.display()))?;
    eprintln!(
        "xtask: LTTng home {} is {}; using {} instead",
        home.display(),
        if reachable {
            "too long for the daemon's socket paths"
        } else {
            "not reachable by nobody"
        },
        tmp_home.display()
    );
    Ok((tmp_home, tmp_driver, Some(tmp)))
}

/// `program` with the private LTTng home, run as `nobody` through setpriv when `as_nobody`.
fn lttng_command(program: &str, home: &Path, as_nobody: bool) -> Command {
    let mut command = if as_nobody {
        let mut c = Command::new("setpriv");
        c.args([
            &format!("--reuid={NOBODY}"),
            &format!("--regid={NOBODY}"),
            "--clear-groups",
            program,
        ]);
        c
    } else {
        Command::new(program)
    };
    command
        .env("LTTNG_HOME", home)
        .env("HOME", home)
        .current_dir(home);
    command
}

/// Parses the driver's `enabled P 0|1` and `result NAME P NS` lines; every payload size
/// must have been enabled and have all three figures.
pub fn parse_driver(stdout: &str) -> Result<Vec<(usize, DriverFigures)>> {
    let mut figures: Vec<(usize, DriverFigures, u8)> = Vec::new();
    let mut enabled = Vec::new();
    for line in stdout.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["enabled", p, e] => enabled.push((p.parse::<usize>()?, *e == "1")),
            ["result", name, p, ns] => {
                let p: usize = p.parse()?;
                let ns: f64 = ns.parse()?;
                let i = match figures.iter().position(|f| f.0 == p) {
                    Some(i) => i,
                    None => {
                        figures.push((p, DriverFigures::default(), 0));
                        figures.len() - 1
                    }
                };
                let (_, f, seen) = &mut figures[i];
                match *name {
                    "empty" => f.empty = ns,
                    "lttng" => f.lttng_raw = ns,
                    "c_floor" => f.c_floor = ns,
                    other => bail!("unknown driver figure `{other}`"),
                }
                *seen += 1;
            }
            _ => {}
        }
    }
    if enabled.is_empty() {
        bail!("the driver printed no `enabled` lines: {}", stdout.trim());
    }
    if let Some((p, _)) = enabled.iter().find(|(_, e)| !e) {
        bail!(
            "the {p}-byte tracepoint was not enabled in the driver (it did not register with \
             the session daemon in time?)"
        );
    }
    if figures.len() != enabled.len() || figures.iter().any(|f| f.2 != 3) {
        bail!("the driver's output is incomplete: {}", stdout.trim());
    }
    Ok(figures.into_iter().map(|(p, f, _)| (p, f)).collect())
}

/// Builds the C provider and driver with the system C compiler.
fn build_driver(out: &Path) -> Result<()> {
    let src = workspace::root().join("xtask").join("lttng");
    let mut cc = Command::new("cc");
    cc.args(["-O2", "-Wall", "-Wextra", "-I"])
        .arg(&src)
        .arg("-o")
        .arg(out)
        .arg(src.join("driver.c"))
        .arg(src.join("hyptrace_bench_tp.c"))
        .args(["-llttng-ust", "-ldl"]);
    let line = workspace::display_command(&cc);
    eprintln!("xtask: $ {line}");
    let output = cc
        .output()
        .with_context(|| format!("could not run the C compiler `cc` (`{line}`)"))?;
    if !output.status.success() {
        bail!(
            "building the LTTng-UST driver failed: `{line}`: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// Makes sure [`PACKAGES`] are installed, installing them with apt-get as root. Returns the
/// installed versions and whether they were installed now, for the report.
fn ensure_packages() -> Result<String> {
    let missing: Vec<&str> = PACKAGES
        .iter()
        .copied()
        .filter(|p| package_version(p).is_none())
        .collect();
    let mut how = "already installed";
    if !missing.is_empty() {
        let install = format!(
            "apt-get install -y --no-install-recommends {}",
            missing.join(" ")
        );
        if !running_as_root() {
            bail!(
                "Debian package(s) {} not installed and xtask is not root; install with \
                 `sudo apt-get update && sudo {install}` and rerun",
                missing.join(", ")
            );
        }
        eprintln!(
            "xtask: installing {} with apt-get: the LTTng-UST comparison needs the session \
             daemon and lttng (lttng-tools) and the tracer's headers and library \
             (liblttng-ust-dev)",
            missing.join(" ")
        );
        let mut update = Command::new("apt-get");
        update
            .arg("update")
            .env("DEBIAN_FRONTEND", "noninteractive");
        workspace::run_checked(update, "apt-get update")?;
        let mut apt = Command::new("apt-get");
        apt.args(["install", "-y", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive");
        workspace::run_checked(apt, &format!("installing {}", missing.join(" ")))?;
        how = "installed now with apt-get";
    }
    let versions = PACKAGES
        .iter()
        .map(|p| {
            package_version(p)
                .map(|v| format!("{p} {v}"))
                .ok_or_else(|| anyhow!("package {p} is still not installed"))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(format!("{} ({how})", versions.join(", ")))
}

/// The installed version of a Debian package, from dpkg-query.
fn package_version(package: &str) -> Option<String> {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f", "${Status}|${Version}", package])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let (status, version) = text.split_once('|')?;
    (out.status.success() && status.ends_with("installed")).then(|| version.trim().to_string())
}

/// Whether xtask runs as root, from `id -u` (no libc dependency).
pub fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_complete_driver_run() {
        let out = "enabled 4 1\nenabled 16 1\nresult empty 4 0.5\nresult c_floor 4 9\n\
                   result lttng 4 70.5\nresult empty 16 0.25\nresult c_floor 16 9.5\n\
                   result lttng 16 71\n";
        let f = parse_driver(out).unwrap();
        assert_eq!(f.len(), 2);
        assert_eq!(f[1].0, 16);
        assert_eq!(
            f[1].1,
            DriverFigures {
                empty: 0.25,
                lttng_raw: 71.0,
                c_floor: 9.5
            }
        );
    }

    #[test]
    fn refuses_disabled_or_incomplete_runs() {
        let disabled = "enabled 4 0\nresult empty 4 0.5\nresult c_floor 4 9\nresult lttng 4 1\n";
        assert!(parse_driver(disabled).is_err());
        let incomplete = "enabled 4 1\nresult empty 4 0.5\nresult lttng 4 70\n";
        assert!(parse_driver(incomplete).is_err());
        assert!(parse_driver("").is_err());
    }

    #[test]
    fn layouts_are_one_mib() {
        for l in LAYOUTS {
            assert_eq!(l.subbuf_size * l.num_subbuf, 1 << 20);
        }
        assert_eq!(LAYOUTS[0].key(), "4k");
        assert_eq!(LAYOUTS[1].key(), "64k");
    }
}
