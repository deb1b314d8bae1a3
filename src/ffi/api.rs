//! The exported functions. Each one: NULL checks that return an error code, a panic boundary,
//! and a call to one `Context` method.

use std::ptr::NonNull;
use std::sync::Arc;

use libc::c_void;

use super::app::{logger_for, CApp, CTlv};
use super::eventlib::EventLib;
use super::panic::ffi_boundary;
use super::types::*;
use crate::{Config, Context, Error};

pub(super) type Ctx = Context<CApp>;

impl From<Error> for junos_sync_status_t {
    fn from(e: Error) -> Self {
        match e {
            Error::Invalid => Self::JUNOS_SYNC_ERR_INVALID,
            Error::State => Self::JUNOS_SYNC_ERR_STATE,
            Error::NoMem => Self::JUNOS_SYNC_ERR_NOMEM,
            Error::BacklogFull => Self::JUNOS_SYNC_ERR_BACKLOG_FULL,
            Error::Socket => Self::JUNOS_SYNC_ERR_SOCKET,
            Error::Internal => Self::JUNOS_SYNC_ERR_INTERNAL,
            Error::Timeout => Self::JUNOS_SYNC_ERR_TIMEOUT,
        }
    }
}

pub(super) fn status(r: Result<(), Error>) -> junos_sync_status_t {
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
pub(super) unsafe fn ctx_ref<'a>(ctx: *mut junos_sync_context_t) -> Option<&'a Ctx> {
    // SAFETY: per this function's contract, a non-NULL `ctx` is an `Arc<Ctx>` from init.
    unsafe { ctx.cast::<Ctx>().cast_const().as_ref() }
}

/// A counted reference for the duration of a call that runs callbacks.
///
/// # Safety
/// As `ctx_ref`.
pub(super) unsafe fn ctx_hold(ctx: *mut junos_sync_context_t) -> Option<Arc<Ctx>> {
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

/// The context an export was given, or an early return from the export's body if `ctx` is
/// NULL: of `JUNOS_SYNC_ERR_INVALID`, of the value given after the comma, or of nothing
/// (`void`, for `junos_sync_exit`). `hold` takes a counted reference (`ctx_hold`, for the
/// calls that run callbacks); otherwise it borrows (`ctx_ref`).
///
/// Only for the `ctx` argument of an export (or of a helper with the same contract), which its
/// `# Safety` says is NULL or a live context from `junos_sync_init`, as every export's does:
/// that makes the call sound, and this is the one place that relies on it.
macro_rules! context {
    (hold $ctx:expr) => {
        context!(@ ctx_hold, $ctx, junos_sync_status_t::JUNOS_SYNC_ERR_INVALID)
    };
    (void $ctx:expr) => {
        context!(@ ctx_ref, $ctx,)
    };
    ($ctx:expr) => {
        context!(@ ctx_ref, $ctx, junos_sync_status_t::JUNOS_SYNC_ERR_INVALID)
    };
    ($ctx:expr, $none:expr) => {
        context!(@ ctx_ref, $ctx, $none)
    };
    (@ $get:ident, $ctx:expr, $($none:expr)?) => {
        // SAFETY: `$ctx` is NULL or a live context, per the contract of the export this
        // expands in (see above), which is all `ctx_ref` and `ctx_hold` ask.
        match unsafe { $get($ctx) } {
            Some(c) => c,
            None => return $($none)?,
        }
    };
}
pub(super) use context;

/// Creates a context: validates and copies `state` and `callbacks` (both may be temporary).
///
/// Returns NULL on bad input (NULL arguments, a backup without `sync_data_decode_func` or
/// without `server_addr` and `server_port`, a master with resync but no
/// `sync_data_get_next_func`), after saying why through `sync_log_msg_func` when it is set. NULL
/// `sync_malloc_func`/`sync_free_func` mean libc's. Nothing runs until `junos_sync_start`. Free
/// the context with `junos_sync_exit`. Since 1.2 `junos_sync_set_address` may replace a
/// backup's `server_addr` and `server_port` after this call.
///
/// The environment is read here, and fails closed: a `JUNOS_SYNC_*` variable that is set but
/// cannot be used as it says makes this return NULL, with a log line naming the variable, its
/// value and what is wrong (unset, each has its default):
/// - `JUNOS_SYNC_AUTH_KEY_FILE`: the context is keyed with the key in that file (several files
///   separated by `:` for a key rotation, the first tried first), as if by
///   `junos_sync_set_auth_key`. Refused: an empty path (`""`, `":"`), more than 4 files, and a
///   file that is missing, a symlink, not a regular file (a FIFO is not waited on), owned by
///   another user than this process's or root, readable or writable by group or others,
///   shorter than `JUNOS_SYNC_MIN_KEY_LEN` bytes, or one byte repeated.
/// - `JUNOS_SYNC_BACKLOG_LIMIT`: the backlog limit in bytes (as `junos_sync_set_backlog_limit`
///   sets it), in decimal digits, 1 or more.
/// - `JUNOS_SYNC_RESYNC_BUFFER`: a backup's resync buffer in bytes (as
///   `junos_sync_set_resync_buffer` sets it, since 1.2), in decimal digits; 0 is off.
/// - `JUNOS_SYNC_STATUS_DIR`: the directory of the context's status socket; it, and every
///   directory above it, must be owned by this process's user or root and not writable by
///   group or others unless sticky.
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

/// Runs the context's callbacks on the application's ISC eventlib loop.
///
/// Called before `junos_sync_start` in a process that has ISC eventlib's `evSelectFD` and
/// `evDeselectFD` (looked up at run time: linked into the program or a library it loads; no
/// link-time dependency), the context registers one descriptor with
/// `evSelectFD(ev_ctx, fd, EV_READ, handler, ...)`, and from then on every callback of the
/// context runs inside that handler, on the thread running the eventlib loop: decode,
/// get_next, ack_notify, free, conn_status, init_sync_done, db_clear, and bind_done after a
/// switchover (bind_done of `junos_sync_start` still runs inside that call). Each handler call
/// runs callbacks for about a millisecond at most and leaves the descriptor readable while
/// more are due. `junos_sync_exit` must then be called on that thread; it deselects the
/// descriptor. See `junos_sync_dispatch` for what holds in this mode.
///
/// Without eventlib in the process, or after `junos_sync_start`, callbacks stay on the
/// context's own loop thread; the call logs that once and still returns `JUNOS_SYNC_OK`.
/// `JUNOS_SYNC_ERR_INTERNAL` if evSelectFD fails (the context stays in thread mode).
///
/// # Safety
/// `ctx` is NULL or a live context; `ev_ctx` is the application's live eventlib context.
#[no_mangle]
pub unsafe extern "C" fn junos_sync_set_event_context(
    ctx: *mut junos_sync_context_t,
    ev_ctx: evContext,
) -> junos_sync_status_t {
    ffi_boundary! {
        let c = context!(ctx);
        if let Err(e) = c.set_event_context(ev_ctx.opaque as usize) {
            return e.into();
        }
        let Some(lib) = EventLib::find() else {
            c.log("junos_sync_set_event_context: ISC eventlib (evSelectFD, evDeselectFD) is not in this process: callbacks run on the library's own thread");
            return junos_sync_status_t::JUNOS_SYNC_OK;
        };
        if c.started() {
            c.log("junos_sync_set_event_context: called after junos_sync_start: callbacks run on the library's own thread");
            return junos_sync_status_t::JUNOS_SYNC_OK;
        }
        let fd = match c.enable_dispatch() {
            Ok(fd) => fd,
            Err(e) => return e.into(),
        };
        // SAFETY: the application's evContext (contract); `ctx` stays valid until exit, which
        // deselects the handler before it frees the context.
        match unsafe { lib.select(ev_ctx, fd, on_ready, ctx.cast()) } {
            Ok(reg) => {
                c.on_exit(Box::new(move || reg.drop_it()));
                junos_sync_status_t::JUNOS_SYNC_OK
            }
            Err(r) => {
                c.disable_dispatch();
                c.log(&format!("junos_sync_set_event_context: evSelectFD failed ({r}): callbacks run on the library's own thread"));
                junos_sync_status_t::JUNOS_SYNC_ERR_INTERNAL
            }
        }
    }
}

/// The eventlib file handler: runs the callbacks due.
unsafe extern "C" fn on_ready(_ev: evContext, uap: *mut c_void, _fd: libc::c_int, _mask: libc::c_int) {
    // SAFETY: `uap` is the context registered in junos_sync_set_event_context; its exit
    // deselects this handler before freeing it.
    unsafe { junos_sync_dispatch(uap.cast()) };
}

/// Runs the context's callbacks on the application's own event loop (epoll, libevent, GLib,
/// ...), for loops other than ISC eventlib (see `junos_sync_set_event_context`).
///
/// Call it before `junos_sync_start`. From then on no callback runs on the library's thread:
/// every callback of the context runs inside `junos_sync_dispatch`, on the thread that calls
/// it. Returns a descriptor to watch for readability (level- or edge-triggered both work); when
/// it is readable, call `junos_sync_dispatch`. Do not read, write or close it; it is closed by
/// `junos_sync_exit`. Calling it again returns the same descriptor. Returns -1 (and logs why)
/// for a NULL or started context.
///
/// # Safety
/// `ctx` is NULL or a live context.
#[no_mangle]
pub unsafe extern "C" fn junos_sync_get_fd(ctx: *mut junos_sync_context_t) -> libc::c_int {
    ffi_boundary! {
        let c = context!(ctx, -1);
        c.enable_dispatch().unwrap_or(-1)
    }
}

/// Dispatch mode: runs the callbacks that are due, in order, for about a millisecond at most,
/// and returns; never blocks. The descriptor stays readable while more are due, so an event
/// loop that calls this whenever it is readable gets every callback. A spurious call is
/// harmless.
///
/// What holds in dispatch mode (eventlib or `junos_sync_get_fd`), the same as in thread mode:
/// callbacks run in order, never two at once; every TLV is freed exactly once (acknowledged
/// TLVs are freed here, on your thread); the get_next cursor contract; `junos_sync_queue` and
/// `junos_sync_exit` from inside callbacks. A backup acknowledges a TLV only after decode
/// returned here. If you stop dispatching, the flow stops: the backup stops reading and
/// acknowledging, and the master's backlog limit applies; nothing grows without bound.
/// Call `junos_sync_exit` on the thread that dispatches, not while a dispatch runs elsewhere.
///
/// Returns `JUNOS_SYNC_ERR_STATE` if the context is not in dispatch mode or if called from
/// inside a callback, `JUNOS_SYNC_ERR_INTERNAL` if the context failed.
///
/// # Safety
/// `ctx` is NULL or a live context.
#[no_mangle]
pub unsafe extern "C" fn junos_sync_dispatch(ctx: *mut junos_sync_context_t) -> junos_sync_status_t {
    ffi_boundary! {
        // Held for the callbacks (exit may run in one).
        let c = context!(hold ctx);
        status(c.dispatch())
    }
}

/// Starts the context.
///
/// Calling `junos_sync_exit` from inside `sync_bind_done_func` here is allowed: nothing starts,
/// queued TLVs are freed, and this returns `JUNOS_SYNC_ERR_STATE`.
///
/// Master: binds `server_addr:server_port` (SO_REUSEADDR; port 0 = any free port), or the
/// address of `junos_sync_set_address`, listens, and calls `sync_bind_done_func(port)` once, on
/// this thread, before returning; returns `JUNOS_SYNC_ERR_SOCKET` if the address cannot be bound
/// (the context stays unstarted and may be started again). A master bound to an address other
/// than loopback (`127.0.0.0/8`, `::1`) without a key logs a warning: anyone who reaches the
/// port could read the replicated state. Backup: starts connecting to `server_addr:server_port`,
/// or the address of `junos_sync_set_address`, in the background (retrying with capped backoff
/// until connected or exited) and returns at once; `JUNOS_SYNC_ERR_INVALID` (logged) if it has
/// no master's address or port (0). A host name given to `junos_sync_set_address` is looked up
/// here first, on this thread, for at most 5 seconds (`JUNOS_SYNC_ERR_INVALID` if it does not
/// resolve; the context stays unstarted). A second start is `JUNOS_SYNC_ERR_STATE`.
///
/// # Safety
/// `ctx` is NULL or a live context.
#[no_mangle]
pub unsafe extern "C" fn junos_sync_start(ctx: *mut junos_sync_context_t) -> junos_sync_status_t {
    ffi_boundary! {
        let c = context!(hold ctx);
        status(c.start())
    }
}

/// Master: queues one TLV for the backup. Safe from any thread, including from inside a
/// callback; never waits on the network, never sleeps. No system call in the common case: one
/// eventfd write wakes the loop thread when it sleeps, and while the loop thread is more than
/// 16384 TLVs behind, one `sched_yield` every 1024 calls lets it run if it shares this CPU (on
/// a CPU of its own the call returns at once).
///
/// On `JUNOS_SYNC_OK` the TLV belongs to the library: once the backup has applied it,
/// `sync_ack_notify_func(data, tlv_len)` is called if `ack_requested`, then
/// `sync_free_func(data)`; or it is freed by `junos_sync_exit`. On any error it stays the
/// caller's: `JUNOS_SYNC_ERR_INVALID` (NULL, or `tlv_len` over `JUNOS_SYNC_MAX_TLV_LEN`),
/// `JUNOS_SYNC_ERR_STATE` (a backup context), `JUNOS_SYNC_ERR_BACKLOG_FULL` (with `no_resync`,
/// the unacknowledged backlog is at its limit), `JUNOS_SYNC_ERR_INTERNAL` (the context failed).
/// May be called before `junos_sync_start`.
///
/// Backlog overflow with resync enabled: when the TLVs held unacknowledged would exceed the
/// backlog limit (`junos_sync_set_backlog_limit`), the library drops the whole backlog, frees
/// it with `sync_free_func` without ack notifications (this TLV too, possibly right here on the
/// calling thread), logs it, counts it in `junos_sync_stats_t.overflows`, and gives the backup
/// a full resync from your database walk on the same connection, which carries the dropped
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
        let c = context!(ctx);
        let Some(p) = NonNull::new(data) else {
            c.log("junos_sync_queue: data is NULL");
            return junos_sync_status_t::JUNOS_SYNC_ERR_INVALID;
        };
        // SAFETY: valid and handed over; `Context::queue` checks `tlv_len` before the payload
        // is looked at, and on error hands it back unfreed.
        match c.queue(unsafe { CTlv::new(p) }, ack_requested) {
            Ok(()) => junos_sync_status_t::JUNOS_SYNC_OK,
            Err((e, tlv)) => {
                let _ = tlv.into_raw();
                e.into()
            }
        }
    }
}

