//! Keyed contexts end to end: a pair with the same key converges, encrypted; keys that differ,
//! or a key on one side only, never connect and leave a count and a log line.

mod common;

use common::*;
use junos_sync::{Config, Error};

engine_tests!(
    same_key_converges,
    different_keys_never_connect,
    key_rotation_by_restarts_loses_nothing,
    backup_tries_its_next_key,
    keys_are_checked_and_set_before_start,
    unkeyed_master_on_a_public_address_warns_once,
);

fn keyed(cfg: Config, key: &[u8]) -> Node {
    let s = Node::new(cfg);
    s.ctx().set_auth_key(key).unwrap();
    s
}

fn same_key_converges() {
    let mut m = keyed(master_cfg(false), b"0123456789abcdef0123456789abcdef");
    m.fill_db(3000, OP_LEN);
    m.start();
    let mut b = keyed(backup_cfg(m.port(), false), b"0123456789abcdef0123456789abcdef");
    b.start();
    wait_for("resync", 10, || b.book().sync_done == vec![3000]);
    let ids: Vec<u64> = (1..=5000).map(|i| m.put(i, i + 7, i % 3 == 0)).collect();
    wait_for("stream", 10, || b.holds(&m));
    wait_for("everything acknowledged", 10, || m.book().unfreed() == 0);
    assert_eq!(b.book().decoded[3000..], ids[..]);
    let asked: Vec<u64> = ids.iter().copied().skip(2).step_by(3).collect();
    assert_eq!(m.book().acked, asked);
    assert!(b.book().logged("authenticated and encrypted"));
    b.exit();
    m.exit();
}

fn different_keys_never_connect() {
    let mut m = keyed(master_cfg(false), &[1; 32]);
    m.start();
    let mut b = keyed(backup_cfg(m.port(), false), &[2; 32]);
    b.start();
    wait_for("auth failures on both sides", 10, || m.stats().auth_failures >= 2 && b.stats().auth_failures >= 2);
    assert_eq!(b.book().ups, 0);
    assert_eq!(m.book().ups, 0);
    let lines = |s: &Node| s.book().count_logged("authentication failed");
    assert_eq!(lines(&b), 1, "{:?}", b.book().logs);
    assert_eq!(lines(&m), 1, "{:?}", m.book().logs);
    b.exit();
    m.exit();
}

const OLD: &[u8] = b"the old key, 32 bytes long......";
const NEW: &[u8] = b"the new key, 32 bytes long......";

fn auth_failures(s: &Node) -> u64 {
    s.stats().auth_failures
}

/// The rotation procedure of the README, with no authentication failure and nothing lost:
/// (1) restart the backup holding OLD then NEW; (2) fail over to it once the master's backlog is
/// acknowledged; (3) restart the old master as a backup holding NEW only.
fn key_rotation_by_restarts_loses_nothing() {
    let mut a = keyed(master_cfg(false), OLD);
    a.fill_db(2000, OP_LEN);
    a.start();
    let port = a.port();
    let mut b = keyed(backup_cfg(port, false), OLD);
    b.start();
    wait_for("first resync", 10, || b.book().sync_done.len() == 1);
    b.exit();

    // (1) The backup comes back holding both keys, the old one first.
    let mut b = keyed(backup_cfg(port, false), OLD);
    b.ctx().add_auth_key(NEW).unwrap();
    b.start();
    let ids: Vec<u64> = (1..=3000).map(|i| a.put(i, i * 2, i % 10 == 0)).collect();
    wait_for("backup holds the master's table", 10, || b.holds(&a));
    // (2) Fail over once everything is acknowledged: nothing queued is lost.
    wait_for("master's backlog acknowledged", 10, || a.book().all_freed(&ids) && a.book().unfreed() == 0);
    assert_eq!(a.stats().backlog_bytes, 0);
    // The second backup: a new walk (of the database as it was when it ran), then the stream.
    let walked = *a.book().sync_done.last().unwrap();
    let decoded = b.book().decoded.clone();
    assert_eq!((decoded.len(), &decoded[walked..]), (walked + ids.len(), &ids[..]));
    let expected = a.db.lock().clone();
    a.exit();
    wait_for("backup sees the master go", 10, || b.book().downs == 1);
    b.promote(Config::new(true, false, 0x7f00_0001, 0, 2));
    assert_eq!(*b.db.lock(), expected, "the promoted backup lost something");
    // (3) The old master returns as a backup holding only the new key.
    let mut a2 = keyed(backup_cfg(b.port(), false), NEW);
    a2.start();
    wait_for("old master resynced from the new one", 10, || a2.book().sync_done.len() == 1);
    let live = b.put(99_999, 1, true);
    wait_for("live changes flow with the new key", 10, || a2.holds(&b));
    wait_for("and are acknowledged", 10, || b.book().acked == [live] && b.book().unfreed() == 0);
    assert_eq!((auth_failures(&a2), auth_failures(&b)), (0, 0), "the rotation failed a handshake");
    a2.exit();
    b.exit();
}

/// A backup holding a wrong key first tries the next one after the master refuses it.
fn backup_tries_its_next_key() {
    let mut m = keyed(master_cfg(false), OLD);
    m.start();
    let mut b = keyed(backup_cfg(m.port(), false), NEW);
    b.ctx().add_auth_key(OLD).unwrap();
    b.start();
    wait_for("connected with the second key", 10, || b.book().ups == 1);
    assert!(auth_failures(&b) >= 1 && auth_failures(&m) >= 1);
    let id = m.put(1, 1, true);
    wait_for("replicating", 10, || b.book().table.get(&1) == Some(&1));
    wait_for("acknowledged", 10, || m.book().acked == [id] && m.book().unfreed() == 0);
    b.exit();
    m.exit();
}

fn keys_are_checked_and_set_before_start() {
    let mut m = Node::new(master_cfg(false));
    assert_eq!(m.ctx().set_auth_key(&[1; 15]), Err(Error::Invalid));
    assert!(m.book().logged("at least 16"));
    for _ in 0..4 {
        m.ctx().add_auth_key(&[1; 16]).unwrap();
    }
    assert_eq!(m.ctx().add_auth_key(&[1; 16]), Err(Error::Invalid), "a fifth key");
    m.ctx().set_auth_key(&[2; 16]).unwrap();
    m.start();
    assert_eq!(m.ctx().set_auth_key(&[3; 16]), Err(Error::State));
    assert_eq!(m.ctx().add_auth_key(&[3; 16]), Err(Error::State));
    m.exit();
}

/// A master reachable from other hosts without a key says so once, at start; with a key, or on
/// loopback, it does not.
fn unkeyed_master_on_a_public_address_warns_once() {
    let warned = |s: &Node| s.book().count_logged("without an authentication key");
    let mut open = Node::new(Config::new(true, false, 0, 0, 2)); // 0.0.0.0
    open.start();
    assert_eq!(warned(&open), 1);
    let mut keyed_open = keyed(Config::new(true, false, 0, 0, 2), &[9; 32]);
    keyed_open.start();
    let mut local = Node::new(master_cfg(false));
    local.start();
    assert_eq!((warned(&keyed_open), warned(&local)), (0, 0));
    open.exit();
    keyed_open.exit();
    local.exit();
}
