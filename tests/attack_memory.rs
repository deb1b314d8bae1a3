//! Issue 7, finding 6: memory before the handshake. 64 connections keep streaming garbage, or
//! announcing a frame and trickling it (or sending 64 KiB of it at once first), or stalling
//! mid-HELLO, reconnecting whenever the master closes them, while the master's real backup
//! replicates. The process hosting the master grows by less than 16 MiB, and the backup gets
//! every TLV, in order.
//!
//! It measures the whole process, so each mode's test runs in a process of its own
//! (`common::mode::isolated`: the test binary again, running that one test and nothing else),
//! whatever else this binary runs meanwhile.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use common::mode::isolated;
use common::wire_peer::{bare_header, hello, hello_frame, loopback, rss_bytes};
use common::*;
use junos_sync::proto::wire::FrameKind;
use junos_sync::Config;

engine_tests!(garbage_and_partial_frames_before_the_handshake_cost_little_memory);

const ATTACKERS: usize = 64;
const LIMIT: u64 = 16 << 20;

/// One attacker: connects, sends what its kind sends until the master closes the connection,
/// and starts over. Everything it sends is made before it is released.
fn attacker(i: usize, port: u16, go: Arc<Barrier>, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    let garbage = vec![0xabu8; 64 * 1024];
    let announce_hello = bare_header(FrameKind::Hello, 0, 256);
    let announce_data = bare_header(FrameKind::Data, 1, 16 << 20);
    let half_hello = hello_frame(&hello(0xdead_0000 + i as u64, 0, 0))[..52].to_vec();
    let big_start = [&announce_data[..], &garbage[..]].concat();
    std::thread::spawn(move || {
        let mut sink = [0u8; 512];
        go.wait();
        let mut conns = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let Ok(mut s) = TcpStream::connect(loopback(port)) else {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            };
            conns += 1;
            let _ = s.set_write_timeout(Some(Duration::from_millis(200)));
            let _ = s.set_read_timeout(Some(Duration::from_millis(20)));
            let first: &[u8] = match i % 5 {
                0 => &garbage,
                1 => &announce_hello,
                2 => &announce_data,
                3 => &half_hello,
                _ => &big_start,
            };
            let mut alive = s.write_all(first).is_ok();
            while alive && !stop.load(Ordering::Relaxed) {
                alive = match i % 5 {
                    0 => s.write_all(&garbage).is_ok(),
                    1 | 2 | 4 => {
                        std::thread::sleep(Duration::from_millis(20));
                        s.write_all(&[7]).is_ok()
                    }
                    // Stalled mid-frame: alive until the master closes it.
                    _ => {
                        matches!(s.read(&mut sink), Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut))
                    }
                };
            }
            drop(s);
            // Paced, so that the loopback's ephemeral ports outlast the attack.
            std::thread::sleep(Duration::from_millis(20));
        }
        conns
    })
}

fn garbage_and_partial_frames_before_the_handshake_cost_little_memory() {
    isolated(measure);
}

fn measure() {
    let cfg = |is_master, port| Config::new(is_master, false, 0x7f00_0001, port, 1);
    // Quiet nodes: printed log lines would be kept in memory by the test harness.
    let mut m = Node::quiet(cfg(true, 0));
    m.fill_db(200, 64);
    m.start();
    let mut b = Node::quiet(cfg(false, m.port()));
    b.start();
    wait_for("the backup's resync", 10, || b.book().sync_done == vec![200]);
    let go = Arc::new(Barrier::new(ATTACKERS + 1));
    let stop = Arc::new(AtomicBool::new(false));
    let attackers: Vec<_> = (0..ATTACKERS).map(|i| attacker(i, m.port(), go.clone(), stop.clone())).collect();

    // Warm up with the traffic the attack will see, make room for what the test records, then
    // take the baseline.
    b.book().reserve(100_000);
    m.book().reserve(100_000);
    common::ledger::reserve_applied(100_000);
    let mut ids = Vec::with_capacity(100_000);
    for _ in 0..300 {
        ids.push(m.queue(200, false));
    }
    wait_for("warm-up replicated", 10, || b.book().decoded.len() == 200 + ids.len());
    let base = rss_bytes();
    go.wait();
    let until = Instant::now() + Duration::from_secs(3);
    let mut peak = base;
    while Instant::now() < until {
        for _ in 0..20 {
            ids.push(m.queue(200, false));
        }
        peak = peak.max(rss_bytes());
        std::thread::sleep(Duration::from_millis(10));
    }
    let during = b.book().decoded.len() - 200 - 300;
    stop.store(true, Ordering::Relaxed);
    let conns: u64 = attackers.into_iter().map(|a| a.join().unwrap()).sum();
    peak = peak.max(rss_bytes());
    let grew = peak.saturating_sub(base);
    eprintln!(
        "{conns} attacking connections; RSS {} KiB, peak +{} KiB; the backup applied {during} of {} TLVs during the attack",
        base >> 10,
        grew >> 10,
        ids.len() - 300
    );
    wait_for("the backup converged", 15, || b.book().decoded.len() == 200 + ids.len());
    assert_eq!(b.book().decoded[200..], ids[..], "the backup's stream");
    wait_for("everything acknowledged", 10, || m.book().unfreed() == 0);
    assert!(grew < LIMIT, "the master's process grew by {} KiB under attack", grew >> 10);
    assert!(during > 0, "the backup replicated nothing during the attack");
    assert!(conns >= ATTACKERS as u64, "the attack did not run");
    let (s, lines) = (m.stats(), m.book().log_lines);
    assert!(s.frames_rejected > 0 && lines > 0, "the master said nothing about the attack");
    // Each kind of line once, then at most once a minute (issue 17, finding 3).
    assert!(lines <= 20, "{lines} log lines for {conns} attacking connections");
    assert_eq!((b.book().ups, m.book().ups), (1, 1), "the attack displaced the backup");
    b.exit();
    m.exit();
}
