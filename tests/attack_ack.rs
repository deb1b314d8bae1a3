//! Issue 7, findings 1 and 5: a peer that passed the (unkeyed) handshake claims to have
//! applied what it was never given: an acknowledgement of a frame still in the master's output
//! buffer, one going backwards, one of a sequence number never sent, and a resume point beyond
//! what its session was delivered. Each is a protocol violation: the connection is dropped
//! with a log line and counted in `frames_rejected`; nothing is freed or ack-notified that the
//! peer could not have received; the master keeps listening and a real backup gets everything.

mod common;

use std::time::Duration;

use common::wire_peer::{hello, kernel_held, Got, Peer};
use common::*;
use junos_sync::proto::handshake::FLAG_RESUME;
use junos_sync::proto::wire::{frame_size, FrameKind};
use junos_sync::Config;

engine_tests!(
    ack_of_a_frame_still_in_the_output_buffer_drops_the_peer_and_frees_nothing,
    acks_going_backwards_or_beyond_anything_sent_are_violations,
    no_resync_ack_beyond_what_was_sent_frees_only_what_was_delivered,
    spoofed_resume_point_is_refused_and_the_session_starts_over,
);

// No test here waits for a keepalive to expire: long enough that a peer kept alive by frames
// every 20 ms is never declared dead on a loaded machine (it was, once, with 2 s in CI while
// three other builds ran).
const KEEPALIVE: u32 = 10;
const T: Duration = Duration::from_secs(5);

fn master(no_resync: bool) -> Node {
    let m = Node::new(Config::new(true, no_resync, 0x7f00_0001, 0, KEEPALIVE));
    m.start();
    m
}

fn backup_of(m: &Node) -> Node {
    let b = Node::new(Config::new(false, false, 0x7f00_0001, m.port(), KEEPALIVE));
    b.start();
    b
}

/// The next `n` frames, which must all be sequenced, numbered from `first` on.
fn take_seq(a: &mut Peer, first: u64, n: usize) -> Vec<Got> {
    let mut out = Vec::new();
    while out.len() < n {
        let f = a.next_frame(T).expect("the stream ended early");
        if f.kind == FrameKind::Keepalive {
            continue;
        }
        assert!(f.kind.is_sequenced(), "unexpected {:?}", f.kind);
        assert_eq!(f.seq, first + out.len() as u64, "{:?} out of sequence", f.kind);
        out.push(f);
    }
    out
}

/// Ids of the DATA frames among `frames`.
fn data_ids(frames: &[Got]) -> Vec<u64> {
    frames.iter().filter(|f| f.kind == FrameKind::Data).map(|f| id_of(&f.payload).expect("intact payload")).collect()
}

/// The connection ends (the master dropped it), the master says why and tells its DOWN (in
/// dispatch mode, after it said why).
fn dropped(a: &mut Peer, m: &Node, why: &str) {
    a.read_to_end(T);
    wait_for("the violation logged", 5, || m.book().logged(why));
    wait_for("the DOWN", 5, || {
        let b = m.book();
        b.ups == b.downs
    });
}

