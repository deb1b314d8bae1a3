//! The engine end to end on loopback, driven by a Rust application.

mod common;
use common::*;
use std::sync::atomic::Ordering;

#[test]
fn streams_in_order_and_frees_everything_once() {
    let mut m = Side::new(master_cfg(false));
    m.ctx().start().unwrap();
    let port = m.rec.lock().port;
    assert_ne!(port, 0);
    let mut b = Side::new(backup_cfg(port, false));
    b.ctx().start().unwrap();
    wait_for("backup up", 10, || b.rec.lock().ups == 1 && m.rec.lock().ups == 1);
    wait_for("empty resync done", 10, || m.rec.lock().sync_done == vec![0]);
    const N: u32 = 20_000;
    for i in 1..=N {
        m.put(i, i * 3, i % 2 == 0);
    }
    wait_for("all acked", 20, || m.rec.lock().frees == N as usize);
    assert_eq!(m.rec.lock().acks, N as usize / 2);
    assert_eq!(b.rec.lock().db, *m.db.lock());
    assert_eq!(b.rec.lock().decoded.len(), N as usize);
    m.exit();
    wait_for("backup sees down", 10, || b.rec.lock().downs == 1);
    b.exit();
    assert_eq!(m.rec.lock().downs, 1);
    assert_eq!(m.rec.lock().frees, m.allocated.load(Ordering::SeqCst));
}

#[test]
fn resync_walks_then_streams_held_entries() {
    let mut m = Side::new(master_cfg(false));
    for i in 1..=5000 {
        m.db.lock().insert(i, i);
    }
    m.ctx().start().unwrap();
    let port = m.rec.lock().port;
    let mut b = Side::new(backup_cfg(port, false));
    b.ctx().start().unwrap();
    wait_for("resync done on both", 20, || {
        m.rec.lock().sync_done == vec![5000] && b.rec.lock().sync_done == vec![5000]
    });
    assert_eq!(b.rec.lock().clears, 1);
    for i in 1..=100 {
        m.put(i, 0, false);
    }
    m.put(9999, 1, true);
    wait_for("acked", 10, || m.rec.lock().acks == 1);
    assert_eq!(b.rec.lock().db, *m.db.lock());
    b.exit();
    m.exit();
    assert_eq!(m.rec.lock().frees, m.allocated.load(Ordering::SeqCst));
}

#[test]
fn restarted_backup_gets_full_resync_and_unacked_entries() {
    let mut m = Side::new(master_cfg(false));
    for i in 1..=1000 {
        m.db.lock().insert(i, 7);
    }
    m.ctx().start().unwrap();
    let port = m.rec.lock().port;
    let mut b = Side::new(backup_cfg(port, false));
    b.ctx().start().unwrap();
    wait_for("first sync", 10, || b.rec.lock().sync_done.len() == 1);
    b.exit();
    wait_for("master sees down", 10, || m.rec.lock().downs == 1);
    for i in 1..=500 {
        m.put(i, 9, false);
    }
    let mut b2 = Side::new(backup_cfg(port, false));
    b2.ctx().start().unwrap();
    wait_for("second sync and stream", 20, || m.rec.lock().frees == m.allocated.load(Ordering::SeqCst));
    assert_eq!(b2.rec.lock().db, *m.db.lock());
    assert_eq!(m.ctx().stats().unwrap().full_resyncs, 2);
    b2.exit();
    m.exit();
}

#[test]
fn queue_on_backup_is_refused_and_tlv_returned() {
    let mut b = Side::new(backup_cfg(1, false));
    let r = b.ctx().queue(op(1, 1), false);
    let (e, t) = r.unwrap_err();
    assert_eq!(e, junos_sync::Error::State);
    assert_eq!(t.data.len(), 8);
    b.exit();
}

#[test]
fn bind_error_is_reported() {
    let mut m = Side::new(master_cfg(false));
    m.ctx().start().unwrap();
    let port = m.rec.lock().port;
    let mut m2 = Side::new(junos_sync::Config::new(true, false, 0x7f00_0001, port, 2));
    assert_eq!(m2.ctx().start(), Err(junos_sync::Error::Socket));
    let said = |s: &Side| {
        let want = format!("junos_sync_start: cannot bind 127.0.0.1:{port}: ");
        s.rec.lock().logs.iter().filter(|l| l.starts_with(&want) && l.contains("in use")).count()
    };
    assert_eq!(said(&m2), 1, "the bind failure was not logged: {:?}", m2.rec.lock().logs);
    // The context stays unstarted and may be started again: it fails the same way.
    assert_eq!(m2.ctx().start(), Err(junos_sync::Error::Socket));
    assert_eq!(said(&m2), 2);
    assert_eq!(m2.rec.lock().port, 0, "bind_done ran for a failed bind");
    m2.exit();
    m.exit();
}
