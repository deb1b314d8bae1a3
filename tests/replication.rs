//! The engine end to end on loopback: the stream, the resync walk, a backup's restart, a
//! switchover to backup, and API misuse. Every test runs in both modes, and every TLV is checked
//! by identity (tests/common/ledger.rs).

mod common;
use common::*;
use junos_sync::{Config, Error};

engine_tests!(
    streams_in_order_and_frees_everything_once,
    resync_walks_then_streams_held_entries,
    restarted_backup_gets_full_resync_and_unacked_entries,
    a_master_switched_to_backup_frees_what_it_held,
    misuse_is_refused_and_logged,
    bind_error_is_reported,
);

fn streams_in_order_and_frees_everything_once() {
    let mut m = Node::new(master_cfg(false));
    m.start();
    let port = m.port();
    assert_ne!(port, 0);
    let mut b = Node::new(backup_cfg(port, false));
    b.start();
    wait_for("backup up", 10, || b.book().ups == 1 && m.book().ups == 1);
    wait_for("empty resync done", 10, || m.book().sync_done == vec![0]);
    const N: u32 = 20_000;
    let ids: Vec<u64> = (1..=N).map(|i| m.put(i, i * 3, i % 2 == 0)).collect();
    wait_for("all freed", 20, || m.book().all_freed(&ids));
    let asked: Vec<u64> = ids.iter().copied().skip(1).step_by(2).collect();
    assert_eq!(m.book().acked, asked, "ack notifications: those asked for, in queue order");
    assert_eq!(b.book().decoded, ids, "the backup applied the stream once each, in order");
    assert!(b.holds(&m));
    m.exit();
    wait_for("backup sees down", 10, || b.book().downs == 1);
    b.exit();
    assert_eq!(m.book().downs, 1);
}

fn resync_walks_then_streams_held_entries() {
    let mut m = Node::new(master_cfg(false));
    m.fill_db(5000, OP_LEN);
    m.start();
    let mut b = Node::new(backup_cfg(m.port(), false));
    b.start();
    wait_for("resync done on both", 20, || m.book().sync_done == vec![5000] && b.book().sync_done == vec![5000]);
    assert_eq!(b.book().clears, 1);
    for (who, s) in [("master", m.stats()), ("backup", b.stats())] {
        let r = (s.resyncs_started, s.resyncs_completed, s.resyncs_aborted);
        assert_eq!(r, (1, 1, 0), "{who}: one resync, started and completed");
        assert!(s.resync_age_ms < 20_000, "{who}: completed just now, not {} ms ago", s.resync_age_ms);
    }
    let mut ids: Vec<u64> = (1..=100).map(|k| m.put(k, 0, false)).collect();
    ids.push(m.put(9999, 1, true));
    wait_for("acked", 10, || m.book().acked == ids[100..]);
    assert!(b.holds(&m));
    {
        let (bb, mb) = (b.book(), m.book());
        assert_eq!(bb.decoded[..5000], mb.made[..5000], "the walk, in order");
        assert_eq!(bb.decoded[5000..], ids[..], "then the stream");
    }
    b.exit();
    m.exit();
}

fn restarted_backup_gets_full_resync_and_unacked_entries() {
    let mut m = Node::new(master_cfg(false));
    m.db.lock().extend((1..=1000).map(|k| (k, 7)));
    m.start();
    let port = m.port();
    let mut b = Node::new(backup_cfg(port, false));
    b.start();
    wait_for("first sync", 10, || b.book().sync_done.len() == 1);
    b.exit();
    wait_for("master sees down", 10, || m.book().downs == 1);
    let ids: Vec<u64> = (1..=500).map(|k| m.put(k, 9, false)).collect();
    let mut b2 = Node::new(backup_cfg(port, false));
    b2.start();
    wait_for("second sync and stream", 20, || m.book().unfreed() == 0);
    assert!(b2.holds(&m));
    let bb = b2.book();
    assert_eq!((bb.decoded.len(), &bb.decoded[1000..]), (1500, &ids[..]), "a new walk, then what was queued meanwhile");
    drop(bb);
    assert_eq!(m.stats().full_resyncs, 2);
    b2.exit();
    m.exit();
}

/// A master that becomes a backup frees what it held (queued, never sent: no backup was ever
/// connected), exactly once, without ack notifications, at the switchover.
fn a_master_switched_to_backup_frees_what_it_held() {
    let mut m = Node::new(master_cfg(false));
    m.start();
    let ids: Vec<u64> = (0..10).map(|_| m.queue(100, true)).collect();
    m.allow(Undelivered::Switchover);
    // A backup of a port nobody listens on (this master's old one): it keeps trying.
    m.switchover(backup_cfg(m.port(), false)).expect("switchover");
    wait_for("what the master held freed", 10, || m.book().all_freed(&ids));
    assert!(m.book().acked.is_empty());
    assert_eq!(m.book().undelivered_by(Undelivered::Switchover), ids.len());
    let (e, _) = m.try_queue(100, false).expect_err("queue on a backup");
    assert_eq!(e, Error::State);
    m.exit();
}

fn misuse_is_refused_and_logged() {
    assert_eq!(Node::new(master_cfg(false)).stats().resync_age_ms, u64::MAX, "no resync completed yet");
    let mut m = Node::new(master_cfg(false));
    m.start();
    assert_eq!(m.try_start(), Err(Error::State));
    assert!(m.book().logged("already started"));
    let mut b = Node::new(backup_cfg(m.port(), false));
    let (e, t) = b.try_queue(64, false).expect_err("queue on a backup");
    assert_eq!(e, Error::State);
    assert_eq!(id_of(&t.data), Some(t.id), "the refused TLV comes back intact");
    assert!(b.book().logged("only a master queues"));
    let (e, t) = m.try_queue((16 << 20) + 1, false).expect_err("a TLV over the limit");
    assert_eq!((e, t.data.len()), (Error::Invalid, (16 << 20) + 1));
    assert!(m.book().logged("over JUNOS_SYNC_MAX_TLV_LEN"));
    b.exit();
    m.exit();
}

fn bind_error_is_reported() {
    let mut m = Node::new(master_cfg(false));
    m.start();
    let port = m.port();
    let mut m2 = Node::new(Config::new(true, false, 0x7f00_0001, port, 2));
    assert_eq!(m2.try_start(), Err(Error::Socket));
    let said = |s: &Node| {
        let want = format!("junos_sync_start: cannot bind 127.0.0.1:{port}: ");
        s.book().logs.iter().filter(|l| l.starts_with(&want) && l.contains("in use")).count()
    };
    assert_eq!(said(&m2), 1, "the bind failure was not logged: {:?}", m2.book().logs);
    // The context stays unstarted and may be started again: it fails the same way.
    assert_eq!(m2.try_start(), Err(Error::Socket));
    assert_eq!(said(&m2), 2);
    assert_eq!(m2.port(), 0, "bind_done ran for a failed bind");
    m2.exit();
    m.exit();
}
