//! The few platform calls the safe core needs and std does not offer: the SIGPIPE mask of the
//! loop thread, the eventfd an application's loop watches in dispatch mode, the effective user
//! id and a Unix socket private from its creation (status sockets), a master's TCP listener
//! (dual stack on `::`) and the interface names of IPv6 scopes, and the CPU's CRC32C
//! instruction for the short inputs of the frame path.

use std::ffi::{CStr, CString};
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixListener;
use std::path::Path;

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

    /// Whether it is readable now (what the application's loop would see), for tests.
    #[cfg(test)]
    pub fn is_rung(&self) -> bool {
        let mut p = libc::pollfd { fd: self.fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd, no timeout.
        unsafe { libc::poll(&mut p, 1, 0) == 1 }
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

/// A non-blocking Unix stream socket listening at `path`, whose file is created with `mode`
/// (less the umask) by the bind itself.
///
/// Linux gives a socket's file the mode of the socket's own inode, which `fchmod` on the
/// unbound descriptor sets: no moment where others can connect, no later `chmod` of a path
/// (which follows a symlink someone put there), no `umask` (process-wide, other threads'
/// files). The caller checks the result with `lstat`: a system that did otherwise is caught.
/// `bind` never follows a symlink at `path`: an existing file of any kind is `EADDRINUSE`.
pub fn unix_listener_with_mode(path: &Path, mode: u32) -> io::Result<UnixListener> {
    let bytes = path.as_os_str().as_bytes();
    // SAFETY: sockaddr_un is plain data; all zeroes is a valid value of it.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    if bytes.len() >= addr.sun_path.len() || bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} is too long for a Unix socket ({} bytes, at most {})",
                path.display(),
                bytes.len(),
                addr.sun_path.len() - 1
            ),
        ));
    }
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (d, s) in addr.sun_path.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    // SAFETY: socket takes no pointers; a non-negative result is a new descriptor we own.
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor nothing else owns (closed when this drops).
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: fchmod on our own descriptor.
    if unsafe { libc::fchmod(fd.as_raw_fd(), mode as libc::mode_t) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let len = std::mem::offset_of!(libc::sockaddr_un, sun_path) + bytes.len() + 1;
    // SAFETY: `addr` is a valid sockaddr_un of at least `len` bytes.
    let rc = unsafe { libc::bind(fd.as_raw_fd(), (&raw const addr).cast::<libc::sockaddr>(), len as libc::socklen_t) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: listen on our own bound descriptor.
    if unsafe { libc::listen(fd.as_raw_fd(), 128) } != 0 {
        let e = io::Error::last_os_error();
        let _ = std::fs::remove_file(path);
        return Err(e);
    }
    Ok(UnixListener::from(fd))
}

/// A non-blocking TCP listener on `addr` with SO_REUSEADDR, as mio's `TcpListener::bind`
/// makes it, and on the IPv6 unspecified address `::` with IPV6_V6ONLY off: it accepts IPv4
/// connections too (as IPv4-mapped addresses), whatever `net.ipv6.bindv6only` says. A system
/// that refuses that (no IPv4) keeps the socket IPv6 only.
pub fn tcp_listener(addr: SocketAddr) -> io::Result<TcpListener> {
    let family = if addr.is_ipv4() { libc::AF_INET } else { libc::AF_INET6 };
    // SAFETY: socket takes no pointers; a non-negative result is a new descriptor we own.
    let fd = unsafe { libc::socket(family, libc::SOCK_STREAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor nothing else owns (closed when this drops).
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let set = |level, name, on: bool| {
        let v: libc::c_int = on.into();
        // SAFETY: an int option, read from a live local of the size given, on our descriptor.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                level,
                name,
                (&raw const v).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    };
    set(libc::SOL_SOCKET, libc::SO_REUSEADDR, true)?;
    if addr.ip().is_unspecified() && addr.is_ipv6() {
        let _ = set(libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, false);
    }
    // SAFETY: sockaddr_storage is plain data; all zeroes is a valid value of it.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr { s_addr: u32::from(*a.ip()).to_be() },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for any sockaddr.
            unsafe { (&raw mut ss).cast::<libc::sockaddr_in>().write(sin) };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr { s6_addr: a.ip().octets() },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: as above.
            unsafe { (&raw mut ss).cast::<libc::sockaddr_in6>().write(sin6) };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    // SAFETY: `ss` holds a valid sockaddr of `len` bytes.
    if unsafe { libc::bind(fd.as_raw_fd(), (&raw const ss).cast::<libc::sockaddr>(), len as libc::socklen_t) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: listen on our own bound descriptor (1024: mio's backlog).
    if unsafe { libc::listen(fd.as_raw_fd(), 1024) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(TcpListener::from(fd))
}

/// The index of the network interface named `name` (an IPv6 scope), if there is one.
pub fn interface_index(name: &str) -> Option<u32> {
    let c = CString::new(name).ok()?;
    // SAFETY: a NUL-terminated string that lives across the call.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (i != 0).then_some(i)
}

/// The name of network interface `index`, if there is one.
pub fn interface_name(index: u32) -> Option<String> {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: `buf` has the IF_NAMESIZE bytes if_indextoname may write.
    let p = unsafe { libc::if_indextoname(index, buf.as_mut_ptr()) };
    if p.is_null() {
        return None;
    }
    // SAFETY: on success `buf` holds a NUL-terminated name.
    Some(unsafe { CStr::from_ptr(buf.as_ptr()) }.to_string_lossy().into_owned())
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

/// membarrier(2) commands (linux/membarrier.h).
const MEMBARRIER_CMD_QUERY: libc::c_long = 0;
const MEMBARRIER_CMD_PRIVATE_EXPEDITED: libc::c_long = 1 << 3;
const MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED: libc::c_long = 1 << 4;

fn membarrier(cmd: libc::c_long) -> libc::c_long {
    // SAFETY: membarrier takes no pointers; an unknown command or kernel returns an error.
    unsafe { libc::syscall(libc::SYS_membarrier, cmd, 0 as libc::c_long, 0 as libc::c_long) }
}

/// Whether this process can use the expedited private membarrier (registered on first use).
fn expedited() -> bool {
    static OK: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *OK.get_or_init(|| {
        let cmds = membarrier(MEMBARRIER_CMD_QUERY);
        cmds >= 0
            && cmds & MEMBARRIER_CMD_PRIVATE_EXPEDITED != 0
            && membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) == 0
    })
}

/// Makes the choice between the two barrier implementations before any thread uses them.
pub fn barriers_ready() {
    let _ = expedited();
}

/// The cheap side of an asymmetric Dekker pair, for the hot path: a compiler barrier when
/// `heavy_barrier` can make every thread of the process execute a full barrier (membarrier
/// PRIVATE_EXPEDITED, Linux 4.14), else a full fence.
#[inline]
pub fn light_barrier() {
    if expedited() {
        std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
    } else {
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
    }
}

/// The expensive side, for the rare path (the loop about to sleep): a full barrier on every
/// running thread of the process, so that a `light_barrier` pairs with it like a fence.
pub fn heavy_barrier() {
    if !expedited() || membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) != 0 {
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
    }
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
    fn a_listener_is_private_from_its_creation() {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let d = std::env::temp_dir().join(format!("jsync-sys-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir(&d).unwrap();
        let p = d.join("s.sock");
        let l = unix_listener_with_mode(&p, 0o600).unwrap();
        let m = std::fs::symlink_metadata(&p).unwrap();
        assert!(m.file_type().is_socket());
        assert_eq!(m.mode() & 0o777 & !0o600, 0, "mode {:o}", m.mode() & 0o777);
        assert_eq!(m.uid(), euid());
        std::os::unix::net::UnixStream::connect(&p).unwrap();
        assert!(l.accept().is_ok());
        // An existing name, a symlink included, is never followed nor replaced.
        let e = unix_listener_with_mode(&p, 0o600).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
        let link = d.join("link");
        std::os::unix::fs::symlink(d.join("nowhere"), &link).unwrap();
        assert_eq!(unix_listener_with_mode(&link, 0o600).unwrap_err().kind(), io::ErrorKind::AddrInUse);
        assert!(!d.join("nowhere").exists());
        let long = d.join("x".repeat(200));
        assert!(unix_listener_with_mode(&long, 0o600).unwrap_err().to_string().contains("too long"));
        let _ = std::fs::remove_dir_all(&d);
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
