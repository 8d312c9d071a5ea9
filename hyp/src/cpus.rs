//! The power state of the CPUs the hypervisor manages, as the host turns them on and off
//! through the PSCI relay ([`crate::psci`]). The CPU table itself (MPIDRs from the DTB) is
//! [`hyptrace_platform::cpus`], shared with the host image.

pub use hyptrace_platform::cpus::{CpuTable, CpuTableError, MPIDR_AFFINITY_MASK};

use crate::memmap::MAX_CPUS;

/// Power state of one CPU as the hypervisor sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PowerState {
    /// Off (or never started).
    Off,
    /// CPU_ON accepted; the CPU has not reached the hypervisor's entry yet.
    OnPending,
    /// Running at EL1 (or in the hypervisor on its behalf).
    On,
}

/// Where and how the host asked a CPU to start: PSCI CPU_ON's `entry_point_address` and
/// `context_id`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostEntry {
    /// EL1 address at which the CPU enters the host.
    pub entry: u64,
    /// Value the host receives in X0.
    pub context_id: u64,
}

#[derive(Clone, Copy)]
struct Slot {
    state: PowerState,
    host: HostEntry,
}

/// Per-CPU power state and pending host entry points.
///
/// Changes are rare (CPU_ON/CPU_OFF), so one lock guards every CPU's slot: no hand-written
/// atomics protocol is needed here. The lock is never held across a firmware call.
pub struct CpuPower {
    slots: spin::Mutex<[Slot; MAX_CPUS]>,
}

impl Default for CpuPower {
    fn default() -> Self {
        Self::new()
    }
}

impl CpuPower {
    /// Every CPU off.
    pub const fn new() -> Self {
        const OFF: Slot = Slot {
            state: PowerState::Off,
            host: HostEntry {
                entry: 0,
                context_id: 0,
            },
        };
        Self {
            slots: spin::Mutex::new([OFF; MAX_CPUS]),
        }
    }

    /// Current state of CPU `index`.
    pub fn state(&self, index: usize) -> PowerState {
        self.slots.lock()[index].state
    }

    /// Marks CPU `index` as running (the boot CPU at boot).
    pub fn mark_on(&self, index: usize) {
        self.slots.lock()[index].state = PowerState::On;
    }

    /// Marks CPU `index` as off: it is about to call the firmware's CPU_OFF. If that call
    /// fails the CPU is still running and calls [`mark_on`](Self::mark_on).
    pub fn mark_off(&self, index: usize) {
        self.slots.lock()[index].state = PowerState::Off;
    }

    /// Undoes a [`claim_for_on`](Self::claim_for_on) whose firmware call failed: back to
    /// `Off`, but only if the claim is still pending. If the CPU meanwhile came back from a
    /// failed CPU_OFF and marked itself on, it stays on.
    pub fn abandon_claim(&self, index: usize) {
        let mut slots = self.slots.lock();
        if slots[index].state == PowerState::OnPending {
            slots[index].state = PowerState::Off;
        }
    }

    /// Claims an off CPU for CPU_ON and records where the host wants it to start. Returns the
    /// state that prevented the claim otherwise.
    pub fn claim_for_on(&self, index: usize, host: HostEntry) -> Result<(), PowerState> {
        let mut slots = self.slots.lock();
        let slot = &mut slots[index];
        if slot.state != PowerState::Off {
            return Err(slot.state);
        }
        *slot = Slot {
            state: PowerState::OnPending,
            host,
        };
        Ok(())
    }

    /// Called on a freshly started CPU: returns the host's entry point and marks it on.
    /// `None` if the CPU was not started through [`claim_for_on`](Self::claim_for_on).
    pub fn take_host_entry(&self, index: usize) -> Option<HostEntry> {
        let mut slots = self.slots.lock();
        let slot = &mut slots[index];
        if slot.state != PowerState::OnPending {
            return None;
        }
        slot.state = PowerState::On;
        Some(slot.host)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_cpu_off_racing_a_claim_leaves_the_cpu_on() {
        let p = CpuPower::new();
        let host = HostEntry {
            entry: 0x4100_0000,
            context_id: 1,
        };
        p.mark_on(1);
        // CPU 1 starts CPU_OFF; CPU 0 claims it before the firmware answers.
        p.mark_off(1);
        assert_eq!(p.claim_for_on(1, host), Ok(()));
        // The firmware refuses CPU 1's CPU_OFF: it is running.
        p.mark_on(1);
        // CPU 0's CPU_ON gets ALREADY_ON from the firmware and abandons its claim.
        p.abandon_claim(1);
        assert_eq!(p.state(1), PowerState::On);
        // A genuinely failed claim goes back to off.
        p.mark_off(2);
        assert_eq!(p.claim_for_on(2, host), Ok(()));
        p.abandon_claim(2);
        assert_eq!(p.state(2), PowerState::Off);
    }

    #[test]
    fn power_state_machine() {
        let p = CpuPower::new();
        let host = HostEntry {
            entry: 0x4100_0000,
            context_id: 7,
        };
        assert_eq!(p.state(1), PowerState::Off);
        assert_eq!(p.claim_for_on(1, host), Ok(()));
        assert_eq!(p.claim_for_on(1, host), Err(PowerState::OnPending));
        assert_eq!(p.take_host_entry(1), Some(host));
        assert_eq!(
            p.take_host_entry(1),
            None,
            "a running CPU has no pending entry"
        );
        assert_eq!(p.state(1), PowerState::On);
        assert_eq!(p.claim_for_on(1, host), Err(PowerState::On));
        p.mark_off(1);
        assert_eq!(
            p.take_host_entry(1),
            None,
            "an off CPU has no pending entry"
        );
        assert_eq!(p.claim_for_on(1, host), Ok(()));
    }
}
