//! Secondary CPUs: start-up through PSCI CPU_ON, and a one-job mailbox per CPU so the boot CPU
//! can run work (test bodies, workloads) on any CPU and wait for the result.
//!
//! Every wait here is bounded by a counter deadline: a CPU that never arrives or a job that
//! never finishes becomes an error message, never a silent hang.

use alloc::boxed::Box;
use alloc::format;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use host_shim::harness::TestResult;
use hyptrace_platform::memmap::MAX_CPUS;
use smccc::psci::{PSCI_AFFINITY_INFO_64, PSCI_CPU_OFF, PSCI_CPU_ON_64};
use spin::Mutex;

use super::boot::machine;
use super::calls::psci;
use super::console::println;
use super::{cpu, exceptions};

/// Stack bytes per secondary CPU.
const STACK_SIZE: usize = 64 << 10;

/// What a started CPU finds in X0: its stack and identity, and where it reports its arrival.
#[repr(C)]
pub struct BootBlock {
    /// Initial SP (read by `_secondary_start`; must stay the first field).
    stack_top: AtomicU64,
    /// CPU index.
    index: AtomicU64,
    /// A value the starter chose for this start; the CPU copies it to `seen_token`.
    token: AtomicU64,
    /// X0 the CPU received (must be this block's address).
    pub seen_context: AtomicU64,
    /// CurrentEL.EL the CPU saw.
    pub seen_el: AtomicU64,
    /// `token` as the CPU read it on arrival.
    pub seen_token: AtomicU64,
    /// Incremented on every arrival.
    pub arrivals: AtomicU64,
}

impl BootBlock {
    const fn new() -> Self {
        Self {
            stack_top: AtomicU64::new(0),
            index: AtomicU64::new(0),
            token: AtomicU64::new(0),
            seen_context: AtomicU64::new(0),
            seen_el: AtomicU64::new(0),
            seen_token: AtomicU64::new(0),
            arrivals: AtomicU64::new(0),
        }
    }
}

const IDLE: u32 = 0;
const PENDING: u32 = 1;
const DONE: u32 = 2;

type Job = Box<dyn FnOnce() -> TestResult + Send>;

struct Mailbox {
    state: AtomicU32,
    job: Mutex<Option<Job>>,
    result: Mutex<Option<TestResult>>,
    online: AtomicBool,
}

impl Mailbox {
    const fn new() -> Self {
        Self {
            state: AtomicU32::new(IDLE),
            job: Mutex::new(None),
            result: Mutex::new(None),
            online: AtomicBool::new(false),
        }
    }
}

#[repr(C, align(16))]
struct Stacks([[u8; STACK_SIZE]; MAX_CPUS]);

static mut STACKS: Stacks = Stacks([[0; STACK_SIZE]; MAX_CPUS]);
static BOOT_BLOCKS: [BootBlock; MAX_CPUS] = [const { BootBlock::new() }; MAX_CPUS];
static MAILBOXES: [Mailbox; MAX_CPUS] = [const { Mailbox::new() }; MAX_CPUS];

/// The boot block of CPU `index`.
pub fn boot_block(index: usize) -> &'static BootBlock {
    &BOOT_BLOCKS[index]
}

/// Address of `_secondary_start`, the host entry point given to CPU_ON.
pub fn secondary_entry() -> u64 {
    extern "C" {
        fn _secondary_start();
    }
    _secondary_start as *const () as u64
}

/// Marks the boot CPU online (it never goes through `secondary_main`).
pub fn mark_boot_cpu_online() {
    // Release: pairs with the Acquire loads in `is_online`.
    MAILBOXES[0].online.store(true, Ordering::Release);
}

/// Whether CPU `index` is running its mailbox loop.
pub fn is_online(index: usize) -> bool {
    // Acquire: pairs with the Release stores in `secondary_main` / `power_off_self`.
    MAILBOXES[index].online.load(Ordering::Acquire)
}

/// Issues PSCI CPU_ON for CPU `index` with `token` recorded in its boot block. Returns the PSCI
/// status (0 on success); does not wait for the CPU to arrive.
pub fn cpu_on(index: usize, token: u64) -> i64 {
    cpu_on_at(index, token, secondary_entry())
}

/// [`cpu_on`] through the 32-bit PSCI call (CPU_ON_32): entry and context must fit 32 bits.
pub fn cpu_on_32(index: usize, token: u64) -> i64 {
    prepare_boot_block(index, token);
    let mpidr = machine().cpus.mpidr(index).unwrap_or(u64::MAX);
    let block = &BOOT_BLOCKS[index] as *const BootBlock as u64;
    psci(
        smccc::psci::PSCI_CPU_ON_32,
        [mpidr, secondary_entry(), block],
    )
}