/// Finding 1, the remote crash. The peer stops reading, so the master's output buffer fills
/// with frames whose 4 KiB payloads it writes straight from the TLVs (zero copy); then it
/// acknowledges a sequence number whose frame is in that buffer but not yet written.
fn ack_of_a_frame_still_in_the_output_buffer_drops_the_peer_and_frees_nothing() {
    const WALKED: u64 = 50;
    const WALK_LEN: usize = 64;
    const N: usize = 2500;
    const LEN: usize = 4096;
    let mut m = master(false);
    m.fill_db(WALKED as u32, WALK_LEN);
    // Queued before the peer arrives: the stream it is sent is then known to the byte.
    let ids: Vec<u64> = (0..N).map(|_| m.queue(LEN, true)).collect();

    let mut a = Peer::connect(m.port());
    let w = a.handshake(&hello(0xa77a_c4e1, 0, 0));
    let base = w.seq;
    // WELCOME, SYNC_BEGIN, the walk, SYNC_END (8 payload bytes), then the queued TLVs.
    let mut ends = Vec::new(); // (stream offset where the frame ends, its sequence number)
    let mut at = frame_size(40) as u64;
    let mut seq = base;
    for len in std::iter::once(0).chain(std::iter::repeat_n(WALK_LEN, WALKED as usize)).chain([8]) {
        at += frame_size(len as u32) as u64;
        seq += 1;
        ends.push((at, seq));
    }
    let first_queued = seq + 1;
    for _ in 0..N {
        at += frame_size(LEN as u32) as u64;
        seq += 1;
        ends.push((at, seq));
    }
    let last_seq = seq;

    // Wait until the master is stuck: the bytes it has written (what the kernel holds on its
    // side, plus what ours received) stop changing. Keepalives keep us alive meanwhile.
    let (mine, theirs) = (a.s.local_addr().unwrap().port(), m.port());
    let written = wait_steady(&format!("the master's writing ({at} bytes to write)"), 10, || {
        a.send_frame(FrameKind::Keepalive, 0, 0, &[]).unwrap();
        kernel_held(mine, theirs) + a.raw.len() as u64
    });
    assert!(written + 2 * 1024 * 1024 < at, "the master wrote {written} of {at} bytes: it is not stalled");
    let wholly_written = ends.iter().take_while(|&&(end, _)| end <= written).last().map_or(base, |&(_, s)| s);
    // Three frames past the last one wholly written: in the output buffer (it holds 1 MiB past
    // the write position), not on the wire.
    let target = wholly_written + 3;
    assert!(target > first_queued && target <= last_seq);
    let before = m.stats();
    a.ack(target).unwrap();
    dropped(&mut a, &m, &format!("acknowledges sequence {target}"));

    // What the peer could have received: everything the master wrote, and it ends before the
    // acknowledged frame.
    let (frames, _) = common::wire_peer::parse_frames(&a.raw).unwrap();
    let got_last = frames.iter().filter(|f| f.kind.is_sequenced()).map(|f| f.seq).max().unwrap();
    eprintln!(
        "stalled after {written} of {at} bytes; acknowledged {target}, last written {wholly_written}, received up to {got_last}"
    );
    assert!(got_last < target, "the acknowledged frame {target} was delivered after all (up to {got_last})");
    let s = m.stats();
    assert_eq!(s.frames_rejected, before.frames_rejected + 1);
    assert_eq!(s.handshakes_refused, before.handshakes_refused);
    {
        let b = m.book();
        assert_eq!(b.frees(), 0, "the master freed TLVs the peer never acknowledged validly");
        assert!(b.acked.is_empty(), "ack_notify for undelivered TLVs: {:?}", &b.acked[..b.acked.len().min(5)]);
        assert!(!b.logged("panicked"));
        assert_eq!((b.ups, b.downs), (1, 1));
    }

    // The port still listens, and a real backup gets everything, in order.
    let mut b = backup_of(&m);
    wait_for("the real backup has every TLV", 30, || b.book().decoded.len() == WALKED as usize + N);
    {
        let bb = b.book();
        assert_eq!(bb.decoded[WALKED as usize..], ids[..], "the real backup's stream");
        assert_eq!((bb.clears, bb.sync_done.clone(), bb.ups), (1, vec![WALKED as usize], 1));
    }
    wait_for("every TLV acknowledged", 30, || m.book().acked.len() == N);
    assert_eq!(m.book().acked, ids, "ack notifications, in queue order");
    b.exit();
    m.exit();
}

