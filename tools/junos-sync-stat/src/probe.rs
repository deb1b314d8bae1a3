//! Finding the status sockets in a directory and asking each for its one JSON line: from one
//! thread, a bounded number at once, each within its deadline and the whole run within its
//! own, whatever the sockets do (a socket that dribbles a byte at a time, a thousand that never
//! answer).

use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

/// More than any status line will be: a peer that sends more is not a junos-sync context.
const MAX_ANSWER: usize = 1 << 16;

/// Sockets asked at once (a descriptor each); the others wait for a place.
const IN_FLIGHT: usize = 64;

/// A status socket, and what its name says: `junos-sync.PID.ROLE.PORT.N.sock` (N numbers
/// the status sockets of the process; libraries before 1.2 wrote no N).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Socket {
    pub path: PathBuf,
    pub name: String,
    pub pid: u32,
    pub role: String,
    pub port: u16,
    pub n: Option<u64>,
    /// Who owns the file.
    pub owner: u32,
}

/// The user this program runs as.
pub fn me() -> u32 {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() }
}

impl Socket {
    /// The socket of that name in `dir` owned by `owner`, if the name is a status socket's.
    pub fn from_name(dir: &Path, name: &str, owner: u32) -> Option<Socket> {
        let w: Vec<&str> = name.strip_prefix("junos-sync.")?.strip_suffix(".sock")?.split('.').collect();
        let (pid, role, port, n) = match w[..] {
            [pid, role, port] => (pid, role, port, None),
            [pid, role, port, n] => (pid, role, port, Some(n.parse().ok()?)),
            _ => return None,
        };
        if role.is_empty() || !role.bytes().all(|b| b.is_ascii_lowercase()) {
            return None;
        }
        Some(Socket {
            path: dir.join(name),
            name: name.to_string(),
            pid: pid.parse().ok()?,
            role: role.to_string(),
            port: port.parse().ok()?,
            n,
            owner,
        })
    }

