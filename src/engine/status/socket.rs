//! The status socket of a context, when `JUNOS_SYNC_STATUS_DIR` names a directory: a Unix
//! socket there, mode 0600, named `junos-sync.PID.ROLE.PORT.N.sock` (so `ls` says whose it is;
//! N numbers the status sockets of the process, so that two contexts never share one);
//! whoever connects reads one JSON line and the end of the stream. The loop thread answers:
//! the answer is a few hundred bytes into a new socket's empty buffer, so writing it never
//! waits, and a reader that does not read just gets less.
//!
//! The directory may be shared with other users (a sticky one like /tmp), so no call here
//! follows a path someone else could have changed: the socket is bound private (see
//! `sys::unix_listener_with_mode`), checked with `lstat`, and removed only while it is still
//! the file that was bound.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use mio::net::{UnixListener, UnixStream};
use mio::{Interest, Registry};

use crate::engine::net::tokens;
use crate::sys;

/// The environment variable naming the directory.
pub(crate) const STATUS_DIR_VAR: &str = "JUNOS_SYNC_STATUS_DIR";

/// Status sockets this process has opened: the N of the next one's name.
static OPENED: AtomicU64 = AtomicU64::new(0);

/// The mode of a status socket.
const MODE: u32 = 0o600;

pub(crate) struct StatusSocket {
    listener: UnixListener,
    path: PathBuf,
    /// The device and inode of the file bound: only that file is ever removed.
    made: (u64, u64),
}

/// `dir` resolved, if it can hold status sockets; else why not. It and every directory above
/// it must be owned by this process's user or root and not writable by group or others unless
/// sticky (what ssh's StrictModes asks of the path to a user's keys): otherwise someone else
/// could replace a socket, or the directory, under the daemon.
pub(crate) fn checked_dir(dir: &Path) -> Result<PathBuf, String> {
    let real = fs::canonicalize(dir).map_err(|e| format!("cannot use it: {e}"))?;
    let me = sys::euid();
    for (i, d) in real.ancestors().enumerate() {
        let m = fs::metadata(d).map_err(|e| format!("cannot check {}: {e}", d.display()))?;
        if i == 0 && !m.is_dir() {
            return Err(format!("{} is not a directory", d.display()));
        }
        if m.uid() != me && m.uid() != 0 {
            return Err(format!(
                "{} is owned by uid {}, neither this process's user (uid {me}) nor root",
                d.display(),
                m.uid()
            ));
        }
        if m.mode() & 0o022 != 0 && m.mode() & 0o1000 == 0 {
            return Err(format!(
                "{} is writable by group or others (mode {:o}) and not sticky: anyone could replace the status socket",
                d.display(),
                m.mode() & 0o7777
            ));
        }
    }
    Ok(real)
}

/// The device and inode of the socket at `path` if it is ours: a socket, of our user, private.
fn ours(path: &Path) -> io::Result<(u64, u64)> {
    let m = fs::symlink_metadata(path)?;
    if !m.file_type().is_socket() || m.uid() != sys::euid() {
        return Err(io::Error::other(format!("{} was replaced as it was made", path.display())));
    }
    if m.mode() & 0o077 != 0 {
        return Err(io::Error::other(format!(
            "{} was made with mode {:o}: this system does not make sockets private",
            path.display(),
            m.mode() & 0o777
        )));
    }
    Ok((m.dev(), m.ino()))
}

/// Removes a socket of ours at `path` that no one listens on (left by a process of the same
/// pid that was killed); whether it did.
fn remove_stale(path: &Path) -> bool {
    let Ok(m) = fs::symlink_metadata(path) else { return false };
    if !m.file_type().is_socket() || m.uid() != sys::euid() {
        return false;
    }
    // mio's connect never waits: refused means no listener, a full queue a live one.
    match UnixStream::connect(path) {
        Err(e) if e.raw_os_error() == Some(libc::ECONNREFUSED) => fs::remove_file(path).is_ok(),
        _ => false,
    }
}

