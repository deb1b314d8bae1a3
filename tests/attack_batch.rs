//! Protocol version 2's BATCH frames, attacked over real sockets (issue 13, item 6: "a batch's
//! length, record count and every record length checked before anything is allocated or
//! applied; an ACK inside a batch that was not wholly written is a violation").
//!
//! Against a backup, from a fake master: batches whose records do not add up, whose CRC is
//! wrong, that skip or wrap sequence numbers, and frames of the other version are refused: the
//! connection is dropped with a log line and counted in `frames_rejected`, nothing of the bad
//! batch is applied, and the backup comes back resuming after the last good record. Against a
//! master, from a fake backup speaking version 2: an acknowledgement inside a batch still in the
//! master's output buffer drops the peer and frees nothing; one in the middle of a batch that
//! was wholly written frees exactly what it covers.

mod common;

use std::io::ErrorKind;
use std::net::TcpListener;
use std::time::{Duration, Instant};

use common::tlv::payload;
use common::wire_peer::{
    batch, batch_ids, frame, hello_v2, kernel_held, loopback, parse_frames, welcome, welcome_v2, Got, Peer,
};
use common::*;
use junos_sync::proto::handshake::{Hello, Role, FLAG_RESUME};
use junos_sync::proto::wire::{encode_header_of, frame_size, record_header, FrameKind, RECORD_HEADER_LEN};
use junos_sync::Config;

engine_tests!(
    malformed_batches_are_refused_before_any_record_is_applied,
    frames_of_the_other_version_are_violations,
    sequence_numbers_near_the_end_never_wrap,
    an_ack_inside_a_batch_not_wholly_written_drops_the_peer_and_frees_nothing,
    an_ack_in_the_middle_of_a_delivered_batch_frees_exactly_what_it_covers,
);

const T: Duration = Duration::from_secs(5);
const KEEPALIVE: u32 = 2;
const MASTER: u64 = 0xba7c_4a57;

fn backup(port: u16) -> Node {
    let b = Node::new(Config::new(false, false, 0x7f00_0001, port, KEEPALIVE));
    b.start();
    b
}

/// The next connection to the fake master and its HELLO.
fn accept(l: &TcpListener) -> (Peer, Hello) {
    l.set_nonblocking(true).unwrap();
    let end = deadline(T);
    let s = loop {
        match l.accept() {
            Ok((s, _)) => break s,
            Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < end => {
                std::thread::sleep(Duration::from_millis(5))
            }
            Err(e) => panic!("no connection from the backup: {e}"),
        }
    };
    s.set_nonblocking(false).unwrap();
    let mut a = Peer::over(s);
    let h = a.expect(FrameKind::Hello, T).hello();
    (a, h)
}

/// A BATCH frame with a valid header and payload CRC around `records`, claiming `count`.
fn forged(seq: u64, count: u32, records: &[u8]) -> Vec<u8> {
    let mut f = encode_header_of(FrameKind::Batch, count, seq, records.len(), crc32c::crc32c(records)).to_vec();
    f.extend_from_slice(records);
    f.resize(f.len() + (8 - records.len() % 8) % 8, 0);
    f
}

fn record(id: u64, len: usize) -> Vec<u8> {
    let p = payload(id, len);
    let mut r = record_header(7, p.len()).to_vec();
    r.extend_from_slice(&p);
    r.resize(RECORD_HEADER_LEN + p.len().div_ceil(8) * 8, 0);
    r
}

/// A backup in a version 2 session with the fake master: a full resync of 3 records in one
/// batch, applied and acknowledged. Returns the next sequence number.
fn resynced(l: &TcpListener, b: &Node) -> (Peer, u64) {
    let (mut a, h) = accept(l);
    assert_eq!((h.role, h.max_version), (Role::Backup, 2), "this release offers version 2");
    let mut s = frame(FrameKind::Welcome, 0, 0, &welcome_v2(&h, MASTER, 0).encode());
    s.extend(frame(FrameKind::SyncBegin, 0, 1, &[]));
    s.extend(batch(2, &[payload(1, 40), payload(2, 0), payload(3, 700)]));
    s.extend(frame(FrameKind::SyncEnd, 0, 5, &3u64.to_le_bytes()));
    a.send(&s).unwrap();
    wait_for("the resync applied", 5, || b.book().sync_done == [3]);
    assert_eq!(b.book().decoded, [1, 2, 3]);
    (a, 6)
}

