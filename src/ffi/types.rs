//! The C-visible types, laid out exactly as libjunos-sync's `<jnx/junos_sync.h>`.
//!
//! Every name here is the C name callers already use, hence the lint allowances.
#![allow(non_camel_case_types)]

use libc::{c_char, c_void, size_t};

/// Opaque handle to one replication context.
///
/// Created by `junos_sync_init`, destroyed by `junos_sync_exit`. Every function taking a context
/// may be called from any thread; `junos_sync_exit` must not race with any other call on the
/// same context (it frees it).
pub struct junos_sync_context_s {
    _private: [u8; 0],
}

/// Opaque handle to one replication context (see `struct junos_sync_context_s`).
pub type junos_sync_context_t = junos_sync_context_s;

/// Result of every API call. The values are stable across releases.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum junos_sync_status_e {
    /// Success.
    JUNOS_SYNC_OK = 0,
    /// A NULL pointer, a field out of range, or a `tlv_len` above `JUNOS_SYNC_MAX_TLV_LEN`.
    JUNOS_SYNC_ERR_INVALID = 1,
    /// The call does not fit the context's role or state (queue on a backup, start twice, ...).
    JUNOS_SYNC_ERR_STATE = 2,
    /// Memory could not be allocated.
    JUNOS_SYNC_ERR_NOMEM = 3,
    /// The master's unacknowledged backlog is full (only with `no_resync`); the TLV stays yours.
    JUNOS_SYNC_ERR_BACKLOG_FULL = 4,
    /// A socket could not be created, bound or listened on (for example the port is taken).
    JUNOS_SYNC_ERR_SOCKET = 5,
    /// An internal error: a bug in the library was caught at the API boundary and contained.
    JUNOS_SYNC_ERR_INTERNAL = 6,
    /// What the call waits for did not happen within its timeout (`junos_sync_wait`). Since 1.2.
    JUNOS_SYNC_ERR_TIMEOUT = 7,
}

/// Result of every API call (see `enum junos_sync_status_e`).
pub type junos_sync_status_t = junos_sync_status_e;

/// Connection state reported through `sync_conn_status_change_func`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum junos_sync_conn_status_e {
    /// The connection to the peer has ended (always follows exactly one `JUNOS_SYNC_CONN_UP`).
    JUNOS_SYNC_CONN_DOWN = 0,
    /// A connection to the peer is established and has passed the handshake.
    JUNOS_SYNC_CONN_UP = 1,
}

/// Connection state (see `enum junos_sync_conn_status_e`).
pub type junos_sync_conn_status_t = junos_sync_conn_status_e;

/// One unit of replicated data: an 8-byte header followed by `tlv_len` payload bytes.
///
/// The application allocates a TLV (with the allocator behind `sync_free_func`) and hands it to
/// `junos_sync_queue` or returns it through `junos_sync_getnext_data_t`; from then on the library
/// owns it and frees it exactly once with `sync_free_func`. Payload bytes are never byte-swapped.
#[repr(C)]
pub struct junos_sync_tlv_s {
    /// Application-defined type, carried unchanged.
    pub tlv_type: u32,
    /// Number of payload bytes that follow the header (at most `JUNOS_SYNC_MAX_TLV_LEN`).
    pub tlv_len: u32,
    /// The payload (flexible array member).
    pub tlv_value: [u8; 0],
}

/// One unit of replicated data (see `struct junos_sync_tlv_s`).
pub type junos_sync_tlv_t = junos_sync_tlv_s;

/// Out-parameter of `sync_data_get_next_func`: the application stores the TLV for the returned
/// entry in `data`. The library owns that TLV from then on.
#[repr(C)]
pub struct junos_sync_getnext_data_s {
    /// TLV describing the entry just returned (set by the application, may be NULL to skip).
    pub data: *mut junos_sync_tlv_t,
}

/// Out-parameter of `sync_data_get_next_func` (see `struct junos_sync_getnext_data_s`).
pub type junos_sync_getnext_data_t = junos_sync_getnext_data_s;

/// Master: the backup has acknowledged a TLV queued with `ack_requested`.
///
/// Called on the context's loop thread with the TLV (still valid) and its `tlv_len`; the library
/// frees the TLV with `sync_free_func` right after this returns. May call `junos_sync_queue` and
/// `junos_sync_exit`.
pub type junos_sync_ack_notify_func_t = Option<unsafe extern "C" fn(data: *mut junos_sync_tlv_t, len: size_t)>;

