//! The PSCI relay: what the hypervisor does with an SMC the host executed.
//!
//! `HCR_EL2.TSC` traps every host SMC. PSCI calls the host needs are checked here and forwarded
//! to the firmware; CPU_ON is rewritten so that the new CPU starts in the hypervisor (QEMU starts
//! CPUs at EL2 whatever the caller's EL, so forwarding the host's entry point would hand the host
//! EL2). Everything else is answered with `NOT_SUPPORTED`. The firmware conduit is behind the
//! [`Firmware`] trait so this logic is tested on the development machine.

use core::ops::Range;

use smccc::psci::{
    error::{ALREADY_ON, INVALID_ADDRESS, INVALID_PARAMETERS, NOT_SUPPORTED, ON_PENDING},
    PSCI_AFFINITY_INFO_32, PSCI_AFFINITY_INFO_64, PSCI_CPU_OFF, PSCI_CPU_ON_32, PSCI_CPU_ON_64,
    PSCI_FEATURES, PSCI_SYSTEM_OFF, PSCI_SYSTEM_RESET, PSCI_VERSION,
};

use crate::cpus::{CpuPower, CpuTable, HostEntry, PowerState, MPIDR_AFFINITY_MASK};

/// The PSCI functions relayed to the firmware. Any other function ID is refused.
pub const RELAYED: [u32; 9] = [
    PSCI_VERSION,
    PSCI_FEATURES,
    PSCI_CPU_ON_32,
    PSCI_CPU_ON_64,
    PSCI_CPU_OFF,
    PSCI_AFFINITY_INFO_32,
    PSCI_AFFINITY_INFO_64,
    PSCI_SYSTEM_OFF,
    PSCI_SYSTEM_RESET,
];

/// Whether the W0 of a host SMC names a PSCI function the hypervisor relays.
pub fn is_relayed(x0: u64) -> bool {
    RELAYED.contains(&(x0 as u32))
}

/// The firmware's SMC conduit (PSCI calls with up to three arguments).
pub trait Firmware {
    /// Issues `SMC #0` with W0 = `function` and X1..X3 = `args`; returns X0.
    fn call(&self, function: u32, args: [u64; 3]) -> u64;
}

/// Everything the relay needs to know about the system.
pub struct Relay<'a> {
    /// CPUs discovered at boot.
    pub cpus: &'a CpuTable,
    /// Their power state and pending host entry points.
    pub power: &'a CpuPower,
    /// Physical address of the hypervisor's secondary-CPU entry point.
    pub hyp_secondary_entry: u64,
    /// RAM the host may run code from (host RAM; the hypervisor's region is excluded
    /// separately).
    pub ram: Range<u64>,
    /// The hypervisor's private region: never a valid host entry point.
    pub hyp_region: Range<u64>,
}

fn status(code: i32) -> u64 {
    code as i64 as u64
}