    /// The owner, when it is neither the user this program runs as nor root: anyone with that
    /// uid could have made the socket and written its answer.
    pub fn untrusted_owner(&self) -> Option<u32> {
        (self.owner != me() && self.owner != 0).then_some(self.owner)
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
/// one), masters first, then by pid and number.
pub fn list(dir: &Path) -> io::Result<Vec<Socket>> {
    let mut found = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let Some(name) = e.file_name().to_str().map(str::to_string) else { continue };
        // lstat: a file of that name that is no socket is none of ours (a symlink neither,
        // nor a vanished one).
        let Ok(m) = e.metadata() else { continue };
        if !m.file_type().is_socket() {
            continue;
        }
        if let Some(s) = Socket::from_name(dir, &name, m.uid()) {
            found.push(s);
        }
    }
    found.sort_by_key(|s| (s.port, s.role != "master", s.pid, s.n, s.name.clone()));
    Ok(found)
}

/// Asks every socket in `dir`: each gets `timeout` from its connect, the run twice that.
pub fn all(dir: &Path, timeout: Duration) -> io::Result<Vec<Probe>> {
    let sockets = list(dir)?;
    let answers = ask_all(&sockets, timeout);
    Ok(sockets.into_iter().zip(answers).map(|(socket, answer)| Probe { socket, answer }).collect())
}

/// A socket being asked.
struct Asking {
    at: usize,
    stream: UnixStream,
    raw: Vec<u8>,
    deadline: Instant,
    /// The deadline is the run's, not the socket's own.
    run_deadline: bool,
}

/// The answers of `sockets`, in their order, from this thread: `IN_FLIGHT` at most at once,
/// each given up `timeout` after its connect, and the run after twice `timeout` (sockets not
/// asked by then are said to be so).
fn ask_all(sockets: &[Socket], timeout: Duration) -> Vec<Answer> {
    let run_end = Instant::now() + timeout * 2;
    let mut answers: Vec<Option<Answer>> = sockets.iter().map(|_| None).collect();
    let mut asking: Vec<Asking> = Vec::new();
    let mut next = 0;
    loop {
        let now = Instant::now();
        while asking.len() < IN_FLIGHT && next < sockets.len() && now < run_end {
            match begin(&sockets[next]) {
                Ok(stream) => {
                    let own = now + timeout;
                    asking.push(Asking {
                        at: next,
                        stream,
                        raw: Vec::new(),
                        deadline: own.min(run_end),
                        run_deadline: own > run_end,
                    })
                }
                Err(a) => answers[next] = Some(a),
            }
            next += 1;
        }
        if asking.is_empty() {
            break;
        }
        wait_readable(&asking);
        let now = Instant::now();
        asking.retain_mut(|a| {
            let done = read_some(a).or_else(|| {
                (now >= a.deadline).then(|| Answer::Failed(no_answer(&sockets[a.at], timeout, a.run_deadline)))
            });
            match done {
                Some(answer) => {
                    answers[a.at] = Some(answer);
                    false
                }
                None => true,
            }
        });
    }
    answers
        .into_iter()
        .map(|a| {
            a.unwrap_or_else(|| {
                Answer::Failed(format!(
                    "not asked: the run's {} were over before its turn (too many sockets not answering)",
                    seconds(timeout * 2)
                ))
            })
        })
        .collect()
}

fn no_answer(sock: &Socket, timeout: Duration, run_deadline: bool) -> String {
    if run_deadline {
        format!("no answer by the end of the run ({} after it began)", seconds(timeout * 2))
    } else {
        // A backup's loop answers between batches of entries it applies: with a slow decode
        // callback, not during a resync.
        format!(
            "no answer within {} (pid {} stopped, or its junos-sync loop busy: a backup applying a resync?)",
            seconds(timeout),
            sock.pid
        )
    }
}

/// Sleeps until one of `asking` has something to read or the earliest deadline.
fn wait_readable(asking: &[Asking]) {
    let now = Instant::now();
    let first = asking.iter().map(|a| a.deadline).min().unwrap_or(now);
    let ms = first.saturating_duration_since(now).as_micros().div_ceil(1000);
    let mut fds: Vec<libc::pollfd> =
        asking.iter().map(|a| libc::pollfd { fd: a.stream.as_raw_fd(), events: libc::POLLIN, revents: 0 }).collect();
    // SAFETY: `fds` is a live array of that many pollfds. An error (EINTR) only means that
    // every socket is looked at once more.
    unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, i32::try_from(ms).unwrap_or(i32::MAX)) };
}