/// Backup: apply one replicated entry.
///
/// Called on the context's loop thread, in exactly the master's queue order, with a pointer to
/// the payload bytes (not the TLV header), 8-byte aligned and writable, valid only until this
/// returns. May call `junos_sync_exit`.
pub type junos_sync_data_decode_func_t = Option<unsafe extern "C" fn(data: *mut c_void, len: size_t)>;

/// Master: walk the database for a resync.
///
/// Called on the loop thread first with `current_node == NULL`, then with the previous return
/// value, until it returns NULL. Before returning non-NULL, store the entry's TLV in
/// `gndata->data`; the library owns that TLV from then on and keeps it alive at least until the
/// next call has returned, so the returned cursor may point into it. May call `junos_sync_queue`.
pub type junos_sync_data_getnext_func_t =
    Option<unsafe extern "C" fn(current_node: *mut c_void, gndata: *mut junos_sync_getnext_data_t) -> *mut c_void>;

/// Both roles: the connection to the peer came up or went down.
///
/// Called on the loop thread; every `JUNOS_SYNC_CONN_UP` is followed by exactly one
/// `JUNOS_SYNC_CONN_DOWN`. May call `junos_sync_queue` and `junos_sync_exit`.
pub type junos_sync_conn_status_change_func_t = Option<unsafe extern "C" fn(conn_status: junos_sync_conn_status_t)>;

/// Both roles: the initial (full) resync has completed with `num_of_entries_synced` entries.
///
/// Backup: after the last walked entry was decoded. Master: once the backup has acknowledged
/// the end of the walk. Called on the loop thread.
pub type junos_sync_init_sync_done_func_t = Option<unsafe extern "C" fn(num_of_entries_synced: size_t)>;

/// Master: the listening socket is bound to `port` (host byte order).
///
/// Called exactly once per successful `junos_sync_start` or `junos_sync_switchover` to master,
/// before that call returns: during start on the calling thread (the loop thread does not
/// exist yet), during switchover on the loop thread. Never concurrently with another callback.
pub type junos_sync_bind_done_func_t = Option<unsafe extern "C" fn(port: in_port_t)>;

/// Both roles: a log line. Always called as `log("%s", text)`, from any thread that is inside a
/// library call or the loop thread. Must not call back into the library.
pub type junos_sync_log_msg_func_t = Option<unsafe extern "C" fn(format: *const c_char, ...)>;

/// Allocator for buffers the library would hand the application (NULL means libc's `malloc`).
/// Accepted for source compatibility: this implementation hands the application no allocated
/// buffers (decode payloads are borrowed from its read buffer), so it never calls it.
pub type junos_sync_malloc_func_t = Option<unsafe extern "C" fn(size: size_t) -> *mut c_void>;

/// Frees TLVs the application handed over (NULL means libc's `free`). Called on the loop
/// thread, in `junos_sync_exit`, or, when the backlog overflowed with resync enabled, on the
/// thread inside `junos_sync_queue` (see there). Must not call back into the library.
pub type junos_sync_free_func_t = Option<unsafe extern "C" fn(ptr: *mut c_void)>;

/// Backup: a full resync is starting; empty the database. Called on the loop thread.
pub type junos_sync_db_clear_func_t = Option<unsafe extern "C" fn()>;

/// The application's callbacks, in exactly libjunos-sync's field order. Any may be NULL except
/// `sync_data_get_next_func` on a master with resync and `sync_data_decode_func` on a backup.
/// `junos_sync_init` and `junos_sync_switchover` copy this struct; it may be temporary.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct junos_sync_callbacks_s {
    /// See `junos_sync_ack_notify_func_t`.
    pub sync_ack_notify_func: junos_sync_ack_notify_func_t,
    /// See `junos_sync_data_decode_func_t`.
    pub sync_data_decode_func: junos_sync_data_decode_func_t,
    /// See `junos_sync_data_getnext_func_t`.
    pub sync_data_get_next_func: junos_sync_data_getnext_func_t,
    /// See `junos_sync_conn_status_change_func_t`.
    pub sync_conn_status_change_func: junos_sync_conn_status_change_func_t,
    /// See `junos_sync_init_sync_done_func_t`.
    pub sync_init_sync_done_func: junos_sync_init_sync_done_func_t,
    /// See `junos_sync_bind_done_func_t`.
    pub sync_bind_done_func: junos_sync_bind_done_func_t,
    /// See `junos_sync_log_msg_func_t`.
    pub sync_log_msg_func: junos_sync_log_msg_func_t,
    /// See `junos_sync_malloc_func_t`.
    pub sync_malloc_func: junos_sync_malloc_func_t,
    /// See `junos_sync_free_func_t`.
    pub sync_free_func: junos_sync_free_func_t,
    /// See `junos_sync_db_clear_func_t`.
    pub sync_db_clear_func: junos_sync_db_clear_func_t,
}

