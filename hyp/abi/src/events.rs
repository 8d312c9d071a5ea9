//! hyptrace's events: IDs, payloads and format text, each defined once.
//!
//! The hypervisor writes them (system `hyp` in trace.dat); the host's trace.dat writer and
//! `cargo xtask report` read the same table. IDs are part of the ABI and never reused.

/// The event system hyptrace's events belong to in trace.dat and tracefs (`hyp:hyp_enter`).
pub const SYSTEM: &str = "hyp";

crate::define_events! {
    /// Entry into the hypervisor from the host (any trap), written first.
    1 => hyp_enter as HypEnter {} print "\" \"";
    /// Return from the hypervisor to the host, written last.
    2 => hyp_exit as HypExit {} print "\" \"";
    /// A host HVC: its function ID (W0) and whether it was refused as unknown.
    3 => host_hcall as HostHcall { id: u32, invalid: u8 }
        print "\"id=0x%x invalid=%u\", REC->id, REC->invalid";
    /// A host SMC: its function ID and whether it was forwarded to the firmware.
    4 => host_smc as HostSmc { id: u64, forwarded: u8 }
        print "\"id=0x%llx forwarded=%u\", REC->id, REC->forwarded";
    /// A host access the hypervisor aborted: the syndrome and the faulting IPA.
    5 => host_mem_abort as HostMemAbort { esr: u64, addr: u64 }
        print "\"esr=0x%llx addr=0x%llx\", REC->esr, REC->addr";
    /// A relayed PSCI CPU_ON: the target MPIDR and the PSCI status returned to the host.
    6 => psci_cpu_on as PsciCpuOn { target: u64, result: i32 }
        print "\"target=0x%llx result=%d\", REC->target, REC->result";
    /// A test event with a sequence number and a payload derived from it.
    7 => selftest as Selftest { seq: u64, payload: u64 }
        print "\"seq=%llu payload=0x%llx\", REC->seq, REC->payload";
}

// `hyp_printk`'s event takes the next ID, so the hypervisor's enable flags stay one dense
// array (IDs 1..=8).
const _: () = assert!(crate::printk::ID as usize == ALL.len() + 1);

/// The event with this ID.
pub fn by_id(id: u16) -> Option<&'static crate::event_format::EventDesc> {
    crate::event_format::find_id(ALL, id)
}

/// The event with this name.
pub fn by_name(name: &str) -> Option<&'static crate::event_format::EventDesc> {
    crate::event_format::find_name(ALL, name)
}

/// The payload a `selftest` event with sequence number `seq` carries, so readers can check
/// every event they decode.
pub const fn selftest_payload(seq: u64) -> u64 {
    seq.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5eed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event_format::{Event, FieldValue};

    #[test]
    fn ids_unique_and_dense() {
        for (i, e) in ALL.iter().enumerate() {
            assert_eq!(e.id as usize, i + 1, "{}", e.name);
            assert_eq!(by_id(e.id), Some(e));
            assert_eq!(by_name(e.name), Some(e));
        }
        assert_eq!(by_id(0), None);
    }

    #[test]
    fn payload_sizes_match_pkvm() {
        assert_eq!(HypEnter::PAYLOAD_LEN, 2);
        assert_eq!(HostHcall::PAYLOAD_LEN, 7);
        assert_eq!(HostSmc::PAYLOAD_LEN, 11);
        assert_eq!(HostMemAbort::PAYLOAD_LEN, 18);
        assert_eq!(PsciCpuOn::PAYLOAD_LEN, 14);
        assert_eq!(Selftest::PAYLOAD_LEN, 18);
    }

    #[test]
    fn encode_then_decode() {
        let e = PsciCpuOn {
            target: 0x8000_0102,
            result: -4,
        };
        let mut buf = [0xaau8; 14];
        e.encode(&mut buf);
        assert_eq!(&buf[..2], &6u16.to_le_bytes());
        let d = PsciCpuOn::DESC;
        assert_eq!(d.field(&buf, 0), Some(FieldValue::Unsigned(0x8000_0102)));
        assert_eq!(d.field(&buf, 1), Some(FieldValue::Signed(-4)));
        assert_eq!(d.field(&buf, 2), None);
        assert_eq!(d.field(&buf[..5], 1), None);
    }

    #[test]
    fn format_text_with_fields() {
        let mut text = String::new();
        HostHcall::DESC.write_format(&mut text).unwrap();
        assert_eq!(
            text,
            "name: host_hcall\nID: 3\nformat:\n\
             \tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\n\
             \tfield:u32 id;\toffset:2;\tsize:4;\tsigned:0;\n\
             \tfield:u8 invalid;\toffset:6;\tsize:1;\tsigned:0;\n\n\
             print fmt: \"id=0x%x invalid=%u\", REC->id, REC->invalid\n"
        );
    }

    #[test]
    fn info_text_renders_the_print_format() {
        let mut buf = [0u8; 7];
        HostHcall {
            id: 0xc600_0013,
            invalid: 1,
        }
        .encode(&mut buf);
        let mut s = String::new();
        HostHcall::DESC.write_info(&buf, &mut s).unwrap();
        assert_eq!(s, "id=0xc6000013 invalid=1");
        let mut s = String::new();
        HostHcall::DESC.write_info(&buf[..4], &mut s).unwrap();
        assert_eq!(s, "id=0x[truncated]");
        let mut buf = [0u8; 14];
        PsciCpuOn {
            target: 0x101,
            result: -4,
        }
        .encode(&mut buf);
        let mut s = String::new();
        PsciCpuOn::DESC.write_info(&buf, &mut s).unwrap();
        assert_eq!(s, "target=0x101 result=-4");
        let mut s = String::new();
        HypEnter::DESC.write_info(&[1, 0], &mut s).unwrap();
        assert_eq!(s, " ");
        let mut s = String::new();
        crate::event_format::write_event_name(&mut s, "host_hcall").unwrap();
        crate::event_format::write_timestamp_us(&mut s, 2_500_000_499).unwrap();
        assert_eq!(s, " host_hcall:                2.500000:");
    }

    #[test]
    fn format_text_without_fields_has_two_blank_lines() {
        let mut text = String::new();
        HypEnter::DESC.write_format(&mut text).unwrap();
        assert!(
            text.ends_with("signed:0;\n\n\nprint fmt: \" \"\n"),
            "{text:?}"
        );
    }
}
