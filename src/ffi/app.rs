//! The application's C callbacks behind the engine's `App` trait, and its TLVs behind `Tlv`.

use std::ffi::CString;
use std::ptr::{self, NonNull};
use std::sync::Arc;

use libc::c_void;

use super::types::*;
use crate::{App, Freer, Logger, Tlv};

/// A TLV the application handed over (non-NULL, `tlv_len` checked when it was taken).
pub struct CTlv(NonNull<junos_sync_tlv_t>);

// The queue's ring holds a C TLV in one atomic word: no lock on the hot path.
const _: () = assert!(crate::engine::slots_are_lock_free::<CTlv>());
const _: () = assert!(crate::engine::backlog_entry_bytes::<CTlv>() == 9);

// SAFETY: the library owns the TLV exclusively from the moment it is handed over until it is
// freed; nothing else touches it, so moving it to the loop thread is sound.
unsafe impl Send for CTlv {}

impl CTlv {
    /// # Safety
    /// `p` must point to a live TLV with `tlv_len` payload bytes behind it that the caller
    /// gives up until the library frees it.
    pub unsafe fn new(p: NonNull<junos_sync_tlv_t>) -> Self {
        CTlv(p)
    }

    pub fn as_ptr(&self) -> *mut junos_sync_tlv_t {
        self.0.as_ptr()
    }

    /// Gives the TLV back without freeing it (an error return leaves it the caller's).
    pub fn into_raw(self) -> *mut junos_sync_tlv_t {
        self.0.as_ptr()
    }
}

impl Tlv for CTlv {
    fn tlv_type(&self) -> u32 {
        // SAFETY: the TLV is live and ours (see `CTlv::new`).
        unsafe { (*self.0.as_ptr()).tlv_type }
    }

    fn payload_len(&self) -> usize {
        // SAFETY: the TLV is live and ours; only its header is read.
        unsafe { (*self.0.as_ptr()).tlv_len as usize }
    }

    fn payload(&self) -> &[u8] {
        let p = self.0.as_ptr();
        // SAFETY: live and ours; `tlv_len` bytes follow the 8-byte header per the API contract.
        unsafe {
            let len = (*p).tlv_len as usize;
            std::slice::from_raw_parts(ptr::addr_of!((*p).tlv_value).cast::<u8>(), len)
        }
    }
}

/// The application's database-walk cursor.
#[derive(Clone, Copy)]
pub struct Cursor(*mut c_void);

// SAFETY: the cursor is an opaque value passed back to the application on the loop thread,
// where it came from; the library never dereferences it.
unsafe impl Send for Cursor {}

/// One context's callbacks.
pub struct CApp {
    cb: junos_sync_callbacks_t,
    logger: Logger,
}

// SAFETY: the callbacks are plain C function pointers; the API contract makes them callable
// from the context's loop thread.
unsafe impl Send for CApp {}

/// Logs through `sync_log_msg_func` as `log("%s", text)`; a no-op when it is NULL.
pub fn logger_for(cb: &junos_sync_callbacks_t) -> Logger {
    let f = cb.sync_log_msg_func;
    Arc::new(move |msg: &str| {
        if let Some(f) = f {
            let text = CString::new(msg.replace('\0', "\\0")).unwrap_or_default();
            // SAFETY: the application's log function, called with a constant "%s" format and
            // one NUL-terminated string argument, as documented.
            unsafe { f(c"%s".as_ptr(), text.as_ptr()) };
        }
    })
}

impl CApp {
    pub fn new(cb: junos_sync_callbacks_t) -> Self {
        CApp { logger: logger_for(&cb), cb }
    }

    fn free_raw(&self, p: *mut c_void) {
        free_with(self.cb.sync_free_func, p);
    }
}

/// Frees application memory with its free callback, or libc's `free` when that is NULL.
fn free_with(f: junos_sync_free_func_t, p: *mut c_void) {
    match f {
        // SAFETY: `p` came from the application, which allocates with the allocator behind its
        // free callback; every caller gives each pointer here exactly once.
        Some(f) => unsafe { f(p) },
        // SAFETY: as above, with libc's allocator (the documented default).
        None => unsafe { libc::free(p) },
    }
}

