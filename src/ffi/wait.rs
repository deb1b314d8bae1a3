//! `junos_sync_wait`: a master's caller learns that the backup holds what it queued.

use std::time::Duration;

use super::api::{context, ctx_hold, status};
use super::panic::ffi_boundary;
use super::types::{junos_sync_context_t, junos_sync_status_t};

/// Master: waits until the backup has applied every TLV this context accepted before the call,
/// for at most `timeout_ms` milliseconds (since 1.2).
///
/// "Applied" is what `sync_ack_notify_func` reports per TLV: the backup's `sync_data_decode_func`
/// returned for it and the backup acknowledged it. A TLV accepted is one for which
/// `junos_sync_queue` returned `JUNOS_SYNC_OK`, on any thread, before this call began (TLVs
/// queued by other threads while it waits may or may not be included). State at least that
/// new counts too: when a backlog overflow handed TLVs to a full resync (see
/// `junos_sync_queue`), the backup holds them once that resync has completed (the
/// `sync_init_sync_done_func` of the walk), and the wait returns then. Nothing accepted, or
/// everything already applied: `JUNOS_SYNC_OK` at once, with or without a backup.
///
/// Returns `JUNOS_SYNC_OK` when the backup holds it, `JUNOS_SYNC_ERR_TIMEOUT` when it does not
/// within `timeout_ms` (0: a check that never blocks), also when no backup is connected; nothing
/// is undone or resent on a timeout, the TLVs stay queued and a later wait may succeed. Both are
/// counted in `junos_sync_stats_t` (`waits_satisfied`, `waits_timed_out`). `UINT32_MAX` waits
/// about 50 days.
///
/// `JUNOS_SYNC_ERR_STATE` (logged) on a backup, before `junos_sync_start`, and from inside any
/// callback of this context (in thread mode the loop thread that would process the
/// acknowledgement runs it; in dispatch mode the dispatch would not return): call it from
/// outside the callbacks. A wait in progress returns `JUNOS_SYNC_ERR_STATE` (not logged) when
/// `junos_sync_exit` is called from another thread (it returns at once, and the context's
/// memory is released only once every wait in progress has returned), or when a
/// `junos_sync_switchover` ends the role it waited on; `JUNOS_SYNC_ERR_INTERNAL` if the context
/// failed.
///
/// Threads: any thread, several at once, each with its own deadline. It never polls: the
/// calling thread sleeps until the library's loop thread processes an acknowledgement, which it
/// does in dispatch mode too, without the application dispatching. Only a full resync needs the
/// application: in dispatch mode its walk (`sync_data_get_next_func`) runs inside
/// `junos_sync_dispatch`, so a wait for an overflow's resync can succeed only while some thread
/// dispatches (a wait on the dispatching thread then times out). Queueing costs nothing more
/// for it.
///
/// # Safety
/// `ctx` is NULL or a live context.
#[no_mangle]
pub unsafe extern "C" fn junos_sync_wait(ctx: *mut junos_sync_context_t, timeout_ms: u32) -> junos_sync_status_t {
    ffi_boundary! {
        // Held: junos_sync_exit from another thread may drop the application's reference
        // while this waits.
        let c = context!(hold ctx);
        status(c.wait(Duration::from_millis(u64::from(timeout_ms))))
    }
}
