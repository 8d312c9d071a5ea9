//! The limits of hyptrace's hypervisor, which a host needs to size what it asks for.
//!
//! They are properties of this hypervisor's private pools, not of the page or pack format: a
//! host that asks for more gets the error named beside each limit.

use crate::page::DATA_SIZE;

/// Largest `pack_size` `load_tracing` accepts (1 MiB), the size of the hypervisor's private
/// copy. Larger: [`HypError::PackSize`](crate::HypError::PackSize).
pub const MAX_PACK_SIZE: u64 = 1 << 20;

/// Most pages (ring and reader pages of every CPU together, the pack's `total_pages`) one load
/// may describe: the hypervisor's descriptor pool. 64 MiB of event data per CPU on 4 CPUs
/// fits: ceil(64 MiB / 4048 data bytes) = 16,579 ring pages + 1 reader page per CPU, plus 64
/// spare. More: [`HypError::NoMemory`](crate::HypError::NoMemory).
pub const MAX_LOAD_PAGES: usize = 4 * (RING_PAGES_64_MIB + 1) + 64;

/// Ring pages holding 64 MiB of event data.
const RING_PAGES_64_MIB: usize = (64usize << 20).div_ceil(DATA_SIZE);

const _: () = assert!(RING_PAGES_64_MIB == 16_579);

/// Largest `count` of one `write_selftest` call (bounds the time spent in the hypervisor).
/// Larger: [`HypError::InvalidArgument`](crate::HypError::InvalidArgument).
pub const MAX_SELFTEST_BATCH: u64 = 1 << 16;
