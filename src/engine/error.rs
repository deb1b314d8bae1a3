//! Errors: what the API reports to its callers (`Error`), and why a connection ended
//! (`Fault`), which says both the log line and the counter it feeds.

use std::fmt;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::engine::counters::Counters;

/// Errors the engine reports to callers of the API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// Bad argument or configuration.
    Invalid,
    /// The call does not fit the role or state.
    State,
    /// Out of memory or threads.
    NoMem,
    /// The master's backlog is full (no_resync only).
    BacklogFull,
    /// Socket, bind or listen failure.
    Socket,
    /// A bug was contained, or the context failed because of one earlier.
    Internal,
    /// A wait ended at its timeout.
    Timeout,
}

/// Why a connection (or a connection attempt) ended.
#[derive(Debug)]
pub(crate) enum Fault {
    /// The peer sent bytes that are not a valid frame, handshake or record.
    Malformed(String),
    /// The peer sent a valid frame that is impossible here: an acknowledgement of what was
    /// never delivered, a sequence gap, a resume point beyond what it was sent, a frame that
    /// does not belong in this state.
    Violation(String),
    /// We refused a well-formed handshake (another version, the same role, a live backup).
    Refused(String),
    /// The peer does not hold our key, holds none, or we hold none and it does.
    Auth(String),
    /// The peer told us why it ends the connection.
    PeerRefused(String),
    /// The connection broke or the peer closed it.
    Io(io::Error),
    /// No complete frame from the peer for the keepalive time (or no handshake in time).
    Silent(&'static str),
    /// Something on our side: a socket that cannot be registered, a buffer that cannot grow.
    Local(String),
}

impl Fault {
    /// The counter this kind of ending feeds, if any.
    fn counter<'c>(&self, c: &'c Counters) -> Option<&'c AtomicU64> {
        match self {
            Fault::Malformed(_) | Fault::Violation(_) => Some(&c.frames_rejected),
            Fault::Refused(_) => Some(&c.handshakes_refused),
            Fault::Auth(_) => Some(&c.auth_failures),
            Fault::PeerRefused(_) | Fault::Io(_) | Fault::Silent(_) | Fault::Local(_) => None,
        }
    }

    /// Counts this ending in the context's statistics.
    pub(crate) fn count(&self, c: &Counters) {
        if let Some(n) = self.counter(c) {
            n.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn is_auth(&self) -> bool {
        matches!(self, Fault::Auth(_))
    }
}

impl From<io::Error> for Fault {
    fn from(e: io::Error) -> Self {
        Fault::Io(e)
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Malformed(s) => write!(f, "malformed input: {s}"),
            Fault::Violation(s) => write!(f, "protocol violation: {s}"),
            Fault::Refused(s) => write!(f, "refused: {s}"),
            Fault::Auth(s) => write!(f, "authentication failed: {s}"),
            Fault::PeerRefused(s) => write!(f, "peer refused: {s}"),
            Fault::Io(e) => match e.kind() {
                io::ErrorKind::UnexpectedEof => f.write_str("connection closed by peer"),
                io::ErrorKind::ConnectionRefused => f.write_str("connection refused"),
                _ => write!(f, "{e}"),
            },
            Fault::Silent(s) => f.write_str(s),
            Fault::Local(s) => f.write_str(s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_feeds_its_own_counter() {
        let c = Counters::default();
        Fault::Malformed("x".into()).count(&c);
        Fault::Violation("x".into()).count(&c);
        Fault::Refused("x".into()).count(&c);
        Fault::Auth("x".into()).count(&c);
        Fault::Auth("y".into()).count(&c);
        Fault::Io(io::ErrorKind::UnexpectedEof.into()).count(&c);
        Fault::Silent("quiet").count(&c);
        let s = c.snapshot(0);
        assert_eq!((s.frames_rejected, s.handshakes_refused, s.auth_failures), (2, 1, 2));
        assert_eq!(Fault::Io(io::ErrorKind::UnexpectedEof.into()).to_string(), "connection closed by peer");
    }
}
