//! `psci::` — the PSCI relay: version and features, CPU_ON/CPU_OFF life cycles, refusals.

use alloc::format;
use core::sync::atomic::Ordering;

use host_shim::harness::{TestCase, TestResult};
use hyptrace_platform::memmap::HYP_BASE;
use smccc::psci::error::{ALREADY_ON, INVALID_ADDRESS, INVALID_PARAMETERS, NOT_SUPPORTED};
use smccc::psci::{
    PSCI_CPU_OFF, PSCI_CPU_ON_32, PSCI_CPU_ON_64, PSCI_CPU_SUSPEND_64, PSCI_FEATURES,
    PSCI_SYSTEM_OFF, PSCI_SYSTEM_RESET, PSCI_VERSION,
};

use super::{check, expect_eq, Ctx};
use crate::arch::boot::machine;
use crate::arch::calls::{psci, smc_raw};
use crate::arch::console::println;
use crate::arch::smp;

/// The `psci::` group.
pub const TESTS: &[TestCase<Ctx>] = &[
    TestCase {
        group: "psci",
        name: "version",
        run: version,
    },
    TestCase {
        group: "psci",
        name: "features",
        run: features,
    },
    TestCase {
        group: "psci",
        name: "secondaries_entered_el1_with_context",
        run: secondaries_entered_el1_with_context,
    },
    TestCase {
        group: "psci",
        name: "cpu_on_already_on",
        run: cpu_on_already_on,
    },
    TestCase {
        group: "psci",
        name: "cpu_on_invalid_mpidr",
        run: cpu_on_invalid_mpidr,
    },
    TestCase {
        group: "psci",
        name: "cpu_off_then_on",
        run: cpu_off_then_on,
    },
    TestCase {
        group: "psci",
        name: "non_psci_smc_not_supported",
        run: non_psci_smc_not_supported,
    },
    TestCase {
        group: "psci",
        name: "smc_nonzero_immediate_not_supported",
        run: smc_nonzero_immediate_not_supported,
    },
    TestCase {
        group: "psci",
        name: "smc_preserves_registers",
        run: smc_preserves_registers,
    },
];

fn version(_: &Ctx) -> TestResult {
    let v = psci(PSCI_VERSION, [0; 3]);
    check(v >= 0x1_0000, || {
        format!("PSCI_VERSION = {v:#x}, expected 1.0 or later")
    })?;
    println!("    psci::version: PSCI {}.{}", v >> 16, v & 0xffff);
    Ok(())
}

fn features(_: &Ctx) -> TestResult {
    expect_eq(
        "FEATURES(CPU_ON_64)",
        psci(PSCI_FEATURES, [PSCI_CPU_ON_64 as u64, 0, 0]),
        0,
    )?;
    // CPU_SUSPEND is not relayed, so it is not advertised either.
    expect_eq(
        "FEATURES(CPU_SUSPEND_64)",
        psci(PSCI_FEATURES, [PSCI_CPU_SUSPEND_64 as u64, 0, 0]),
        NOT_SUPPORTED as i64,
    )
}

/// Checks what CPU `index` recorded on its latest arrival.
fn check_arrival(index: usize, token: u64) -> TestResult {
    // The caller waited for the arrival with `smp::wait_arrivals` (an Acquire load of the
    // count, paired with the CPU's Release increment), so the fields below are visible.
    let block = smp::boot_block(index);
    expect_eq(
        &format!("CPU {index} X0 at entry"),
        block.seen_context.load(Ordering::Relaxed),
        block as *const smp::BootBlock as u64,
    )?;
    expect_eq(
        &format!("CPU {index} CurrentEL at entry"),
        block.seen_el.load(Ordering::Relaxed),
        1,
    )?;
    expect_eq(
        &format!("CPU {index} token"),
        block.seen_token.load(Ordering::Relaxed),
        token,
    )
}

fn secondaries_entered_el1_with_context(_: &Ctx) -> TestResult {
    let count = machine().cpus.count();
    if count == 1 {
        println!("    psci::secondaries_entered_el1_with_context: no secondary CPUs (-smp 1)");
    }
    // Boot started CPU i with token i (smp::bring_up_secondaries).
    (1..count).try_for_each(|index| check_arrival(index, index as u64))
}

fn cpu_on_already_on(_: &Ctx) -> TestResult {
    for index in 0..machine().cpus.count() {
        expect_eq(
            &format!("CPU_ON of running CPU {index}"),
            smp::cpu_on(index, 0xdead),
            ALREADY_ON as i64,
        )?;
    }
    Ok(())
}

fn cpu_on_invalid_mpidr(_: &Ctx) -> TestResult {
    let entry = smp::secondary_entry();
    for mpidr in [0xff, 0x100, 1 << 32, 1 << 40, u64::MAX] {
        expect_eq(
            &format!("CPU_ON({mpidr:#x})"),
            psci(PSCI_CPU_ON_64, [mpidr, entry, 0]),
            INVALID_PARAMETERS as i64,
        )?;
    }
    Ok(())
}

