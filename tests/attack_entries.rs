//! Issue 17, finding 2: memory bounds count entries, not only payload bytes.
//!
//! A fake master streams BATCH frames of empty records to a backup whose application does not
//! get through them (its decode is held): in dispatch mode the loop keeps reading only while
//! what is on its way to the application, entries counted, stays under its bound, so the
//! process grows by a few MiB, not by gigabytes (it measures the whole process: each mode in a
//! process of its own). A master charges every TLV its entry's cost against the backlog
//! limit: 0-byte TLVs are refused (no_resync) at the limit divided by that cost, not by 8.

mod common;

use std::io::Write;
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::mode::isolated;
use common::wire_peer::{frame, loopback, rss_bytes, welcome_v2, Peer};
use common::*;
use junos_sync::proto::handshake::Role;
use junos_sync::proto::wire::FrameKind;
use junos_sync::Config;

engine_tests!(
    a_backup_that_does_not_apply_stays_bounded_under_a_stream_of_empty_records,
    empty_tlvs_are_charged_what_their_entry_costs,
);

const BOUND: u64 = 64 << 20;
/// Empty records per BATCH frame: 64 KiB of record headers.
const PER_BATCH: u32 = 8192;

fn a_backup_that_does_not_apply_stays_bounded_under_a_stream_of_empty_records() {
    isolated(measure);
}

fn measure() {
    let l = TcpListener::bind(loopback(0)).unwrap();
    let port = l.local_addr().unwrap().port();
    let mut b = Node::quiet(Config::new(false, false, 0x7f00_0001, port, 30));
    b.start();
    let (s, _) = l.accept().unwrap();
    let mut a = Peer::over(s);
    let h = a.expect(FrameKind::Hello, Duration::from_secs(5)).hello();
    assert_eq!((h.role, h.max_version), (Role::Backup, 2));
    // A full resync that never ends: SYNC_BEGIN, then empty records.
    let mut start = frame(FrameKind::Welcome, 0, 0, &welcome_v2(&h, 0x5eed, 0).encode());
    start.extend(frame(FrameKind::SyncBegin, 0, 1, &[]));
    a.send(&start).unwrap();
    wait_for("the backup UP", 10, || b.book().ups == 1);
    b.hold.store(true, Ordering::SeqCst);
    let mut records = vec![0u8; PER_BATCH as usize * 8];
    for r in records.chunks_exact_mut(8) {
        r[4..8].copy_from_slice(&7u32.to_le_bytes());
    }
    let base = rss_bytes();
    let (stop, grew_over) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
    let sent = Arc::new(AtomicU64::new(0));
    let mut w = a.s.try_clone().unwrap();
    w.set_write_timeout(Some(Duration::from_secs(1))).unwrap();
    let (st, n) = (stop.clone(), sent.clone());
    let writer = std::thread::spawn(move || {
        let mut seq = 2u64;
        while !st.load(Ordering::Relaxed) {
            let f = frame(FrameKind::Batch, PER_BATCH, seq, &records);
            // Blocked for a second: the backup stopped reading, as it should.
            if w.write_all(&f).is_err() {
                return;
            }
            seq += u64::from(PER_BATCH);
            n.fetch_add(u64::from(PER_BATCH), Ordering::Relaxed);
        }
    });
    let until = Instant::now() + Duration::from_secs(3);
    let mut peak = base;
    while Instant::now() < until && !writer.is_finished() {
        peak = peak.max(rss_bytes());
        if peak > base + BOUND {
            // Stop at once: unbounded, it would take the machine's memory.
            grew_over.store(true, Ordering::SeqCst);
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    stop.store(true, Ordering::SeqCst);
    let _ = a.s.shutdown(std::net::Shutdown::Both);
    let _ = writer.join();
    peak = peak.max(rss_bytes());
    let sent = sent.load(Ordering::Relaxed);
    eprintln!(
        "{sent} empty records sent before the backup stopped reading; RSS {} KiB, peak +{} KiB",
        base >> 10,
        (peak - base) >> 10
    );
    assert!(!grew_over.load(Ordering::SeqCst), "the backup grew past {} MiB", BOUND >> 20);
    assert!(peak - base < BOUND);
    assert!(sent > 0, "nothing was sent");
    b.hold.store(false, Ordering::SeqCst);
    b.exit();
}

/// What the budget charges an entry besides its payload (`ENTRY_COST` in queue/budget.rs).
const ENTRY_COST: u64 = 64;

fn empty_tlvs_are_charged_what_their_entry_costs() {
    const LIMIT: usize = 64 << 10;
    let mut m = Node::new(Config::new(true, true, 0x7f00_0001, 0, 2));
    m.ctx().set_backlog_limit(LIMIT).unwrap();
    // No backup ever comes: exit frees what was taken.
    m.allow(Undelivered::Exit);
    m.start();
    let mut taken = 0u64;
    let refused = loop {
        let t = common::tlv::Tag { id: m.st.new_id(), data: Vec::new() };
        match m.try_queue_tlv(t, false) {
            Ok(_) => taken += 1,
            Err((e, _)) => break e,
        }
        assert!(taken <= LIMIT as u64, "{taken} empty TLVs taken under a limit of {LIMIT} bytes");
    };
    let held = m.stats().backlog_bytes;
    eprintln!("{taken} empty TLVs taken under a limit of {LIMIT} bytes ({held} bytes counted), then {refused:?}");
    assert_eq!(refused, junos_sync::Error::BacklogFull);
    assert_eq!(taken, LIMIT as u64 / ENTRY_COST, "each empty TLV is charged its entry's cost");
    assert_eq!(held, taken * ENTRY_COST);
    m.exit();
}
