//! The status socket under attack (issue 17, findings 4 and 7): a status directory others can
//! write is refused at init; a local user renaming symlinks over every name the library uses
//! never gets a file of the daemon's user changed; two contexts of one process never share a
//! socket name, and a context removes only the socket it made.
//!
//! Self-contained (an application of its own, no tests/common): every test sets
//! `JUNOS_SYNC_STATUS_DIR`, which is process-wide, so they run one at a time.

use std::fs;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use junos_sync::{App, Config, Context, Error, Freer, Logger, Tlv};

static ENV: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> MutexGuard<'static, ()> {
    ENV.lock().unwrap_or_else(|e| e.into_inner())
}

struct Bytes(Vec<u8>);

impl Tlv for Bytes {
    fn tlv_type(&self) -> u32 {
        1
    }
    fn payload(&self) -> &[u8] {
        &self.0
    }
}

/// An application with an empty database that applies nothing.
struct Idle;

impl App for Idle {
    type Tlv = Bytes;
    type Cursor = u32;
    fn decode(&mut self, _: &mut [u8]) {}
    fn ack_notify(&mut self, _: &Bytes) {}
    fn free(&mut self, _: Bytes) {}
    fn freer(&self) -> Freer<Bytes> {
        Arc::new(drop)
    }
    fn get_next(&mut self, _: Option<u32>) -> Option<(u32, Option<Bytes>)> {
        None
    }
    fn conn_status(&mut self, _: bool) {}
    fn init_sync_done(&mut self, _: usize) {}
    fn bind_done(&mut self, _: u16) {}
    fn db_clear(&mut self) {}
    fn can_walk(&self) -> bool {
        true
    }
    fn can_decode(&self) -> bool {
        true
    }
}

type Log = Arc<Mutex<Vec<String>>>;

fn logger() -> (Log, Logger) {
    let log: Log = Arc::default();
    let l = log.clone();
    (log, Arc::new(move |m: &str| l.lock().unwrap().push(m.to_string())))
}

fn lines(log: &Log) -> Vec<String> {
    log.lock().unwrap().clone()
}

/// A master on `addr` (host order) and `port`, or a backup of 127.0.0.1:`port`, with its log.
fn context(master: bool, addr: u32, port: u16) -> (Result<Context<Idle>, Error>, Log) {
    let (log, l) = logger();
    (Context::new(Config::new(master, false, addr, port, 0), Idle, l), log)
}

const LOCALHOST: u32 = 0x7f00_0001;

