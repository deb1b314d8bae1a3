//! The exported functions. Each one: NULL checks that return an error code, a panic boundary,
//! and a call into `crate::core`.

use std::ptr::NonNull;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::app::{logger_for, CApp, CTlv};
use super::panic::ffi_boundary;
use super::types::*;
use crate::core::{Config, Context, Error};

type Ctx = Context<CApp>;

impl From<Error> for junos_sync_status_t {
    fn from(e: Error) -> Self {
        match e {
            Error::Invalid => Self::JUNOS_SYNC_ERR_INVALID,
            Error::State => Self::JUNOS_SYNC_ERR_STATE,
            Error::NoMem => Self::JUNOS_SYNC_ERR_NOMEM,
            Error::BacklogFull => Self::JUNOS_SYNC_ERR_BACKLOG_FULL,
            Error::Socket => Self::JUNOS_SYNC_ERR_SOCKET,
            Error::Internal => Self::JUNOS_SYNC_ERR_INTERNAL,
        }
    }
}

fn status(r: Result<(), Error>) -> junos_sync_status_t {
    r.map_or_else(Into::into, |()| junos_sync_status_t::JUNOS_SYNC_OK)
}

fn config(s: &junos_sync_state_t) -> Config {
    Config::new(s.is_master, s.no_resync, s.server_addr, s.server_port, s.keepalive_time)
}

/// Contexts live in an `Arc`: `junos_sync_exit` drops the application's reference, and a call
/// that runs application callbacks synchronously (start, switchover) holds its own, so an exit
/// from inside such a callback cannot free the context under the running call. The hot path
/// (`junos_sync_queue`) only borrows.
///
/// # Safety
/// `ctx` is NULL or a live context from `junos_sync_init`.
unsafe fn ctx_ref<'a>(ctx: *mut junos_sync_context_t) -> Option<&'a Ctx> {
    // SAFETY: per this function's contract, a non-NULL `ctx` is an `Arc<Ctx>` from init.
    unsafe { ctx.cast::<Ctx>().cast_const().as_ref() }
}

/// A counted reference for the duration of a call that runs callbacks.
///
/// # Safety
/// As `ctx_ref`.
unsafe fn ctx_hold(ctx: *mut junos_sync_context_t) -> Option<Arc<Ctx>> {
    if ctx.is_null() {
        return None;
    }
    let p = ctx.cast::<Ctx>().cast_const();
    // SAFETY: a live `Arc<Ctx>` from init (contract); one more strong count, owned by the result.
    unsafe {
        Arc::increment_strong_count(p);
        Some(Arc::from_raw(p))
    }
}

/// Creates a context: validates and copies `state` and `callbacks` (both may be temporary).
///
/// Returns NULL on bad input (NULL arguments, a backup without `server_addr`/`server_port` or
/// `sync_data_decode_func`, a master with resync but no `sync_data_get_next_func`), after saying
/// why through `sync_log_msg_func` when it is set. NULL `sync_malloc_func`/`sync_free_func` mean
/// libc's. Nothing runs until `junos_sync_start`. Free the context with `junos_sync_exit`.
///
/// # Safety
/// `state` and `callbacks` are NULL or point to valid structs.
#[no_mangle]
pub unsafe extern "C" fn junos_sync_init(
    state: *mut junos_sync_state_t,
    callbacks: *mut junos_sync_callbacks_t,
) -> *mut junos_sync_context_t {
    ffi_boundary! {
        // SAFETY: NULL or valid per the contract; copied at once.
        let Some(cb) = (unsafe { callbacks.as_ref() }).copied() else { return std::ptr::null_mut() };
        let logger = logger_for(&cb);
        // SAFETY: as above.
        let Some(st) = (unsafe { state.as_ref() }).copied() else {
            logger("junos_sync_init: state is NULL");
            return std::ptr::null_mut();
        };
        match Ctx::new(config(&st), CApp::new(cb), logger) {
            Ok(c) => Arc::into_raw(Arc::new(c)).cast_mut().cast(),
            Err(_) => std::ptr::null_mut(),
        }
    }
}

/// Records the application's ISC eventlib context and returns `JUNOS_SYNC_OK`.
///
/// junos-sync does not run on the application's event loop: callbacks still run on the
/// context's own loop thread. The value is kept for source compatibility only.
///
/// # Safety
/// `ctx` is NULL or a live context.
#[no_mangle]
pub unsafe extern "C" fn junos_sync_set_event_context(
    ctx: *mut junos_sync_context_t,
    ev_ctx: evContext,
) -> junos_sync_status_t {
    ffi_boundary! {
        // SAFETY: NULL or live per the contract.
        let Some(c) = (unsafe { ctx_ref(ctx) }) else { return junos_sync_status_t::JUNOS_SYNC_ERR_INVALID };
        c.shared().event_context.store(ev_ctx.opaque as usize, Ordering::Relaxed);
        junos_sync_status_t::JUNOS_SYNC_OK
    }
}

