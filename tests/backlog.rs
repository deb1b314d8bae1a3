//! The master's memory stays bounded by the backlog limit with a slow or stalled backup: with
//! resync the backlog is dropped and the backup resynced from the walk; with `no_resync` the
//! queue refuses with BacklogFull and the caller keeps the TLV. Nothing is lost either way.

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::*;
use junos_sync::{Config, Error};

const LIMIT: usize = 256 * 1024;
/// One TLV of the `op` records (8-byte payload + 8-byte header).
const MSG: usize = 16;

fn held(m: &Side) -> usize {
    m.ctx().stats().unwrap().backlog_bytes as usize
}

#[test]
fn slow_backup_with_resync_never_grows_the_master_past_the_limit() {
    let mut m = Side::new(Config::new(true, false, 0x7f00_0001, 0, 5));
    m.ctx().set_backlog_limit(LIMIT).unwrap();
    for k in 1..=1000 {
        m.db.lock().insert(k, 1);
    }
    m.ctx().start().unwrap();
    let mut b = Side::new(Config::new(false, false, 0x7f00_0001, m.rec.lock().port, 5));
    b.decode_delay_us.store(200, Ordering::SeqCst);
    b.ctx().start().unwrap();
    wait_for("first sync", 20, || b.rec.lock().sync_done.len() == 1);

    let mut peak = 0;
    let end = Instant::now() + Duration::from_secs(2);
    let mut i = 0u32;
    while Instant::now() < end {
        i += 1;
        m.put(1 + i % 5000, i, i % 7 == 0);
        peak = peak.max(held(&m));
    }
    let overflows = m.ctx().stats().unwrap().overflows;
    eprintln!(
        "queued {i} TLVs against a backup applying one per 200 us: peak {peak} bytes held, {overflows} overflows"
    );
    assert!(peak <= LIMIT + MSG, "master held {peak} bytes, limit {LIMIT}");
    assert!(overflows > 0, "a slow backup never overflowed the backlog ({i} queued)");

    b.decode_delay_us.store(0, Ordering::SeqCst);
    wait_for("backup converged by full resync", 30, || b.rec.lock().db == *m.db.lock());
    let sent = m.allocated.load(Ordering::SeqCst);
    wait_for("everything freed", 10, || m.rec.lock().frees == sent);
    assert!(m.ctx().stats().unwrap().full_resyncs >= 2);
    b.exit();
    m.exit();
    assert_eq!(m.rec.lock().frees, m.allocated.load(Ordering::SeqCst));
}

#[test]
fn no_resync_refuses_when_full_and_loses_nothing() {
    let mut m = Side::new(Config::new(true, true, 0x7f00_0001, 0, 5));
    m.ctx().set_backlog_limit(LIMIT).unwrap();
    m.ctx().start().unwrap();
    // No backup yet: everything queued stays held.
    let mut accepted = 0u32;
    let mut refused = None;
    for i in 1..=100_000u32 {
        m.db.lock().insert(i, i);
        match m.ctx().queue(op(i, i), false) {
            Ok(()) => accepted += 1,
            Err((e, tlv)) => {
                assert_eq!(e, Error::BacklogFull);
                assert_eq!(tlv.data, op(i, i).data, "the refused TLV is handed back intact");
                m.db.lock().remove(&i);
                refused = Some(i);
                break;
            }
        }
        assert!(held(&m) <= LIMIT + MSG);
    }
    let first_refused = refused.expect("the backlog never filled");
    assert_eq!(accepted as usize, LIMIT / MSG, "accepted up to the limit exactly");
    let mut b = Side::new(Config::new(false, true, 0x7f00_0001, m.rec.lock().port, 5));
    b.ctx().start().unwrap();
    wait_for("backlog delivered", 20, || b.rec.lock().db.len() == accepted as usize);
    assert_eq!(b.rec.lock().db, *m.db.lock());
    wait_for("all freed", 10, || m.rec.lock().frees == accepted as usize);
    // Room again: the refused one goes through now.
    m.put(first_refused, 1, true);
    wait_for("acked", 10, || m.rec.lock().acks == 1);
    b.exit();
    m.exit();
}
