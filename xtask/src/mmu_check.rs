//! The MMU check: a debugger attached to QEMU while the guest traces reads every CPU's
//! SCTLR_EL2 and SCTLR_EL1, which must have the MMU, both caches (and at EL2 WXN) on.
//!
//! QEMU's gdbstub exposes the system registers of every vCPU; `gdb-multiarch` (Debian) reads
//! them with `thread apply all`. The guest records for a few seconds (`run` mode); the check
//! polls until every CPU's host has turned its MMU on (tracing starts right after), waits a
//! moment so the reading falls in the middle of the recording, reads the registers and lets
//! the recording finish, which must end with status 0.

use std::net::TcpListener;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use crate::build::Images;
use crate::crash_log;
use crate::harness_outcome;
use crate::qemu::{self, QemuConfig};
use crate::supervise::RunEnd;
use crate::tools;

/// gdb's binary and its Debian package.
pub const GDB: (&str, &str) = ("gdb-multiarch", "gdb-multiarch");

/// CPUs of the checked run.
const CPUS: u16 = 4;
/// How long the guest records.
const DURATION_MS: u64 = 8_000;

/// SCTLR bits: M (MMU), C (data cache), I (instruction cache), WXN.
const M: u64 = 1 << 0;
const C: u64 = 1 << 2;
const I: u64 = 1 << 12;
const WXN: u64 = 1 << 19;

/// Bits SCTLR_EL2 must have, and SCTLR_EL1.
pub const EL2_REQUIRED: u64 = M | C | I | WXN;
/// Bits SCTLR_EL1 must have.
pub const EL1_REQUIRED: u64 = M | C | I;

/// One CPU's registers as gdb printed them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuRegs {
    /// gdb's thread number (QEMU: vCPU index + 1).
    pub thread: u32,
    /// SCTLR_EL2.
    pub sctlr_el2: u64,
    /// SCTLR_EL1.
    pub sctlr_el1: u64,
}

/// The gdb command that prints one `hyptrace-regs THREAD SCTLR_EL2 SCTLR_EL1` line per CPU.
const PRINT_REGS: &str =
    r#"thread apply all -q printf "hyptrace-regs %d %lx %lx\n", $_thread, $SCTLR_EL2, $SCTLR"#;

/// Parses gdb's output of [`PRINT_REGS`].
pub fn parse(output: &str) -> Vec<CpuRegs> {
    output
        .lines()
        .filter_map(|line| {
            let mut words = line
                .trim()
                .strip_prefix("hyptrace-regs ")?
                .split_whitespace();
            let thread = words.next()?.parse().ok()?;
            let hex = |w: Option<&str>| u64::from_str_radix(w?, 16).ok();
            Some(CpuRegs {
                thread,
                sctlr_el2: hex(words.next())?,
                sctlr_el1: hex(words.next())?,
            })
        })
        .collect()
}

/// Whether every one of `cpus` CPUs has its MMU, caches (and WXN at EL2) on at both levels.
pub fn judge(regs: &[CpuRegs], cpus: u16) -> Result<(), String> {
    if regs.len() != usize::from(cpus) {
        return Err(format!("gdb reported {} CPUs, expected {cpus}", regs.len()));
    }
    let bad: Vec<String> = regs
        .iter()
        .filter(|r| {
            r.sctlr_el2 & EL2_REQUIRED != EL2_REQUIRED || r.sctlr_el1 & EL1_REQUIRED != EL1_REQUIRED
        })
        .map(|r| {
            format!(
                "CPU {}: SCTLR_EL2 {:#x}, SCTLR_EL1 {:#x}",
                r.thread - 1,
                r.sctlr_el2,
                r.sctlr_el1
            )
        })
        .collect();
    if bad.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "MMU, caches or WXN off (EL2 needs M, C, I, WXN; EL1 needs M, C, I): {}",
            bad.join("; ")
        ))
    }
}

/// A TCP port on 127.0.0.1 that nothing listens on right now.
fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free port for gdb")?;
    Ok(listener.local_addr()?.port())
}

/// Reads the registers once through gdb.
fn read_registers(gdb: &std::path::Path, port: u16) -> Result<Vec<CpuRegs>> {
    let output = Command::new(gdb)
        .args(["-nx", "-batch", "-ex", "set architecture aarch64"])
        .args(["-ex", &format!("target remote 127.0.0.1:{port}")])
        .args(["-ex", PRINT_REGS, "-ex", "detach"])
        .output()
        .with_context(|| format!("running {}", gdb.display()))?;
    Ok(parse(&String::from_utf8_lossy(&output.stdout)))
}

