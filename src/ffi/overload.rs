//! A backup that cannot keep up: what a master does at its backlog limit
//! (`junos_sync_set_overflow_policy`) and a backup's copy kept through a full resync
//! (`junos_sync_set_resync_buffer`).

#![allow(non_camel_case_types)]

use libc::c_int;

use super::api::{context, ctx_ref, status};
use super::panic::ffi_boundary;
use super::types::{junos_sync_context_t, junos_sync_status_t};

/// What a master does when a TLV would take its backlog past the limit (since 1.2).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum junos_sync_overflow_policy_e {
    /// The default, libjunos-sync's behaviour: the backlog is dropped (freed without ack
    /// notifications) and the backup given a full resync on the same connection (one without
    /// resync is disconnected with the reason).
    /// `junos_sync_queue` returns `JUNOS_SYNC_OK`.
    JUNOS_SYNC_OVERFLOW_RESYNC = 0,
    /// Back-pressure: `junos_sync_queue` returns `JUNOS_SYNC_ERR_BACKLOG_FULL` and the TLV stays
    /// the caller's; nothing is dropped, no full resync follows. An application that retries
    /// (or waits for ack notifications) is slowed to the backup's pace.
    JUNOS_SYNC_OVERFLOW_REFUSE = 1,
}

/// What a master does at its backlog limit (see `enum junos_sync_overflow_policy_e`).
#[allow(dead_code)] // named by the header only (the call takes an int)
pub type junos_sync_overflow_policy_t = junos_sync_overflow_policy_e;

/// Master: chooses what happens when a TLV would take the backlog past its limit
/// (`junos_sync_set_backlog_limit`), since 1.2. `policy` is a `junos_sync_overflow_policy_t`
/// value, passed as an int.
///
/// `JUNOS_SYNC_OVERFLOW_RESYNC` (the default) drops the backlog and gives the backup a full
/// resync, as libjunos-sync did (see `junos_sync_queue`); resyncs that keep aborting back off
/// and are logged. `JUNOS_SYNC_OVERFLOW_REFUSE` makes `junos_sync_queue` return
/// `JUNOS_SYNC_ERR_BACKLOG_FULL` (the TLV stays the caller's) as `no_resync` does, while
/// everything else stays as with resync: a backup that connects without a resume point still
/// gets a full resync. During that walk the TLVs queued meanwhile wait for its end, so the walk
/// may hold up to half the limit on top of the limit.
///
/// Any time, from any thread, also from inside a callback; takes effect for the next
/// `junos_sync_queue`; kept across `junos_sync_switchover` (it applies whenever the context is
/// a master). Returns `JUNOS_SYNC_ERR_INVALID` for a NULL `ctx` or a value that is not a
/// policy, `JUNOS_SYNC_ERR_STATE` on a backup context (logged) or once the context is
/// exiting.
///
/// # Safety
/// `ctx` is NULL or a live context.
#[no_mangle]
pub unsafe extern "C" fn junos_sync_set_overflow_policy(
    ctx: *mut junos_sync_context_t,
    policy: c_int,
) -> junos_sync_status_t {
    ffi_boundary! {
        let c = context!(ctx);
        let refuse = match policy {
            p if p == junos_sync_overflow_policy_e::JUNOS_SYNC_OVERFLOW_RESYNC as c_int => false,
            p if p == junos_sync_overflow_policy_e::JUNOS_SYNC_OVERFLOW_REFUSE as c_int => true,
            p => {
                c.log(&format!("junos_sync_set_overflow_policy: {p} is not a junos_sync_overflow_policy_t"));
                return junos_sync_status_t::JUNOS_SYNC_ERR_INVALID;
            }
        };
        status(c.set_overflow_policy(refuse))
    }
}

/// Backup: keeps the application's last complete copy through a full resync, since 1.2: the
/// resync's entries, up to `bytes` of payload (plus 16 bytes each), are held by the library and
/// `sync_db_clear_func` and their `sync_data_decode_func` calls run only once the whole walk
/// has arrived (SYNC_END), then the entries that followed it, in order. A resync that aborts
/// (the connection lost, the master's backlog overflowed) leaves the application's table as it
/// was. A walk larger than `bytes` falls back to libjunos-sync's order (clear at its start,
/// each entry decoded as it comes), with a log line: what was held is decoded at that point.
/// `bytes` 0 (the default) is that order always. The environment variable
/// `JUNOS_SYNC_RESYNC_BUFFER=BYTES`, read by `junos_sync_init`, sets it for daemons that do
/// not call this (a value that is not a number of bytes fails the init).
///
/// The memory is the library's, bounded by `bytes` (it counts against no backlog limit); the
/// master still sees each held entry acknowledged, so a walk proceeds at the network's pace.
///
/// Any time, from any thread, also from inside a callback; a resync already under way keeps
/// the setting it started with; kept across `junos_sync_switchover` (it applies whenever the
/// context is a backup). Returns `JUNOS_SYNC_ERR_INVALID` for a NULL `ctx`,
/// `JUNOS_SYNC_ERR_STATE` on a master context (logged) or once the context is exiting.
///
/// # Safety
/// `ctx` is NULL or a live context.
#[no_mangle]
pub unsafe extern "C" fn junos_sync_set_resync_buffer(
    ctx: *mut junos_sync_context_t,
    bytes: usize,
) -> junos_sync_status_t {
    ffi_boundary! {
        let c = context!(ctx);
        status(c.set_resync_buffer(bytes))
    }
}
