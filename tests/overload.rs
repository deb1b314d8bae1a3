//! A backup that cannot keep up (issue 16), scaled down: a master whose application queues
//! twice as fast as the backup decodes, with a small backlog limit. Aborted resyncs back off
//! and are named once; with the resync buffer the backup keeps its last complete copy; with
//! OVERFLOW_REFUSE no full resync follows the first and nothing is dropped.

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::*;
use junos_sync::{Config, Error, LinkState};

engine_tests!(
    aborted_resyncs_back_off_and_are_named_once,
    the_resync_buffer_keeps_the_last_complete_copy,
    refuse_slows_the_producer_and_needs_no_second_resync,
    large_tlvs_on_their_way_at_an_overflow_arrive_intact,
    keyed_large_tlvs_on_their_way_at_an_overflow_arrive_intact,
    a_backup_without_resync_is_told_why_before_the_close
);

const LIMIT: usize = 64 * 1024;
const KEYS: u32 = 2000;
/// The backup's decode: 100 us, about 10,000 entries/s.
const DECODE_US: usize = 100;
/// The master's application: 20,000 updates/s, twice what the backup applies.
const RATE: u32 = 20_000;

fn pair(buffer: usize, refuse: bool) -> (Node, Node) {
    let m = Node::new(Config::new(true, false, 0x7f00_0001, 0, 5));
    m.ctx().set_backlog_limit(LIMIT).unwrap();
    if refuse {
        m.ctx().set_overflow_policy(true).unwrap();
    } else {
        m.allow(Undelivered::Overflow);
    }
    m.db.lock().extend((1..=KEYS).map(|k| (k, 1)));
    m.start();
    let b = Node::new(Config::new(false, false, 0x7f00_0001, m.port(), 5));
    if buffer > 0 {
        b.ctx().set_resync_buffer(buffer).unwrap();
    }
    b.start();
    wait_for("first sync", 20, || b.book().sync_done.len() == 1);
    // Complete on the master too (its end acknowledged), so that the load aborts only later walks.
    wait_for("first sync acknowledged", 20, || m.stats().resyncs_completed == 1);
    b.decode_delay_us.store(DECODE_US, Ordering::SeqCst);
    (m, b)
}

/// Updates random keys at `RATE` for `secs` (a load, paced by the clock, not a deadline);
/// with `retry`, a refused update is tried again until it is taken. Returns how many refusals.
fn load(m: &Node, secs: u64, retry: bool) -> u64 {
    let start = Instant::now();
    let end = start + Duration::from_secs(secs);
    let (mut i, mut refused) = (0u32, 0u64);
    let mut x = 0x2545_f491u32;
    while Instant::now() < end {
        i += 1;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let key = 1 + x % KEYS;
        loop {
            match m.try_put(key, i, false) {
                Ok(_) => break,
                Err((Error::BacklogFull, _)) if retry => {
                    refused += 1;
                    std::thread::sleep(Duration::from_micros(200));
                    if Instant::now() >= end {
                        return refused;
                    }
                }
                Err((e, _)) => panic!("queue: {e:?}"),
            }
        }
        if i % 100 == 0 {
            // On schedule for RATE: sleep off what is early.
            let due = start + Duration::from_secs_f64(f64::from(i) / f64::from(RATE));
            if let Some(d) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(d);
            }
        }
    }
    refused
}

fn converge(m: &mut Node, b: &mut Node) {
    b.decode_delay_us.store(0, Ordering::SeqCst);
    wait_for("backup converged", 30, || b.holds(m));
    wait_for("everything freed", 10, || m.book().unfreed() == 0);
    b.exit();
    m.exit();
}

