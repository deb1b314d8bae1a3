//! The wire protocol: what only parses or builds bytes. Pure (no sockets, no threads, no C),
//! and the only part of the crate that fuzz targets, benches and protocol tests see.

pub mod handshake;
pub mod inbuf;
pub mod noise;
pub mod out;
pub mod seal;
pub mod wire;
