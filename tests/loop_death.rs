//! Issue 7: when the loop thread dies (here: a Rust application's callback panics), the context
//! is marked failed. The application gets the DOWN it is owed, every later call returns
//! `Error::Internal` (a queued TLV comes back to the caller), and exit still frees every TLV
//! the context held, exactly once.

mod common;

use std::sync::atomic::Ordering;

use common::tracked::{Node, Tracked, PANIC_ACK, PANIC_DECODE};
use common::wait_for;
use junos_sync::{Config, Error};

fn pair() -> (Node, Node) {
    let m = Node::new(Config::new(true, false, 0x7f00_0001, 0, 2));
    m.fill_db(20, 32);
    m.start();
    let b = Node::new(Config::new(false, false, 0x7f00_0001, m.port(), 2));
    b.start();
    wait_for("the resync acknowledged", 10, || m.book.lock().sync_done == vec![20]);
    (m, b)
}

/// Every call but exit fails with `Error::Internal`; a TLV handed to queue comes back.
fn every_call_fails(n: &Node) {
    let c = n.ctx();
    assert_eq!(c.stats(), Err(Error::Internal));
    let (e, t) = n.try_queue(100, true).expect_err("queue on a failed context");
    assert_eq!(e, Error::Internal);
    assert_eq!(common::tracked::id_of(&t.data), Some(t.id), "queue gave back another TLV");
    assert_eq!(c.set_backlog_limit(1 << 20), Err(Error::Internal));
    assert_eq!(c.set_event_context(1), Err(Error::Internal));
    assert_eq!(c.set_auth_key(&[1; 16]), Err(Error::Internal));
    assert_eq!(c.add_auth_key(&[1; 16]), Err(Error::Internal));
    assert_eq!(c.start(), Err(Error::Internal));
    let app = Tracked {
        book: Default::default(),
        db: Default::default(),
        next_id: Default::default(),
        panic_on: Default::default(),
        hold: Default::default(),
    };
    assert_eq!(c.switchover(Config::new(false, false, 0x7f00_0001, 1, 2), app), Err(Error::Internal));
    assert!(n.book.lock().logged("panicked"));
}

/// The master's ack_notify panics on the first acknowledgement of a batch of 50, while the
/// master holds acknowledged TLVs waiting for their callbacks and unacknowledged ones.
#[test]
fn a_panicking_ack_notify_fails_the_master_and_exit_still_frees_everything() {
    let (mut m, mut b) = pair();
    for _ in 0..10 {
        m.queue(64, false);
    }
    wait_for("acknowledged", 10, || m.book.lock().frees() == 30);
    // Fifty TLVs to notify, acknowledged in few batches: the backup holds its first decode
    // until all are queued.
    b.hold.store(true, Ordering::SeqCst);
    for _ in 0..50 {
        m.queue(600, true);
    }
    m.panic_on.store(PANIC_ACK, Ordering::SeqCst);
    b.hold.store(false, Ordering::SeqCst);
    wait_for("the context failed", 10, || m.ctx().stats().is_err());
    every_call_fails(&m);
    let mb = m.book.lock();
    assert_eq!((mb.ups, mb.downs), (1, 1), "the DOWN owed");
    drop(mb);
    assert!(m.book.lock().acked.is_empty());
    wait_for("the backup saw the master go", 10, || b.book.lock().downs == 1);
    m.exit();
    m.book.lock().check_freed_exactly_once();
    b.exit();
}

/// The backup's decode panics: it is owed (and gets) DOWN, fails every call; the master keeps
/// what was not acknowledged and frees it all at its exit.
#[test]
fn a_panicking_decode_fails_the_backup() {
    let (mut m, mut b) = pair();
    b.panic_on.store(PANIC_DECODE, Ordering::SeqCst);
    let ids: Vec<u64> = (0..20).map(|_| m.queue(64, true)).collect();
    wait_for("the context failed", 10, || b.ctx().stats().is_err());
    every_call_fails(&b);
    let bb = b.book.lock();
    assert_eq!((bb.ups, bb.downs), (1, 1), "the DOWN owed");
    drop(bb);
    wait_for("the master saw the backup go", 10, || m.book.lock().downs == 1);
    assert!(m.book.lock().acked.is_empty(), "ack_notify for TLVs the backup never applied");
    let mb = m.book.lock();
    assert!(ids.iter().all(|id| !mb.freed.contains_key(id)), "TLVs the backup never applied were freed");
    drop(mb);
    b.exit();
    m.exit();
    m.book.lock().check_freed_exactly_once();
}
