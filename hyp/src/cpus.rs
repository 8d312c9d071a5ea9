//! The CPUs the hypervisor manages: their MPIDRs (from the DTB) and their power state.
//!
//! The table is built once by the boot CPU and read-only afterwards. Power state changes as the
//! host turns CPUs on and off through the PSCI relay ([`crate::psci`]).

use crate::memmap::MAX_CPUS;

/// The affinity fields of MPIDR_EL1 (Aff3, Aff2, Aff1, Aff0); PSCI target IDs use this format.
pub const MPIDR_AFFINITY_MASK: u64 = 0xff_00ff_ffff;

/// Why a CPU table could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpuTableError {
    /// The DTB lists no CPU.
    NoCpus,
    /// The DTB lists more CPUs than [`MAX_CPUS`].
    TooMany(usize),
    /// Two CPUs share an MPIDR.
    Duplicate(u64),
    /// A CPU's `reg` has bits outside the affinity fields.
    BadMpidr(u64),
    /// The boot CPU's MPIDR is not among the listed CPUs.
    NoBootCpu(u64),
}

/// The CPUs discovered at boot, indexed 0..count in DTB order (the boot CPU need not be 0).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpuTable {
    mpidrs: [u64; MAX_CPUS],
    count: usize,
}

impl CpuTable {
    /// Builds the table from the MPIDR values of the DTB's `/cpus/cpu@N` nodes.
    pub fn new(mpidrs: impl IntoIterator<Item = u64>) -> Result<Self, CpuTableError> {
        let mut table = Self {
            mpidrs: [0; MAX_CPUS],
            count: 0,
        };
        for mpidr in mpidrs {
            if mpidr & !MPIDR_AFFINITY_MASK != 0 {
                return Err(CpuTableError::BadMpidr(mpidr));
            }
            if table.index_of(mpidr).is_some() {
                return Err(CpuTableError::Duplicate(mpidr));
            }
            if table.count == MAX_CPUS {
                return Err(CpuTableError::TooMany(table.count + 1));
            }
            table.mpidrs[table.count] = mpidr;
            table.count += 1;
        }
        if table.count == 0 {
            return Err(CpuTableError::NoCpus);
        }
        Ok(table)
    }

    /// Builds the table with the boot CPU as index 0 and the others in DTB order: the same
    /// numbering Linux uses for logical CPUs, and the one both hyptrace images use for CPU
    /// arguments (the pack's `cpu`, `swap_reader(cpu)`, ...).
    pub fn new_boot_first(
        mpidrs: impl IntoIterator<Item = u64>,
        boot_mpidr: u64,
    ) -> Result<Self, CpuTableError> {
        let mut table = Self::new(mpidrs)?;
        let boot = table
            .index_of(boot_mpidr)
            .ok_or(CpuTableError::NoBootCpu(boot_mpidr & MPIDR_AFFINITY_MASK))?;
        // Rotating the prefix 0..=boot right by one moves the boot CPU to the front and keeps
        // the others in DTB order.
        table.mpidrs[..=boot].rotate_right(1);
        Ok(table)
    }

    /// Number of CPUs.
    pub fn count(&self) -> usize {
        self.count
    }

    /// The index of the CPU whose affinity fields equal those of `mpidr`.
    pub fn index_of(&self, mpidr: u64) -> Option<usize> {
        let affinity = mpidr & MPIDR_AFFINITY_MASK;
        self.mpidrs[..self.count]
            .iter()
            .position(|m| *m == affinity)
    }

    /// The MPIDR affinity of CPU `index`.
    pub fn mpidr(&self, index: usize) -> Option<u64> {
        self.mpidrs[..self.count].get(index).copied()
    }
}

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
    fn table_from_dtb_order() {
        let t = CpuTable::new([0, 1, 2, 3]).unwrap();
        assert_eq!(t.count(), 4);
        assert_eq!(t.index_of(2), Some(2));
        // Bits outside the affinity fields (e.g. MPIDR_EL1.U, bit 31 RES1) are ignored.
        assert_eq!(t.index_of(0x8000_0003), Some(3));
        assert_eq!(t.index_of(4), None);
        assert_eq!(t.mpidr(1), Some(1));
        assert_eq!(t.mpidr(4), None);
    }

    #[test]
    fn boot_cpu_comes_first_others_keep_dtb_order() {
        let t = CpuTable::new_boot_first([0x100, 0x101, 0x102, 0x103], 0x8000_0102).unwrap();
        assert_eq!(
            (0..4).map(|i| t.mpidr(i).unwrap()).collect::<Vec<_>>(),
            [0x102, 0x100, 0x101, 0x103]
        );
        let t = CpuTable::new_boot_first([0, 1], 0).unwrap();
        assert_eq!(t.mpidr(0), Some(0));
        assert_eq!(
            CpuTable::new_boot_first([0, 1], 7),
            Err(CpuTableError::NoBootCpu(7))
        );
    }

    #[test]
    fn table_errors() {
        assert_eq!(CpuTable::new([]), Err(CpuTableError::NoCpus));
        assert_eq!(CpuTable::new([0, 0]), Err(CpuTableError::Duplicate(0)));
        assert_eq!(
            CpuTable::new(0..(MAX_CPUS as u64 + 1)),
            Err(CpuTableError::TooMany(MAX_CPUS + 1))
        );
        assert_eq!(
            CpuTable::new([1 << 50]),
            Err(CpuTableError::BadMpidr(1 << 50))
        );
    }

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
