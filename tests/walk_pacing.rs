//! The resync walk waits for room to send. A backup that reads nothing gets what its socket
//! and the master's output buffer hold, not what the backlog limit would allow: with a walk
//! answered at once (thread mode), a walk paced only by that limit ran in one loop turn into
//! a stopped backup, the loop answering nothing else meanwhile (found by `junos-sync-stat`
//! polling a master whose backup was stopped: it did not answer within 0.2 s).

mod common;

use std::time::{Duration, Instant};

use common::wire_peer::{hello, kernel_held, Peer};
use common::*;
use junos_sync::proto::wire::{frame_size, FrameKind};
use junos_sync::Config;

engine_tests!(a_walk_into_a_backup_that_reads_nothing_waits_for_the_socket);

/// Entries of the database and their payload bytes: 29 MB walked, far more than loopback
/// socket buffers and the output buffer hold.
const N: u32 = 400_000;
const LEN: usize = 64;
/// The master's output buffer (1 MiB past what it wrote), plus one walk budget's overshoot.
const SLACK: u64 = 2 << 20;

fn a_walk_into_a_backup_that_reads_nothing_waits_for_the_socket() {
    let mut m = Node::new(Config::new(true, false, 0x7f00_0001, 0, 2));
    // A limit that would let the whole walk in at once.
    m.ctx().set_backlog_limit(1 << 30).unwrap();
    m.fill_db(N, LEN);
    m.start();

    let mut a = Peer::connect(m.port());
    a.handshake(&hello(0x5a1c_0de5, 0, 0));
    let (mine, theirs) = (a.s.local_addr().unwrap().port(), m.port());
    // Until the walk stands still: the count the master publishes and what the kernel holds
    // stop changing. Keepalives keep the connection up meanwhile.
    let walked = || m.ctx().status().unwrap().resync.map_or(0, |r| r.walked);
    wait_for("the walk under way", 10, || walked() > 0);
    let (walked, written) = wait_steady("the walk", 20, || {
        a.send_frame(FrameKind::Keepalive, 0, 0, &[]).unwrap();
        (walked(), kernel_held(mine, theirs))
    });
    let walked_bytes = walked * frame_size(LEN as u32) as u64;
    eprintln!("walked {walked} of {N} entries ({walked_bytes} bytes); the kernel holds {written} bytes");
    assert!(walked < u64::from(N), "the whole database was walked into a backup that reads nothing");
    assert!(
        walked_bytes <= written + SLACK,
        "walked {walked_bytes} bytes with {written} in the kernel: the walk ran ahead of the socket"
    );

    // Reading again, the backup gets the whole walk, in order.
    let mut seen = Vec::new();
    let end = deadline(Duration::from_secs(60));
    let mut alive = Instant::now();
    loop {
        if alive.elapsed() > Duration::from_millis(200) {
            a.send_frame(FrameKind::Keepalive, 0, 0, &[]).unwrap();
            alive = Instant::now();
        }
        let f = a.next_frame(Duration::from_secs(5)).expect("the stream stopped");
        match f.kind {
            FrameKind::Data => seen.push(id_of(&f.payload).expect("an intact entry")),
            FrameKind::SyncEnd => break,
            _ => {}
        }
        assert!(Instant::now() < end, "the walk did not end");
    }
    assert_eq!(seen, m.book().made, "every entry of the walk, once, in order");
    assert_eq!(seen.len(), N as usize);
    a.close();
    m.exit();
}
