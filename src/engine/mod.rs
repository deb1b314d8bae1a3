//! The replication engine: safe Rust, no C types. Everything here is private to the crate but
//! the facade: [`Context`] and the [`App`]/[`Tlv`] traits the application side implements.

mod app;
mod backup;
mod config;
mod context;
mod counters;
mod env_vars;
mod error;
mod keys;
mod log_limit;
mod master;
mod net;
mod queue;
mod runloop;
mod shared;
mod status;
mod waits;

pub use app::{App, Freer, Logger, Tlv};
pub use config::Config;
pub use context::lifecycle::ExitKind;
pub use context::Context;
pub use counters::Stats;
pub use error::Error;
pub use status::{LinkState, Resync, Status};

pub(crate) use master::backlog::entry_bytes as backlog_entry_bytes;
pub(crate) use queue::ring::slots_are_lock_free;
