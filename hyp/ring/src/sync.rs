//! The ring's synchronisation primitives, real or modelled.
//!
//! Normal builds use `core` atomics, `core::cell::UnsafeCell` and `spin::Mutex`. Under
//! `--cfg loom` the same names come from `loom`, so the loom tests exercise the real ring code
//! and the model checker sees every atomic access, every cell access and every lock.

#[cfg(not(loom))]
pub(crate) use core::sync::atomic::{
    fence, AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering,
};
#[cfg(loom)]
pub(crate) use loom::sync::atomic::{
    fence, AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering,
};

/// Busy-wait hint. Under loom it yields, so a spinning thread lets the others progress.
#[inline]
pub(crate) fn spin_loop() {
    #[cfg(not(loom))]
    core::hint::spin_loop();
    #[cfg(loom)]
    loom::thread::yield_now();
}

#[cfg(not(loom))]
mod cell {
    /// An `UnsafeCell` with loom's access API (`get_mut` returning a guard).
    #[derive(Debug)]
    pub(crate) struct UnsafeCell<T>(core::cell::UnsafeCell<T>);

    impl<T> UnsafeCell<T> {
        pub(crate) const fn new(v: T) -> Self {
            Self(core::cell::UnsafeCell::new(v))
        }

        #[inline(always)]
        pub(crate) fn get_mut(&self) -> MutPtr<T> {
            MutPtr(self.0.get())
        }
    }

    /// A raw mutable pointer into an [`UnsafeCell`].
    #[derive(Debug)]
    pub(crate) struct MutPtr<T>(*mut T);

    impl<T> MutPtr<T> {
        /// # Safety
        /// The caller must have exclusive access to the cell's contents for as long as the
        /// returned reference lives (same contract as `UnsafeCell::get`).
        #[inline(always)]
        #[allow(clippy::mut_from_ref)]
        pub(crate) unsafe fn deref(&self) -> &mut T {
            // SAFETY: exclusivity is the caller's obligation (see above); the pointer comes
            // from a live `UnsafeCell`.
            unsafe { &mut *self.0 }
        }
    }
}
#[cfg(not(loom))]
pub(crate) use cell::UnsafeCell;
#[cfg(loom)]
pub(crate) use loom::cell::UnsafeCell;

/// A mutex serialising the control operations. `spin::Mutex` at EL2, loom's under loom.
#[derive(Debug)]
pub(crate) struct Mutex<T> {
    #[cfg(not(loom))]
    inner: spin::Mutex<T>,
    #[cfg(loom)]
    inner: loom::sync::Mutex<T>,
}

#[cfg(not(loom))]
pub(crate) type MutexGuard<'a, T> = spin::MutexGuard<'a, T>;
#[cfg(loom)]
pub(crate) type MutexGuard<'a, T> = loom::sync::MutexGuard<'a, T>;

impl<T> Mutex<T> {
    #[cfg(not(loom))]
    pub(crate) const fn new(v: T) -> Self {
        Self {
            inner: spin::Mutex::new(v),
        }
    }

    #[cfg(loom)]
    pub(crate) fn new(v: T) -> Self {
        Self {
            inner: loom::sync::Mutex::new(v),
        }
    }

    /// The lock if it is free now.
    pub(crate) fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
        #[cfg(not(loom))]
        return self.inner.try_lock();
        #[cfg(loom)]
        return self.inner.try_lock().ok();
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
        #[cfg(not(loom))]
        return self.inner.lock();
        #[cfg(loom)]
        return self.inner.lock().unwrap();
    }
}

/// Defines a constructor that is a `const fn` in normal builds (so it can initialise a
/// `static`) and a plain `fn` under loom, whose primitives have no `const` constructors, from
/// one body.
macro_rules! const_unless_loom {
    ($(#[$meta:meta])* $vis:vis fn $name:ident() -> $ret:ty $body:block) => {
        $(#[$meta])*
        #[cfg(not(loom))]
        $vis const fn $name() -> $ret $body

        $(#[$meta])*
        #[cfg(loom)]
        $vis fn $name() -> $ret $body
    };
}
pub(crate) use const_unless_loom;
