//! The host's heap (test names, failure reasons, collections in tests).

use buddy_system_allocator::LockedHeap;

/// Bytes of heap, carved out of BSS.
const HEAP_SIZE: usize = 4 << 20;

#[repr(C, align(4096))]
struct HeapSpace([u8; HEAP_SIZE]);

static mut HEAP_SPACE: HeapSpace = HeapSpace([0; HEAP_SIZE]);

#[global_allocator]
static HEAP: LockedHeap<32> = LockedHeap::empty();

/// Hands the heap space to the allocator. Called once by the boot CPU before any allocation.
pub fn init() {
    // SAFETY: called once at boot before any other CPU runs or allocates; HEAP_SPACE is used by
    // nothing else, so the allocator becomes its only owner.
    unsafe {
        let start = core::ptr::addr_of_mut!(HEAP_SPACE) as usize;
        HEAP.lock().init(start, HEAP_SIZE);
    }
}