/// Finding 1, the other impossible acknowledgements: backwards, and of a sequence number never
/// sent (the next one, and u64::MAX), on a master with resync.
fn acks_going_backwards_or_beyond_anything_sent_are_violations() {
    let mut m = master(false);
    m.fill_db(5, 32);
    let ids: Vec<u64> = (0..10).map(|_| m.queue(600, true)).collect();

    // Backwards.
    let mut a = Peer::connect(m.port());
    let base = a.handshake(&hello(0xb1, 0, 0)).seq;
    let got = take_seq(&mut a, base + 1, 1 + 5 + 1 + 10);
    assert_eq!(data_ids(&got)[5..], ids[..]);
    let end_of_walk = base + 7;
    a.ack(end_of_walk + 4).unwrap();
    wait_for("four TLVs freed", 5, || m.book().freed_among(&ids).len() == 4);
    assert_eq!(m.book().acked, ids[..4]);
    assert_eq!(m.book().sync_done, vec![5]);
    a.ack(end_of_walk + 2).unwrap();
    dropped(&mut a, &m, &format!("acknowledges sequence {} after {}", end_of_walk + 2, end_of_walk + 4));
    assert_eq!(m.stats().frames_rejected, 1);

    // The next sequence number, never sent (everything queued has been read).
    let mut a = Peer::connect(m.port());
    let base = a.handshake(&hello(0xb2, 0, 0)).seq;
    let got = take_seq(&mut a, base + 1, 1 + 5 + 1 + 6);
    assert_eq!(data_ids(&got)[5..], ids[4..]);
    let last = got.last().unwrap().seq;
    a.ack(last + 1).unwrap();
    dropped(&mut a, &m, &format!("acknowledges sequence {}", last + 1));
    assert_eq!(m.stats().frames_rejected, 2);

    // u64::MAX, before reading anything.
    let mut a = Peer::connect(m.port());
    a.handshake(&hello(0xb3, 0, 0));
    a.ack(u64::MAX).unwrap();
    dropped(&mut a, &m, &format!("acknowledges sequence {}", u64::MAX));
    let s = m.stats();
    assert_eq!((s.frames_rejected, s.handshakes_refused), (3, 0));
    assert_eq!(m.book().freed_among(&ids), ids[..4], "only what was validly acknowledged is freed");
    assert_eq!(m.book().acked, ids[..4]);
    assert!(!m.book().logged("panicked"));

    let mut b = backup_of(&m);
    wait_for("every TLV acknowledged", 10, || m.book().acked.len() == ids.len());
    assert_eq!(m.book().acked, ids);
    assert_eq!(b.book().decoded[5..], ids[4..]);
    b.exit();
    m.exit();
}

/// Finding 5: with no_resync and no real backup, a peer receives some TLVs, acknowledges part
/// of them validly, then acknowledges beyond what it was sent.
fn no_resync_ack_beyond_what_was_sent_frees_only_what_was_delivered() {
    let mut m = master(true);
    let ids: Vec<u64> = (0..10).map(|_| m.queue(700, true)).collect();
    let mut a = Peer::connect(m.port());
    let base = a.handshake(&hello(0xc1, 0, 0)).seq;
    let got = take_seq(&mut a, base + 1, 10);
    assert_eq!(data_ids(&got), ids);
    a.ack(base + 4).unwrap();
    wait_for("four TLVs freed", 5, || m.book().freed_among(&ids).len() == 4);
    a.ack(base + 15).unwrap();
    dropped(&mut a, &m, &format!("acknowledges sequence {}", base + 15));
    assert_eq!(m.stats().frames_rejected, 1);
    assert_eq!(m.book().freed_among(&ids), ids[..4]);
    assert_eq!(m.book().acked, ids[..4], "ack_notify for TLVs never delivered");
    assert_eq!(m.book().frees(), 4);

    let mut b = backup_of(&m);
    wait_for("every TLV acknowledged", 10, || m.book().acked.len() == ids.len());
    assert_eq!(b.book().decoded, ids[4..]);
    assert_eq!(m.book().acked, ids);
    b.exit();
    m.exit();
}

