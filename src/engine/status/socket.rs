//! The status socket of a context, when `JUNOS_SYNC_STATUS_DIR` names a directory: a Unix
//! socket there, mode 0600, named `junos-sync.PID.ROLE.PORT.sock` (so `ls` says whose it is);
//! whoever connects reads one JSON line and the end of the stream. The loop thread answers:
//! the answer is a few hundred bytes into a new socket's empty buffer, so writing it never
//! waits, and a reader that does not read just gets less.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use mio::net::UnixListener;
use mio::{Interest, Registry};

use crate::engine::net::tokens;
use crate::sys;

/// The environment variable naming the directory.
pub(crate) const STATUS_DIR_VAR: &str = "JUNOS_SYNC_STATUS_DIR";

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

pub(crate) struct StatusSocket {
    listener: UnixListener,
    path: PathBuf,
}

impl StatusSocket {
    /// Opens the socket for a context of `role` on `port` in `dir`.
    pub(crate) fn open(dir: &Path, role: &str, port: u16, reg: &Registry) -> io::Result<StatusSocket> {
        let name = format!("junos-sync.{}.{role}.{port}.sock", std::process::id());
        let path = dir.join(&name);
        // Bound under a temporary name and made private before it takes its real one: no one
        // can connect while it is still world-accessible.
        let tmp = dir.join(format!(".{name}.tmp"));
        let _ = fs::remove_file(&tmp);
        let mut listener = UnixListener::bind(&tmp)?;
        let placed =
            fs::set_permissions(&tmp, fs::Permissions::from_mode(0o600)).and_then(|()| fs::rename(&tmp, &path));
        if let Err(e) = placed {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        if let Err(e) = reg.register(&mut listener, tokens::STATUS, Interest::READABLE) {
            let _ = fs::remove_file(&path);
            return Err(e);
        }
        Ok(StatusSocket { listener, path })
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

    /// Closes it and removes its file.
    pub(crate) fn close(mut self, reg: &Registry) {
        let _ = reg.deregister(&mut self.listener);
        let _ = fs::remove_file(&self.path);
    }
}
