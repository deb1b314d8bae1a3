//! The replication engine: safe Rust, no C types. Everything here is private to the crate but
//! the facade: [`Context`] and the [`App`]/[`Tlv`] traits the application side implements.

mod app;
mod appq;
mod backlog;
mod backup;
mod calls;
mod config;
mod conn;
mod context;
mod dispatcher;
mod env;
mod error;
mod handoff;
mod held;
mod keys;
mod lobby;
mod master;
mod quiet;
mod resume;
mod runloop;
mod shared;
mod status;
mod status_socket;
mod tokens;

pub use app::{App, Freer, Logger, Tlv};
pub use config::Config;
pub use context::Context;
pub use error::Error;
pub use shared::Stats;
pub use status::{LinkState, Resync, Status};
