//! The host's own events, recorded in [`HOST`] by the calling CPU at the current counter
//! value: the glue between [`host_shim::host_trace`] (portable) and this CPU's registers.
//!
//! The hypercall and SMC wrappers (`arch::calls`) bracket every call with
//! `hvc_call`/`hvc_return` or `smc_call`/`smc_return`; the recorder adds `reader_poll`,
//! `reader_swap` and `workload`. Nothing is written unless a recording started the buffer.

use host_shim::host_trace::HostRings;
use hyptrace_abi::event_format::Event;
use hyptrace_abi::host_events::{HvcCall, HvcReturn, SmcCall, SmcReturn};
use hyptrace_platform::memmap::MAX_CPUS;

use crate::arch::cpu;

/// The host's buffer: one ring per CPU.
pub static HOST: HostRings<MAX_CPUS> = HostRings::new();

/// Records `event` on the calling CPU's ring, stamped now. A load and a branch when the
/// host is not recording.
#[inline]
pub fn emit<E: Event>(event: &E) {
    HOST.emit(|| (cpu::index(), cpu::counter()), event);
}

/// Just before `HVC #0` with W0 = `fid` and X1 = `arg0`.
#[inline]
pub fn hvc_call(fid: u64, arg0: u64) {
    emit(&HvcCall {
        id: fid as u32,
        arg0,
    });
}

/// Just after the HVC returned X0 = `ret`.
#[inline]
pub fn hvc_return(fid: u64, ret: u64) {
    emit(&HvcReturn {
        id: fid as u32,
        ret: ret as i64,
    });
}

/// Just before `SMC #0` with X0 = `fid` and X1 = `arg0`.
#[inline]
pub fn smc_call(fid: u64, arg0: u64) {
    emit(&SmcCall { fid, arg0 });
}

/// Just after the SMC returned X0 = `ret`.
#[inline]
pub fn smc_return(fid: u64, ret: u64) {
    emit(&SmcReturn {
        fid,
        ret: ret as i64,
    });
}
