//! Finding the status sockets in a directory and asking each for its one JSON line.

use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

/// More than any status line will be: a peer that sends more is not a junos-sync context.
const MAX_ANSWER: u64 = 1 << 16;

/// A status socket, and what its name says: `junos-sync.PID.ROLE.PORT.sock`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Socket {
    pub path: PathBuf,
    pub name: String,
    pub pid: u32,
    pub role: String,
    pub port: u16,
}

impl Socket {
    /// The socket of that name in `dir`, if the name is a status socket's.
    pub fn from_name(dir: &Path, name: &str) -> Option<Socket> {
        let mut w = name.strip_prefix("junos-sync.")?.strip_suffix(".sock")?.split('.');
        let (pid, role, port) = (w.next()?.parse().ok()?, w.next()?, w.next()?.parse().ok()?);
        if w.next().is_some() || role.is_empty() {
            return None;
        }
        Some(Socket { path: dir.join(name), name: name.to_string(), pid, role: role.to_string(), port })
    }
}

/// What asking a socket gave.
#[derive(Debug)]
pub enum Answer {
    /// The status line (without its newline) and the object it holds.
    Status { line: String, value: Value },
    /// Nobody listens on it: the process ended without removing it (SIGKILL, a crash).
    /// `pid_alive`: a process of that pid exists all the same (the pid was reused).
    Stale { pid_alive: bool },
    /// Removed between listing and asking: the context has just ended.
    Gone,
    /// Anything else, and why.
    Failed(String),
}

/// One socket and its answer.
#[derive(Debug)]
pub struct Probe {
    pub socket: Socket,
    pub answer: Answer,
}

/// The status sockets in `dir`: by port (a master and its backups on one machine name the same
/// one), masters first, then by pid.
pub fn list(dir: &Path) -> io::Result<Vec<Socket>> {
    let mut found = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let Some(name) = e.file_name().to_str().map(str::to_string) else { continue };
        let Some(s) = Socket::from_name(dir, &name) else { continue };
        // A file of that name that is no socket is none of ours (nor is a vanished one).
        if e.file_type().is_ok_and(|t| t.is_socket()) {
            found.push(s);
        }
    }
    found.sort_by_key(|s| (s.port, s.role != "master", s.pid, s.name.clone()));
    Ok(found)
}

/// Asks every socket in `dir` at once (a stopped daemon costs one timeout, not one each).
pub fn all(dir: &Path, timeout: Duration) -> io::Result<Vec<Probe>> {
    let sockets = list(dir)?;
    Ok(std::thread::scope(|s| {
        let asks: Vec<_> = sockets.iter().map(|sock| s.spawn(move || ask(sock, timeout))).collect();
        sockets
            .iter()
            .zip(asks)
            .map(|(sock, h)| Probe {
                socket: sock.clone(),
                answer: h.join().unwrap_or_else(|_| Answer::Failed("internal error".into())),
            })
            .collect()
    }))
}

/// Reads one socket's status line.
pub fn ask(sock: &Socket, timeout: Duration) -> Answer {
    let stream = match connect(&sock.path) {
        Ok(s) => s,
        Err(e) => {
            return match e.raw_os_error() {
                Some(libc::ECONNREFUSED) => Answer::Stale { pid_alive: pid_alive(sock.pid) },
                Some(libc::ENOENT) => Answer::Gone,
                Some(libc::EACCES) | Some(libc::EPERM) => Answer::Failed(format!(
                    "permission denied: status sockets are mode 0600; run as the daemon's user{}",
                    owner_hint(&sock.path)
                )),
                // A full listen queue: nothing has accepted for a while.
                Some(libc::EAGAIN) => Answer::Failed(format!(
                    "not answering (its listen queue is full): is pid {} stopped or stuck?",
                    sock.pid
                )),
                _ => Answer::Failed(format!("cannot connect: {e}")),
            };
        }
    };
    if let Err(e) = stream.set_read_timeout(Some(timeout)) {
        return Answer::Failed(format!("cannot set a read timeout: {e}"));
    }
    let mut raw = Vec::new();
    if let Err(e) = (&stream).take(MAX_ANSWER).read_to_end(&mut raw) {
        return match e.kind() {
            // A backup's loop answers between batches of entries it applies: with a slow decode
            // callback, not during a resync.
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Answer::Failed(format!(
                "no answer within {} (pid {} stopped, or its junos-sync loop busy: a backup applying a resync?)",
                seconds(timeout),
                sock.pid
            )),
            _ => Answer::Failed(format!("cannot read: {e}")),
        };
    }
    let Ok(text) = String::from_utf8(raw) else {
        return Answer::Failed("the answer is not UTF-8: not a junos-sync status socket?".into());
    };
    let line = text.trim_end_matches(['\n', '\r']).to_string();
    if line.is_empty() {
        return Answer::Failed("closed without an answer (the context was ending?)".into());
    }
    match serde_json::from_str::<Value>(&line) {
        Ok(value) if value.is_object() => Answer::Status { line, value },
        Ok(_) => Answer::Failed("the answer is JSON but not an object".into()),
        Err(e) => Answer::Failed(format!("the answer is not a status line ({e})")),
    }
}

