//! The few platform calls the safe core needs and std does not offer: the SIGPIPE mask of the
//! loop thread, the eventfd an application's loop watches in dispatch mode, the effective user
//! id, and the CPU's CRC32C instruction for the short inputs of the frame path.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// An eventfd: readable while it has been rung and not cleared. Level-triggered loops (poll,
/// select, eventlib) see it readable until `clear`; edge-triggered ones get an edge per `ring`.
pub struct Bell(OwnedFd);

impl Bell {
    pub fn new() -> io::Result<Bell> {
        // SAFETY: eventfd takes no pointers; a non-negative result is a new descriptor we own.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor nothing else owns.
        Ok(Bell(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    pub fn fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }

    /// Makes it readable. Never blocks: a counter that cannot grow is readable already.
    pub fn ring(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live local to our own descriptor.
        unsafe { libc::write(self.fd(), std::ptr::addr_of!(one).cast(), 8) };
    }

    /// Makes it unreadable until the next `ring`.
    pub fn clear(&self) {
        let mut n: u64 = 0;
        // SAFETY: reads at most 8 bytes into a live local from our own descriptor.
        unsafe { libc::read(self.fd(), std::ptr::addr_of_mut!(n).cast(), 8) };
    }
}

/// The effective user id of this process: whose files it may trust.
pub fn euid() -> u32 {
    // SAFETY: geteuid takes nothing and cannot fail.
    unsafe { libc::geteuid() }
}

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

/// Inputs up to this size take the inline instruction loop; longer ones the crc32c crate,
/// whose three-way interleaving wins once there is enough to interleave.
const SHORT: usize = 256;

/// CRC32C (Castagnoli) of `data`, continuing from `crc` (0 to start).
///
/// Every frame pays for two CRCs on each side, most over a 28-byte header and a small
/// payload. For those the crc32c crate's dispatch costs more than the arithmetic (measured: two
/// CRCs of 28 and 64 bytes, 47 ns through the crate, 9 ns inline), so short inputs use the
/// SSE4.2 instruction directly when the CPU has it. Same function, same results:
/// `tests::matches_the_crate` checks them against the crate.
pub fn crc32c_append(crc: u32, data: &[u8]) -> u32 {
    #[cfg(target_arch = "x86_64")]
    if data.len() <= SHORT && std::is_x86_feature_detected!("sse4.2") {
        // SAFETY: the CPU supports SSE4.2, checked just above.
        return unsafe { crc32c_sse42(crc, data) };
    }
    crc32c::crc32c_append(crc, data)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.2")]
unsafe fn crc32c_sse42(crc: u32, data: &[u8]) -> u32 {
    use std::arch::x86_64::{_mm_crc32_u64, _mm_crc32_u8};
    let mut words = data.chunks_exact(8);
    let mut c = u64::from(!crc);
    for w in &mut words {
        c = _mm_crc32_u64(c, u64::from_le_bytes(w.try_into().expect("8 bytes")));
    }
    let mut c = c as u32;
    for &b in words.remainder() {
        c = _mm_crc32_u8(c, b);
    }
    !c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn readable(fd: RawFd) -> bool {
        let mut p = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd, no timeout.
        unsafe { libc::poll(&mut p, 1, 0) == 1 }
    }

    #[test]
    fn the_bell_is_readable_between_ring_and_clear() {
        let b = Bell::new().unwrap();
        assert!(!readable(b.fd()));
        b.ring();
        b.ring();
        assert!(readable(b.fd()));
        b.clear();
        assert!(!readable(b.fd()));
    }

    #[test]
    fn matches_the_crate() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        for start in 0..9 {
            for end in start..data.len().min(start + 300) {
                let d = &data[start..end];
                assert_eq!(crc32c_append(0, d), crc32c::crc32c(d), "len {}", d.len());
                assert_eq!(crc32c_append(0x1234_5678, d), crc32c::crc32c_append(0x1234_5678, d));
            }
        }
        assert_eq!(crc32c_append(0, b"123456789"), 0xe306_9283);
    }
}
