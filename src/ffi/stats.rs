//! `junos_sync_get_stats` and its compatibility versions: the counters of
//! `engine/counters_list.rs`, copied into the C struct that the list defines.

use super::api::{context, ctx_ref};
use super::panic::ffi_boundary;
use super::types::*;
use crate::Stats;

/// The counters a statistics call reports into `out` (checked for NULL here, first).
///
/// # Safety
/// `ctx` is NULL or a live context.
unsafe fn stats_of<T>(ctx: *mut junos_sync_context_t, out: *mut T) -> Result<Stats, junos_sync_status_t> {
    if out.is_null() {
        return Err(junos_sync_status_t::JUNOS_SYNC_ERR_INVALID);
    }
    let c = context!(ctx, Err(junos_sync_status_t::JUNOS_SYNC_ERR_INVALID));
    c.stats().map_err(Into::into)
}

/// Copies the context's counters into `*stats`. Any thread.
///
/// # Safety
/// `ctx` is NULL or a live context; `stats` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn junos_sync_get_stats(
    ctx: *mut junos_sync_context_t,
    stats: *mut junos_sync_stats_t,
) -> junos_sync_status_t {
    ffi_boundary! {
        // SAFETY: NULL or live per the contract.
        let s = match unsafe { stats_of(ctx, stats) } {
            Ok(s) => s,
            Err(e) => return e,
        };
        // SAFETY: non-NULL and writable per the contract; the struct is exactly the counters
        // of the list, u64 after u64 in its order (checked below: `the_c_struct_is_the_list`).
        unsafe { stats.cast::<[u64; Stats::COUNT]>().write(s.values()) };
        junos_sync_status_t::JUNOS_SYNC_OK
    }
}

/// An older release's `junos_sync_get_stats`: writes only the first `N` counters, the fields
/// that release's struct had (later releases appended the rest).
///
/// # Safety
/// `ctx` is NULL or a live context; `stats` is NULL or writable for `N` u64 fields.
unsafe fn write_first<const N: usize>(ctx: *mut junos_sync_context_t, stats: *mut [u64; N]) -> junos_sync_status_t {
    // SAFETY: NULL or live per the contract.
    let s = match unsafe { stats_of(ctx, stats) } {
        Ok(s) => s,
        Err(e) => return e,
    };
    let mut v = [0u64; N];
    v.copy_from_slice(&s.values()[..N]);
    // SAFETY: non-NULL and writable for `N` u64 fields (contract); unaligned: the caller's
    // struct is only as aligned as its own declaration says.
    unsafe { stats.write_unaligned(v) };
    junos_sync_status_t::JUNOS_SYNC_OK
}

/// `junos_sync_get_stats` as release 1.0 had it, for programs built against the 1.0 header:
/// their `junos_sync_stats_t` has six fields, so only those are written. The shared library
/// exports it as `junos_sync_get_stats@JUNOS_SYNC_1.0`; it is not in the header.
///
/// # Safety
/// As `junos_sync_get_stats`, with `stats` pointing to the six fields of release 1.0.
#[no_mangle]
pub unsafe extern "C" fn junos_sync_get_stats_1_0(
    ctx: *mut junos_sync_context_t,
    stats: *mut [u64; 6],
) -> junos_sync_status_t {
    ffi_boundary! {
        // SAFETY: NULL or live, and writable for the six fields, per the contract.
        unsafe { write_first(ctx, stats) }
    }
}

/// `junos_sync_get_stats` as release 1.1 had it, for programs built against the 1.1 header:
/// their `junos_sync_stats_t` has eight fields, so only those are written. The shared library
/// exports it as `junos_sync_get_stats@JUNOS_SYNC_1.1`; it is not in the header.
///
/// # Safety
/// As `junos_sync_get_stats`, with `stats` pointing to the eight fields of release 1.1.
#[no_mangle]
pub unsafe extern "C" fn junos_sync_get_stats_1_1(
    ctx: *mut junos_sync_context_t,
    stats: *mut [u64; 8],
) -> junos_sync_status_t {
    ffi_boundary! {
        // SAFETY: NULL or live, and writable for the eight fields, per the contract.
        unsafe { write_first(ctx, stats) }
    }
}

// `junos_sync_stats_t` holds the counters of `engine/counters_list.rs`, nothing else.
const _: () = assert!(std::mem::size_of::<junos_sync_stats_t>() == 8 * Stats::COUNT);

// Binaries linked against release 1.0 bind `junos_sync_get_stats@JUNOS_SYNC_1.0`.
std::arch::global_asm!(".symver junos_sync_get_stats_1_0, junos_sync_get_stats@JUNOS_SYNC_1.0");
// And those linked against release 1.1, `junos_sync_get_stats@JUNOS_SYNC_1.1`.
std::arch::global_asm!(".symver junos_sync_get_stats_1_1, junos_sync_get_stats@JUNOS_SYNC_1.1");

#[cfg(test)]
mod tests {
    use super::*;

    /// Each counter of the list is the C struct's field of that name, in the list's order.
    #[test]
    fn the_c_struct_is_the_list() {
        macro_rules! counters {
            ($( $name:ident, $words:literal, $master:literal, $kind:ident, $help:literal; )*) => {{
                let mut at = 0;
                $(
                    assert_eq!(std::mem::offset_of!(junos_sync_stats_t, $name), at, stringify!($name));
                    at += 8;
                )*
                assert_eq!(at, std::mem::size_of::<junos_sync_stats_t>());
            }};
        }
        include!("../engine/counters_list.rs");
        assert_eq!(
            &Stats::NAMES[..6],
            ["full_resyncs", "partial_resyncs", "connections", "frames_rejected", "overflows", "backlog_bytes"],
            "release 1.0's six"
        );
        assert_eq!(&Stats::NAMES[6..8], ["auth_failures", "handshakes_refused"], "release 1.1's two more");
    }
}