/// The connection ends, counted as the `rejected`-th rejection, with the reason logged.
fn refused(a: &mut Peer, b: &Node, rejected: u64, why: &str) {
    assert!(a.ends_within(T), "the backup kept the connection ({why})");
    wait_for(&format!("rejection {rejected} counted ({why})"), 5, || b.stats().frames_rejected >= rejected);
    assert_eq!(b.stats().frames_rejected, rejected, "{why}");
    wait_for(&format!("the log line ({why})"), 5, || b.book().logged(why));
}

/// Batches that a forged or corrupted header could describe, each after a good one: the good
/// one is applied, the bad one refused whole, and the backup comes back resuming after the
/// good one (then gets the next case).
/// A bad batch, given the sequence number it claims to start at.
type Bad = Box<dyn Fn(u64) -> Vec<u8>>;

fn malformed_batches_are_refused_before_any_record_is_applied() {
    let l = TcpListener::bind(loopback(0)).unwrap();
    let mut b = backup(l.local_addr().unwrap().port());
    let (mut a, mut seq) = resynced(&l, &b);
    let mut id = 10;
    let two = [record(100, 16), record(101, 24)].concat();
    let mut long = record(102, 16);
    long[0..4].copy_from_slice(&4000u32.to_le_bytes());
    let mut pad = record(103, 17);
    *pad.last_mut().unwrap() = 1;
    let mut corrupt = batch(0, &[payload(104, 64)]);
    corrupt[frame_size(0) + 20] ^= 0x40;
    let cases: Vec<(&str, Bad, &str)> = vec![
        ("a count above the records", Box::new(move |s| forged(s, 3, &two)), "malformed batch"),
        (
            "a count below the records",
            Box::new(|s| forged(s, 1, &[record(105, 16), record(106, 16)].concat())),
            "bytes after the last record",
        ),
        ("a count of none", Box::new(|s| forged(s, 0, &record(107, 16))), "no records"),
        ("a record running past the frame", Box::new(move |s| forged(s, 1, &long)), "record past the end"),
        ("padding that is not zero", Box::new(move |s| forged(s, 1, &pad)), "padding"),
        (
            "a payload CRC that does not match",
            Box::new(move |s| {
                let mut c = corrupt.clone();
                c[16..24].copy_from_slice(&s.to_le_bytes());
                junos_sync::proto::wire::seal_header(&mut c);
                c
            }),
            "CRC32C mismatch",
        ),
        ("a sequence gap", Box::new(|s| batch(s + 1, &[payload(108, 8)])), "expected the one after"),
        (
            "a batch running past the last sequence number",
            Box::new(|_| batch(u64::MAX, &[payload(109, 8)])),
            "expected the one after",
        ),
    ];
    for (k, (what, bad, why)) in cases.iter().enumerate() {
        // A good batch, then the bad one, in one write: the good one must stay applied.
        let good = [payload(id, 32), payload(id + 1, 32)];
        let mut s = batch(seq, &good);
        s.extend(bad(seq + 2));
        a.send(&s).unwrap();
        refused(&mut a, &b, k as u64 + 1, why);
        // In dispatch mode the application's thread may not have run the decodes yet.
        wait_for(&format!("{what}: the good batch applied"), 5, || b.book().decoded.ends_with(&[id, id + 1]));
        let applied = b.book().decoded.clone();
        assert_eq!(applied[applied.len() - 2..], [id, id + 1], "{what}: the good batch before it");
        assert!(applied.iter().all(|&i| i < 100), "{what}: a record of the bad batch was applied");
        seq += 2;
        id += 2;
        // It comes back, resuming right after the good batch.
        let (na, h) = accept(&l);
        assert_eq!((h.peer_session, h.seq), (MASTER, seq - 1), "{what}: the resume point");
        a = na;
        let w = Hello { flags: FLAG_RESUME, ..welcome_v2(&h, MASTER, seq - 1) };
        a.send(&frame(FrameKind::Welcome, 0, 0, &w.encode())).unwrap();
    }
    // And streams on.
    a.send(&batch(seq, &[payload(id, 8)])).unwrap();
    wait_for("the last batch", 5, || b.book().decoded.last() == Some(&id));
    assert_eq!(b.book().clears, 1, "no resync after the first");
    assert!(!b.book().logged("panicked"));
    b.exit();
}