/// The application's callbacks (see `struct junos_sync_callbacks_s`).
pub type junos_sync_callbacks_t = junos_sync_callbacks_s;

/// Role and addressing of a context. `junos_sync_init` and `junos_sync_switchover` copy it.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct junos_sync_state_s {
    /// true: master (sends), false: backup (receives).
    pub is_master: bool,
    /// true: no automatic resync (no database walk, no `sync_db_clear_func`) on either side.
    pub no_resync: bool,
    /// IPv4 address in HOST byte order. Backup: the master's address. Master: address to bind,
    /// 0 = all interfaces.
    pub server_addr: u32,
    /// Master: port to bind, 0 = any free port (reported by `sync_bind_done_func`).
    /// Backup: the master's port.
    pub server_port: u16,
    /// Seconds without any frame from the peer before it is declared dead; 0 = 10.
    pub keepalive_time: u32,
}

/// Role and addressing of a context (see `struct junos_sync_state_s`).
pub type junos_sync_state_t = junos_sync_state_s;

/// ISC eventlib's event context, passed by value. The header takes it from `<isc/eventlib.h>`
/// when available and otherwise declares a layout-compatible one.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct evContext {
    pub opaque: *mut c_void,
}

/// Port number in host byte order (from `<netinet/in.h>`).
pub type in_port_t = u16;

/// Largest accepted `tlv_len`: 16 MiB.
pub const JUNOS_SYNC_MAX_TLV_LEN: u32 = 16 * 1024 * 1024;
// cbindgen needs the literal above; this ties it to the limit the wire enforces.
const _: () = assert!(JUNOS_SYNC_MAX_TLV_LEN == crate::proto::wire::MAX_DATA_LEN);

/// Shortest key `junos_sync_set_auth_key` accepts, in bytes.
pub const JUNOS_SYNC_MIN_KEY_LEN: u32 = 16;
const _: () = assert!(JUNOS_SYNC_MIN_KEY_LEN as usize == crate::proto::noise::MIN_KEY_LEN);

/// Counters of one context, from `junos_sync_get_stats`.
///
/// Release 1.1 appended `auth_failures` and `handshakes_refused`, release 1.2 the fields from
/// `waits_satisfied` on. Programs built against an older header keep calling that release's
/// version of `junos_sync_get_stats` (symbol versioning), which fills only the fields it had,
/// so their smaller struct is never overrun.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct junos_sync_stats_s {
    /// Master: sessions that started with a full resync (database walk).
    pub full_resyncs: u64,
    /// Master: sessions where a returning backup resumed after its last applied entry.
    pub partial_resyncs: u64,
    /// Master: backup connections that passed the handshake.
    pub connections: u64,
    /// Connections ended for malformed input or a protocol violation (an acknowledgement of
    /// what was never sent, a sequence gap, an impossible resume point).
    pub frames_rejected: u64,
    /// Master: times the backlog went over its limit and was dropped for a full resync.
    pub overflows: u64,
    /// Master: what the backlog limit counts of the TLVs held (queued, in flight,
    /// unacknowledged): each one's payload plus 64 bytes for its entry.
    pub backlog_bytes: u64,
    /// Handshakes that failed authentication: a wrong key, a keyed peer and an unkeyed one,
    /// or a handshake that was not completed with our key (a replayed one). Since 1.1.
    pub auth_failures: u64,
    /// Well-formed handshakes refused: another protocol version, two masters or two backups,
    /// or a new backup while a live one is connected. Since 1.1.
    pub handshakes_refused: u64,
    /// Master: `junos_sync_wait` calls that returned `JUNOS_SYNC_OK`. Since 1.2.
    pub waits_satisfied: u64,
    /// Master: `junos_sync_wait` calls that returned `JUNOS_SYNC_ERR_TIMEOUT`. Since 1.2.
    pub waits_timed_out: u64,
    /// Full resyncs begun (master: walks started; backup: resyncs received), aborted ones
    /// included. Since 1.2.
    pub resyncs_started: u64,
    /// Full resyncs completed (master: the backup acknowledged the whole walk; backup: the
    /// walk's end applied). Since 1.2.
    pub resyncs_completed: u64,
    /// Full resyncs that ended before completing (connection lost, or an overflow started the
    /// walk again). Since 1.2.
    pub resyncs_aborted: u64,
    /// Milliseconds since the last full resync completed; `UINT64_MAX` if none has since the
    /// context started. Since 1.2.
    pub resync_age_ms: u64,
}