/// Waits for `cond` up to `secs` seconds (a deadline, not a sleep that hopes).
fn wait_for(what: &str, secs: u64, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The path of `junos-sync: status on PATH` in `log`, once the loop thread has opened it (or
/// said why not: then the panic says that).
fn status_path(log: &Log) -> PathBuf {
    let mut found = None;
    wait_for("the status socket's log line", 10, || {
        let all = lines(log);
        if let Some(no) = all.iter().find(|l| l.contains("no status socket")) {
            panic!("no status socket: {no}");
        }
        found = all.iter().find_map(|l| l.strip_prefix("junos-sync: status on ").map(PathBuf::from));
        found.is_some()
    });
    found.expect("found")
}

/// Whether the loop thread has logged about its status socket, either way.
fn status_logged(log: &Log) -> bool {
    lines(log).iter().any(|l| l.contains("status on ") || l.contains("no status socket"))
}

fn scratch(name: &str, mode: u32) -> PathBuf {
    let d = std::env::temp_dir().join(format!("jsync-attack-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir(&d).unwrap();
    fs::set_permissions(&d, fs::Permissions::from_mode(mode)).unwrap();
    d
}

fn ask(path: &Path) -> String {
    let mut s = String::new();
    UnixStream::connect(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).read_to_string(&mut s).unwrap();
    s
}

fn is_root() -> bool {
    fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false)
}

/// Finding 4: a directory where someone else can create or rename entries is refused by
/// `junos_sync_init`, naming the variable, the directory and what is wrong with it.
#[test]
fn a_status_dir_others_can_write_fails_init() {
    let _one = one_at_a_time();
    let mut cases = vec![
        (scratch("open", 0o777), "writable by group or others"),
        (scratch("group", 0o770), "writable by group or others"),
    ];
    if is_root() {
        let d = scratch("theirs", 0o755);
        std::os::unix::fs::chown(&d, Some(12345), Some(12345)).unwrap();
        cases.push((d, "owned by uid 12345"));
    }
    for (dir, why) in &cases {
        std::env::set_var("JUNOS_SYNC_STATUS_DIR", dir);
        for master in [true, false] {
            let (c, log) = context(master, LOCALHOST, 9);
            std::env::remove_var("JUNOS_SYNC_STATUS_DIR");
            assert_eq!(c.err(), Some(Error::Invalid), "{}: a context in a directory {why}", dir.display());
            let all = lines(&log);
            assert!(
                all.iter().any(|l| l.contains("JUNOS_SYNC_STATUS_DIR")
                    && l.contains(dir.to_str().unwrap())
                    && l.contains(why)),
                "no log line saying {} is {why}: {all:?}",
                dir.display()
            );
            std::env::set_var("JUNOS_SYNC_STATUS_DIR", dir);
        }
        std::env::remove_var("JUNOS_SYNC_STATUS_DIR");
        assert_eq!(fs::read_dir(dir).unwrap().count(), 0, "{}: something was made in it", dir.display());
    }
    // Sticky (as /tmp is): others cannot rename or remove what is not theirs, so it will do.
    let sticky = scratch("sticky", 0o1777);
    std::env::set_var("JUNOS_SYNC_STATUS_DIR", &sticky);
    let (c, log) = context(false, LOCALHOST, 9);
    std::env::remove_var("JUNOS_SYNC_STATUS_DIR");
    let c = c.unwrap_or_else(|e| panic!("a sticky directory refused ({e:?}): {:?}", lines(&log)));
    c.start().unwrap();
    let p = status_path(&log);
    assert!(p.starts_with(&sticky) && fs::symlink_metadata(&p).unwrap().file_type().is_socket());
    c.exit(());
    assert!(!p.exists(), "the socket outlived its context");
    for (d, _) in cases {
        let _ = fs::remove_dir_all(d);
    }
    let _ = fs::remove_dir_all(sticky);
}

/// Finding 4: a local user who can rename entries in the directory (here: a sticky one, where
/// the attacker thread runs as the daemon's user, the strongest case) keeps renaming a symlink
/// to a file of the daemon's user over every name a status socket has or had on its way (the
/// temporary name of 1.1.0, and whatever appears in the directory). The file keeps its mode and
/// its content through 1,000 context starts.
#[test]
fn symlinks_renamed_over_the_socket_never_touch_the_victim() {
    let _one = one_at_a_time();
    let dir = scratch("race", 0o1777);
    let victim = std::env::temp_dir().join(format!("jsync-attack-victim-{}", std::process::id()));
    fs::write(&victim, b"the daemon's own file\n").unwrap();
    fs::set_permissions(&victim, fs::Permissions::from_mode(0o644)).unwrap();
    const STARTS: usize = 1000;
    const PORT: u16 = 9; // backups of a master that is not there: nothing to bind
    let stop = Arc::new(AtomicBool::new(false));
    // Two of them, so that one runs on another CPU than the loop thread whatever the
    // scheduler does.
    let attackers: Vec<_> = (0..2)
        .map(|i| {
            let (dir, victim, stop) = (dir.clone(), victim.clone(), stop.clone());
            std::thread::spawn(move || {
                let old_tmp = dir.join(format!(".junos-sync.{}.backup.{PORT}.sock.tmp", std::process::id()));
                let plant = dir.join(format!(".plant{i}"));
                let mut swaps = 0u64;
                let mut swap = |t: &Path| {
                    // (A symlink left over from a failed rename is used as it is.)
                    let _ = std::os::unix::fs::symlink(&victim, &plant);
                    if fs::rename(&plant, t).is_ok() {
                        swaps += 1;
                    }
                };
                while !stop.load(Ordering::Relaxed) {
                    // Mostly the one name 1.1.0 chmods, then whatever is there now.
                    for _ in 0..100 {
                        swap(&old_tmp);
                    }
                    if let Ok(rd) = fs::read_dir(&dir) {
                        for e in rd.flatten().filter(|e| !e.file_name().to_string_lossy().starts_with(".plant")) {
                            swap(&e.path());
                        }
                    }
                }
                swaps
            })
        })
        .collect();
    let mut opened = 0;
    for _ in 0..STARTS {
        std::env::set_var("JUNOS_SYNC_STATUS_DIR", &dir);
        let (c, log) = context(false, LOCALHOST, PORT);
        std::env::remove_var("JUNOS_SYNC_STATUS_DIR");
        let c = c.unwrap_or_else(|e| panic!("{e:?}: {:?}", lines(&log)));
        c.start().unwrap();
        wait_for("the status socket's log line", 10, || status_logged(&log));
        opened += usize::from(lines(&log).iter().any(|l| l.contains("status on ")));
        c.exit(());
        let m = fs::metadata(&victim).unwrap();
        assert_eq!(m.mode() & 0o7777, 0o644, "the victim's mode changed (after {opened} sockets opened)");
    }
    stop.store(true, Ordering::Relaxed);
    let swaps: u64 = attackers.into_iter().map(|a| a.join().unwrap()).sum();
    assert_eq!(fs::read(&victim).unwrap(), b"the daemon's own file\n");
    assert!(swaps > 0, "the attacker never renamed anything: the test tested nothing");
    eprintln!("{opened} of {STARTS} contexts opened their status socket; the attacker renamed {swaps} symlinks");
    let _ = fs::remove_dir_all(&dir);
    let _ = fs::remove_file(&victim);
}

/// Finding 7: two masters of one process on one port (127.0.0.1:P and 127.0.0.2:P), and two
/// backups of one master started together, each have a socket of their own, answering for
/// them; ending one leaves the other's; a context whose socket was replaced leaves the
/// replacement alone.
#[test]
fn two_contexts_never_share_a_status_socket() {
    let _one = one_at_a_time();
    let dir = scratch("share", 0o700);
    std::env::set_var("JUNOS_SYNC_STATUS_DIR", &dir);

    let (a, alog) = context(true, LOCALHOST, 0);
    let a = a.unwrap();
    a.start().unwrap();
    // The port bound (published by the loop thread once it runs).
    wait_for("the first master's port", 10, || a.status().unwrap().port != 0);
    let port = a.status().unwrap().port;
    let (b, blog) = context(true, 0x7f00_0002, port);
    let b = b.unwrap();
    b.start().unwrap();
    let (pa, pb) = (status_path(&alog), status_path(&blog));
    assert_ne!(pa, pb, "two masters on port {port} share a status socket");
    for p in [&pa, &pb] {
        let j = ask(p);
        assert!(j.contains("\"role\":\"master\"") && j.contains(&format!("\"port\":{port},")), "{j}");
    }
    a.exit(());
    assert!(!pa.exists(), "the first master's socket outlived it");
    assert!(ask(&pb).contains("\"role\":\"master\""), "the second master's socket went with the first");
    b.exit(());
    assert!(!pb.exists());

    for round in 0..20 {
        let pair: Vec<_> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..2)
                .map(|_| {
                    s.spawn(move || {
                        let (c, log) = context(false, LOCALHOST, port);
                        let c = c.unwrap();
                        c.start().unwrap();
                        (c, log)
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let paths: Vec<_> = pair.iter().map(|(_, log)| status_path(log)).collect();
        assert_ne!(paths[0], paths[1], "round {round}: two backups share a status socket");
        for p in &paths {
            assert!(ask(p).contains("\"role\":\"backup\""), "round {round}: {} does not answer", p.display());
        }
        let [(c0, _), (c1, _)] = <[_; 2]>::try_from(pair).ok().unwrap();
        c0.exit(());
        assert!(
            ask(&paths[1]).contains("\"role\":\"backup\""),
            "round {round}: one backup's exit took the other's socket"
        );
        c1.exit(());
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 0, "round {round}: left behind");
    }

    // Someone replaced the socket (an operator's rename, another program): not ours to remove.
    let (c, log) = context(true, LOCALHOST, 0);
    let c = c.unwrap();
    c.start().unwrap();
    let p = status_path(&log);
    let other = dir.join("other.sock");
    let l = UnixListener::bind(&other).unwrap();
    fs::rename(&other, &p).unwrap();
    c.exit(());
    assert!(fs::symlink_metadata(&p).is_ok(), "the context removed a socket it did not make");
    drop(l);
    std::env::remove_var("JUNOS_SYNC_STATUS_DIR");
    let _ = fs::remove_dir_all(&dir);
}
