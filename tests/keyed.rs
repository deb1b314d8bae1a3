//! Keyed contexts end to end: a pair with the same key converges, encrypted; keys that differ,
//! or a key on one side only, never connect and leave a count and a log line.

mod common;

use common::*;

fn keyed(cfg: junos_sync::Config, key: &[u8]) -> Side {
    let s = Side::new(cfg);
    s.ctx().set_auth_key(key).unwrap();
    s
}

#[test]
fn same_key_converges() {
    let mut m = keyed(master_cfg(false), b"0123456789abcdef0123456789abcdef");
    for i in 1..=3000 {
        m.db.lock().insert(i, i);
    }
    m.ctx().start().unwrap();
    let mut b = keyed(backup_cfg(m.rec.lock().port, false), b"0123456789abcdef0123456789abcdef");
    b.ctx().start().unwrap();
    wait_for("resync", 10, || b.rec.lock().sync_done == vec![3000]);
    for i in 1..=5000 {
        m.put(i, i + 7, i % 3 == 0);
    }
    wait_for("stream", 10, || b.rec.lock().db == *m.db.lock());
    assert!(b.rec.lock().logs.iter().any(|l| l.contains("authenticated and encrypted")));
    b.exit();
    m.exit();
    assert_eq!(m.rec.lock().frees, m.allocated.load(std::sync::atomic::Ordering::SeqCst));
}

#[test]
fn different_keys_never_connect() {
    let mut m = keyed(master_cfg(false), &[1; 32]);
    m.ctx().start().unwrap();
    let mut b = keyed(backup_cfg(m.rec.lock().port, false), &[2; 32]);
    b.ctx().start().unwrap();
    wait_for("auth failures on both sides", 10, || {
        m.ctx().stats().unwrap().auth_failures >= 2 && b.ctx().stats().unwrap().auth_failures >= 2
    });
    assert_eq!(b.rec.lock().ups, 0);
    assert_eq!(m.rec.lock().ups, 0);
    let lines = |s: &Side| s.rec.lock().logs.iter().filter(|l| l.contains("authentication failed")).count();
    assert_eq!(lines(&b), 1, "{:?}", b.rec.lock().logs);
    assert_eq!(lines(&m), 1, "{:?}", m.rec.lock().logs);
    b.exit();
    m.exit();
}