/// Counters of one context (see `struct junos_sync_stats_s`).
pub type junos_sync_stats_t = junos_sync_stats_s;

/// Size of `junos_sync_peer_info_t.peer_address`: the longest IPv6 address (45 characters), `%`,
/// an interface name (15) and the NUL, rounded up.
pub const JUNOS_SYNC_ADDRSTRLEN: usize = 64;

/// State of the connection to the peer, in `junos_sync_peer_info_t`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum junos_sync_link_state_e {
    /// No connection (master: no backup; backup: between attempts).
    JUNOS_SYNC_LINK_DOWN = 0,
    /// Backup: TCP connection in progress.
    JUNOS_SYNC_LINK_CONNECTING = 1,
    /// Handshake in progress (with a key: the key exchange, then the session's).
    JUNOS_SYNC_LINK_HANDSHAKE = 2,
    /// Connected and replicating.
    JUNOS_SYNC_LINK_UP = 3,
}

/// State of the connection to the peer (see `enum junos_sync_link_state_e`).
pub type junos_sync_link_state_t = junos_sync_link_state_e;

/// A context's replication as of the call, from `junos_sync_get_peer_info` (since 1.1).
///
/// Set `size` to `sizeof(junos_sync_peer_info_t)` before the call: the library fills only the
/// fields that fit in `size` bytes, so a program built against this header keeps working
/// when later releases append fields. Release 1.2 appended `peer_address`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct junos_sync_peer_info_s {
    /// Set by the caller: the size of the struct it passes.
    pub size: u32,
    /// The connection's state.
    pub state: junos_sync_link_state_t,
    /// Master: the port it listens on; backup: the master's port.
    pub port: u16,
    /// The peer's port (master: the backup's; backup: the master's), 0 when not connected.
    pub peer_port: u16,
    /// The peer's IPv4 address in HOST byte order, 0 when not connected or the peer is IPv6
    /// (see `peer_address`).
    pub peer_addr: u32,
    /// true: the context is a master.
    pub is_master: bool,
    /// true: the context holds a key (authenticated, encrypted connections).
    pub keyed: bool,
    /// true: a full resync is going on.
    pub resync_running: bool,
    /// true: the last full resync completed (false with `resync_running` false: it was
    /// interrupted, or none happened).
    pub resync_complete: bool,
    /// Reserved, 0.
    pub reserved: [u8; 4],
    /// Milliseconds the connection has been in `state` (or since the peer changed).
    pub state_ms: u64,
    /// Master: age in milliseconds of the oldest TLV not acknowledged (0: none).
    pub lag_ms: u64,
    /// Master: TLVs (queued and walked) held unacknowledged.
    pub unacked_entries: u64,
    /// Master: their bytes, as `junos_sync_stats_t.backlog_bytes`.
    pub unacked_bytes: u64,
    /// The current (or last) full resync: master: entries walked; backup: entries applied.
    pub resync_walked: u64,
    /// Master: walked entries the backup acknowledged; backup: as `resync_walked`.
    pub resync_acked: u64,
    /// The peer's address as text, NUL-terminated, "" when not connected (since 1.2):
    /// `192.0.2.2` (an IPv4 peer, also of a master listening on `::`), `2001:db8::2`,
    /// `fe80::2%eth1` (a link-local one with its interface, or the interface's index when its
    /// name is not plain letters, digits and `.-_@+`). Without brackets or port (`peer_port`).
    pub peer_address: [c_char; JUNOS_SYNC_ADDRSTRLEN],
}

/// A context's replication (see `struct junos_sync_peer_info_s`).
pub type junos_sync_peer_info_t = junos_sync_peer_info_s;
