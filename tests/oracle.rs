//! The oracle of the engine tests fails what it is meant to fail: each kind of wrong callback
//! sequence, fed to a book by hand, is a violation (and the sequences the library legitimately
//! makes are not); a callback on the wrong thread is one; a node made outside `engine_tests!`
//! fails at once.

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};

use common::book::Book;
use common::ledger::{applied, Site};
use common::*;

/// Fresh ids no other test of this binary uses.
fn ids(n: usize) -> Vec<u64> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0xfeed_0000_0000);
    (0..n).map(|_| NEXT.fetch_add(1, Ordering::SeqCst)).collect()
}

/// A book with `ids` queued (acknowledgement requested for all).
fn queued(ids: &[u64]) -> Book {
    let mut b = Book::default();
    for &id in ids {
        b.on_queue(id, true);
    }
    b
}

/// The book's violations, as one text; and whether `check` fails.
fn verdict(b: &Book) -> (String, bool) {
    let fails = catch_unwind(AssertUnwindSafe(|| b.check("test"))).is_err();
    (b.violations.join("\n"), fails)
}

fn fails_with(b: &Book, needle: &str) {
    let (v, fails) = verdict(b);
    assert!(fails, "the check passed: {needle:?} expected");
    assert!(v.contains(needle), "expected a violation {needle:?}, got:\n{v}");
}

#[test]
fn a_delivered_stream_passes() {
    let t = ids(3);
    let mut b = queued(&t);
    for &id in &t {
        applied(id);
        b.on_ack_notify(id);
        b.on_free(id, Site::Free);
    }
    assert_eq!(verdict(&b), (String::new(), false));
}

/// What a count of frees cannot see: one TLV leaked, another freed twice.
#[test]
fn a_leak_and_a_double_free_do_not_balance() {
    let t = ids(2);
    let mut b = Book::default();
    for &id in &t {
        b.on_queue(id, false);
        applied(id);
    }
    b.on_free(t[0], Site::Free);
    b.on_free(t[0], Site::Free);
    assert_eq!(b.frees(), 2, "as many frees as TLVs");
    fails_with(&b, "freed 2 times");
    let (_, fails) = verdict(&b);
    assert!(fails);
    let leak = catch_unwind(AssertUnwindSafe(|| b.check("test"))).unwrap_err();
    let text = leak.downcast_ref::<String>().unwrap();
    assert!(text.contains("1 of 2 TLVs never freed"), "{text}");
}

#[test]
fn a_free_of_a_foreign_id_fails() {
    let mut b = Book::default();
    b.on_free(ids(1)[0], Site::Free);
    fails_with(&b, "never made");
}

#[test]
fn an_ack_notify_before_any_backup_applied_it_fails() {
    let t = ids(1);
    let mut b = queued(&t);
    b.on_ack_notify(t[0]);
    applied(t[0]);
    b.on_free(t[0], Site::Free);
    fails_with(&b, "before any backup applied it");
}

#[test]
fn ack_notifies_and_frees_out_of_queue_order_fail() {
    let t = ids(2);
    t.iter().for_each(|&id| applied(id));
    let mut b = queued(&t);
    b.on_ack_notify(t[1]);
    b.on_ack_notify(t[0]);
    fails_with(&b, "out of queue order");
    let mut b = queued(&t);
    b.on_ack_notify(t[0]);
    b.on_ack_notify(t[1]);
    b.on_free(t[1], Site::Free);
    b.on_free(t[0], Site::Free);
    fails_with(&b, "freed out of queue order");
}

#[test]
fn ack_notifies_of_what_asked_for_none_fail() {
    let t = ids(2);
    t.iter().for_each(|&id| applied(id));
    let mut b = Book::default();
    b.on_queue(t[0], false);
    b.on_ack_notify(t[0]);
    fails_with(&b, "without an acknowledgement requested");
    let mut b = Book::default();
    b.on_walk_start();
    b.on_walked(t[1]);
    b.on_ack_notify(t[1]);
    fails_with(&b, "of walk 1");
}

