//! A live master under hostile connections: garbage, a huge length, a truncated handshake, a
//! slow trickle, wrong versions and roles, and a burst of 1,000 connections. The master must
//! stay up, log each refusal, and keep its real backup in sync with nothing lost.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use junos_sync::proto::handshake::{Hello, Role};
use junos_sync::proto::wire::{push_frame, seal_header, FrameKind};

fn hello(version: u16, role: Role) -> Vec<u8> {
    let h = Hello { version, role, flags: 0, keepalive_ms: 1000, max_version: 0, session: 42, peer_session: 0, seq: 0 };
    let mut out = Vec::new();
    push_frame(&mut out, FrameKind::Hello, 0, 0, &h.encode());
    out
}

fn refusals(m: &Side) -> usize {
    m.rec.lock().logs.iter().filter(|l| l.contains("refused connection") || l.contains("no handshake")).count()
}

#[test]
fn master_survives_hostile_peers_and_keeps_its_backup() {
    let mut m = Side::new(junos_sync::Config::new(true, false, 0x7f00_0001, 0, 1));
    for k in 1..=2000 {
        m.db.lock().insert(k, k);
    }
    m.ctx().start().unwrap();
    let port = m.rec.lock().port;
    let mut b = Side::new(junos_sync::Config::new(false, false, 0x7f00_0001, port, 1));
    b.ctx().start().unwrap();
    wait_for("initial sync", 10, || b.rec.lock().sync_done.len() == 1);
    let addr = ("127.0.0.1", port);
    let mut expected_refusals = 0;
    let mut attack = |bytes: &[u8], m: &Side| {
        let mut s = TcpStream::connect(addr).unwrap();
        let _ = s.write_all(bytes);
        expected_refusals += 1;
        let want = expected_refusals;
        wait_for("refusal logged", 10, || refusals(m) >= want);
        m.put(5000 + want as u32, 1, false);
    };

    attack(&[0xde, 0xad, 0xbe, 0xef].repeat(20), &m);
    // A well-formed header (its CRC is right) announcing a huge frame.
    let mut huge = [0u8; 32];
    huge[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
    huge[4] = FrameKind::Data as u8;
    seal_header(&mut huge);
    attack(&huge, &m);
    huge[0..4].copy_from_slice(&(16u32 << 20).to_le_bytes());
    seal_header(&mut huge);
    attack(&huge, &m); // a DATA frame is no handshake, whatever its size
    let h = hello(1, Role::Backup);
    attack(&h[..30], &m); // truncated handshake: times out
    attack(&hello(2, Role::Backup), &m); // another protocol version
    attack(&hello(1, Role::Master), &m); // two masters
    let mut ack_first = Vec::new();
    push_frame(&mut ack_first, FrameKind::Ack, 0, 7, &[]);
    attack(&ack_first, &m); // not a handshake

    // A slow trickle of a valid-looking prefix: one byte every 50 ms never completes in time.
    {
        let mut s = TcpStream::connect(addr).unwrap();
        expected_refusals += 1;
        for &byte in &h[..25] {
            if s.write_all(&[byte]).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let want = expected_refusals;
        wait_for("trickle refused", 10, || refusals(&m) >= want);
    }

    // A burst of 1,000 connections that send nothing and close.
    for i in 0..1000 {
        if let Ok(s) = TcpStream::connect(addr) {
            if i % 2 == 0 {
                let _ = (&s).write_all(b"x");
            }
            drop(s);
        }
        if i % 100 == 0 {
            m.put(9000 + i, 2, true);
        }
    }

    for k in 1..=200 {
        m.put(k, 0, false);
    }
    wait_for("backup converged", 15, || b.rec.lock().db == *m.db.lock());
    assert_eq!(b.rec.lock().ups, 1, "the real backup lost its session to hostile peers");
    assert_eq!(m.rec.lock().ups, 1);
    assert!(m.ctx().stats().unwrap().frames_rejected >= 4);
    let sent = m.allocated.load(Ordering::SeqCst);
    wait_for("all acknowledged", 10, || m.rec.lock().frees == sent);
    b.exit();
    m.exit();
    assert_eq!(m.rec.lock().frees, m.allocated.load(Ordering::SeqCst));
}

#[test]
fn misuse_is_refused_and_logged() {
    let mut m = Side::new(master_cfg(false));
    m.ctx().start().unwrap();
    assert_eq!(m.ctx().start(), Err(junos_sync::Error::State));
    assert!(m.rec.lock().logs.iter().any(|l| l.contains("already started")));
    let mut b = Side::new(backup_cfg(m.rec.lock().port, false));
    assert!(b.ctx().queue(op(1, 1), false).is_err());
    assert!(b.rec.lock().logs.iter().any(|l| l.contains("only a master queues")));
    let big = Buf { ty: 1, data: vec![0; (16 << 20) + 1] };
    assert_eq!(m.ctx().queue(big, false).unwrap_err().0, junos_sync::Error::Invalid);
    b.exit();
    m.exit();
}

/// A "master" that answers the handshake as another role or protocol version.
fn fake_master(answer: Hello) -> (u16, std::thread::JoinHandle<()>) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let h = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut hello = [0u8; 32 + 40];
        std::io::Read::read_exact(&mut s, &mut hello).unwrap();
        let mut out = Vec::new();
        push_frame(&mut out, FrameKind::Welcome, 0, 0, &answer.encode());
        s.write_all(&out).unwrap();
        // Hold the connection until the backup gives up on it.
        let mut sink = [0u8; 256];
        while std::io::Read::read(&mut s, &mut sink).map(|n| n > 0).unwrap_or(false) {}
    });
    (port, h)
}

#[test]
fn backup_refuses_a_peer_that_is_no_master_or_speaks_another_version() {
    for (answer, why) in [
        (
            Hello {
                version: 1,
                role: Role::Backup,
                flags: 0,
                keepalive_ms: 1000,
                max_version: 0,
                session: 9,
                peer_session: 0,
                seq: 0,
            },
            "two backups",
        ),
        (
            Hello {
                version: 7,
                role: Role::Master,
                flags: 0,
                keepalive_ms: 1000,
                max_version: 0,
                session: 9,
                peer_session: 0,
                seq: 0,
            },
            "protocol version 7",
        ),
    ] {
        let (port, fake) = fake_master(answer);
        let mut b = Side::new(junos_sync::Config::new(false, false, 0x7f00_0001, port, 1));
        b.ctx().start().unwrap();
        wait_for("refusal logged", 10, || b.rec.lock().logs.iter().any(|l| l.contains(why)));
        assert_eq!(b.rec.lock().ups, 0, "the backup went up with a bad peer");
        b.exit();
        fake.join().unwrap();
    }
}
