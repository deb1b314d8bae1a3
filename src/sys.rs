//! The one OS call mio does not wrap for us, kept out of the safe core.

/// Blocks SIGPIPE on the calling thread.
///
/// The loop thread writes to sockets with `writev`, which raises SIGPIPE when the peer has
/// gone. A C daemon keeps SIGPIPE's default action (terminate), so an unblocked one would kill
/// the application when its backup dies mid-write. Blocked, the signal stays pending on this
/// thread only (it is thread-directed) and `writev` returns EPIPE, which ends the connection
/// like any other error. The application's own SIGPIPE disposition is untouched.
pub fn block_sigpipe_on_this_thread() {
    // SAFETY: sigemptyset/sigaddset initialise a local sigset_t; pthread_sigmask only changes
    // the calling thread's mask. None of them touch memory we do not own.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGPIPE);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}