/// Changes the context's role in place; the new `callbacks` replace the old ones. The
/// context's keys stay.
///
/// Backup to master (`state->is_master`): stops talking to the old master, binds and listens
/// per `state` (calling `sync_bind_done_func` on the loop thread before this returns), keeps
/// the application's database untouched, and resyncs the next backup that connects by walking
/// it. Master to backup: frees every TLV it holds (with the old `sync_free_func`, no ack
/// notification) and connects to `server_addr:server_port`. Not allowed from inside a callback
/// (`JUNOS_SYNC_ERR_STATE`). On `JUNOS_SYNC_ERR_SOCKET` nothing changed.
///
/// The new role's address is `server_addr:server_port` of `state`, unless
/// `junos_sync_set_address` was called after the start or switchover that made the current
/// role: then it is that call's (see there), a host name looked up here, on this thread. An
/// address that does not resolve, and a backup with no master's address or port, are
/// `JUNOS_SYNC_ERR_INVALID` (logged; nothing changed).
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
        let c = context!(hold ctx);
        // SAFETY: NULL or valid per the contract; copied at once.
        let (Some(st), Some(cb)) = (unsafe { state.as_ref() }.copied(), unsafe { callbacks.as_ref() }.copied()) else {
            c.log("junos_sync_switchover: state or callbacks is NULL");
            return junos_sync_status_t::JUNOS_SYNC_ERR_INVALID;
        };
        let r = c.switchover(config(&st), CApp::new(cb));
        if r.is_ok() {
            c.set_logger(logger_for(&cb));
        }
        status(r)
    }
}

