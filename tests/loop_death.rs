//! Issue 7: when the loop thread dies (here: a Rust application's callback panics), the context
//! is marked failed. The application gets the DOWN it is owed, every later call returns
//! `Error::Internal` (a queued TLV comes back to the caller), and every TLV the context held is
//! freed exactly once (at the failure, or at exit).

mod common;

use std::sync::atomic::Ordering;

use common::*;
use junos_sync::{Config, Error};

// Found by running these in dispatch mode: a callback that panicked inside `dispatch` failed
// the context and told the application DOWN, but the loop thread kept the connection up, so
// the peer never saw the context go. The loop now ends the role when the context fails.
engine_tests!(
    a_panicking_ack_notify_fails_the_master_and_exit_still_frees_everything,
    a_panicking_decode_fails_the_backup,
);

fn pair() -> (Node, Node) {
    let m = Node::new(Config::new(true, false, 0x7f00_0001, 0, 2));
    m.fill_db(20, 32);
    m.start();
    let b = Node::new(Config::new(false, false, 0x7f00_0001, m.port(), 2));
    b.start();
    wait_for("the resync acknowledged", 10, || m.book().sync_done == vec![20]);
    (m, b)
}

/// Every call but exit fails with `Error::Internal`; a TLV handed to queue comes back.
fn every_call_fails(n: &Node) {
    let c = n.ctx();
    assert_eq!(c.stats(), Err(Error::Internal));
    let (e, t) = n.try_queue(100, true).expect_err("queue on a failed context");
    assert_eq!(e, Error::Internal);
    assert_eq!(id_of(&t.data), Some(t.id), "queue gave back another TLV");
    assert_eq!(c.set_backlog_limit(1 << 20), Err(Error::Internal));
    assert_eq!(c.set_event_context(1), Err(Error::Internal));
    assert_eq!(c.set_auth_key(&[1; 16]), Err(Error::Internal));
    assert_eq!(c.add_auth_key(&[1; 16]), Err(Error::Internal));
    assert_eq!(n.try_start(), Err(Error::Internal));
    assert_eq!(c.switchover(Config::new(false, false, 0x7f00_0001, 1, 2), n.app()), Err(Error::Internal));
    assert!(n.book().logged("panicked"));
}

/// The master's ack_notify panics on the first acknowledgement of a batch of 50, while the
/// master holds acknowledged TLVs waiting for their callbacks and unacknowledged ones.
fn a_panicking_ack_notify_fails_the_master_and_exit_still_frees_everything() {
    let (mut m, mut b) = pair();
    let first: Vec<u64> = (0..10).map(|_| m.queue(64, false)).collect();
    wait_for("acknowledged", 10, || m.book().all_freed(&first) && m.book().unfreed() == 0);
    // Fifty TLVs to notify, acknowledged in few batches: the backup holds its first decode
    // until all are queued.
    b.hold.store(true, Ordering::SeqCst);
    let ids: Vec<u64> = (0..50).map(|_| m.queue(600, true)).collect();
    m.panic_on.store(PANIC_ACK, Ordering::SeqCst);
    // What it held it frees when it fails (thread mode) or exits (dispatch mode: the frees wait
    // for the application's thread, which dispatches no more).
    m.allow(Undelivered::Failure);
    m.allow(Undelivered::Exit);
    b.hold.store(false, Ordering::SeqCst);
    wait_for("the context failed", 10, || m.ctx().stats().is_err());
    every_call_fails(&m);
    let mb = m.book();
    assert_eq!((mb.ups, mb.downs), (1, 1), "the DOWN owed");
    assert!(mb.acked.is_empty());
    drop(mb);
    wait_for("the backup saw the master go", 10, || b.book().downs == 1);
    m.exit();
    let mb = m.book();
    assert!(mb.all_freed(&ids));
    let dropped = mb.undelivered_by(Undelivered::Failure) + mb.undelivered_by(Undelivered::Exit);
    assert_eq!(dropped, ids.len(), "every TLV of the batch freed without its notification");
    drop(mb);
    b.exit();
}

/// The backup's decode panics: it is owed (and gets) DOWN, fails every call; the master keeps
/// what was not acknowledged and frees it all at its exit.
fn a_panicking_decode_fails_the_backup() {
    let (mut m, mut b) = pair();
    b.panic_on.store(PANIC_DECODE, Ordering::SeqCst);
    let ids: Vec<u64> = (0..20).map(|_| m.queue(64, true)).collect();
    wait_for("the context failed", 10, || b.ctx().stats().is_err());
    every_call_fails(&b);
    let bb = b.book();
    assert_eq!((bb.ups, bb.downs), (1, 1), "the DOWN owed");
    assert_eq!(bb.decoded.len(), 20, "the walk only: a decode that panicked recorded an entry");
    drop(bb);
    wait_for("the master saw the backup go", 10, || m.book().downs == 1);
    assert!(m.book().acked.is_empty(), "ack_notify for TLVs the backup never applied");
    assert!(m.book().freed_among(&ids).is_empty(), "TLVs the backup never applied were freed");
    b.exit();
    m.allow(Undelivered::Exit);
    m.exit();
    assert_eq!(m.book().undelivered_by(Undelivered::Exit), ids.len());
}
