//! Decoding and dispatch of host hypercalls (HVC from EL1).
//!
//! [`handle_hvc`] takes the caller's X0..X4 and returns the values to place back into X0..X3.
//! It never fails: an unknown or malformed function ID answers SMCCC `NOT_SUPPORTED`, a
//! refused call a negative [`HypError`] code, and either leaves X1..X3 and all hypervisor state
//! as they were.

use crate::abi::calls::{ok_regs, Call};
use crate::abi::hypercall::{ABI_VERSION, SMCCC_NOT_SUPPORTED};
use crate::abi::{HypError, Info, PrintkFormats, RingCounters, SwapResult};
use crate::tracing::memory_rules::MemoryRules;
use crate::tracing::TracingService;

/// What the dispatcher needs to know about the calling CPU and the system.
///
/// `C` reads the trace clock's counter: the architecture's counter read as a function item
/// (so the selftest loop inlines it instead of calling through a pointer), or a closure in
/// tests.
pub struct Context<'a, C: Fn() -> u64 = fn() -> u64> {
    /// Index of the CPU that issued the call.
    pub cpu: usize,
    /// Number of CPUs the hypervisor manages.
    pub nr_cpus: usize,
    /// The tracing service.
    pub tracing: &'static TracingService,
    /// Which memory the host may name.
    pub rules: &'a MemoryRules,
    /// Reads the trace clock's counter.
    pub counter: C,
}

/// The decoded outcome of one hypercall, before it is written back to registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HvcOutcome {
    /// The call was recognised and answered: X0 = 0, X1..X3 = the results.
    Ok([u64; 3]),
    /// The call was refused: X0 = the negative code, X1..X3 unchanged.
    Err(i64),
}

impl HvcOutcome {
    /// Register image X0..X3 for a caller whose X1..X3 were `x[1..4]`.
    pub fn to_regs(self, x: &[u64; 5]) -> [u64; 4] {
        match self {
            Self::Ok(results) => ok_regs(results),
            Self::Err(code) => [code as u64, x[1], x[2], x[3]],
        }
    }
}

impl From<Result<[u64; 3], HypError>> for HvcOutcome {
    fn from(r: Result<[u64; 3], HypError>) -> Self {
        match r {
            Ok(v) => Self::Ok(v),
            Err(e) => Self::Err(e.code()),
        }
    }
}

/// Decodes and executes a hypercall with registers X0..X4.
///
/// # Safety
///
/// As [`TracingService::load`]: every page-aligned address inside `ctx.rules.ram` and outside
/// `ctx.rules.hyp` must be host memory that the tracing service's `HostMemory` makes
/// accessible at the same address while it is mapped.
pub unsafe fn dispatch<C: Fn() -> u64>(x: &[u64; 5], ctx: &Context<'_, C>) -> HvcOutcome {
    let Some(call) = Call::from_regs(x) else {
        return HvcOutcome::Err(SMCCC_NOT_SUPPORTED);
    };
    let t = ctx.tracing;
    let done = |r: Result<(), HypError>| r.map(|()| [0; 3]);
    let result = match call {
        Call::Null { args } => Ok(args),
        Call::Info => Ok(Info {
            abi_version: ABI_VERSION,
            nr_cpus: ctx.nr_cpus as u64,
            cpu: ctx.cpu as u64,
        }
        .to_regs()),
        Call::LoadTracing { pack_pa, pack_size } => {
            // SAFETY: forwarded from this function's contract.
            done(unsafe { t.load(pack_pa, pack_size, ctx.rules, ctx.nr_cpus) })
        }
        Call::TeardownTracing => done(t.teardown()),
        Call::EnableTracing { enable } => done(t.enable(enable)),
        Call::SwapReader { cpu } => t.swap_reader(cpu).map(SwapResult::to_regs),
        Call::UpdateFooters { cpu } => t.update_footers(cpu).map(RingCounters::to_regs),
        Call::EnableEvent { id, enable } => done(t.enable_event(id, enable)),
        Call::UpdateClock {
            mult,
            shift,
            epoch_ns,
            epoch_cyc,
        } => done(t.update_clock(mult, shift, epoch_ns, epoch_cyc)),
        Call::ResetTracing { cpu } => done(t.reset(cpu)),
        Call::WriteSelftest { first_seq, count } => t
            .write_selftest(ctx.cpu, &ctx.counter, first_seq, count)
            .map(|n| [n, 0, 0]),
        Call::PrintkFormats { page_pa, first } => {
            // SAFETY: forwarded from this function's contract.
            unsafe { t.printk_formats(page_pa, first, ctx.rules, &crate::printk::SITES) }
                .map(PrintkFormats::to_regs)
        }
    };
    result.into()
}