/// `2 s`, `0.5 s`.
pub fn seconds(d: Duration) -> String {
    format!("{} s", d.as_secs_f64())
}

/// Connects without ever blocking: std's connect waits while the listener's queue is full,
/// and a stopped daemon's queue fills (every refresh of --watch leaves a connection in it).
fn connect(path: &Path) -> io::Result<UnixStream> {
    let bytes = path.as_os_str().as_bytes();
    // SAFETY: sockaddr_un is plain data; all zeroes is a valid value of it.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    if bytes.len() >= addr.sun_path.len() || bytes.contains(&0) {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "path too long for a Unix socket"));
    }
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (d, s) in addr.sun_path.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    // SAFETY: a plain system call; the descriptor is owned by the stream at once.
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a new socket no one else owns.
    let stream = unsafe { UnixStream::from_raw_fd(fd) };
    let len = std::mem::offset_of!(libc::sockaddr_un, sun_path) + bytes.len() + 1;
    // SAFETY: addr is a valid sockaddr_un of at least len bytes.
    let rc = unsafe {
        libc::connect(
            stream.as_raw_fd(),
            (&addr as *const libc::sockaddr_un).cast::<libc::sockaddr>(),
            len as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    stream.set_nonblocking(false)?;
    Ok(stream)
}

/// Whether a process `pid` exists (EPERM: it does, someone else's).
fn pid_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else { return false };
    if pid <= 0 {
        return false;
    }
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc::kill(pid, 0) == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM) }
}

/// ` (uid N)` when the socket's owner is someone other than us.
fn owner_hint(path: &Path) -> String {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: getuid cannot fail.
    let me = unsafe { libc::getuid() };
    match std::fs::metadata(path) {
        Ok(m) if m.uid() != me => format!(" (uid {})", m.uid()),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::net::UnixListener;

    #[test]
    fn names_are_parsed_and_others_ignored() {
        let d = Path::new("/d");
        let s = Socket::from_name(d, "junos-sync.42.master.4000.sock").unwrap();
        assert_eq!((s.pid, s.role.as_str(), s.port), (42, "master", 4000));
        assert_eq!(s.path, Path::new("/d/junos-sync.42.master.4000.sock"));
        for bad in [
            ".junos-sync.42.master.4000.sock.tmp",
            "junos-sync.42.master.4000",
            "junos-sync.x.master.4000.sock",
            "junos-sync.42.master.70000.sock",
            "junos-sync.42..4000.sock",
            "junos-sync.42.master.4000.1.sock",
            "other.42.master.4000.sock",
        ] {
            assert!(Socket::from_name(d, bad).is_none(), "{bad}");
        }
    }

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("jss-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn answers_stale_and_silent_sockets() {
        let d = scratch("probe");
        let me = std::process::id();
        // A live one that answers once, a stale one (bound, then closed), a silent one, and a
        // regular file with a socket's name.
        let live = d.join(format!("junos-sync.{me}.master.1.sock"));
        let l = UnixListener::bind(&live).unwrap();
        let line = r#"{"version":1,"pid":1,"role":"master"}"#;
        let server = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            s.write_all(format!("{line}\n").as_bytes()).unwrap();
        });
        drop(UnixListener::bind(d.join("junos-sync.999999999.master.2.sock")).unwrap());
        let _silent = UnixListener::bind(d.join(format!("junos-sync.{me}.backup.3.sock"))).unwrap();
        std::fs::write(d.join("junos-sync.5.master.4.sock"), b"").unwrap();

        let got = all(&d, Duration::from_millis(200)).unwrap();
        server.join().unwrap();
        assert_eq!(got.len(), 3, "{got:?}");
        let by_port = |port: u16| &got.iter().find(|p| p.socket.port == port).unwrap().answer;
        match by_port(1) {
            Answer::Status { line: l, value } => {
                assert_eq!(l, line);
                assert_eq!(value["role"], "master");
            }
            a => panic!("{a:?}"),
        }
        assert!(matches!(by_port(3), Answer::Failed(w) if w.contains("no answer within 0.2 s")), "{got:?}");
        assert!(matches!(by_port(2), Answer::Stale { pid_alive: false }), "{got:?}");
        let order: Vec<_> = got.iter().map(|p| p.socket.port).collect();
        assert_eq!(order, [1, 2, 3], "sorted by port");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_full_listen_queue_does_not_block() {
        let d = scratch("queue");
        let p = d.join(format!("junos-sync.{}.master.1.sock", std::process::id()));
        let _l = UnixListener::bind(&p).unwrap();
        let s = Socket::from_name(&d, p.file_name().unwrap().to_str().unwrap()).unwrap();
        // Never accepted: past the backlog, connect must fail at once rather than wait.
        let mut held = Vec::new();
        let mut full = false;
        for _ in 0..5000 {
            match connect(&p) {
                Ok(c) => held.push(c),
                Err(e) => {
                    assert_eq!(e.raw_os_error(), Some(libc::EAGAIN), "{e}");
                    full = true;
                    break;
                }
            }
        }
        assert!(full, "the listen queue never filled");
        assert!(matches!(ask(&s, Duration::from_millis(100)), Answer::Failed(w) if w.contains("listen queue")));
        let _ = std::fs::remove_dir_all(&d);
    }
}