/// [`cpu_on`] with an explicit entry point (tests use bad ones).
pub fn cpu_on_at(index: usize, token: u64, entry: u64) -> i64 {
    prepare_boot_block(index, token);
    let mpidr = machine().cpus.mpidr(index).unwrap_or(u64::MAX);
    let block = &BOOT_BLOCKS[index] as *const BootBlock as u64;
    psci(PSCI_CPU_ON_64, [mpidr, entry, block])
}

/// Fills CPU `index`'s boot block for its next start.
fn prepare_boot_block(index: usize, token: u64) {
    let block = &BOOT_BLOCKS[index];
    // SAFETY: only the address of the CPU's stack slot is computed; the slot is used by that
    // CPU alone, and only after it starts.
    let stack_base = unsafe { core::ptr::addr_of!(STACKS.0[index]) } as u64;
    // Relaxed stores: published to the started CPU through the hypervisor. Our CPU_ON ends in
    // the release of the hypervisor's power-state lock (`claim_for_on`, the Release) after
    // these stores, and the started CPU takes the same lock (`take_host_entry`, the Acquire)
    // before it is dropped to `_secondary_start`, which turns its MMU on before its first
    // (cacheable, so coherent) read of the block.
    block
        .stack_top
        .store(stack_base + STACK_SIZE as u64, Ordering::Relaxed);
    block.index.store(index as u64, Ordering::Relaxed);
    block.token.store(token, Ordering::Relaxed);
}

/// Waits until CPU `index` has arrived `count` times in total, at most `timeout_ms`.
pub fn wait_arrivals(index: usize, count: u64, timeout_ms: u64) -> TestResult {
    let deadline = cpu::counter() + cpu::ticks_per_ms(timeout_ms);
    // Acquire: pairs with the Release increment in `secondary_main`, so the seen_* fields are
    // visible once the count is.
    while BOOT_BLOCKS[index].arrivals.load(Ordering::Acquire) < count {
        if cpu::counter() > deadline {
            return Err(format!("CPU {index} did not arrive within {timeout_ms} ms"));
        }
        core::hint::spin_loop();
    }
    Ok(())
}

/// PSCI AFFINITY_INFO for CPU `index`: 0 on, 1 off, 2 on pending, negative on error.
pub fn affinity_info(index: usize) -> i64 {
    let mpidr = machine().cpus.mpidr(index).unwrap_or(u64::MAX);
    psci(PSCI_AFFINITY_INFO_64, [mpidr, 0, 0])
}

/// Waits until the firmware reports CPU `index` off, at most `timeout_ms`.
pub fn wait_off(index: usize, timeout_ms: u64) -> TestResult {
    let deadline = cpu::counter() + cpu::ticks_per_ms(timeout_ms);
    loop {
        match affinity_info(index) {
            1 => return Ok(()),
            s if s < 0 => return Err(format!("AFFINITY_INFO({index}) failed: {s}")),
            _ if cpu::counter() > deadline => {
                return Err(format!("CPU {index} still on after {timeout_ms} ms"))
            }
            _ => core::hint::spin_loop(),
        }
    }
}

/// Starts every secondary CPU and waits for each; prints one line per CPU.
pub fn bring_up_secondaries() -> TestResult {
    for index in 1..machine().cpus.count() {
        let status = cpu_on(index, index as u64);
        if status != 0 {
            return Err(format!("CPU_ON of CPU {index} failed: {status}"));
        }
        wait_arrivals(index, 1, 5_000)?;
        println!(
            "host: CPU {index} (MPIDR {:#x}) is up at EL{}",
            machine().cpus.mpidr(index).unwrap_or(0),
            boot_block(index).seen_el.load(Ordering::Relaxed)
        );
    }
    Ok(())
}