/// A DATA frame in a version 2 session, and a BATCH frame in a version 1 session, are
/// violations: each drops the connection before anything of it is applied.
fn frames_of_the_other_version_are_violations() {
    let l = TcpListener::bind(loopback(0)).unwrap();
    let mut b = backup(l.local_addr().unwrap().port());
    let (mut a, seq) = resynced(&l, &b);
    a.send(&frame(FrameKind::Data, 7, seq, &payload(20, 8))).unwrap();
    refused(&mut a, &b, 1, "unexpected Data frame");
    // Back, offered version 2 again; this time the fake master answers as release 1.1 does.
    let (mut a, h) = accept(&l);
    assert_eq!(h.max_version, 2);
    let w = Hello { flags: FLAG_RESUME, ..welcome(&h, MASTER, seq - 1) };
    let mut s = frame(FrameKind::Welcome, 0, 0, &w.encode());
    s.extend(frame(FrameKind::Data, 7, seq, &payload(21, 8)));
    s.extend(batch(seq + 1, &[payload(22, 8)]));
    a.send(&s).unwrap();
    refused(&mut a, &b, 2, "unexpected Batch frame");
    wait_for("the version 1 DATA frame applied", 5, || b.book().decoded.len() > 3);
    assert_eq!(b.book().decoded[3..], [21], "the version 1 DATA frame is applied, the batch is not");
    b.exit();
}

/// Issue 17, finding 9: a WELCOME saying the stream continues after 2^64-1 is refused (no
/// frame could follow), and a batch whose records would run past it is refused whole, however
/// its first sequence number fits; nothing is applied of either.
fn sequence_numbers_near_the_end_never_wrap() {
    let l = TcpListener::bind(loopback(0)).unwrap();
    let mut b = backup(l.local_addr().unwrap().port());
    let (mut a, h) = accept(&l);
    let mut s = frame(FrameKind::Welcome, 0, 0, &welcome_v2(&h, MASTER, u64::MAX).encode());
    s.extend(frame(FrameKind::Data, 7, 0, &payload(30, 8)));
    a.send(&s).unwrap();
    refused(&mut a, &b, 1, "after the last sequence number");
    let (mut a, h) = accept(&l);
    let mut s = frame(FrameKind::Welcome, 0, 0, &welcome_v2(&h, MASTER, u64::MAX - 3).encode());
    s.extend(batch(u64::MAX - 2, &[payload(31, 8), payload(32, 8)]));
    s.extend(batch(u64::MAX, &[payload(33, 8), payload(34, 8)]));
    a.send(&s).unwrap();
    refused(&mut a, &b, 2, "runs past the last sequence number");
    wait_for("the batch that fits applied", 5, || b.book().decoded.len() >= 2);
    assert_eq!(b.book().decoded, [31, 32], "the batch that fits, and nothing of the one that does not");
    b.exit();
}

fn master() -> Node {
    let m = Node::new(Config::new(true, false, 0x7f00_0001, 0, KEEPALIVE));
    m.start();
    m
}

/// The next `n` records of sequenced frames (a batch counts its records), from `first` on.
fn take_records(a: &mut Peer, first: u64, n: usize) -> Vec<(u64, Got)> {
    let mut out = Vec::new();
    let mut next = first;
    while (next - first) < n as u64 {
        let f = a.next_frame(T).expect("the stream ended early");
        if f.kind == FrameKind::Keepalive {
            continue;
        }
        assert!(f.kind.is_sequenced(), "unexpected {:?}", f.kind);
        assert_eq!(f.seq, next, "{:?} out of sequence", f.kind);
        next += if f.kind == FrameKind::Batch { u64::from(f.aux) } else { 1 };
        out.push((f.seq, f));
    }
    out
}

