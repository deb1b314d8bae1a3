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

const OLD: &[u8] = b"the old key, 32 bytes long......";
const NEW: &[u8] = b"the new key, 32 bytes long......";

fn auth_failures(s: &Side) -> u64 {
    s.ctx().stats().unwrap().auth_failures
}

/// The rotation procedure of the README, with no authentication failure and nothing lost:
/// (1) restart the backup holding OLD then NEW; (2) fail over to it once the master's backlog is
/// acknowledged; (3) restart the old master as a backup holding NEW only.
#[test]
fn key_rotation_by_restarts_loses_nothing() {
    let mut a = keyed(master_cfg(false), OLD);
    for i in 1..=2000 {
        a.db.lock().insert(i, i);
    }
    a.ctx().start().unwrap();
    let port = a.rec.lock().port;
    let mut b = keyed(backup_cfg(port, false), OLD);
    b.ctx().start().unwrap();
    wait_for("first resync", 10, || b.rec.lock().sync_done.len() == 1);
    b.exit();

    // (1) The backup comes back holding both keys, the old one first.
    let mut b = keyed(backup_cfg(port, false), OLD);
    b.ctx().add_auth_key(NEW).unwrap();
    b.ctx().start().unwrap();
    for i in 1..=3000 {
        a.put(i, i * 2, i % 10 == 0);
    }
    wait_for("backup holds the master's table", 10, || b.rec.lock().db == *a.db.lock());
    // (2) Fail over once everything is acknowledged: nothing queued is lost.
    wait_for("master's backlog acknowledged", 10, || a.ctx().stats().unwrap().backlog_bytes == 0);
    let expected = a.db.lock().clone();
    a.exit();
    wait_for("backup sees the master go", 10, || b.rec.lock().downs == 1);
    let new_port = {
        b.promote(junos_sync::Config::new(true, false, 0x7f00_0001, 0, 2));
        b.rec.lock().port
    };
    assert_eq!(*b.db.lock(), expected, "the promoted backup lost something");
    // (3) The old master returns as a backup holding only the new key.
    let mut a2 = keyed(backup_cfg(new_port, false), NEW);
    a2.ctx().start().unwrap();
    wait_for("old master resynced from the new one", 10, || a2.rec.lock().sync_done.len() == 1);
    b.put(99_999, 1, true);
    wait_for("live changes flow with the new key", 10, || a2.rec.lock().db == *b.db.lock());
    assert_eq!((auth_failures(&a2), auth_failures(&b)), (0, 0), "the rotation failed a handshake");
    a2.exit();
    b.exit();
}

/// A backup holding a wrong key first tries the next one after the master refuses it.
#[test]
fn backup_tries_its_next_key() {
    let mut m = keyed(master_cfg(false), OLD);
    m.ctx().start().unwrap();
    let mut b = keyed(backup_cfg(m.rec.lock().port, false), NEW);
    b.ctx().add_auth_key(OLD).unwrap();
    b.ctx().start().unwrap();
    wait_for("connected with the second key", 10, || b.rec.lock().ups == 1);
    assert!(auth_failures(&b) >= 1 && auth_failures(&m) >= 1);
    m.put(1, 1, true);
    wait_for("replicating", 10, || b.rec.lock().db.get(&1) == Some(&1));
    b.exit();
    m.exit();
}

#[test]
fn keys_are_checked_and_set_before_start() {
    let mut m = Side::new(master_cfg(false));
    assert_eq!(m.ctx().set_auth_key(&[1; 15]), Err(junos_sync::Error::Invalid));
    assert!(m.rec.lock().logs.iter().any(|l| l.contains("at least 16")));
    for _ in 0..4 {
        m.ctx().add_auth_key(&[1; 16]).unwrap();
    }
    assert_eq!(m.ctx().add_auth_key(&[1; 16]), Err(junos_sync::Error::Invalid), "a fifth key");
    m.ctx().set_auth_key(&[2; 16]).unwrap();
    m.ctx().start().unwrap();
    assert_eq!(m.ctx().set_auth_key(&[3; 16]), Err(junos_sync::Error::State));
    assert_eq!(m.ctx().add_auth_key(&[3; 16]), Err(junos_sync::Error::State));
    m.exit();
}

/// A master reachable from other hosts without a key says so once, at start; with a key, or on
/// loopback, it does not.
#[test]
fn unkeyed_master_on_a_public_address_warns_once() {
    let warned = |s: &Side| s.rec.lock().logs.iter().filter(|l| l.contains("without an authentication key")).count();
    let mut open = Side::new(junos_sync::Config::new(true, false, 0, 0, 2)); // 0.0.0.0
    open.ctx().start().unwrap();
    assert_eq!(warned(&open), 1);
    let mut keyed_open = keyed(junos_sync::Config::new(true, false, 0, 0, 2), &[9; 32]);
    keyed_open.ctx().start().unwrap();
    let mut local = Side::new(master_cfg(false));
    local.ctx().start().unwrap();
    assert_eq!((warned(&keyed_open), warned(&local)), (0, 0));
    open.exit();
    keyed_open.exit();
    local.exit();
}
