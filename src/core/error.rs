//! Errors the engine reports to callers of the API.

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
    /// A bug was contained.
    Internal,
}
