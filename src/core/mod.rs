//! The replication engine: safe Rust, no C types. The C ABI in `crate::ffi` is a thin layer
//! over [`Context`] and the [`App`] trait.

pub mod app;
pub mod backlog;
pub mod backup;
pub mod config;
pub mod conn;
pub mod engine;
pub mod env;
pub mod error;
pub mod handle;
pub mod handoff;
pub mod handshake;
pub mod inbuf;
pub mod lobby;
pub mod master;
pub mod out;
pub mod shared;
pub mod tokens;
pub mod wire;

pub use app::{App, Freer, Logger, Tlv};
pub use config::Config;
pub use error::Error;
pub use handle::Context;