/// Sets the most bytes a master holds unacknowledged, each TLV counted as its payload and 64
/// bytes for its entry (header, allocation and bookkeeping: what even an empty TLV costs); the
/// default is 64 MiB, or `JUNOS_SYNC_BACKLOG_LIMIT` from the environment at init. Past it,
/// with `no_resync` or the overflow policy `JUNOS_SYNC_OVERFLOW_REFUSE`, `junos_sync_queue`
/// returns `JUNOS_SYNC_ERR_BACKLOG_FULL` (the TLV stays the caller's); otherwise the backlog
/// is dropped for a full resync. 0 is `JUNOS_SYNC_ERR_INVALID`.
///
/// # Safety
/// `ctx` is NULL or a live context.
#[no_mangle]
pub unsafe extern "C" fn junos_sync_set_backlog_limit(
    ctx: *mut junos_sync_context_t,
    bytes: usize,
) -> junos_sync_status_t {
    ffi_boundary! {
        let c = context!(ctx);
        status(c.set_backlog_limit(bytes))
    }
}

/// Destroys a context: stops its loop thread, closes its sockets, frees every TLV it still
/// holds through `sync_free_func`, reports `JUNOS_SYNC_CONN_DOWN` if a connection was up,
/// wipes its keys, and frees the context. No callback runs after it returns. NULL is a no-op.
///
/// From inside a callback it returns at once; the loop thread then frees the remaining TLVs
/// (with `sync_free_func` only, no other callback, no DOWN) as soon as that callback returns,
/// and ends. `ctx` is invalid for the application from the moment this is called; a second
/// `junos_sync_exit` of it from a callback that the first one causes (the DOWN it reports, a
/// free) does nothing.
///
/// Calls of `junos_sync_wait` in progress on other threads return `JUNOS_SYNC_ERR_STATE`; they
/// are the only calls another thread may still be in.
///
/// # Safety
/// `ctx` is NULL or a live context, not used by any other thread during or after this call
/// (but for `junos_sync_wait` calls already waiting).
#[no_mangle]
pub unsafe extern "C" fn junos_sync_exit(ctx: *mut junos_sync_context_t) {
    ffi_boundary! {
        // A nested exit (from a callback this one causes) is given a live context too: it is
        // freed only when the exit that claimed it returns.
        let c = context!(void ctx);
        let Some(kind) = c.claim_exit() else { return };
        // SAFETY: the application's reference from init, given back exactly once (the claim
        // above lets only one exit through).
        let owner = unsafe { Arc::from_raw(ctx.cast::<Ctx>().cast_const()) };
        owner.clone().exit_claimed(kind, owner);
    }
}
