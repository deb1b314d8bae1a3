//! What the engine needs from the application. The C layer implements these traits over the
//! application's callbacks; tests implement them in plain Rust.
//!
//! `App` methods of one context never run two at once, nor while the engine holds a lock. They
//! run on the context's loop thread in thread mode, and on the application's thread inside
//! `Context::dispatch` in dispatch mode (the frees of its exit too); `calls` and `dispatcher`
//! are the one path of both. Before a loop exists they run on the calling thread: `can_walk`,
//! `can_decode` and `freer` in `Context::new` and `switchover`, `bind_done` inside
//! `Context::start`, the frees of what was queued when that start does not happen. A `Freer`
//! runs on any thread: `junos_sync_queue` drops an overflowed TLV with it, and `Context::exit`
//! frees what never reached a loop.

pub(crate) mod appq;
pub(crate) mod calls;
pub(crate) mod dispatcher;
pub(crate) mod path;

use std::sync::Arc;

/// A TLV the application handed over. The engine owns it until it gives it back through
/// [`App::free`]; dropping one without that is a leak the engine never commits.
pub trait Tlv: Send + 'static {
    /// The application's `tlv_type`, carried unchanged.
    fn tlv_type(&self) -> u32;
    /// The payload bytes (`tlv_len` of them).
    fn payload(&self) -> &[u8];
    /// The payload's length, read without touching the payload: checked against the limit
    /// before anything trusts it.
    fn payload_len(&self) -> usize {
        self.payload().len()
    }
}

/// The application's side of one context.
pub trait App: Send + 'static {
    type Tlv: Tlv;
    /// The application's opaque database-walk cursor.
    type Cursor: Copy + Send;

    /// Backup: apply one entry, in master queue order.
    fn decode(&mut self, payload: &mut [u8]);
    /// Master: the backup has acknowledged a TLV queued with `ack_requested`.
    fn ack_notify(&mut self, tlv: &Self::Tlv);
    /// Gives a TLV back for good.
    fn free(&mut self, tlv: Self::Tlv);
    /// The same as `free`, callable from any thread: `junos_sync_queue` uses it to drop a TLV
    /// at once when the backlog overflowed and a full resync will cover it.
    fn freer(&self) -> Freer<Self::Tlv>;
    /// Master: next entry of the resync walk after `cursor` (`None`: first). `None` ends the
    /// walk; otherwise the new cursor and the entry's TLV (`None` if the application set none).
    fn get_next(&mut self, cursor: Option<Self::Cursor>) -> Option<(Self::Cursor, Option<Self::Tlv>)>;
    fn conn_status(&mut self, up: bool);
    fn init_sync_done(&mut self, entries: usize);
    fn bind_done(&mut self, port: u16);
    fn db_clear(&mut self);
    /// Whether the application can walk its database (`get_next` is set).
    fn can_walk(&self) -> bool;
    /// Whether the application can apply entries (`decode` is set).
    fn can_decode(&self) -> bool;
}

/// Frees TLVs from any thread.
pub type Freer<T> = Arc<dyn Fn(T) + Send + Sync>;

/// Where log lines go. Called from the loop thread and from API calls on any thread.
pub type Logger = Arc<dyn Fn(&str) + Send + Sync>;
