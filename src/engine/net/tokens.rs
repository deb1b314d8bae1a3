//! mio tokens of a context's event loop.

use mio::Token;

pub(crate) const WAKER: Token = Token(0);
pub(crate) const LISTENER: Token = Token(1);
/// The established peer connection (master: the backup; backup: the master).
pub(crate) const CONN: Token = Token(2);
/// The status socket (`JUNOS_SYNC_STATUS_DIR`).
pub(crate) const STATUS: Token = Token(3);
const PENDING_BASE: usize = 16;

/// A master's connection still in its handshake, by slot.
pub(crate) fn pending(slot: usize) -> Token {
    Token(PENDING_BASE + slot)
}

pub(crate) fn pending_index(t: Token) -> Option<usize> {
    t.0.checked_sub(PENDING_BASE)
}
