//! The network side of a role: one TCP connection with its buffers, transport and liveness
//! clock, and the loop's mio tokens.

pub(crate) mod conn;
pub(crate) mod tokens;
