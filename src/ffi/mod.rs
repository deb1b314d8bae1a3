//! The C ABI: libjunos-sync's types and functions, a thin layer over the engine's `Context`.
//!
//! Every `unsafe` block here says why it is sound (`clippy::undocumented_unsafe_blocks` holds
//! it); no C type reaches `crate::engine`.

pub mod addr;
pub mod api;
pub mod app;
pub mod eventlib;
pub mod keys;
pub mod overload;
pub mod panic;
pub mod peer;
pub mod stats;
pub mod types;
pub mod wait;