#[test]
fn a_free_before_delivery_fails_unless_the_test_expects_its_path() {
    let t = ids(2);
    let mut b = queued(&t[..1]);
    b.on_free(t[0], Site::Free);
    fails_with(&b, "before any backup applied it");
    // Applied, but freed without the notification it asked for.
    applied(t[1]);
    let mut b = queued(&t[1..]);
    b.on_free(t[1], Site::Free);
    fails_with(&b, "before its ack_notify");
    // At exit: only if the test said so.
    let mut b = queued(&t[..1]);
    b.exiting = true;
    b.on_free(t[0], Site::Free);
    fails_with(&b, "on the Exit path, which the test did not allow");
    let mut b = queued(&t[..1]);
    b.allowed.insert(Undelivered::Exit);
    b.exiting = true;
    b.on_free(t[0], Site::Free);
    assert_eq!(verdict(&b), (String::new(), false));
    assert_eq!(b.undelivered_by(Undelivered::Exit), 1);
}

/// An overflow drops the queue from its front, up to what reached the loop: contiguous, and
/// nothing queued after a TLV that was kept.
#[test]
fn an_overflow_drops_only_a_run_from_the_front() {
    let t = ids(4);
    let mut b = queued(&t);
    b.allowed.insert(Undelivered::Overflow);
    b.on_overflow();
    b.on_free(t[0], Site::Free);
    b.on_free(t[1], Site::Free);
    assert_eq!(verdict(&b).0, "");
    // Queued after the overflow, and freed undelivered past a gap: not the overflow's.
    let t2 = ids(3);
    for &id in &t2 {
        b.on_queue(id, false);
    }
    b.on_overflow();
    let later = ids(2);
    for &id in &later {
        b.on_queue(id, false);
    }
    for &id in t[2..].iter().chain(&t2) {
        b.on_free(id, Site::Free);
    }
    b.on_free(later[0], Site::Free); // contiguous with the run: what reached the loop
    assert_eq!(verdict(&b).0, "");
    applied(later[1]);
    let more = ids(2);
    for &id in &more {
        b.on_queue(id, false);
    }
    b.on_free(later[1], Site::Free); // delivered: the run is over
    b.on_free(more[1], Site::Free);
    fails_with(&b, "before any backup applied it");
}

#[test]
fn a_completed_walk_with_an_entry_never_applied_fails() {
    let t = ids(2);
    let mut b = Book { is_master: true, ..Book::default() };
    b.on_walk_start();
    t.iter().for_each(|&id| b.on_walked(id));
    applied(t[0]);
    b.on_walk_done(2);
    b.on_free(t[0], Site::Free);
    b.on_free(t[1], Site::Free);
    fails_with(&b, "no backup applied");
    // An interrupted walk's entries are replaced by the next walk: freed unapplied, fine.
    let t = ids(2);
    let mut b = Book::default();
    b.on_walk_start();
    t.iter().for_each(|&id| b.on_walked(id));
    t.iter().for_each(|&id| b.on_free(id, Site::Free));
    b.on_walk_start();
    assert_eq!(verdict(&b), (String::new(), false));
}

#[test]
fn a_node_outside_engine_tests_fails_loudly() {
    let r = catch_unwind(|| Node::new(master_cfg(false)));
    let e = r.err().expect("a node without a mode");
    let text = e.downcast_ref::<&str>().copied().or(e.downcast_ref::<String>().map(String::as_str));
    assert!(text.is_some_and(|m| m.contains("engine_tests!")), "{text:?}");
}

engine_tests!(a_callback_on_another_thread_is_a_violation);

/// The test's thread calls the application as only the library may.
fn a_callback_on_another_thread_is_a_violation() {
    let mut m = Node::new(master_cfg(false));
    m.start();
    let t = m.tag(100);
    junos_sync::App::free(&mut m.app(), t);
    let v = m.book().violations.join("\n");
    assert!(v.contains("free ran on thread"), "{v}");
    assert!(v.contains("never made"), "{v}");
    assert!(catch_unwind(AssertUnwindSafe(|| m.check())).is_err());
    m.book().violations.clear();
    m.exit();
}
