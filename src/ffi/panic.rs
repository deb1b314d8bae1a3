//! The one panic boundary every export goes through: a Rust panic must never unwind into C.
//! What the caller gets instead depends on the return type.

use std::panic::{catch_unwind, AssertUnwindSafe};

use super::types::{junos_sync_context_t, junos_sync_status_t};

/// The value an export returns when its body panicked.
pub trait Fallback {
    fn fallback() -> Self;
}

impl Fallback for junos_sync_status_t {
    fn fallback() -> Self {
        junos_sync_status_t::JUNOS_SYNC_ERR_INTERNAL
    }
}

impl Fallback for *mut junos_sync_context_t {
    fn fallback() -> Self {
        std::ptr::null_mut()
    }
}

/// `junos_sync_get_fd`: no descriptor.
impl Fallback for libc::c_int {
    fn fallback() -> Self {
        -1
    }
}

impl Fallback for () {
    fn fallback() -> Self {}
}

/// Runs an export's body, turning a panic into the return type's fallback.
pub fn boundary<R: Fallback>(body: impl FnOnce() -> R) -> R {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or_else(|_| R::fallback())
}

/// Wraps the body of every `extern "C"` function.
macro_rules! ffi_boundary {
    ($($body:tt)*) => {
        $crate::ffi::panic::boundary(move || { $($body)* })
    };
}
pub(crate) use ffi_boundary;