/// Reads what has come; the answer once it is complete.
fn read_some(a: &mut Asking) -> Option<Answer> {
    let mut buf = [0u8; 4096];
    loop {
        match a.stream.read(&mut buf) {
            Ok(0) => return Some(parse(std::mem::take(&mut a.raw))),
            Ok(k) => {
                a.raw.extend_from_slice(&buf[..k]);
                if a.raw.len() > MAX_ANSWER {
                    return Some(Answer::Failed(format!(
                        "more than {} KiB of answer: not a junos-sync status socket",
                        MAX_ANSWER >> 10
                    )));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Some(Answer::Failed(format!("cannot read: {e}"))),
        }
    }
}

/// Connects to one socket (never waiting), or what that says.
fn begin(sock: &Socket) -> Result<UnixStream, Answer> {
    connect(&sock.path).map_err(|e| match e.raw_os_error() {
        Some(libc::ECONNREFUSED) => Answer::Stale { pid_alive: pid_alive(sock.pid) },
        Some(libc::ENOENT) => Answer::Gone,
        Some(libc::EACCES) | Some(libc::EPERM) => {
            let hint = if sock.owner == me() { String::new() } else { format!(" (uid {})", sock.owner) };
            Answer::Failed(format!("permission denied: status sockets are mode 0600; run as the daemon's user{hint}"))
        }
        // A full listen queue: nothing has accepted for a while.
        Some(libc::EAGAIN) => {
            Answer::Failed(format!("not answering (its listen queue is full): is pid {} stopped or stuck?", sock.pid))
        }
        _ => Answer::Failed(format!("cannot connect: {e}")),
    })
}

/// A whole answer: one line of JSON holding an object.
fn parse(raw: Vec<u8>) -> Answer {
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

/// Connects without ever blocking, and leaves the stream non-blocking: std's connect waits
/// while the listener's queue is full, and a stopped daemon's queue fills (every refresh of
/// --watch leaves a connection in it).
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::net::UnixListener;

    #[test]
    fn names_are_parsed_and_others_ignored() {
        let d = Path::new("/d");
        let s = Socket::from_name(d, "junos-sync.42.master.4000.3.sock", 7).unwrap();
        assert_eq!((s.pid, s.role.as_str(), s.port, s.n, s.owner), (42, "master", 4000, Some(3), 7));
        assert_eq!(s.path, Path::new("/d/junos-sync.42.master.4000.3.sock"));
        let old = Socket::from_name(d, "junos-sync.42.backup.4000.sock", 0).unwrap();
        assert_eq!((old.pid, old.role.as_str(), old.port, old.n), (42, "backup", 4000, None), "a 1.1 library's name");
        for bad in [
            ".junos-sync.42.master.4000.sock.tmp",
            "junos-sync.42.master.4000",
            "junos-sync.x.master.4000.sock",
            "junos-sync.42.master.70000.sock",
            "junos-sync.42..4000.sock",
            "junos-sync.42.master.4000.x.sock",
            "junos-sync.42.master.4000.1.2.sock",
            "junos-sync.42.Master.4000.sock",
            "junos-sync.42.m\u{1b}[2J.4000.sock",
            "other.42.master.4000.sock",
        ] {
            assert!(Socket::from_name(d, bad, 0).is_none(), "{bad}");
        }
    }

    #[test]
    fn owners_other_than_me_and_root_are_untrusted() {
        let s = |owner| Socket::from_name(Path::new("/d"), "junos-sync.1.master.1.1.sock", owner).unwrap();
        assert_eq!(s(me()).untrusted_owner(), None);
        assert_eq!(s(0).untrusted_owner(), None);
        let other = if me() == 12345 { 12346 } else { 12345 };
        assert_eq!(s(other).untrusted_owner(), Some(other));
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
        // A live one that answers once, a stale one (bound, then closed), a silent one, a
        // regular file with a socket's name, and a symlink to the live one.
        let live = d.join(format!("junos-sync.{me}.master.1.1.sock"));
        let l = UnixListener::bind(&live).unwrap();
        let line = r#"{"version":1,"pid":1,"role":"master"}"#;
        let server = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            s.write_all(format!("{line}\n").as_bytes()).unwrap();
        });
        drop(UnixListener::bind(d.join("junos-sync.999999999.master.2.1.sock")).unwrap());
        let _silent = UnixListener::bind(d.join(format!("junos-sync.{me}.backup.3.sock"))).unwrap();
        std::fs::write(d.join("junos-sync.5.master.4.1.sock"), b"").unwrap();
        std::os::unix::fs::symlink(&live, d.join("junos-sync.6.master.5.1.sock")).unwrap();

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
    fn more_than_an_answer_is_refused() {
        let d = scratch("flood");
        let p = d.join("junos-sync.1.master.1.1.sock");
        let l = UnixListener::bind(&p).unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let _ = s.write_all(&vec![b' '; MAX_ANSWER + 1]);
        });
        let got = all(&d, Duration::from_secs(10)).unwrap();
        server.join().unwrap();
        assert!(matches!(&got[0].answer, Answer::Failed(w) if w.starts_with("more than 64 KiB")), "{got:?}");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_full_listen_queue_does_not_block() {
        let d = scratch("queue");
        let p = d.join(format!("junos-sync.{}.master.1.1.sock", std::process::id()));
        let _l = UnixListener::bind(&p).unwrap();
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
        let got = all(&d, Duration::from_millis(100)).unwrap();
        assert!(matches!(&got[0].answer, Answer::Failed(w) if w.contains("listen queue")), "{got:?}");
        let _ = std::fs::remove_dir_all(&d);
    }
}
