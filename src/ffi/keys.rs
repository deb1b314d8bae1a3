//! The key calls: `junos_sync_set_auth_key` and `junos_sync_add_auth_key`.

use libc::{c_void, size_t};

use super::api::{context, ctx_ref, status, Ctx};
use super::panic::ffi_boundary;
use super::types::*;
use crate::Error;

/// A key call: NULL checks, then `f` with the `len` key bytes at `key`.
///
/// # Safety
/// `ctx` is NULL or a live context; `key` is NULL or points to `len` readable bytes.
unsafe fn with_key(
    ctx: *mut junos_sync_context_t,
    key: *const c_void,
    len: size_t,
    call: &str,
    f: impl FnOnce(&Ctx, &[u8]) -> Result<(), Error>,
) -> junos_sync_status_t {
    let c = context!(ctx);
    if key.is_null() {
        c.log(&format!("{call}: key is NULL"));
        return junos_sync_status_t::JUNOS_SYNC_ERR_INVALID;
    }
    // SAFETY: non-NULL with `len` readable bytes per the contract; read at once, not kept.
    let k = unsafe { std::slice::from_raw_parts(key.cast::<u8>(), len) };
    status(f(c, k))
}

/// Keys the context, before `junos_sync_start`: from then on both sides prove they hold the
/// same key before any application byte moves, and everything they exchange is encrypted and
/// authenticated with keys fresh for each connection (Noise NNpsk0, see docs/PROTOCOL.md). A
/// keyed side and an unkeyed one, or two different keys, never connect: each side logs it once
/// per outage and counts it in `junos_sync_stats_t.auth_failures`.
///
/// `key` is `len` bytes of secret, at least `JUNOS_SYNC_MIN_KEY_LEN` (`junos-sync-keygen`
/// writes 32 random bytes). The library keeps a copy (the caller may wipe its own at once)
/// and wipes it at `junos_sync_exit`. Replaces any key set before, including one from
/// `JUNOS_SYNC_AUTH_KEY_FILE`. Returns `JUNOS_SYNC_ERR_INVALID` for a NULL or short key,
/// `JUNOS_SYNC_ERR_STATE` once started.
///
/// # Safety
/// `ctx` is NULL or a live context; `key` is NULL or points to `len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn junos_sync_set_auth_key(
    ctx: *mut junos_sync_context_t,
    key: *const c_void,
    len: size_t,
) -> junos_sync_status_t {
    ffi_boundary! {
        // SAFETY: as this function's contract.
        unsafe { with_key(ctx, key, len, "junos_sync_set_auth_key", |c, k| c.set_auth_key(k)) }
    }
}

/// Adds a key the context also accepts, before `junos_sync_start`, for a key rotation without
/// downtime (see the README): a master accepts a backup holding any of its keys; a backup
/// tries its keys in order, moving to the next after an authentication failure. At most 4
/// keys. Same arguments, copy and errors as `junos_sync_set_auth_key`.
///
/// # Safety
/// `ctx` is NULL or a live context; `key` is NULL or points to `len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn junos_sync_add_auth_key(
    ctx: *mut junos_sync_context_t,
    key: *const c_void,
    len: size_t,
) -> junos_sync_status_t {
    ffi_boundary! {
        // SAFETY: as this function's contract.
        unsafe { with_key(ctx, key, len, "junos_sync_add_auth_key", |c, k| c.add_auth_key(k)) }
    }
}