fn aborted_resyncs_back_off_and_are_named_once() {
    let (mut m, mut b) = pair(0, false);
    let t0 = Instant::now();
    load(&m, 3, false);
    let elapsed = t0.elapsed();
    let s = m.stats();
    let named = m.book().count_logged("the backup cannot keep up");
    eprintln!(
        "{:.1} s at 2x the backup's rate: {} resyncs started, {} completed, {} aborted, {} overflows; named {named} times",
        elapsed.as_secs_f64(),
        s.resyncs_started,
        s.resyncs_completed,
        s.resyncs_aborted,
        s.overflows
    );
    assert!(s.resyncs_aborted >= 2, "the load did not overflow a walk twice: {s:?}");
    // Without the backoff a walk restarts every overflow (about every 100 ms here: 30 in 3 s);
    // with it the waits are 0.1, 0.2, 0.4, 0.8, 1.6 s: at most 5 fit in the 3 s, plus one
    // walking when the load started and one in flight when it ended.
    let bound = 2
        + (1..).take_while(|&n| (1..=n).map(|k| 100u64 << (k - 1)).sum::<u64>() <= elapsed.as_millis() as u64).count()
            as u64;
    assert!(s.resyncs_aborted <= bound, "{} aborted resyncs in {elapsed:?}, backoff allows {bound}", s.resyncs_aborted);
    assert!(s.overflows <= s.resyncs_aborted + 1, "overflows counted more than once each: {s:?}");
    assert_eq!(named, 1, "one line per episode (at most once a minute)");
    // The backup stayed connected through every overflow: one session, the walks restarted
    // on it, and the backup counts and names what it was told.
    assert_eq!(s.connections, 1, "an overflow dropped the backup's connection: {s:?}");
    let bs = b.stats();
    assert!(bs.resyncs_aborted >= 1 && bs.resyncs_started >= 2, "the backup's counters: {bs:?}");
    assert_eq!(b.book().count_logged("starts a new full resync on this connection"), 1, "named once");
    assert_eq!(b.book().count_logged("connection to master"), 0, "the backup saw no connection lost");
    converge(&mut m, &mut b);
    assert_eq!(m.book().count_logged("the backup caught up"), 1, "the recovery is named");
}

fn the_resync_buffer_keeps_the_last_complete_copy() {
    let (mut m, mut b) = pair(1 << 20, false);
    load(&m, 3, false);
    let (started, aborted) = (b.stats().resyncs_started, b.stats().resyncs_aborted);
    // The walks themselves now arrive at the network's pace (held, acknowledged); what
    // overflows is the stream after them, and each overflow brings another resync.
    assert!(started >= 3, "no resync after the second: the test proved nothing");
    assert_eq!(m.stats().connections, 1, "the backup stays connected through the overflows");
    // Checked once converged: a resync's clear and decodes may be under way until then.
    converge(&mut m, &mut b);
    let book = b.book();
    eprintln!(
        "backup with a resync buffer: {started} resyncs started, {aborted} aborted, {} clears, table at each clear {:?}",
        book.clears, book.sizes_at_clear
    );
    // The first session's clear found an empty table; every later one the full copy.
    assert!(book.sizes_at_clear.iter().skip(1).all(|&n| n == KEYS as usize), "{:?}", book.sizes_at_clear);
    assert!(book.sizes_at_done.iter().all(|&n| n == KEYS as usize), "{:?}", book.sizes_at_done);
    assert_eq!(book.clears, book.sync_done.len(), "a clear only for a resync that arrived whole");
}

fn refuse_slows_the_producer_and_needs_no_second_resync() {
    let (mut m, mut b) = pair(0, true);
    let refused = load(&m, 2, true);
    let s = m.stats();
    eprintln!("OVERFLOW_REFUSE: {refused} refusals, {} full resyncs, {} overflows", s.full_resyncs, s.overflows);
    assert!(refused > 0, "the backlog never filled: the test proved nothing");
    assert_eq!((s.full_resyncs, s.overflows, s.resyncs_aborted), (1, 0, 0), "{s:?}");
    assert_eq!(b.book().clears, 1);
    b.decode_delay_us.store(0, Ordering::SeqCst);
    wait_for("backup converged", 30, || b.holds(&m));
    assert_eq!((b.stats().resyncs_started, b.stats().resyncs_completed), (1, 1));
    converge(&mut m, &mut b);
}