/// Starts the context.
///
/// Calling `junos_sync_exit` from inside `sync_bind_done_func` here is allowed: nothing starts,
/// queued TLVs are freed, and this returns `JUNOS_SYNC_ERR_STATE`.
///
/// Master: binds `server_addr:server_port` (SO_REUSEADDR; port 0 = any free port), listens,
/// and calls `sync_bind_done_func(port)` once, on this thread, before returning; returns
/// `JUNOS_SYNC_ERR_SOCKET` if the address cannot be bound (the context stays unstarted and may
/// be started again). Backup: starts connecting in the background (retrying with capped
/// backoff until connected or exited) and returns at once. A second start is
/// `JUNOS_SYNC_ERR_STATE`.
///
/// # Safety
/// `ctx` is NULL or a live context.
#[no_mangle]
pub unsafe extern "C" fn junos_sync_start(ctx: *mut junos_sync_context_t) -> junos_sync_status_t {
    ffi_boundary! {
        // SAFETY: NULL or live per the contract.
        let Some(c) = (unsafe { ctx_hold(ctx) }) else { return junos_sync_status_t::JUNOS_SYNC_ERR_INVALID };
        status(c.start())
    }
}

/// Master: queues one TLV for the backup. Safe from any thread, including from inside a
/// callback; never waits on the network.
///
/// On `JUNOS_SYNC_OK` the TLV belongs to the library: once the backup has applied it,
/// `sync_ack_notify_func(data, tlv_len)` is called if `ack_requested`, then
/// `sync_free_func(data)`; or it is freed by `junos_sync_exit`. On any error it stays the
/// caller's: `JUNOS_SYNC_ERR_INVALID` (NULL, or `tlv_len` over `JUNOS_SYNC_MAX_TLV_LEN`),
/// `JUNOS_SYNC_ERR_STATE` (a backup context), `JUNOS_SYNC_ERR_BACKLOG_FULL` (with `no_resync`,
/// the unacknowledged backlog is at its limit). May be called before `junos_sync_start`.
///
/// Backlog overflow with resync enabled: when the TLVs held unacknowledged would exceed the
/// backlog limit (`junos_sync_set_backlog_limit`), the library drops the whole backlog, frees
/// it with `sync_free_func` without ack notifications (this TLV too, possibly right here on the
/// calling thread), logs it, counts it in `junos_sync_stats_t.overflows`, disconnects the
/// backup, and gives it a full resync from your database walk, which carries the dropped
/// changes. The call still returns `JUNOS_SYNC_OK`: what you queued is not lost, it is
/// replicated by the walk instead.
///
/// # Safety
/// `ctx` is NULL or a live context; `data` is NULL or a TLV with `tlv_len` payload bytes,
/// allocated so that `sync_free_func` can free it.
#[no_mangle]
pub unsafe extern "C" fn junos_sync_queue(
    ctx: *mut junos_sync_context_t,
    data: *mut junos_sync_tlv_t,
    ack_requested: bool,
) -> junos_sync_status_t {
    ffi_boundary! {
        // SAFETY: NULL or live per the contract.
        let Some(c) = (unsafe { ctx_ref(ctx) }) else { return junos_sync_status_t::JUNOS_SYNC_ERR_INVALID };
        let Some(p) = NonNull::new(data) else {
            c.shared().log("junos_sync_queue: data is NULL");
            return junos_sync_status_t::JUNOS_SYNC_ERR_INVALID;
        };
        // SAFETY: a valid TLV per the contract; its length is checked before the payload is read.
        if unsafe { (*p.as_ptr()).tlv_len } > JUNOS_SYNC_MAX_TLV_LEN {
            c.shared().log("junos_sync_queue: tlv_len is over JUNOS_SYNC_MAX_TLV_LEN");
            return junos_sync_status_t::JUNOS_SYNC_ERR_INVALID;
        }
        // SAFETY: valid and handed over; on error it is handed back unfreed.
        match c.queue(unsafe { CTlv::new(p) }, ack_requested) {
            Ok(()) => junos_sync_status_t::JUNOS_SYNC_OK,
            Err((e, tlv)) => {
                let _ = tlv.into_raw();
                e.into()
            }
        }
    }
}

