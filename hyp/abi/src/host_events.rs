//! The host's own events: what host-shim records in its own buffer, beside the hypervisor's.
//!
//! They are the kernel's kind of event: each payload starts with ftrace's full common header
//! ([`Header::Ftrace`](crate::event_format::Header::Ftrace): type, flags, preempt count, pid),
//! where the hypervisor's events keep pKVM's `common_type` alone. Their IDs share one
//! namespace with [`events`](crate::events) (a trace.dat holds both), so they start at
//! [`FIRST_ID`], far above the hypervisor's.
//!
//! Every hypercall the host issues is bracketed by [`HvcCall`] and [`HvcReturn`], and every
//! SMC by [`SmcCall`] and [`SmcReturn`]; the hypervisor's `hyp_enter`, `host_hcall` or
//! `host_smc`, and `hyp_exit` fall between them on the one clock both sides use.

/// The event system the host's events belong to in trace.dat (`host:hvc_call`).
pub const SYSTEM: &str = "host";

/// The lowest host event ID. Hypervisor event IDs stay below it.
pub const FIRST_ID: u16 = 1001;

crate::define_events! {
    header: Ftrace;
    /// Just before the host issues `HVC #0`: its function ID (W0) and first argument (X1).
    1001 => hvc_call as HvcCall { id: u32, arg0: u64 }
        print "\"id=0x%x arg0=0x%llx\", REC->id, REC->arg0";
    /// Just after the HVC returns: the function ID and X0 (the status: negative is an error).
    1002 => hvc_return as HvcReturn { id: u32, ret: i64 }
        print "\"id=0x%x ret=%lld\", REC->id, REC->ret";
    /// Just before the host issues `SMC #0` (a PSCI call the hypervisor relays): X0 and X1.
    1003 => smc_call as SmcCall { fid: u64, arg0: u64 }
        print "\"fid=0x%llx arg0=0x%llx\", REC->fid, REC->arg0";
    /// Just after the SMC returns: the function ID and X0 (the PSCI status).
    1004 => smc_return as SmcReturn { fid: u64, ret: i64 }
        print "\"fid=0x%llx ret=%lld\", REC->fid, REC->ret";
    /// The reader polled a CPU's hypervisor buffer (`ring_buffer_poke`): whether unread
    /// events were waiting.
    1005 => reader_poll as ReaderPoll { cpu: u32, pending: u8 }
        print "\"cpu=%u pending=%u\", REC->cpu, REC->pending";
    /// The reader asked the hypervisor to swap a CPU's reader page: whether it swapped, and
    /// the events lost to overwrite since the previous swap.
    1006 => reader_swap as ReaderSwap { cpu: u32, swapped: u8, lost: u64 }
        print "\"cpu=%u swapped=%u lost=%llu\", REC->cpu, REC->swapped, REC->lost";
    /// A phase of the workload began (see [`Phase`]).
    1007 => workload as Workload { phase: u32 }
        print "\"phase=%u\", REC->phase";
}

/// The phases [`Workload`] marks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Phase {
    /// The recording began on this CPU.
    Start = 0,
    /// A slice of the default workload: hypercalls, a PSCI call, a refused access, selftest.
    Slice = 1,
    /// The recording is ending on this CPU.
    Stop = 2,
}

/// The event with this ID.
pub fn by_id(id: u16) -> Option<&'static crate::event_format::EventDesc> {
    crate::event_format::find_id(ALL, id)
}

/// The event with this name.
pub fn by_name(name: &str) -> Option<&'static crate::event_format::EventDesc> {
    crate::event_format::find_name(ALL, name)
}

/// The `common_pid` the host gives the events of CPU `cpu`'s job: one task per host CPU.
pub const fn task_pid(cpu: u32) -> i32 {
    100 + cpu as i32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event_format::{set_common_pid, Event, FieldValue, Header};

    #[test]
    fn ids_are_dense_and_above_the_hypervisors() {
        for (i, e) in ALL.iter().enumerate() {
            assert_eq!(e.id, FIRST_ID + i as u16, "{}", e.name);
            assert_eq!(e.header, Header::Ftrace);
            assert_eq!(by_id(e.id), Some(e));
            assert_eq!(by_name(e.name), Some(e));
            assert!(crate::events::by_id(e.id).is_none());
            assert!(crate::events::by_name(e.name).is_none());
        }
        let highest_hyp = crate::events::ALL.iter().map(|e| e.id).max().unwrap();
        assert!(highest_hyp < FIRST_ID);
    }

    #[test]
    fn payloads_carry_the_ftrace_header() {
        let e = HvcReturn {
            id: 0xC600_0001,
            ret: -3,
        };
        let mut buf = [0xaau8; HvcReturn::PAYLOAD_LEN];
        assert_eq!(buf.len(), 8 + 4 + 8);
        e.encode(&mut buf);
        set_common_pid(&mut buf, task_pid(2));
        assert_eq!(&buf[..8], &[0xea, 0x03, 0, 0, 102, 0, 0, 0]);
        let d = HvcReturn::DESC;
        assert_eq!(d.offset_of(0), 8);
        assert_eq!(d.field(&buf, 0), Some(FieldValue::Unsigned(0xC600_0001)));
        assert_eq!(d.field(&buf, 1), Some(FieldValue::Signed(-3)));
    }

    #[test]
    fn format_text_has_the_four_common_fields() {
        let mut text = String::new();
        Workload::DESC.write_format(&mut text).unwrap();
        assert_eq!(
            text,
            "name: workload\nID: 1007\nformat:\n\
             \tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\
             \tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;\n\
             \tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;\n\
             \tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n\n\
             \tfield:u32 phase;\toffset:8;\tsize:4;\tsigned:0;\n\n\
             print fmt: \"phase=%u\", REC->phase\n"
        );
    }
}
