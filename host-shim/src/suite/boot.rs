//! `boot::` — every CPU reached EL1, and the hypervisor sees the machine the DTB describes.

use host_shim::harness::{TestCase, TestResult};
use hyptrace_abi::HypercallId;

use super::{expect_eq, Ctx};
use crate::arch::boot::machine;
use crate::arch::calls::hypercall;
use crate::arch::{cpu, smp};

/// The `boot::` group.
pub const TESTS: &[TestCase<Ctx>] = &[
    TestCase {
        group: "boot",
        name: "every_cpu_at_el1",
        run: every_cpu_at_el1,
    },
    TestCase {
        group: "boot",
        name: "hyp_cpu_count_matches_dtb",
        run: hyp_cpu_count_matches_dtb,
    },
    TestCase {
        group: "boot",
        name: "hyp_knows_each_caller",
        run: hyp_knows_each_caller,
    },
    TestCase {
        group: "boot",
        name: "host_owns_fp_sve_and_pauth",
        run: host_owns_fp_sve_and_pauth,
    },
];

fn every_cpu_at_el1(_: &Ctx) -> TestResult {
    let count = machine().cpus.count();
    let online = (0..count).filter(|i| smp::is_online(*i)).count();
    expect_eq("CPUs online", online, count)?;
    smp::run_everywhere(|_| expect_eq("CurrentEL", cpu::current_el(), 1), 5_000)
}

fn hyp_cpu_count_matches_dtb(_: &Ctx) -> TestResult {
    let [status, version, nr_cpus, _] = hypercall(HypercallId::Info, [0; 3]);
    expect_eq("info status", status as i64, 0)?;
    expect_eq("ABI version", version, hyptrace_abi::hypercall::ABI_VERSION)?;
    expect_eq(
        "hypervisor CPU count vs DTB",
        nr_cpus,
        machine().cpus.count() as u64,
    )
}

fn hyp_knows_each_caller(_: &Ctx) -> TestResult {
    smp::run_everywhere(
        |index| {
            let [_, _, _, caller] = hypercall(HypercallId::Info, [0; 3]);
            expect_eq("caller index seen by the hypervisor", caller, index as u64)
        },
        5_000,
    )
}

/// The host may use FP/SIMD, SVE and pointer authentication where the CPU has them: none of
/// them traps to the hypervisor (which would end or disturb the host).
fn host_owns_fp_sve_and_pauth(_: &Ctx) -> TestResult {
    smp::run_everywhere(
        |_| {
            let x = core::hint::black_box(1.5f64);
            expect_eq("FP arithmetic", core::hint::black_box(x * 2.0 + 0.25), 3.25)?;
            if let Some(vl) = cpu::sve_vector_length() {
                super::check(vl >= 16 && vl % 16 == 0, || {
                    alloc::format!("SVE vector length {vl} bytes")
                })?;
            }
            if cpu::has_pointer_auth() {
                // Different inputs must give different generic PACs.
                let a = cpu::pacga(0x1234, 0x5678);
                let b = cpu::pacga(0x1235, 0x5678);
                super::check(a != b, || alloc::format!("PACGA gave {a:#x} twice"))?;
            }
            Ok(())
        },
        5_000,
    )
}
