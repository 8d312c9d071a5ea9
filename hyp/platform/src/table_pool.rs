//! A fixed pool of page tables for `aarch64-paging`, for code without a heap (or that must not
//! take a lock, as before the MMU is on).
//!
//! [`TablePool`] is plain memory (all zero, so a `static` of it lives in BSS); its
//! [`PoolTranslation`] hands tables out and takes them back, and says that a table's physical
//! address is its address: the pool must be identity-mapped, as everything in hyptrace is.

use core::ptr::NonNull;

use aarch64_paging::descriptor::{PagingAttributes, PhysicalAddress};
use aarch64_paging::paging::{MemoryRegion, PageTable, Translation, TranslationRegime};
use aarch64_paging::Mapping;

use hyptrace_abi::page::PAGE_SIZE_U64 as PAGE_SIZE;

/// `N` page tables and which of them are in use.
#[repr(C, align(4096))]
pub struct TablePool<A: PagingAttributes, const N: usize> {
    tables: [PageTable<A>; N],
    used: [bool; N],
}

impl<A: PagingAttributes, const N: usize> Default for TablePool<A, N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<A: PagingAttributes, const N: usize> TablePool<A, N> {
    /// An empty pool.
    pub const fn new() -> Self {
        Self {
            tables: [const { PageTable::EMPTY }; N],
            used: [false; N],
        }
    }

    /// The translation that allocates from this pool for as long as it is borrowed.
    pub fn translation(&mut self) -> PoolTranslation<'_, A, N> {
        PoolTranslation {
            base: NonNull::from(&mut self.tables).cast(),
            used: &mut self.used,
        }
    }
}

/// The [`Translation`] of an identity-mapped [`TablePool`].
pub struct PoolTranslation<'a, A: PagingAttributes, const N: usize> {
    base: NonNull<PageTable<A>>,
    used: &'a mut [bool; N],
}

// SAFETY: the translation owns (through the exclusive borrow of the pool) the tables its
// pointer refers to; moving it to another CPU moves that ownership with it.
unsafe impl<A: PagingAttributes, const N: usize> Send for PoolTranslation<'_, A, N> {}

impl<A: PagingAttributes, const N: usize> PoolTranslation<'_, A, N> {
    /// Tables handed out and not given back.
    pub fn in_use(&self) -> usize {
        self.used.iter().filter(|u| **u).count()
    }

    fn index_of(&self, pa: usize) -> Option<usize> {
        let offset = pa.checked_sub(self.base.as_ptr() as usize)?;
        let index = offset / PAGE_SIZE as usize;
        (offset.is_multiple_of(PAGE_SIZE as usize) && index < N).then_some(index)
    }
}

impl<A: PagingAttributes, const N: usize> Translation<A> for PoolTranslation<'_, A, N> {
    fn allocate_table(&mut self) -> (NonNull<PageTable<A>>, PhysicalAddress) {
        // The pool's users count the tables a change needs before making it (aarch64-paging's
        // allocator interface cannot fail), so running dry here is a bug.
        let index = self
            .used
            .iter()
            .position(|u| !*u)
            .expect("page-table pool exhausted despite the pre-check");
        self.used[index] = true;
        // SAFETY: `index` is inside the pool, whose tables this translation owns.
        let table = unsafe { self.base.add(index) };
        // SAFETY: the table is owned by this translation and was free, so nothing uses it;
        // all-zero is an empty table.
        unsafe { table.as_ptr().write_bytes(0, 1) };
        (table, PhysicalAddress(table.as_ptr() as usize))
    }

    unsafe fn deallocate_table(&mut self, table: NonNull<PageTable<A>>) {
        if let Some(index) = self.index_of(table.as_ptr() as usize) {
            self.used[index] = false;
        }
    }

    fn physical_to_virtual(&self, pa: PhysicalAddress) -> NonNull<PageTable<A>> {
        // Identity map; derive the pointer from the pool to keep its provenance.
        let index = self
            .index_of(pa.0)
            .unwrap_or_else(|| panic!("table {pa} is not in the pool"));
        // SAFETY: `index` is inside the pool (checked above).
        unsafe { self.base.add(index) }
    }
}

/// The attributes of the valid leaf (page or block) that maps `addr` in `mapping`, or `None`
/// when nothing does.
pub fn leaf_attributes<T, R>(mapping: &Mapping<T, R>, addr: u64) -> Option<R::Attributes>
where
    T: Translation<R::Attributes>,
    R: TranslationRegime,
{
    let page = (addr & !(PAGE_SIZE - 1)) as usize;
    let region = MemoryRegion::new(page, page.checked_add(PAGE_SIZE as usize)?);
    let mut found = None;
    mapping
        .walk_range(&region, &mut |_, descriptor, _| {
            if descriptor.is_valid() {
                found = Some(descriptor.flags());
            }
            Ok(())
        })
        .ok()?;
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use aarch64_paging::descriptor::El1Attributes;

    #[test]
    fn tables_are_handed_out_zeroed_and_taken_back() {
        let mut pool = Box::new(TablePool::<El1Attributes, 3>::new());
        let mut t = pool.translation();
        let (a, pa) = t.allocate_table();
        assert_eq!(a.as_ptr() as usize, pa.0, "identity");
        assert_eq!(t.physical_to_virtual(pa), a);
        let (b, _) = t.allocate_table();
        assert_eq!(b.as_ptr() as usize - a.as_ptr() as usize, 4096);
        assert_eq!(t.in_use(), 2);
        // SAFETY: `a` came from this translation.
        unsafe { t.deallocate_table(a) };
        assert_eq!(t.in_use(), 1);
        let (again, _) = t.allocate_table();
        assert_eq!(again, a, "a freed table is reused");
    }
}
