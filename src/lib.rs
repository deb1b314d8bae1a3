//! junos-sync: a source-compatible replacement for Juniper's libjunos-sync.
//!
//! `core` is the safe, C-free replication engine (protocol, backlog, event loop); `ffi` is the
//! thin C ABI on top of it; `sys` holds the few platform calls std does not offer.
#![deny(unsafe_op_in_unsafe_fn)]

pub mod core;
pub mod ffi;
pub mod sys;
