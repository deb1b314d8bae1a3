//! junos-sync: a source-compatible replacement for Juniper's libjunos-sync.
//!
//! `proto` is the wire format (pure byte handling); `engine` is the safe, C-free replication
//! engine (roles, backlog, event loop) behind the one facade [`Context`]; `ffi` is the thin C
//! ABI on top of it; `sys` holds the few platform calls std does not offer.
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

mod engine;
mod ffi;
/// cbindgen:ignore
pub mod proto;
mod sys;

pub use engine::{App, Config, Context, Error, ExitKind, Freer, LinkState, Logger, Resync, Stats, Status, Tlv};