/// Boots the guest recording with a gdbstub and checks every CPU's SCTLRs mid-recording.
pub fn run(images: &Images) -> Result<()> {
    let gdb = tools::ensure_tool(GDB.0, GDB.1)?;
    let port = free_port()?;
    let words = vec![
        "run".to_string(),
        format!("duration_ms={DURATION_MS}"),
        "output=target/ci/mmu-check.dat".to_string(),
    ];
    let mut config = QemuConfig::new(images, CPUS, words)?;
    config.extra_args = vec!["-gdb".into(), format!("tcp:127.0.0.1:{port}")];
    let guest = thread::spawn(move || {
        qemu::run(
            &config,
            Duration::from_secs(120),
            false,
            harness_outcome::is_relevant,
        )
    });
    // Until every CPU's host has its MMU on (gdb may not even connect at first).
    let deadline = Instant::now() + Duration::from_secs(60);
    let booted = loop {
        let regs = read_registers(&gdb, port).unwrap_or_default();
        if regs.len() == usize::from(CPUS) && regs.iter().all(|r| r.sctlr_el1 & M != 0) {
            break true;
        }
        if Instant::now() > deadline || guest.is_finished() {
            break false;
        }
        thread::sleep(Duration::from_millis(500));
    };
    let result = if booted {
        // Into the recording, then the reading that counts.
        thread::sleep(Duration::from_secs(2));
        let regs = read_registers(&gdb, port)?;
        for r in &regs {
            eprintln!(
                "xtask: gdb: CPU {}: SCTLR_EL2 {:#010x}, SCTLR_EL1 {:#010x}",
                r.thread - 1,
                r.sctlr_el2,
                r.sctlr_el1
            );
        }
        judge(&regs, CPUS).map_err(|e| anyhow!(e))
    } else {
        Err(anyhow!(
            "gdb never saw all {CPUS} CPUs with the host's MMU on within 60 s"
        ))
    };
    let captured = guest
        .join()
        .map_err(|_| anyhow!("the QEMU supervisor thread panicked"))??;
    if captured.end != RunEnd::Exited(0) {
        captured.print_last_lines(40);
        let cause = format!("the recording under gdb ended with {}", captured.end);
        crash_log::save_failed_run(&format!("MMU check ({CPUS} CPUs, gdb)"), &captured, &cause);
        bail!(cause);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "warning: No executable has been specified\n\
        hyptrace-regs 4 30cd183f 30d8181f\n\
        hyptrace-regs 3 30cd183f 30d8181f\n\
        hyptrace-regs 2 30cd183f 30d8181f\n\
        hyptrace-regs 1 30cd183f 30d8181f\n\
        [Inferior 1 (process 1) detached]\n";

    #[test]
    fn registers_of_every_cpu_are_parsed_and_judged() {
        let regs = parse(GOOD);
        assert_eq!(regs.len(), 4);
        assert_eq!(
            regs[3],
            CpuRegs {
                thread: 1,
                sctlr_el2: 0x30cd_183f,
                sctlr_el1: 0x30d8_181f
            }
        );
        assert_eq!(judge(&regs, 4), Ok(()));
        assert!(judge(&regs, 8).is_err(), "a missing CPU fails");
    }

    #[test]
    fn a_cpu_with_caches_or_mmu_off_fails() {
        // The old state: SCTLR_EL2 RES1 only, SCTLR_EL1 MMU off.
        let off = GOOD.replace(
            "hyptrace-regs 2 30cd183f 30d8181f",
            "hyptrace-regs 2 30c50830 30d00800",
        );
        let err = judge(&parse(&off), 4).unwrap_err();
        assert!(err.contains("CPU 1: SCTLR_EL2 0x30c50830"), "{err}");
        let no_wxn = GOOD.replace("hyptrace-regs 3 30cd183f", "hyptrace-regs 3 30c5183f");
        assert!(judge(&parse(&no_wxn), 4).is_err());
        let el1_uncached = GOOD.replace("30d8181f\nhyptrace-regs 1", "30d8181b\nhyptrace-regs 1");
        assert!(judge(&parse(&el1_uncached), 4).is_err());
    }
}