/// Changes the context's role in place; the new `callbacks` replace the old ones.
///
/// Backup to master (`state->is_master`): stops talking to the old master, binds and listens
/// per `state` (calling `sync_bind_done_func` on the loop thread before this returns), keeps
/// the application's database untouched, and resyncs the next backup that connects by walking
/// it. Master to backup: frees every TLV it holds (with the old `sync_free_func`, no ack
/// notification) and connects to `server_addr:server_port`. Not allowed from inside a callback
/// (`JUNOS_SYNC_ERR_STATE`). On `JUNOS_SYNC_ERR_SOCKET` nothing changed.
///
/// # Safety
/// `ctx` is NULL or a live context; `state` and `callbacks` are NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn junos_sync_switchover(
    ctx: *mut junos_sync_context_t,
    state: *mut junos_sync_state_t,
    callbacks: *mut junos_sync_callbacks_t,
) -> junos_sync_status_t {
    ffi_boundary! {
        // SAFETY: NULL or live per the contract.
        let Some(c) = (unsafe { ctx_hold(ctx) }) else { return junos_sync_status_t::JUNOS_SYNC_ERR_INVALID };
        // SAFETY: NULL or valid per the contract; copied at once.
        let (Some(st), Some(cb)) = (unsafe { state.as_ref() }.copied(), unsafe { callbacks.as_ref() }.copied()) else {
            c.shared().log("junos_sync_switchover: state or callbacks is NULL");
            return junos_sync_status_t::JUNOS_SYNC_ERR_INVALID;
        };
        let r = c.switchover(config(&st), CApp::new(cb));
        if r.is_ok() {
            *c.shared().logger.lock() = logger_for(&cb);
        }
        status(r)
    }
}

/// Sets the most payload bytes (TLV headers included) a master holds unacknowledged; the
/// default is 64 MiB, or `JUNOS_SYNC_BACKLOG_LIMIT` from the environment at init. With
/// `no_resync`, `junos_sync_queue` returns `JUNOS_SYNC_ERR_BACKLOG_FULL` past it. 0 is
/// `JUNOS_SYNC_ERR_INVALID`.
///
/// # Safety
/// `ctx` is NULL or a live context.
#[no_mangle]
pub unsafe extern "C" fn junos_sync_set_backlog_limit(
    ctx: *mut junos_sync_context_t,
    bytes: usize,
) -> junos_sync_status_t {
    ffi_boundary! {
        // SAFETY: NULL or live per the contract.
        let Some(c) = (unsafe { ctx_ref(ctx) }) else { return junos_sync_status_t::JUNOS_SYNC_ERR_INVALID };
        if bytes == 0 {
            c.shared().log("junos_sync_set_backlog_limit: 0 bytes");
            return junos_sync_status_t::JUNOS_SYNC_ERR_INVALID;
        }
        c.shared().backlog_limit.store(bytes, Ordering::Relaxed);
        junos_sync_status_t::JUNOS_SYNC_OK
    }
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
        let Some(c) = (unsafe { ctx_ref(ctx) }) else { return junos_sync_status_t::JUNOS_SYNC_ERR_INVALID };
        // SAFETY: NULL or writable per the contract.
        let Some(out) = (unsafe { stats.as_mut() }) else { return junos_sync_status_t::JUNOS_SYNC_ERR_INVALID };
        let s = c.shared();
        let st = &s.stats;
        *out = junos_sync_stats_t {
            full_resyncs: st.full_resyncs.load(Ordering::Relaxed),
            partial_resyncs: st.partial_resyncs.load(Ordering::Relaxed),
            connections: st.connections.load(Ordering::Relaxed),
            frames_rejected: st.frames_rejected.load(Ordering::Relaxed),
            overflows: st.overflows.load(Ordering::Relaxed),
            backlog_bytes: s.held_bytes.load(Ordering::Relaxed) as u64,
        };
        junos_sync_status_t::JUNOS_SYNC_OK
    }
}

/// Destroys a context: stops its loop thread, closes its sockets, frees every TLV it still
/// holds through `sync_free_func`, reports `JUNOS_SYNC_CONN_DOWN` if a connection was up, and
/// frees the context. No callback runs after it returns. NULL is a no-op.
///
/// From inside a callback it returns at once; the loop thread then frees the remaining TLVs
/// (with `sync_free_func` only, no other callback, no DOWN) as soon as that callback returns,
/// and ends. `ctx` is invalid from the moment this is called.
///
/// # Safety
/// `ctx` is NULL or a live context, not used by any other thread during or after this call.
#[no_mangle]
pub unsafe extern "C" fn junos_sync_exit(ctx: *mut junos_sync_context_t) {
    ffi_boundary! {
        if ctx.is_null() {
            return;
        }
        // SAFETY: the application's reference from init, given back exactly once (contract).
        let c = unsafe { Arc::from_raw(ctx.cast::<Ctx>().cast_const()) };
        c.exit();
    }
}
