//! The status socket of a context, when `JUNOS_SYNC_STATUS_DIR` names a directory: a Unix
//! socket there, mode 0600, named `junos-sync.PID.ROLE.PORT.sock` (so `ls` says whose it is);
//! whoever connects reads one JSON line and the end of the stream. The loop thread answers:
//! the answer is a few hundred bytes into a new socket's empty buffer, so writing it never
//! waits, and a reader that does not read just gets less.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use mio::net::UnixListener;
use mio::{Interest, Registry};

use crate::engine::net::tokens;

/// The environment variable naming the directory.
pub(crate) const STATUS_DIR_VAR: &str = "JUNOS_SYNC_STATUS_DIR";

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