/// Finding 5, the spoofed resume: a HELLO naming the right backup and master sessions (the
/// master's learnt from a WELCOME) but a resume point beyond what that session was ever
/// delivered. Refused as a violation, nothing freed or notified, and the session's next
/// connection gets a full resync rather than being locked out. A genuine resume just before
/// shows that the same session ids would have resumed.
fn spoofed_resume_point_is_refused_and_the_session_starts_over() {
    const WALKED: u64 = 20;
    let mut m = master(false);
    m.fill_db(WALKED as u32, 32);
    for (round, (session, spoof)) in [(0x5e55_0001u64, None), (0x5e55_0002, Some(u64::MAX))].into_iter().enumerate() {
        let rejected = m.stats().frames_rejected;
        let full = m.stats().full_resyncs;
        // The session, as a backup: full resync, acknowledged.
        let mut a = Peer::connect(m.port());
        let w = a.handshake(&hello(session, 0, 0));
        let (ms, base) = (w.session, w.seq);
        let walk = take_seq(&mut a, base + 1, WALKED as usize + 2);
        let end = walk.last().unwrap().seq;
        a.ack(end).unwrap();
        wait_for("the walk acknowledged", 5, || m.book().sync_done.len() == 2 * round + 1);
        // Ten TLVs delivered, five acknowledged.
        let ids: Vec<u64> = (0..10).map(|_| m.queue(100, true)).collect();
        let got = take_seq(&mut a, end + 1, 10);
        assert_eq!(data_ids(&got), ids);
        a.ack(end + 5).unwrap();
        wait_for("five freed", 5, || m.book().freed_among(&ids).len() == 5);
        a.close();
        wait_for("the master noticed", 5, || m.book().downs == 3 * round + 1);

        // A genuine resume of the same session: what it had not acknowledged is sent again.
        let mut a = Peer::connect(m.port());
        let w = a.handshake(&hello(session, ms, end + 5));
        assert_eq!((w.flags & FLAG_RESUME, w.seq), (FLAG_RESUME, end + 5));
        assert_eq!(data_ids(&take_seq(&mut a, end + 6, 5)), ids[5..]);
        a.close();
        wait_for("the master noticed", 5, || m.book().downs == 3 * round + 2);

        // The spoof: one beyond the last sequence number delivered (or u64::MAX).
        let claim = spoof.unwrap_or(end + 11);
        let mut a = Peer::connect(m.port());
        a.send_hello(&hello(session, ms, claim)).unwrap();
        let r = a.expect(FrameKind::Refuse, T);
        assert!(r.text().contains("delivered"), "refusal: {}", r.text());
        assert!(a.next_frame(T).is_none(), "the master kept talking after its REFUSE");
        let s = m.stats();
        assert_eq!((s.frames_rejected, s.partial_resyncs), (rejected + 1, round as u64 + 1));
        assert_eq!(m.book().freed_among(&ids), ids[..5], "the spoofed resume freed TLVs");
        assert_eq!(m.book().acked.iter().filter(|id| ids.contains(id)).count(), 5);
        assert!(m.book().logged("will not resume"));

        // The session is not locked out: it starts over with a full resync.
        let mut a = Peer::connect(m.port());
        let w = a.handshake(&hello(session, ms, end + 8));
        assert_eq!(w.flags & FLAG_RESUME, 0, "resumed after a spoofed resume point");
        let again = take_seq(&mut a, w.seq + 1, WALKED as usize + 2 + 5);
        assert_eq!(again[0].kind, FrameKind::SyncBegin);
        assert_eq!(data_ids(&again)[WALKED as usize..], ids[5..]);
        let last = again.last().unwrap().seq;
        a.ack(last).unwrap();
        wait_for("everything acknowledged", 5, || m.book().freed_among(&ids).len() == 10);
        assert_eq!(m.stats().full_resyncs, full + 2);
        a.close();
        wait_for("the master noticed", 5, || m.book().downs == 3 * round + 3);
    }
    m.exit();
}
