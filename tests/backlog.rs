//! The master's memory stays bounded by the backlog limit with a slow or stalled backup: with
//! resync the backlog is dropped and the backup resynced from the walk; with `no_resync` the
//! queue refuses with BacklogFull and the caller keeps the TLV. Nothing is lost either way.

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::tlv::parse;
use common::*;
use junos_sync::{Config, Error};

engine_tests!(
    slow_backup_with_resync_never_grows_the_master_past_the_limit,
    no_resync_refuses_when_full_and_loses_nothing
);

const LIMIT: usize = 256 * 1024;
/// One database operation as the backlog counts it: its payload and what its entry costs.
const MSG: usize = OP_LEN + 64;

fn held(m: &Node) -> usize {
    m.stats().backlog_bytes as usize
}

fn slow_backup_with_resync_never_grows_the_master_past_the_limit() {
    let mut m = Node::new(Config::new(true, false, 0x7f00_0001, 0, 5));
    m.ctx().set_backlog_limit(LIMIT).unwrap();
    m.db.lock().extend((1..=1000).map(|k| (k, 1)));
    // What the overflows drop, the full resyncs after them carry.
    m.allow(Undelivered::Overflow);
    m.start();
    let mut b = Node::new(Config::new(false, false, 0x7f00_0001, m.port(), 5));
    b.decode_delay_us.store(200, Ordering::SeqCst);
    b.start();
    wait_for("first sync", 20, || b.book().sync_done.len() == 1);
    // The master counts a resync complete once the backup acknowledged its end; an overflow
    // before that ack aborts it on the master's side although the backup finished it.
    wait_for("first sync acknowledged", 20, || m.stats().resyncs_completed == 1);

    // Two seconds of queueing as fast as the master takes it (a load, not a deadline).
    let mut peak = 0;
    let end = Instant::now() + Duration::from_secs(2);
    let mut i = 0u32;
    while Instant::now() < end {
        i += 1;
        m.put(1 + i % 5000, i, i % 7 == 0);
        peak = peak.max(held(&m));
    }
    let overflows = m.stats().overflows;
    eprintln!(
        "queued {i} TLVs against a backup applying one per 200 us: peak {peak} bytes held, {overflows} overflows"
    );
    assert!(peak <= LIMIT + MSG, "master held {peak} bytes, limit {LIMIT}");
    assert!(overflows > 0, "a slow backup never overflowed the backlog ({i} queued)");

    b.decode_delay_us.store(0, Ordering::SeqCst);
    wait_for("backup converged by full resync", 30, || b.holds(&m));
    wait_for("everything freed", 10, || m.book().unfreed() == 0);
    assert!(m.stats().full_resyncs >= 2);
    // Every resync begun ended one way or the other, on both sides; the last one completed.
    for (who, s) in [("master", m.stats()), ("backup", b.stats())] {
        eprintln!(
            "{who}: resyncs {} started, {} completed, {} aborted",
            s.resyncs_started, s.resyncs_completed, s.resyncs_aborted
        );
        assert_eq!(s.resyncs_started, s.resyncs_completed + s.resyncs_aborted, "{who}");
        assert!(s.resyncs_completed >= 2, "{who}: the first and the converging one");
        assert!(s.resync_age_ms < 60_000, "{who}");
    }
    assert_eq!(m.stats().resyncs_started, m.stats().full_resyncs);
    assert!(m.book().undelivered_by(Undelivered::Overflow) > 0, "no overflow dropped anything");
    b.exit();
    m.exit();
}

fn no_resync_refuses_when_full_and_loses_nothing() {
    let mut m = Node::new(Config::new(true, true, 0x7f00_0001, 0, 5));
    m.ctx().set_backlog_limit(LIMIT).unwrap();
    m.start();
    // No backup yet: everything queued stays held.
    let mut ids = Vec::new();
    let mut refused = None;
    for i in 1..=100_000u32 {
        match m.try_put(i, i, false) {
            Ok(id) => ids.push(id),
            Err((e, tlv)) => {
                assert_eq!(e, Error::BacklogFull);
                assert_eq!(parse(&tlv.data), Some((tlv.id, Some((i, i)))), "the refused TLV is handed back intact");
                refused = Some(i);
                break;
            }
        }
        assert!(held(&m) <= LIMIT + MSG);
    }
    let first_refused = refused.expect("the backlog never filled");
    assert_eq!(ids.len(), LIMIT / MSG, "accepted up to the limit exactly");
    assert_eq!(m.db.lock().len(), ids.len(), "the refused operation is not in the database");
    let mut b = Node::new(Config::new(false, true, 0x7f00_0001, m.port(), 5));
    b.start();
    wait_for("backlog delivered", 20, || b.book().table.len() == ids.len());
    assert!(b.holds(&m));
    assert_eq!(b.book().decoded, ids, "the backlog, in order");
    wait_for("all freed", 10, || m.book().all_freed(&ids));
    // Room again: the refused one goes through now.
    let again = m.put(first_refused, 1, true);
    wait_for("acked", 10, || m.book().acked == [again]);
    b.exit();
    m.exit();
}