impl Relay<'_> {
    /// Handles a trapped SMC from CPU `caller` with registers X0..X3; returns the value for the
    /// host's X0. For a successful CPU_OFF the firmware call does not return.
    pub fn handle(&self, caller: usize, x: [u64; 4], fw: &impl Firmware) -> u64 {
        let function = x[0] as u32;
        match function {
            PSCI_VERSION | PSCI_SYSTEM_OFF | PSCI_SYSTEM_RESET => fw.call(function, [0; 3]),
            PSCI_FEATURES => {
                if is_relayed(x[1]) {
                    fw.call(function, [x[1] as u32 as u64, 0, 0])
                } else {
                    status(NOT_SUPPORTED)
                }
            }
            PSCI_AFFINITY_INFO_64 => fw.call(function, [x[1], x[2], 0]),
            PSCI_AFFINITY_INFO_32 => fw.call(function, [x[1] as u32 as u64, x[2] as u32 as u64, 0]),
            PSCI_CPU_ON_64 => self.cpu_on(x[1], x[2], x[3], fw),
            PSCI_CPU_ON_32 => self.cpu_on(
                x[1] as u32 as u64,
                x[2] as u32 as u64,
                x[3] as u32 as u64,
                fw,
            ),
            PSCI_CPU_OFF => {
                self.power.mark_off(caller);
                let result = fw.call(function, [0; 3]);
                // Only reached when the firmware refused: the CPU is still running.
                self.power.mark_on(caller);
                result
            }
            _ => status(NOT_SUPPORTED),
        }
    }

    fn cpu_on(&self, target: u64, entry: u64, context_id: u64, fw: &impl Firmware) -> u64 {
        if target & !MPIDR_AFFINITY_MASK != 0 {
            crate::hyp_printk!("CPU_ON refused: target {:#x} has non-affinity bits", target);
            return status(INVALID_PARAMETERS);
        }
        let Some(index) = self.cpus.index_of(target) else {
            crate::hyp_printk!("CPU_ON refused: no CPU has MPIDR {:#x}", target);
            return status(INVALID_PARAMETERS);
        };
        if !entry.is_multiple_of(4)
            || !self.ram.contains(&entry)
            || self.hyp_region.contains(&entry)
        {
            crate::hyp_printk!(
                "CPU_ON refused: entry {:#x} for CPU {} is unaligned, outside RAM or in the hypervisor",
                entry,
                index
            );
            return status(INVALID_ADDRESS);
        }
        match self
            .power
            .claim_for_on(index, HostEntry { entry, context_id })
        {
            Ok(()) => {}
            Err(PowerState::On) => {
                crate::hyp_printk!("CPU_ON refused: CPU {} is already on", index);
                return status(ALREADY_ON);
            }
            Err(_) => {
                crate::hyp_printk!("CPU_ON refused: CPU {} has a CPU_ON pending", index);
                return status(ON_PENDING);
            }
        }
        let result = fw.call(
            PSCI_CPU_ON_64,
            [target, self.hyp_secondary_entry, index as u64],
        );
        if result != 0 {
            // The firmware did not start it (e.g. it is still running a failed CPU_OFF).
            self.power.abandon_claim(index);
            crate::hyp_printk!(
                "CPU_ON of CPU {}: the firmware refused with {:i}",
                index,
                result as i64
            );
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    struct FakeFirmware {
        calls: RefCell<Vec<(u32, [u64; 3])>>,
        answer: u64,
    }

    impl FakeFirmware {
        fn new(answer: u64) -> Self {
            Self {
                calls: RefCell::new(Vec::new()),
                answer,
            }
        }
    }

    impl Firmware for FakeFirmware {
        fn call(&self, function: u32, args: [u64; 3]) -> u64 {
            self.calls.borrow_mut().push((function, args));
            self.answer
        }
    }

    const HYP_ENTRY: u64 = 0x4020_1000;

    fn with_relay(f: impl FnOnce(&Relay)) {
        let cpus = CpuTable::new([0, 1, 2, 3]).unwrap();
        let power = CpuPower::new();
        power.mark_on(0);
        let relay = Relay {
            cpus: &cpus,
            power: &power,
            hyp_secondary_entry: HYP_ENTRY,
            ram: 0x4000_0000..0x8000_0000,
            hyp_region: 0x4020_0000..0x4100_0000,
        };
        f(&relay);
    }

    #[test]
    fn cpu_on_starts_target_in_the_hypervisor() {
        with_relay(|r| {
            let fw = FakeFirmware::new(0);
            let x0 = r.handle(0, [PSCI_CPU_ON_64 as u64, 2, 0x4100_0040, 0xc0ffee], &fw);
            assert_eq!(x0, 0);
            // The firmware gets the hypervisor's entry and the CPU index, never the host's.
            assert_eq!(
                *fw.calls.borrow(),
                vec![(PSCI_CPU_ON_64, [2, HYP_ENTRY, 2])]
            );
            assert_eq!(r.power.state(2), PowerState::OnPending);
            assert_eq!(
                r.power.take_host_entry(2),
                Some(HostEntry {
                    entry: 0x4100_0040,
                    context_id: 0xc0ffee
                })
            );
        });
    }

    #[test]
    fn cpu_on_refusals() {
        with_relay(|r| {
            let fw = FakeFirmware::new(0);
            let on = PSCI_CPU_ON_64 as u64;
            let bad = |x0: u64| x0 as i64 as i32;
            assert_eq!(
                bad(r.handle(0, [on, 9, 0x4100_0000, 0], &fw)),
                INVALID_PARAMETERS
            );
            assert_eq!(
                bad(r.handle(0, [on, 1 << 45, 0x4100_0000, 0], &fw)),
                INVALID_PARAMETERS
            );
            assert_eq!(
                bad(r.handle(0, [on, 1, 0x4020_0000, 0], &fw)),
                INVALID_ADDRESS
            );
            assert_eq!(
                bad(r.handle(0, [on, 1, 0x4100_0002, 0], &fw)),
                INVALID_ADDRESS
            );
            assert_eq!(
                bad(r.handle(0, [on, 1, 0x0900_0000, 0], &fw)),
                INVALID_ADDRESS
            );
            assert_eq!(bad(r.handle(0, [on, 0, 0x4100_0000, 0], &fw)), ALREADY_ON);
            assert!(
                fw.calls.borrow().is_empty(),
                "refused calls never reach firmware"
            );
            assert_eq!(r.handle(0, [on, 1, 0x4100_0000, 0], &fw), 0);
            assert_eq!(bad(r.handle(0, [on, 1, 0x4100_0000, 0], &fw)), ON_PENDING);
        });
    }

    #[test]
    fn firmware_refusal_returns_cpu_to_off() {
        with_relay(|r| {
            let fw = FakeFirmware::new(status(ALREADY_ON));
            let x0 = r.handle(0, [PSCI_CPU_ON_64 as u64, 3, 0x4100_0000, 0], &fw);
            assert_eq!(x0, status(ALREADY_ON));
            assert_eq!(r.power.state(3), PowerState::Off);
        });
    }

    #[test]
    fn cpu_off_marks_caller_and_restores_on_failure() {
        with_relay(|r| {
            let fw = FakeFirmware::new(status(-3));
            assert_eq!(r.handle(0, [PSCI_CPU_OFF as u64, 0, 0, 0], &fw), status(-3));
            assert_eq!(r.power.state(0), PowerState::On);
            assert_eq!(*fw.calls.borrow(), vec![(PSCI_CPU_OFF, [0; 3])]);
        });
    }

    #[test]
    fn features_only_for_relayed_functions() {
        with_relay(|r| {
            let fw = FakeFirmware::new(0);
            let f = PSCI_FEATURES as u64;
            assert_eq!(r.handle(0, [f, PSCI_CPU_ON_64 as u64, 0, 0], &fw), 0);
            // CPU_SUSPEND is not relayed, so not advertised.
            assert_eq!(
                r.handle(0, [f, 0xC400_0001, 0, 0], &fw),
                status(NOT_SUPPORTED)
            );
            assert_eq!(fw.calls.borrow().len(), 1);
        });
    }

    #[test]
    fn non_psci_and_unrelayed_smcs_are_not_supported() {
        with_relay(|r| {
            let fw = FakeFirmware::new(0);
            for x0 in [
                0u64,
                0xC600_0000,
                0x8400_0001,
                0xC400_000E,
                0x8200_0000,
                u64::MAX,
            ] {
                assert_eq!(
                    r.handle(1, [x0, 1, 2, 3], &fw),
                    status(NOT_SUPPORTED),
                    "{x0:#x}"
                );
            }
            assert!(fw.calls.borrow().is_empty());
        });
    }

    #[test]
    fn thirty_two_bit_variants_ignore_upper_halves() {
        with_relay(|r| {
            let fw = FakeFirmware::new(0);
            let junk = 0xdead_beef_0000_0000;
            let x = [
                PSCI_CPU_ON_32 as u64 | junk,
                3 | junk,
                0x4100_0000 | junk,
                7 | junk,
            ];
            assert_eq!(r.handle(0, x, &fw), 0);
            assert_eq!(fw.calls.borrow()[0], (PSCI_CPU_ON_64, [3, HYP_ENTRY, 3]));
            assert_eq!(
                r.power.take_host_entry(3),
                Some(HostEntry {
                    entry: 0x4100_0000,
                    context_id: 7
                })
            );
            r.handle(0, [PSCI_AFFINITY_INFO_32 as u64, 2 | junk, junk, 0], &fw);
            assert_eq!(fw.calls.borrow()[1], (PSCI_AFFINITY_INFO_32, [2, 0, 0]));
            r.handle(
                0,
                [PSCI_FEATURES as u64, PSCI_CPU_OFF as u64 | junk, 0, 0],
                &fw,
            );
            assert_eq!(
                fw.calls.borrow()[2],
                (PSCI_FEATURES, [PSCI_CPU_OFF as u64, 0, 0])
            );
        });
    }

    #[test]
    fn sixty_four_bit_context_id_is_kept_whole() {
        with_relay(|r| {
            let fw = FakeFirmware::new(0);
            let ctx = 0xfedc_ba98_7654_3210;
            assert_eq!(
                r.handle(0, [PSCI_CPU_ON_64 as u64, 1, 0x4100_0000, ctx], &fw),
                0
            );
            assert_eq!(r.power.take_host_entry(1).map(|h| h.context_id), Some(ctx));
        });
    }

    #[test]
    fn entry_boundaries() {
        with_relay(|r| {
            let fw = FakeFirmware::new(0);
            let on = |target: u64, entry: u64| {
                r.handle(0, [PSCI_CPU_ON_64 as u64, target, entry, 0], &fw) as i64 as i32
            };
            // Last word of RAM and first word after the hypervisor are fine.
            assert_eq!(on(1, 0x7fff_fffc), 0);
            assert_eq!(on(2, 0x4100_0000), 0);
            // First byte past RAM, last word of the hypervisor, first word of RAM below it.
            assert_eq!(on(3, 0x8000_0000), INVALID_ADDRESS);
            assert_eq!(on(3, 0x40ff_fffc), INVALID_ADDRESS);
            assert_eq!(on(3, 0x3fff_fffc), INVALID_ADDRESS);
        });
    }

    #[test]
    fn system_off_and_reset_are_forwarded_without_arguments() {
        with_relay(|r| {
            let fw = FakeFirmware::new(0);
            r.handle(0, [PSCI_SYSTEM_OFF as u64, 1, 2, 3], &fw);
            r.handle(0, [PSCI_SYSTEM_RESET as u64, 1, 2, 3], &fw);
            assert_eq!(
                *fw.calls.borrow(),
                vec![(PSCI_SYSTEM_OFF, [0; 3]), (PSCI_SYSTEM_RESET, [0; 3])]
            );
        });
    }

    #[test]
    fn simple_calls_are_forwarded() {
        with_relay(|r| {
            let fw = FakeFirmware::new(0x10001);
            assert_eq!(r.handle(0, [PSCI_VERSION as u64, 0, 0, 0], &fw), 0x10001);
            r.handle(0, [PSCI_AFFINITY_INFO_64 as u64, 2, 0, 0], &fw);
            assert_eq!(fw.calls.borrow()[1], (PSCI_AFFINITY_INFO_64, [2, 0, 0]));
        });
    }
}
