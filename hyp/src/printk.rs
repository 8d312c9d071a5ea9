//! [`hyp_printk!`](crate::hyp_printk): printing from the hypervisor into its trace.
//!
//! A call records one `ftrace:bprint` event (layout and format rules:
//! [`crate::abi::printk`]) and formats nothing at EL2. Each call site is a [`Site`] `static`
//! gathered by the linker into [`SITES`] (a `linkme` distributed slice: the hypervisor's
//! linker script names its section), so the table exists at compile time and its addresses
//! identify the sites. The host fetches the table with `printk_formats` and writes it into
//! trace.dat; the flight recorder looks sites up in it to print the text itself.
//!
//! The event is enabled like any other (`enable_event(8, 1)`). Disabled, a call costs one
//! load and one branch: the [`enabled`] flag, which mirrors the event's flag in the
//! [installed](install) tracing service.

use core::sync::atomic::{AtomicBool, Ordering};

pub use crate::abi::printk::Site;
use crate::tracing::TracingService;

#[doc(hidden)]
pub use linkme as __linkme;

/// Every `hyp_printk!` call site of the image, in link order.
#[linkme::distributed_slice]
pub static SITES: [Site];

/// Where `hyp_printk!` writes: the service and how to read the CPU index and the counter.
pub struct Sink {
    /// The tracing service whose rings receive the events.
    pub tracing: &'static TracingService,
    /// Index of the calling CPU.
    pub cpu: fn() -> usize,
    /// The trace clock's counter.
    pub counter: fn() -> u64,
}

static SINK: spin::Once<&'static Sink> = spin::Once::new();

/// The printk event's flag in the installed service, mirrored so that a disabled call costs
/// one load.
static ENABLED: AtomicBool = AtomicBool::new(false);

/// Makes `sink` the destination of every `hyp_printk!`. Only the first call has an effect
/// (the hypervisor installs its service once, at boot).
pub fn install(sink: &'static Sink) {
    SINK.call_once(|| sink);
}

/// Whether `service` is the one `hyp_printk!` writes to.
fn is_installed(service: &TracingService) -> bool {
    SINK.get()
        .is_some_and(|s| core::ptr::eq(s.tracing, service))
}

/// Called by `service` when its printk flag changes: mirrors it if `service` is installed.
pub(crate) fn flag_changed(service: &TracingService, on: bool) {
    if is_installed(service) {
        // Relaxed: a flag, as the service's own event flags are; the ring's handshake orders
        // the writes themselves.
        ENABLED.store(on, Ordering::Relaxed);
    }
}

/// Whether `hyp_printk!` records (the event is enabled in the installed service).
#[inline(always)]
pub fn enabled() -> bool {
    // Relaxed: see `flag_changed`.
    ENABLED.load(Ordering::Relaxed)
}

/// Records the call of `site` with `args` on the calling CPU. The macro's slow path: it runs
/// only when [`enabled`] said yes.
#[inline(never)]
pub fn write<const N: usize>(site: &'static Site, args: &[u64; N]) {
    if let Some(sink) = SINK.get() {
        let cpu = (sink.cpu)();
        sink.tracing
            .write_printk(cpu, (sink.counter)(), site_address(site), args);
    }
}

/// The address that identifies `site` in events and in trace.dat.
pub fn site_address(site: &'static Site) -> u64 {
    core::ptr::from_ref(site) as usize as u64
}

/// The site whose address is `addr`, looked up in [`SITES`] (never by dereferencing `addr`,
/// which comes from a page the host can write).
pub fn site_at(addr: u64) -> Option<&'static Site> {
    SITES.iter().find(|s| site_address(s) == addr)
}