impl StatusSocket {
    /// Opens the socket for a context of `role` on `port` in `dir` (checked again: it may have
    /// changed since init).
    pub(crate) fn open(dir: &Path, role: &str, port: u16, reg: &Registry) -> io::Result<StatusSocket> {
        let dir = checked_dir(dir).map_err(io::Error::other)?;
        let n = OPENED.fetch_add(1, Ordering::Relaxed) + 1;
        let path = dir.join(format!("junos-sync.{}.{role}.{port}.{n}.sock", std::process::id()));
        let std_listener = match sys::unix_listener_with_mode(&path, MODE) {
            Err(e) if e.kind() == io::ErrorKind::AddrInUse && remove_stale(&path) => {
                sys::unix_listener_with_mode(&path, MODE)
            }
            r => r,
        }
        .map_err(|e| io::Error::new(e.kind(), format!("cannot make {}: {e}", path.display())))?;
        let mut listener = UnixListener::from_std(std_listener);
        let made = match ours(&path) {
            Ok(m) => m,
            Err(e) => {
                // A socket of ours made too open is removed; anything else is someone else's.
                if fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_socket() && m.uid() == sys::euid()) {
                    let _ = fs::remove_file(&path);
                }
                return Err(e);
            }
        };
        if let Err(e) = reg.register(&mut listener, tokens::STATUS, Interest::READABLE) {
            remove_if_made(&path, made);
            return Err(e);
        }
        Ok(StatusSocket { listener, path, made })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Answers everyone waiting with `answer()`.
    pub(crate) fn serve(&self, answer: impl Fn() -> String) {
        loop {
            match self.listener.accept() {
                Ok((mut s, _)) => {
                    let _ = s.write_all(answer().as_bytes());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    }

    /// Closes it and removes its file, if its name still leads to the socket made.
    pub(crate) fn close(mut self, reg: &Registry) {
        let _ = reg.deregister(&mut self.listener);
        remove_if_made(&self.path, self.made);
    }
}

/// Removes `path` if it is still the file `made` (device, inode): another context's socket,
/// or anything someone put there since, stays.
fn remove_if_made(path: &Path, made: (u64, u64)) {
    if fs::symlink_metadata(path).is_ok_and(|m| (m.dev(), m.ino()) == made) {
        let _ = fs::remove_file(path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("jsync-socket-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir(&d).unwrap();
        d
    }

    fn chmod(p: &Path, mode: u32) {
        fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn every_directory_up_to_the_root_is_checked() {
        let d = scratch("dirs");
        assert_eq!(checked_dir(&d), Ok(fs::canonicalize(&d).unwrap()));
        let below = d.join("below");
        fs::create_dir(&below).unwrap();
        chmod(&d, 0o777);
        let e = checked_dir(&below).unwrap_err();
        assert!(
            e.starts_with(&format!("{} is writable by group or others (mode 777) and not sticky", d.display())),
            "{e}"
        );
        chmod(&d, 0o1777);
        assert!(checked_dir(&below).is_ok(), "a sticky directory above is as /tmp is");
        chmod(&d, 0o700);
        let link = d.join("link");
        std::os::unix::fs::symlink(&below, &link).unwrap();
        assert_eq!(checked_dir(&link), Ok(fs::canonicalize(&below).unwrap()), "what a symlink leads to is checked");
        let f = d.join("file");
        fs::write(&f, b"").unwrap();
        assert_eq!(checked_dir(&f), Err(format!("{} is not a directory", fs::canonicalize(&f).unwrap().display())));
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn only_a_socket_of_ours_no_one_listens_on_is_stale() {
        let d = scratch("stale");
        let stale = d.join("stale.sock");
        drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
        let live = d.join("live.sock");
        let _l = std::os::unix::net::UnixListener::bind(&live).unwrap();
        let link = d.join("link.sock");
        std::os::unix::fs::symlink(&stale, &link).unwrap();
        assert!(!remove_stale(&live) && live.exists());
        assert!(!remove_stale(&link) && fs::symlink_metadata(&link).is_ok(), "a symlink is not ours");
        assert!(remove_stale(&stale) && !stale.exists());
        let _ = fs::remove_dir_all(&d);
    }
}
