//! The network side of a role: the addresses it binds or connects to, one TCP connection with
//! its buffers, transport and liveness clock, and the loop's mio tokens.

pub(crate) mod addr;
pub(crate) mod conn;
pub(crate) mod tokens;