/// Records a formatted line in the hypervisor's trace without formatting it at EL2:
/// `hyp_printk!("swap cpu={} lost={}", cpu, lost)`.
///
/// Placeholders are `{}` (unsigned decimal), `{:i}` (signed decimal), `{:x}` and `{:#x}`;
/// arguments are integers or `bool`, at most 8 (see [`crate::abi::printk`]). A format that
/// is invalid, or an argument whose signedness does not match its placeholder, fails to
/// compile. Disabled, the call costs one load and one branch, and its arguments are not
/// evaluated (as with the `log` crate's macros): give it no argument with side effects.
///
/// ```
/// let (cpu, lost, err) = (2usize, 17u64, -4i32);
/// hyp::hyp_printk!("swap cpu={} lost={} err={:i} page={:#x}", cpu, lost, err, 0x4000_0000u64);
/// ```
///
/// A signed argument under `{}` does not compile:
///
/// ```compile_fail
/// hyp::hyp_printk!("err={}", -1i32);
/// ```
///
/// Nor does a missing argument, or an unknown placeholder:
///
/// ```compile_fail
/// hyp::hyp_printk!("a={} b={}", 1u32);
/// ```
///
/// ```compile_fail
/// hyp::hyp_printk!("a={:?}", 1u32);
/// ```
#[macro_export]
macro_rules! hyp_printk {
    ($fmt:literal $(, $arg:expr)* $(,)?) => {{
        const __FMT: &str = $fmt;
        const __LEN: usize = $crate::abi::printk::c_len(__FMT);
        const __C: [u8; __LEN] = $crate::abi::printk::c_format::<__LEN>(__FMT);
        const __N: usize = $crate::abi::printk::arg_count(__FMT);
        const _: () = ::core::assert!(
            __N == 0 $(+ { let _ = ::core::stringify!($arg); 1 })*,
            "hyp_printk!: the number of arguments is not the number of placeholders"
        );
        const _: () = ::core::assert!(
            ::core::module_path!().len() <= $crate::abi::printk::MAX_LOCATION_LEN,
            "hyp_printk!: the module path is longer than the format table takes"
        );
        #[$crate::printk::__linkme::distributed_slice($crate::printk::SITES)]
        #[linkme(crate = $crate::printk::__linkme)]
        static __SITE: $crate::abi::printk::Site = $crate::abi::printk::Site {
            format: match ::core::str::from_utf8(&__C) {
                ::core::result::Result::Ok(s) => s,
                ::core::result::Result::Err(_) => ::core::panic!("hyp_printk!: format is not UTF-8"),
            },
            location: ::core::module_path!(),
            nr_args: __N as u16,
        };
        if $crate::printk::enabled() {
            let __args: [u64; __N] = $crate::__hyp_printk_args!(__FMT; []; []; $($arg,)*);
            $crate::printk::write(&__SITE, &__args);
        }
    }};
}

/// The argument words of [`hyp_printk!`], each checked against its placeholder: not for
/// direct use.
#[doc(hidden)]
#[macro_export]
macro_rules! __hyp_printk_args {
    ($fmt:ident; [$($done:expr,)*]; [$($idx:tt)*]; ) => { [$($done,)*] };
    ($fmt:ident; [$($done:expr,)*]; [$($idx:tt)*]; $a:expr, $($rest:expr,)*) => {
        $crate::__hyp_printk_args!(
            $fmt;
            [$($done,)* $crate::abi::printk::arg::<_, {
                ::core::matches!(
                    $crate::abi::printk::spec($fmt, 0 $($idx)*),
                    $crate::abi::printk::Spec::Signed
                )
            }>($a),];
            [$($idx)* + 1];
            $($rest,)*
        )
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sites_are_in_the_table_with_their_c_format() {
        // Never enabled here (no sink in this test): the call only registers its site.
        crate::hyp_printk!("unit test site a={} b={:i} c={:#x}", 1u32, -2i64, 3u64);
        let site = SITES
            .iter()
            .find(|s| s.format.starts_with("unit test site"))
            .expect("the call site is in the distributed slice");
        assert_eq!(site.format, "unit test site a=%llu b=%lld c=0x%llx");
        assert_eq!(site.location, "hyp::printk::tests");
        assert_eq!(site.nr_args, 3);
        assert!(core::ptr::eq(site_at(site_address(site)).unwrap(), site));
        assert!(site_at(0).is_none());
    }
}