fn cpu_off_then_on(_: &Ctx) -> TestResult {
    let count = machine().cpus.count();
    if count == 1 {
        println!("    psci::cpu_off_then_on: no secondary CPUs (-smp 1)");
    }
    for index in 1..count {
        let arrivals = smp::boot_block(index).arrivals.load(Ordering::Acquire);
        smp::start_job(index, alloc::boxed::Box::new(smp::power_off_self))?;
        smp::wait_off(index, 5_000)?;
        check(!smp::is_online(index), || {
            format!("CPU {index} still marked online")
        })?;
        // While it is off: a bad entry point is refused and leaves it off.
        for bad_entry in [HYP_BASE, HYP_BASE + 0x1000, smp::secondary_entry() + 2] {
            expect_eq(
                &format!("CPU_ON({index}) at {bad_entry:#x}"),
                smp::cpu_on_at(index, 0, bad_entry),
                INVALID_ADDRESS as i64,
            )?;
        }
        expect_eq(
            &format!("AFFINITY_INFO({index})"),
            smp::affinity_info(index),
            1,
        )?;
        let token = 0x7e57_0000 + index as u64;
        // Odd CPUs come back with the 32-bit CPU_ON (entry and context fit in 32 bits here).
        let status = if index % 2 == 1 {
            smp::cpu_on_32(index, token)
        } else {
            smp::cpu_on(index, token)
        };
        expect_eq(&format!("CPU_ON({index}) again"), status, 0)?;
        smp::wait_arrivals(index, arrivals + 1, 5_000)?;
        check_arrival(index, token)?;
        smp::start_job(
            index,
            alloc::boxed::Box::new(|| expect_eq("CurrentEL", crate::arch::cpu::current_el(), 1)),
        )?;
        smp::wait_job(index, 5_000)?;
    }
    Ok(())
}

fn non_psci_smc_not_supported(_: &Ctx) -> TestResult {
    let refused = [
        // hyptrace's own IDs are hypercalls, not firmware calls.
        hyptrace_abi::HypercallId::Null.function_id() as u64,
        // SiP, OEM, standard-secure non-PSCI, unrelayed PSCI (CPU_SUSPEND, SYSTEM_SUSPEND).
        0x8200_0000,
        0x8300_0000,
        0x8400_0050,
        PSCI_CPU_SUSPEND_64 as u64,
        0xC400_000E,
        0,
        u64::MAX,
    ];
    for x0 in refused {
        let mut regs = [0u64; 18];
        regs[0] = x0;
        let out = smc_raw(regs);
        expect_eq(&format!("SMC {x0:#x}"), out[0] as i64, NOT_SUPPORTED as i64)?;
    }
    // Still relaying afterwards.
    check(psci(PSCI_VERSION, [0; 3]) >= 0x1_0000, || {
        "PSCI_VERSION broken".into()
    })
}

fn smc_nonzero_immediate_not_supported(_: &Ctx) -> TestResult {
    let (x0, x1): (u64, u64);
    // SAFETY: a trapped SMC; the hypervisor only writes X0 (X2, X3 declared clobbered).
    unsafe {
        core::arch::asm!(
            "smc #1",
            inout("x0") PSCI_VERSION as u64 => x0,
            inout("x1") 0x1111u64 => x1,
            out("x2") _,
            out("x3") _,
            options(nostack)
        );
    }
    expect_eq("smc #1 status", x0 as i64, NOT_SUPPORTED as i64)?;
    expect_eq("smc #1 x1", x1, 0x1111)
}

fn smc_preserves_registers(ctx: &Ctx) -> TestResult {
    let mut rng = host_shim::rng::SplitMix64::new(ctx.seed);
    let mut issued = 0;
    for round in 0..400 {
        let mut regs = [0u64; 18];
        for r in regs.iter_mut() {
            *r = rng.edgy();
        }
        // Half the time a harmless relayed call, otherwise whatever the generator chose.
        if rng.below(2) == 0 {
            regs[0] = PSCI_VERSION as u64;
        }
        // Calls that would end or reshape this test are left out.
        let function = regs[0] as u32;
        let disruptive = [
            PSCI_CPU_OFF,
            PSCI_SYSTEM_OFF,
            PSCI_SYSTEM_RESET,
            PSCI_CPU_ON_32,
            PSCI_CPU_ON_64,
        ];
        if disruptive.contains(&function) {
            continue;
        }
        let out = smc_raw(regs);
        issued += 1;
        check(out[1..] == regs[1..], || {
            format!(
                "seed {} round {round}: SMC {:#x} changed x1..x17",
                ctx.seed, regs[0]
            )
        })?;
    }
    check(issued > 100, || format!("only {issued} SMCs issued"))
}
