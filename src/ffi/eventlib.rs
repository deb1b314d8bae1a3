//! ISC eventlib, found at run time: when the process has `evSelectFD` and `evDeselectFD` (its
//! own, or libisc's), a context given an evContext runs its callbacks inside an eventlib file
//! handler on the application's loop. Nothing is needed at link time.

use std::ffi::CStr;

use libc::{c_int, c_void};

use super::types::evContext;

/// eventlib's `evFileID`: an opaque handle, passed by value.
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct EvFileId {
    opaque: *mut c_void,
}

/// `typedef void (*evFileFunc)(evContext, void *uap, int fd, int eventmask)`.
pub(crate) type EvFileFunc = unsafe extern "C" fn(evContext, *mut c_void, c_int, c_int);
type EvSelectFd = unsafe extern "C" fn(evContext, c_int, c_int, EvFileFunc, *mut c_void, *mut EvFileId) -> c_int;
type EvDeselectFd = unsafe extern "C" fn(evContext, EvFileId) -> c_int;

/// eventlib's `EV_READ`.
const EV_READ: c_int = 1;

/// The process's eventlib entry points.
pub(crate) struct EventLib {
    select: EvSelectFd,
    deselect: EvDeselectFd,
}

fn lookup(name: &CStr) -> *mut c_void {
    // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name only reads the loaded objects'
    // symbol tables.
    unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) }
}

impl EventLib {
    /// The entry points, if the process has both. Builds of eventlib from BIND/libbind rename
    /// them in their header (`#define evSelectFD __evSelectFD`): either name is taken.
    pub(crate) fn find() -> Option<EventLib> {
        let either = |a: &CStr, b: &CStr| Some(lookup(a)).filter(|p| !p.is_null()).unwrap_or_else(|| lookup(b));
        let (s, d) = (either(c"evSelectFD", c"__evSelectFD"), either(c"evDeselectFD", c"__evDeselectFD"));
        if s.is_null() || d.is_null() {
            return None;
        }
        // SAFETY: non-NULL addresses of functions with ISC eventlib's signatures: the names are
        // eventlib's API, whose signatures are fixed (the issue of this feature quotes them).
        unsafe {
            Some(EventLib {
                select: std::mem::transmute::<*mut c_void, EvSelectFd>(s),
                deselect: std::mem::transmute::<*mut c_void, EvDeselectFd>(d),
            })
        }
    }

    /// `evSelectFD(ev, fd, EV_READ, func, uap, &id)`: the registration, or eventlib's error.
    ///
    /// # Safety
    /// `ev` is the application's live evContext; `uap` stays valid until `Registration::drop_it`.
    pub(crate) unsafe fn select(
        &self,
        ev: evContext,
        fd: c_int,
        func: EvFileFunc,
        uap: *mut c_void,
    ) -> Result<Registration, c_int> {
        let mut id = EvFileId { opaque: std::ptr::null_mut() };
        // SAFETY: eventlib's evSelectFD with the caller's context, a descriptor we own, a valid
        // handler, and a writable id.
        let r = unsafe { (self.select)(ev, fd, EV_READ, func, uap, &mut id) };
        if r != 0 {
            return Err(r);
        }
        Ok(Registration { ev, id, deselect: self.deselect })
    }
}

/// A file handler registered with eventlib, deselected once.
pub(crate) struct Registration {
    ev: evContext,
    id: EvFileId,
    deselect: EvDeselectFd,
}

// SAFETY: the registration is only used by `junos_sync_exit`, which in this mode the API asks
// to be called on the thread that runs the eventlib loop (where it was made); moving the
// handle there is what Send allows, it is never used from two threads.
unsafe impl Send for Registration {}

impl Registration {
    /// `evDeselectFD`: the handler is never called again.
    pub(crate) fn drop_it(self) {
        // SAFETY: the registration eventlib gave us, deselected exactly once (self is consumed).
        unsafe { (self.deselect)(self.ev, self.id) };
    }
}