/// Rust entry of a started secondary CPU (from `_secondary_start`, X0 = its boot block).
pub extern "C" fn secondary_main(block: &'static BootBlock) -> ! {
    let index = block.index.load(Ordering::Relaxed) as usize;
    cpu::set_index(index);
    exceptions::install();
    block
        .seen_context
        .store(block as *const BootBlock as u64, Ordering::Relaxed);
    block.seen_el.store(cpu::current_el(), Ordering::Relaxed);
    block
        .seen_token
        .store(block.token.load(Ordering::Relaxed), Ordering::Relaxed);
    let mailbox = &MAILBOXES[index];
    mailbox.state.store(IDLE, Ordering::Relaxed);
    // Release: pairs with the Acquire in `is_online`.
    mailbox.online.store(true, Ordering::Release);
    // Release: pairs with the Acquire in `wait_arrivals`; publishes the seen_* fields.
    block.arrivals.fetch_add(1, Ordering::Release);
    loop {
        // Acquire: pairs with the Release store of PENDING in `start_job`, so the job is there.
        if mailbox.state.load(Ordering::Acquire) == PENDING {
            let job = mailbox.job.lock().take();
            let result = match job {
                Some(job) => job(),
                None => Err(format!("CPU {index}: mailbox pending without a job")),
            };
            *mailbox.result.lock() = Some(result);
            // Release: pairs with the Acquire load in `wait_job`; publishes the result.
            mailbox.state.store(DONE, Ordering::Release);
            continue;
        }
        // Idle until an event: `start_job` sends one after posting. An event sent before
        // this WFE is latched in the event register, so none is lost. Idle CPUs then leave
        // the host's cores to the CPUs that work (under TCG WFE yields the vCPU thread).
        aarch64_cpu::asm::wfe();
    }
}

/// Posts `job` to CPU `index` (a started secondary whose mailbox is idle or done).
pub fn start_job(index: usize, job: Job) -> TestResult {
    if index == 0 || index >= machine().cpus.count() || !is_online(index) {
        return Err(format!("CPU {index} is not an online secondary"));
    }
    let mailbox = &MAILBOXES[index];
    if mailbox.state.load(Ordering::Acquire) == PENDING {
        return Err(format!("CPU {index} is still busy with an earlier job"));
    }
    *mailbox.job.lock() = Some(job);
    // Release: pairs with the Acquire load in `secondary_main`.
    mailbox.state.store(PENDING, Ordering::Release);
    // Wake the CPU from its WFE; the barrier makes the store visible first.
    aarch64_cpu::asm::barrier::dsb(aarch64_cpu::asm::barrier::ISH);
    aarch64_cpu::asm::sev();
    Ok(())
}

/// Waits for the job on CPU `index` to finish, at most `timeout_ms`, and returns its result.
pub fn wait_job(index: usize, timeout_ms: u64) -> TestResult {
    let mailbox = &MAILBOXES[index];
    let deadline = cpu::counter() + cpu::ticks_per_ms(timeout_ms);
    // Acquire: pairs with the Release store of DONE in `secondary_main`.
    while mailbox.state.load(Ordering::Acquire) != DONE {
        if cpu::counter() > deadline {
            return Err(format!(
                "CPU {index}: job did not finish within {timeout_ms} ms"
            ));
        }
        core::hint::spin_loop();
    }
    let result = mailbox.result.lock().take();
    mailbox.state.store(IDLE, Ordering::Relaxed);
    result.unwrap_or_else(|| Err(format!("CPU {index}: job finished without a result")))
}

/// Runs `f(cpu)` on every online CPU at once (the boot CPU included) and waits for all.
/// Failures are reported as `cpu N: reason; ...`.
pub fn run_everywhere(f: fn(usize) -> TestResult, timeout_ms: u64) -> TestResult {
    let count = machine().cpus.count();
    let mut errors = alloc::string::String::new();
    let mut started = [false; MAX_CPUS];
    for (index, slot) in started.iter_mut().enumerate().take(count).skip(1) {
        if is_online(index) {
            match start_job(index, Box::new(move || f(index))) {
                Ok(()) => *slot = true,
                Err(e) => errors.push_str(&format!("{e}; ")),
            }
        }
    }
    if let Err(e) = f(0) {
        errors.push_str(&format!("cpu 0: {e}; "));
    }
    for (index, _) in started.iter().enumerate().filter(|(_, s)| **s) {
        if let Err(e) = wait_job(index, timeout_ms) {
            errors.push_str(&format!("cpu {index}: {e}; "));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// Turns the calling secondary CPU off through PSCI. Returns only if the call failed.
pub fn power_off_self() -> TestResult {
    let index = cpu::index();
    let mailbox = &MAILBOXES[index];
    // Release: pairs with the Acquire in `is_online`.
    mailbox.online.store(false, Ordering::Release);
    // The job that called us never returns a result: the mailbox is reset for the next life.
    mailbox.state.store(IDLE, Ordering::Release);
    let status = psci(PSCI_CPU_OFF, [0; 3]);
    mailbox.online.store(true, Ordering::Release);
    Err(format!("CPU_OFF returned {status}"))
}
