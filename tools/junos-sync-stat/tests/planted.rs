//! junos-sync-stat against sockets planted in its directory (issue 17, finding 5): the program
//! (the built binary, over real sockets) finishes within its deadline whatever they do, never
//! makes a thread per socket, prints control characters from them escaped, and marks sockets of
//! another user.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const STAT: &str = env!("CARGO_BIN_EXE_junos-sync-stat");

/// Far past any deadline the program has in these tests, and far short of what it took before
/// (hours for a socket that dribbles; never, for a panic): a machine however loaded is within.
const HANG: Duration = Duration::from_secs(60);

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("jss-planted-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir(&d).unwrap();
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
    d
}

/// The program's output and how long it took; killed (and the test failed) past `HANG`.
fn run(cmd: &mut Command) -> (Output, Duration) {
    let t0 = Instant::now();
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let o = std::thread::spawn(move || {
        let mut v = Vec::new();
        out.read_to_end(&mut v).map(|_| v)
    });
    let e = std::thread::spawn(move || {
        let mut v = Vec::new();
        err.read_to_end(&mut v).map(|_| v)
    });
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if t0.elapsed() > HANG {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} still running after {HANG:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let took = t0.elapsed();
    (Output { status, stdout: o.join().unwrap().unwrap(), stderr: e.join().unwrap().unwrap() }, took)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A listener at `path` serving every connection on a thread of its own with `serve`, until
/// the returned flag is set.
fn serve(path: &Path, serve: fn(std::os::unix::net::UnixStream, &AtomicBool)) -> (Arc<AtomicBool>, JoinHandle<()>) {
    let l = UnixListener::bind(path).unwrap();
    l.set_nonblocking(true).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let h = std::thread::spawn(move || {
        let mut conns = Vec::new();
        while !s.load(Ordering::Relaxed) {
            match l.accept() {
                Ok((c, _)) => {
                    c.set_nonblocking(false).unwrap();
                    let s = s.clone();
                    conns.push(std::thread::spawn(move || serve(c, &s)));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(2)),
            }
        }
        for c in conns {
            c.join().unwrap();
        }
    });
    (stop, h)
}

/// One byte of a plausible status line every 300 ms (the review's was 1.5 s), for ever.
fn dribble(mut c: std::os::unix::net::UnixStream, stop: &AtomicBool) {
    for b in br#"{"version":1,"pid":1,"role":"master","port":1,"state":"up"}"#.iter().cycle() {
        if stop.load(Ordering::Relaxed) || c.write_all(&[*b]).is_err() {
            return;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn a_socket_that_dribbles_is_given_up_within_the_deadline() {
    let d = scratch("dribble");
    let sock = d.join(format!("junos-sync.{}.master.4000.sock", std::process::id()));
    let (stop, server) = serve(&sock, dribble);
    for mode in [
        &["--timeout", "1"][..],
        &["--json", "--timeout", "1"],
        &["--prometheus", "--timeout", "1"],
        &["--watch", "0.1", "--count", "2", "--timeout", "1"],
    ] {
        let (o, took) = run(Command::new(STAT).args(mode).arg(&d));
        let all = text(&o.stdout) + &text(&o.stderr);
        // The socket's deadline is 1 s in all, the run's 2 s: each frame ends by then.
        assert!(all.contains("no answer within 1 s"), "{mode:?}: {all}");
        let frames = if mode[0] == "--watch" { 2 } else { 1 };
        assert!(took < Duration::from_secs(2 * frames) + Duration::from_secs(10), "{mode:?} took {took:?}");
        if mode[0] != "--watch" {
            assert_eq!(o.status.code(), Some(1), "{mode:?}: {all}");
        }
    }
    stop.store(true, Ordering::Relaxed);
    server.join().unwrap();
    let _ = std::fs::remove_dir_all(&d);
}

/// Raises this process's open-file limit as far as allowed; how many sockets fit under it.
fn sockets_we_can_hold(want: usize) -> usize {
    let mut r = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit on a local struct.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut r);
        r.rlim_cur = r.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut r);
    }
    want.min((r.rlim_cur as usize).saturating_sub(200))
}

#[test]
fn a_thousand_silent_sockets_under_a_limit_of_300_threads() {
    let d = scratch("thousand");
    let n = sockets_we_can_hold(1000);
    assert!(n >= 500, "only {n} descriptors allowed");
    let me = std::process::id();
    let held: Vec<UnixListener> = (0..n)
        .map(|i| {
            let p = d.join(format!("junos-sync.{me}.backup.{}.sock", 1000 + i));
            let l = UnixListener::bind(&p).unwrap();
            // Connectable by the unprivileged user the program runs as below.
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o777)).unwrap();
            l
        })
        .collect();
    // Run from a copy in a directory anyone can read: the checkout (and so the build) may be
    // under a directory only its owner may enter, which `nobody` could not exec from.
    let bin_dir = scratch("thousand-bin");
    let bin = bin_dir.join("junos-sync-stat");
    std::fs::copy(STAT, &bin).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    for args in [&["--timeout", "0.5"][..], &["--json", "--timeout", "0.5"]] {
        let mut cmd = Command::new(&bin);
        cmd.args(args).arg(&d);
        // SAFETY: only system calls between fork and exec. The thread limit counts the
        // threads of the real user, which root is exempt from: root runs it as nobody.
        unsafe {
            cmd.pre_exec(|| {
                let lim = libc::rlimit { rlim_cur: 300, rlim_max: 300 };
                if libc::getuid() == 0
                    && (libc::setgroups(0, std::ptr::null()) != 0
                        || libc::setgid(65534) != 0
                        || libc::setuid(65534) != 0)
                {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::setrlimit(libc::RLIMIT_NPROC, &lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let (o, took) = run(&mut cmd);
        let (out, err) = (text(&o.stdout), text(&o.stderr));
        assert_eq!(o.status.signal(), None, "{args:?}: killed by a signal: {err}");
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        // Each socket is reported: within its 0.5 s, or cut by the run's 1 s.
        let reported = if args[0] == "--json" {
            assert_eq!(out, "[]\n");
            err.lines().filter(|l| l.contains("no answer") || l.contains("not asked")).count()
        } else {
            out.lines().filter(|l| l.starts_with("  error       ")).count()
        };
        assert_eq!(reported, n, "{args:?}: {err}{}", &out[..out.len().min(3000)]);
        assert!(took < Duration::from_secs(1) + Duration::from_secs(10), "{args:?} took {took:?}");
    }
    drop(held);
    let _ = std::fs::remove_dir_all(&d);
    let _ = std::fs::remove_dir_all(&bin_dir);
}

/// A status line whose strings hold what a terminal would act on: a screen clear, a window
/// title, a line of its own (a forged context), escaped as JSON allows; and, raw (JSON allows
/// them so), an 8-bit CSI and a right-to-left override.
fn hostile() -> String {
    r#"{"version":1,"pid":1,"role":"\u001b[2Jmaster","port":4000,"peer":"1.2.3.4:5\nmaster  pid 99  port 99  (forged)","state":"up\u001b]0;pwned\u0007CSI31mRLO","since_ms":5,"keyed":true,"lag_ms":0,"unacked_entries":0,"unacked_bytes":0,"backlog_limit":1,"resync":null,"stats":{"connections":1,"evil\u001b[1m_count":3}}"#
        .replace("CSI", "\u{9b}")
        .replace("RLO", "\u{202e}")
}

fn answer_hostile(mut c: std::os::unix::net::UnixStream, _: &AtomicBool) {
    let _ = c.write_all(format!("{}\n", hostile()).as_bytes());
}

/// No control character but newlines (and, for --watch, the program's own redraw sequences),
/// and none of the Unicode characters that reorder or break lines.
fn assert_inert(what: &str, s: &str) {
    let mut s = s.to_string();
    if what.contains("watch") {
        for own in ["\x1b[H", "\x1b[2J", "\x1b[K", "\x1b[J"] {
            s = s.replace(own, "");
        }
    }
    let bad: Vec<_> = s
        .char_indices()
        .filter(|&(_, c)| {
            (c.is_control() && c != '\n') || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
        })
        .collect();
    assert!(bad.is_empty(), "{what}: raw {bad:?} in\n{s}");
    assert!(!s.lines().any(|l| l.starts_with("master  pid 99")), "{what}: a forged line\n{s}");
}

#[test]
fn control_characters_from_a_socket_are_printed_escaped() {
    let d = scratch("escapes");
    let sock = d.join(format!("junos-sync.{}.master.4000.sock", std::process::id()));
    let (stop, server) = serve(&sock, answer_hostile);
    for mode in [&[][..], &["--json"], &["--prometheus"], &["--watch", "0.1", "--count", "1"]] {
        let (o, _) = run(Command::new(STAT).args(mode).arg(&d));
        let (out, err) = (text(&o.stdout), text(&o.stderr));
        let what = format!("{mode:?}");
        assert_inert(&what, &out);
        assert_inert(&(what.clone() + " stderr"), &err);
        match mode.first().copied() {
            None | Some("--watch") => {
                for want in [
                    r"\x1b[2Jmaster pid 1  port 4000",
                    r"  peer        1.2.3.4:5\x0amaster  pid 99  port 99  (forged) (the master)",
                    r"  state       up\x1b]0;pwned\x07\x9b31m\u{202e} for 5 ms",
                    r"evil\x1b[1m count 3",
                ] {
                    assert!(out.contains(want), "{what}: no {want:?} in\n{out}");
                }
            }
            Some("--json") => {
                let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
                assert_eq!(v[0]["state"], "up\u{1b}]0;pwned\u{7}\u{9b}31m\u{202e}", "the same value, escaped in JSON");
                assert!(out.contains(r#""state":"up\u001b]0;pwned\u0007\u009b31m\u202e""#), "{out}");
            }
            Some(_) => {
                assert!(out.contains(r#"role="\\x1b[2Jmaster""#), "{out}");
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    server.join().unwrap();
    let _ = std::fs::remove_dir_all(&d);
}

fn answer_healthy(mut c: std::os::unix::net::UnixStream, _: &AtomicBool) {
    let line = r#"{"version":1,"pid":1,"role":"master","port":4000,"peer":"127.0.0.1:5000","state":"up","since_ms":5,"keyed":true,"lag_ms":0,"unacked_entries":0,"unacked_bytes":0,"backlog_limit":1,"resync":null,"stats":{"connections":1}}"#;
    let _ = c.write_all(format!("{line}\n").as_bytes());
}

#[test]
fn a_socket_of_another_user_is_marked() {
    // SAFETY: getuid cannot fail.
    if unsafe { libc::getuid() } != 0 {
        eprintln!("not root: a socket of another user cannot be made here; not tested");
        return;
    }
    let d = scratch("theirs");
    let sock = d.join("junos-sync.1.master.4000.sock");
    let (stop, server) = serve(&sock, answer_healthy);
    std::os::unix::fs::lchown(&sock, Some(12345), Some(12345)).unwrap();
    let (o, _) = run(Command::new(STAT).arg(&d));
    let out = text(&o.stdout);
    assert!(out.contains("master  pid 1  port 4000"), "{out}");
    assert!(
        out.lines().any(|l| l == "  owner       uid 12345, neither you (uid 0) nor root: not to be trusted"),
        "{out}"
    );
    let (o, _) = run(Command::new(STAT).arg("--json").arg(&d));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v[0]["untrusted_owner"], 12345, "{v}");
    assert!(text(&o.stderr).contains("owned by uid 12345, neither you (uid 0) nor root"), "{}", text(&o.stderr));
    let (o, _) = run(Command::new(STAT).arg("--prometheus").arg(&d));
    let out = text(&o.stdout);
    assert!(out.lines().any(|l| l == "junos_sync_stat_untrusted_sockets 1"), "{out}");
    assert!(!out.contains("junos_sync_up{"), "an untrusted socket's answer went into the metrics: {out}");
    stop.store(true, Ordering::Relaxed);
    server.join().unwrap();
    let _ = std::fs::remove_dir_all(&d);
}
