//! Issue 7 against the backup, from a fake master at the master's address: liveness counts
//! frames, not bytes (finding 7: a master trickling one huge frame is declared dead within
//! 1.5 keepalive times of its last complete frame, and the backup reconnects), and a backup
//! counts refused handshakes apart from malformed frames.

mod common;

use std::io::{ErrorKind, Read};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::tlv::payload;
use common::wire_peer::{bare_header, frame, loopback, parse_frames, welcome, Peer};
use common::*;
use junos_sync::proto::handshake::{Hello, Role};
use junos_sync::proto::wire::FrameKind;
use junos_sync::Config;

engine_tests!(
    a_master_trickling_one_huge_frame_is_declared_dead_within_one_and_a_half_keepalive_times,
    a_backup_counts_refused_handshakes_apart_from_rejected_frames,
);

const T: Duration = Duration::from_secs(5);

fn backup(port: u16, keepalive: u32) -> Node {
    let b = Node::new(Config::new(false, false, 0x7f00_0001, port, keepalive));
    b.start();
    b
}

/// The next connection to the fake master within `timeout`, and its HELLO.
fn accept(l: &TcpListener, timeout: Duration) -> (Peer, Hello) {
    l.set_nonblocking(true).unwrap();
    let end = deadline(timeout);
    let s = loop {
        match l.accept() {
            Ok((s, _)) => break s,
            Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < end => {
                std::thread::sleep(Duration::from_millis(5))
            }
            Err(e) => panic!("no connection from the backup within {timeout:?}: {e}"),
        }
    };
    s.set_nonblocking(false).unwrap();
    let mut a = Peer::over(s);
    let h = a.expect(FrameKind::Hello, T).hello();
    (a, h)
}

/// Finding 7: after a valid handshake and a short resync, the fake master announces a 16 MiB
/// DATA frame and sends one byte of it every 200 ms. Bytes keep arriving, frames do not: the
/// backup declares the master dead within 1.5 keepalive times of the last complete frame, says
/// so, and reconnects.
fn a_master_trickling_one_huge_frame_is_declared_dead_within_one_and_a_half_keepalive_times() {
    const KA: u32 = 2;
    const MASTER: u64 = 0x3a57_e500;
    let l = TcpListener::bind(loopback(0)).unwrap();
    let mut b = backup(l.local_addr().unwrap().port(), KA);
    let (mut a, h) = accept(&l, T);
    assert_eq!((h.role, h.peer_session, h.seq), (Role::Backup, 0, 0));
    let w = Hello { keepalive_ms: KA * 1000, ..welcome(&h, MASTER, 0) };
    let mut complete = frame(FrameKind::Welcome, 0, 0, &w.encode());
    complete.extend(frame(FrameKind::SyncBegin, 0, 1, &[]));
    complete.extend(frame(FrameKind::Data, 7, 2, &payload(1, 100)));
    complete.extend(frame(FrameKind::SyncEnd, 0, 3, &1u64.to_le_bytes()));
    // Whatever the backup sends (ACKs, keepalives) is read, and the end of it timed.
    let mut rs = a.s.try_clone().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = rs.read(&mut buf) {
            got.extend_from_slice(&buf[..n]);
        }
        let _ = tx.send((Instant::now(), got));
    });
    a.send(&complete).unwrap();
    let last_complete = Instant::now();
    a.send(&bare_header(FrameKind::Data, 4, 16 << 20)).unwrap();
    let (closed, from_backup) = loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(end) => break end,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let alive = last_complete.elapsed();
                assert!(alive < scaled(Duration::from_secs(u64::from(KA) * 5)), "still connected after {alive:?}");
                // A write to a connection the backup just closed may fail: the reader says when.
                let _ = a.send(&[0x11]);
            }
            Err(e) => panic!("{e}"),
        }
    };
    let dead_after = closed - last_complete;
    eprintln!("declared dead {dead_after:?} after the last complete frame (keepalive {KA} s)");
    assert!(
        dead_after <= scaled(Duration::from_millis(u64::from(KA) * 1500)),
        "a master sending one byte per 200 ms of a frame that never completes stayed alive for {dead_after:?}"
    );
    let (acks, _) = parse_frames(&from_backup).unwrap();
    assert!(acks.iter().any(|f| f.kind == FrameKind::Ack && f.seq == 3), "the resync was not applied: {acks:?}");
    wait_for("the DOWN", 5, || b.book().downs == 1);
    {
        let bb = b.book();
        assert_eq!((bb.ups, bb.clears, bb.sync_done.clone(), bb.decoded.clone()), (1, 1, vec![1], vec![1]));
        assert!(bb.logged("declaring it dead"), "no log line");
    }
    // It comes back, resuming where it was.
    let (_again, h2) = accept(&l, T);
    assert_eq!((h2.session, h2.peer_session, h2.seq), (h.session, MASTER, 3));
    b.exit();
}

/// A backup counts the WELCOMEs it refuses (another protocol version, two backups) in
/// `handshakes_refused` and tells the fake master why; malformed frames and protocol violations
/// (a WELCOME echoing another session) count in `frames_rejected`. It logs the outage once,
/// with its first reason, and never goes up.
fn a_backup_counts_refused_handshakes_apart_from_rejected_frames() {
    let l = TcpListener::bind(loopback(0)).unwrap();
    let mut b = backup(l.local_addr().unwrap().port(), 2);
    // (what the backup's REFUSE says, the fake master's answer to a HELLO, the counts after it:
    // handshakes_refused, frames_rejected)
    type Answer = Box<dyn Fn(&Hello) -> Vec<u8>>;
    let answers: Vec<(&str, Answer, (u64, u64))> = vec![
        (
            "protocol version 7",
            Box::new(|h| frame(FrameKind::Welcome, 0, 0, &Hello { version: 7, ..welcome(h, 9, 0) }.encode())),
            (1, 0),
        ),
        (
            "two backups",
            Box::new(|h| frame(FrameKind::Welcome, 0, 0, &Hello { role: Role::Backup, ..welcome(h, 9, 0) }.encode())),
            (2, 0),
        ),
        (
            "another session",
            Box::new(|h| {
                frame(FrameKind::Welcome, 0, 0, &Hello { peer_session: h.session ^ 1, ..welcome(h, 9, 0) }.encode())
            }),
            (2, 1),
        ),
        ("", Box::new(|_| vec![0x77; 64]), (2, 2)),
    ];
    for (why, answer, (refused, rejected)) in &answers {
        let (mut a, h) = accept(&l, T);
        a.send(&answer(&h)).unwrap();
        let (frames, _) = a.frames_to_end(T);
        if why.is_empty() {
            assert!(frames.is_empty(), "{frames:?}");
        } else {
            assert_eq!(frames.len(), 1, "{frames:?}");
            assert_eq!(frames[0].kind, FrameKind::Refuse);
            assert!(frames[0].text().contains(why), "{}", frames[0].text());
        }
        wait_for("counted", 5, || {
            let s = b.stats();
            (s.handshakes_refused, s.frames_rejected, s.auth_failures) == (*refused, *rejected, 0)
        });
    }
    // One outage, said once (its retries must not flood the log), with its first reason.
    let bb = b.book();
    assert!(bb.logged("lost: refused: protocol version 7"), "the first refusal was not logged: {:?}", bb.logs);
    assert_eq!(bb.count_logged("connection to master"), 1, "{:?}", bb.logs);
    assert_eq!(bb.ups, 0);
    drop(bb);
    b.exit();
}