/// TLVs larger than a batch's 64 KiB go one per batch, written straight from the TLVs: the
/// stream is known to the byte. The fake backup stops reading, the master stalls, and the
/// peer acknowledges a record whose batch is in the master's output buffer, not on the wire.
fn an_ack_inside_a_batch_not_wholly_written_drops_the_peer_and_frees_nothing() {
    const N: usize = 200;
    const LEN: usize = 70_000;
    let mut m = master();
    let ids: Vec<u64> = (0..N).map(|_| m.queue(LEN, true)).collect();
    let mut a = Peer::connect(m.port());
    let w = a.handshake(&hello_v2(0xa77a_c4e2, 0, 0));
    assert_eq!(w.version, 2, "the session speaks version 2");
    // WELCOME, SYNC_BEGIN, SYNC_END (an empty walk), then one batch per TLV.
    let mut ends = Vec::new();
    let mut at = frame_size(40) as u64;
    let mut seq = w.seq;
    for len in [0usize, 8] {
        at += frame_size(len as u32) as u64;
        seq += 1;
        ends.push((at, seq));
    }
    let first_queued = seq + 1;
    for _ in 0..N {
        at += frame_size((RECORD_HEADER_LEN + LEN) as u32) as u64;
        seq += 1;
        ends.push((at, seq));
    }
    let (mine, theirs) = (a.s.local_addr().unwrap().port(), m.port());
    let written = wait_steady(&format!("the master's writing ({at} bytes to write)"), 10, || {
        a.send_frame(FrameKind::Keepalive, 0, 0, &[]).unwrap();
        kernel_held(mine, theirs) + a.raw.len() as u64
    });
    assert!(written + 2 * 1024 * 1024 < at, "the master wrote {written} of {at} bytes: it is not stalled");
    let wholly = ends.iter().take_while(|&&(end, _)| end <= written).last().map_or(w.seq, |&(_, s)| s);
    let target = wholly + 3;
    assert!(target > first_queued && target <= seq);
    let before = m.stats();
    a.ack(target).unwrap();
    a.read_to_end(T);
    wait_for("the violation logged", 5, || m.book().logged(&format!("acknowledges sequence {target}")));
    let (frames, _) = parse_frames(&a.raw).unwrap();
    let got_last = frames.iter().filter(|f| f.kind.is_sequenced()).map(|f| f.seq).max().unwrap();
    assert!(got_last < target, "the acknowledged batch {target} was delivered after all (up to {got_last})");
    assert_eq!(m.stats().frames_rejected, before.frames_rejected + 1);
    {
        let b = m.book();
        assert_eq!(b.frees(), 0, "the master freed TLVs the peer never acknowledged validly");
        assert!(b.acked.is_empty());
    }
    // A real backup gets everything.
    let mut b = Node::new(Config::new(false, false, 0x7f00_0001, m.port(), KEEPALIVE));
    b.start();
    wait_for("the real backup has every TLV", 30, || b.book().decoded.len() == N);
    assert_eq!(b.book().decoded, ids);
    wait_for("every TLV acknowledged", 30, || m.book().acked.len() == N);
    assert_eq!(m.book().acked, ids);
    b.exit();
    m.exit();
}

/// Small TLVs travel many to a batch; an ACK may end inside one that was wholly delivered
/// (a backup acknowledges what its application applied): it frees and notifies exactly the
/// records it covers, in order, and the rest later.
fn an_ack_in_the_middle_of_a_delivered_batch_frees_exactly_what_it_covers() {
    let mut m = master();
    let mut a = Peer::connect(m.port());
    let w = a.handshake(&hello_v2(0xa77a_c4e3, 0, 0));
    assert_eq!(w.version, 2);
    let walk = take_records(&mut a, w.seq + 1, 2); // SYNC_BEGIN, SYNC_END of an empty walk
    a.ack(walk[1].0).unwrap();
    wait_for("the walk's end acknowledged", 5, || m.book().sync_done == [0]);
    let ids: Vec<u64> = (0..40).map(|_| m.queue(24, true)).collect();
    let first = w.seq + 3;
    let got = take_records(&mut a, first, 40);
    let mut seen = Vec::new();
    for (_, f) in &got {
        assert_eq!(f.kind, FrameKind::Batch);
        seen.extend(batch_ids(f));
    }
    assert_eq!(seen, ids, "every record, in order");
    assert!(got.len() < 40, "{} frames for 40 small TLVs: they were not batched", got.len());
    let mid = first + 16; // the 17th record, inside a batch
    a.ack(mid).unwrap();
    wait_for("17 acknowledged", 5, || m.book().acked.len() == 17);
    assert_eq!(m.book().acked, ids[..17], "exactly what the ACK covers, in order");
    assert_eq!(m.book().freed_among(&ids).len(), 17);
    a.ack(first + 39).unwrap();
    wait_for("all acknowledged", 5, || m.book().acked.len() == 40);
    assert_eq!(m.book().acked, ids);
    a.close();
    m.exit();
}