/// [`dispatch`] followed by [`HvcOutcome::to_regs`].
///
/// # Safety
///
/// As [`dispatch`].
pub unsafe fn handle_hvc<C: Fn() -> u64>(x: &[u64; 5], ctx: &Context<'_, C>) -> [u64; 4] {
    // SAFETY: forwarded from this function's contract.
    unsafe { dispatch(x, ctx) }.to_regs(x)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi::HypercallId;

    static STORAGE: crate::tracing::TracingStorage = crate::tracing::TracingStorage::new();
    static TRACING: TracingService =
        TracingService::new(&STORAGE, &crate::tracing::host_memory::IdentityMapped);

    fn ctx(rules: &MemoryRules) -> Context<'_> {
        Context {
            cpu: 2,
            nr_cpus: 4,
            tracing: &TRACING,
            rules,
            counter: || 0,
        }
    }

    fn call(x: [u64; 5]) -> [u64; 4] {
        let rules = MemoryRules {
            ram: 0x4000_0000..0x8000_0000,
            hyp: 0x4020_0000..0x4100_0000,
        };
        // SAFETY: every call here is refused before touching memory (nothing is loaded and
        // the only load attempted names the hypervisor's region).
        unsafe { handle_hvc(&x, &ctx(&rules)) }
    }

    #[test]
    fn null_echoes_arguments() {
        let id = HypercallId::Null.function_id() as u64;
        assert_eq!(call([id, 1, 2, 3, 4]), [0, 1, 2, 3]);
    }

    #[test]
    fn info_reports_version_cpus_and_caller() {
        let id = HypercallId::Info.function_id() as u64;
        assert_eq!(call([id, 9, 9, 9, 9]), [0, ABI_VERSION, 4, 2]);
    }

    #[test]
    fn unknown_ids_are_not_supported_and_leave_registers() {
        for x0 in [
            0u64,
            0xC600_0002,
            0xC600_FFFF,
            0x8600_0000,
            0x8400_0000,
            u64::MAX,
        ] {
            assert_eq!(
                call([x0, 0xaaaa, 0xbbbb, 0xcccc, 0]),
                [u64::MAX, 0xaaaa, 0xbbbb, 0xcccc],
                "{x0:#x}"
            );
        }
    }

    #[test]
    fn tracing_calls_are_routed_and_refusals_keep_registers() {
        let f = |id: HypercallId| id.function_id() as u64;
        let not_loaded = HypError::NotLoaded.to_x0();
        for id in [
            HypercallId::TeardownTracing,
            HypercallId::EnableTracing,
            HypercallId::SwapReader,
            HypercallId::UpdateFooters,
            HypercallId::EnableEvent,
            HypercallId::UpdateClock,
            HypercallId::ResetTracing,
        ] {
            assert_eq!(
                call([f(id), 7, 8, 9, 10]),
                [not_loaded, 7, 8, 9],
                "{}",
                id.name()
            );
        }
        let load = f(HypercallId::LoadTracing);
        assert_eq!(
            call([load, 0x4020_0000, 0x1000, 9, 0])[0],
            HypError::PageInHyp.to_x0()
        );
        let selftest = f(HypercallId::WriteSelftest);
        assert_eq!(call([selftest, 0, 10, 0, 0]), [not_loaded, 0, 10, 0]);
    }

    #[test]
    fn garbage_in_upper_bits_of_x0_is_ignored() {
        let x0 = 0xffff_ffff_0000_0000 | HypercallId::Null.function_id() as u64;
        assert_eq!(call([x0, 5, 6, 7, 8]), [0, 5, 6, 7]);
    }
}