/// An overflow while large TLVs (written from the application's memory, not copied) wait in
/// the connection's output: the limit is larger than the kernel's socket buffers, so that
/// they are full when it comes. The backup stays connected, the frames already queued arrive
/// intact although their TLVs were freed at the overflow, and nothing is freed twice or lost.
fn large_tlvs_at_an_overflow(key: Option<&[u8]>) {
    let mut m = Node::new(Config::new(true, false, 0x7f00_0001, 0, 5));
    m.ctx().set_backlog_limit(24 << 20).unwrap();
    m.allow(Undelivered::Overflow);
    m.db.lock().extend((1..=KEYS).map(|k| (k, 1)));
    if let Some(k) = key {
        m.ctx().set_auth_key(k).unwrap();
    }
    m.start();
    let mut b = Node::new(Config::new(false, false, 0x7f00_0001, m.port(), 5));
    if let Some(k) = key {
        b.ctx().set_auth_key(k).unwrap();
    }
    b.start();
    wait_for("first sync", 20, || b.book().sync_done.len() == 1);
    b.decode_delay_us.store(1000, Ordering::SeqCst);
    let end = Instant::now() + Duration::from_secs(10);
    while m.stats().overflows < 1 {
        assert!(Instant::now() < end, "no overflow: {:?}", m.stats());
        for _ in 0..64 {
            m.queue(8192, false);
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    b.decode_delay_us.store(0, Ordering::SeqCst);
    let s = m.stats();
    eprintln!("{} overflows with 8 KiB TLVs{}: {s:?}", s.overflows, if key.is_some() { ", keyed" } else { "" });
    m.put(1, 7, false);
    wait_for("backup converged", 30, || b.holds(&m));
    wait_for("everything freed", 10, || m.book().unfreed() == 0);
    let book = b.book();
    assert!(!book.decoded.contains(&u64::MAX), "a payload arrived corrupted");
    assert!(book.decoded.len() > 1000, "large TLVs reached the backup: {}", book.decoded.len());
    drop(book);
    assert_eq!(m.stats().connections, 1, "the backup stayed connected: {:?}", m.stats());
    assert_eq!(b.book().count_logged("connection to master"), 0, "the backup saw no connection lost");
    b.exit();
    m.exit();
}

fn large_tlvs_on_their_way_at_an_overflow_arrive_intact() {
    large_tlvs_at_an_overflow(None);
}

fn keyed_large_tlvs_on_their_way_at_an_overflow_arrive_intact() {
    large_tlvs_at_an_overflow(Some(b"0123456789abcdef0123456789abcdef"));
}

/// A backup that runs without resync cannot be given a walk: at an overflow the master tells
/// it why (REFUSE with the reason) and closes; the backup logs the reason and reconnects.
fn a_backup_without_resync_is_told_why_before_the_close() {
    let mut m = Node::new(Config::new(true, false, 0x7f00_0001, 0, 5));
    m.ctx().set_backlog_limit(LIMIT).unwrap();
    m.allow(Undelivered::Overflow);
    m.start();
    let mut b = Node::new(Config::new(false, true, 0x7f00_0001, m.port(), 5));
    b.start();
    wait_for("the backup up", 20, || m.status().state == LinkState::Up);
    b.decode_delay_us.store(DECODE_US, Ordering::SeqCst);
    let end = Instant::now() + Duration::from_secs(10);
    while m.stats().overflows == 0 {
        assert!(Instant::now() < end, "no overflow: {:?}", m.stats());
        for _ in 0..64 {
            m.queue(200, false);
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    b.decode_delay_us.store(0, Ordering::SeqCst);
    wait_for("the reason logged by the backup", 10, || b.book().count_logged("backlog over its limit of") >= 1);
    wait_for("the backup back", 10, || m.stats().connections >= 2 && m.status().state == LinkState::Up);
    assert_eq!(m.stats().full_resyncs, 0, "a session without resync got a walk");
    assert!(m.book().count_logged("whose session runs without resync, is disconnected") >= 1);
    assert_eq!(m.book().count_logged("stays connected"), 0);
    b.exit();
    m.exit();
}
