//! The C ABI: libjunos-sync's types and functions, a thin layer over `crate::core`.
//!
//! Every `unsafe` block here says why it is sound; nothing below `crate::core` knows about C.

pub mod api;
pub mod app;
pub mod eventlib;
pub mod panic;
pub mod types;