/// Applies a payload that the read buffer left unaligned (never seen with glibc's malloc):
/// copied into 8-aligned memory so the application's record casts stay defined behaviour.
fn decode_aligned(f: unsafe extern "C" fn(*mut c_void, usize), payload: &mut [u8]) {
    let mut tmp = vec![0u64; payload.len().div_ceil(8)];
    let p = tmp.as_mut_ptr().cast::<u8>();
    // SAFETY: `tmp` holds at least `payload.len()` bytes; the regions are distinct.
    unsafe {
        ptr::copy_nonoverlapping(payload.as_ptr(), p, payload.len());
        f(p.cast(), payload.len());
    }
}

impl App for CApp {
    type Tlv = CTlv;
    type Cursor = Cursor;

    fn decode(&mut self, payload: &mut [u8]) {
        let Some(f) = self.cb.sync_data_decode_func else {
            return;
        };
        if payload.as_ptr() as usize % 8 != 0 {
            return decode_aligned(f, payload);
        }
        // SAFETY: `payload` is writable and valid for the duration of the call, as documented.
        unsafe { f(payload.as_mut_ptr().cast(), payload.len()) }
    }

    fn ack_notify(&mut self, tlv: &CTlv) {
        if let Some(f) = self.cb.sync_ack_notify_func {
            let len = tlv.payload().len();
            // SAFETY: the TLV is live (freed only after this returns).
            unsafe { f(tlv.as_ptr(), len) }
        }
    }

    fn free(&mut self, tlv: CTlv) {
        self.free_raw(tlv.into_raw().cast());
    }

    fn freer(&self) -> Freer<CTlv> {
        let f = self.cb.sync_free_func;
        Arc::new(move |tlv: CTlv| free_with(f, tlv.into_raw().cast()))
    }

    fn get_next(&mut self, cursor: Option<Cursor>) -> Option<(Cursor, Option<CTlv>)> {
        let f = self.cb.sync_data_get_next_func?;
        let mut gn = junos_sync_getnext_data_t { data: ptr::null_mut() };
        let cur = cursor.map_or(ptr::null_mut(), |c| c.0);
        // SAFETY: the application's walk function, with its own cursor and a valid out-param.
        let next = unsafe { f(cur, &mut gn) };
        let tlv = NonNull::new(gn.data).and_then(|p| {
            // SAFETY: the application handed this TLV over through `gn.data`.
            let len = unsafe { (*p.as_ptr()).tlv_len };
            if len > JUNOS_SYNC_MAX_TLV_LEN {
                (self.logger)("junos-sync: get_next returned a TLV over JUNOS_SYNC_MAX_TLV_LEN; freed, not sent");
                self.free_raw(p.as_ptr().cast());
                None
            } else {
                // SAFETY: as above; the library owns it from now on.
                Some(unsafe { CTlv::new(p) })
            }
        });
        if next.is_null() {
            if let Some(t) = tlv {
                (self.logger)("junos-sync: get_next set a TLV but returned NULL; TLV freed, walk ended");
                self.free(t);
            }
            return None;
        }
        Some((Cursor(next), tlv))
    }

    fn conn_status(&mut self, up: bool) {
        if let Some(f) = self.cb.sync_conn_status_change_func {
            let s = if up {
                junos_sync_conn_status_t::JUNOS_SYNC_CONN_UP
            } else {
                junos_sync_conn_status_t::JUNOS_SYNC_CONN_DOWN
            };
            // SAFETY: the application's callback with a valid enum value.
            unsafe { f(s) }
        }
    }

    fn init_sync_done(&mut self, entries: usize) {
        if let Some(f) = self.cb.sync_init_sync_done_func {
            // SAFETY: the application's callback.
            unsafe { f(entries) }
        }
    }

    fn bind_done(&mut self, port: u16) {
        if let Some(f) = self.cb.sync_bind_done_func {
            // SAFETY: the application's callback.
            unsafe { f(port) }
        }
    }

    fn db_clear(&mut self) {
        if let Some(f) = self.cb.sync_db_clear_func {
            // SAFETY: the application's callback.
            unsafe { f() }
        }
    }

    fn can_walk(&self) -> bool {
        self.cb.sync_data_get_next_func.is_some()
    }

    fn can_decode(&self) -> bool {
        self.cb.sync_data_decode_func.is_some()
    }
}
