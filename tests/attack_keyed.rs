//! Issue 7, finding 3: what the key protects. Unkeyed reading is inherent; keyed, a peer
//! without the key gets no application byte (only a REFUSE), a replayed handshake gets a
//! KEY_REPLY but never a stream and is closed within the keepalive time, and a fake master that
//! does not hold the key never gets the backup to clear or apply anything. Every such attempt
//! is counted in `auth_failures`, and the real pair keeps replicating undisturbed.

mod common;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use common::tlv::leaks_payload;
use common::wire_peer::{
    frame, hello, hello_frame, kernel_held, loopback, parse_frames, welcome, KeyedPeer, Peer, Tap,
};
use common::*;
use junos_sync::proto::noise::{respond, Initiator, Psk, MESSAGE_LEN};
use junos_sync::proto::wire::{frame_size, FrameKind, REFUSE_AUTH};
use junos_sync::Config;

const KEY: &[u8] = b"attack suite: the pair's own key, 32+";
const OTHER: &[u8] = b"attack suite: somebody else's key!!!";
const KA: u32 = 2;
const T: Duration = Duration::from_secs(5);

engine_tests!(
    a_peer_without_the_key_gets_only_a_refusal,
    a_replayed_key_handshake_never_gets_a_stream,
    a_fake_master_without_the_key_never_gets_the_backup_to_apply_anything,
    a_key_holder_acknowledging_what_was_not_written_is_dropped_and_nothing_is_freed,
);

fn keyed(is_master: bool, port: u16, key: &[u8]) -> Node {
    let n = Node::new(Config::new(is_master, false, 0x7f00_0001, port, KA));
    n.ctx().set_auth_key(key).unwrap();
    n.start();
    n
}

/// A keyed pair with a database and some traffic, converged; `via` puts a tap in between.
fn pair(via_tap: bool) -> (Node, Node, Option<Tap>) {
    let m = Node::new(Config::new(true, false, 0x7f00_0001, 0, KA));
    m.ctx().set_auth_key(KEY).unwrap();
    m.fill_db(30, 100);
    m.start();
    let tap = via_tap.then(|| Tap::new(m.port()));
    let b = keyed(false, tap.as_ref().map_or(m.port(), |t| t.port), KEY);
    let mut ids = vec![m.queue(4096, true)];
    ids.extend((0..20).map(|_| m.queue(100, true)));
    wait_for("the keyed pair converged", 10, || b.book().decoded.len() == 30 + 21);
    assert_eq!(b.book().decoded[30..], ids[..]);
    wait_for("everything acknowledged", 10, || m.book().acked == ids);
    (m, b, tap)
}

/// The real pair was not disturbed: one session, one resync, and traffic still flows.
fn undisturbed(m: &mut Node, b: &mut Node) {
    let ids: Vec<u64> = (0..50).map(|_| m.queue(600, true)).collect();
    wait_for("traffic after the attack", 10, || b.book().decoded.ends_with(&ids));
    wait_for("and its acknowledgements", 10, || m.book().acked.ends_with(&ids) && m.book().unfreed() == 0);
    let (bb, mb) = (b.book(), m.book());
    assert_eq!((bb.ups, bb.downs, bb.clears), (1, 0, 1), "the real backup was disturbed");
    assert_eq!((mb.ups, mb.downs), (1, 0));
    drop((bb, mb));
    b.exit();
    m.exit();
}

/// Everything a connection received is exactly one REFUSE for authentication, and no
/// application byte.
fn only_an_auth_refusal(a: &mut Peer) {
    let (frames, partial) = a.frames_to_end(T);
    assert!(!leaks_payload(&a.raw), "application bytes reached a peer without the key");
    assert_eq!(partial, 0);
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert_eq!((frames[0].kind, frames[0].aux), (FrameKind::Refuse, REFUSE_AUTH), "{}", frames[0].text());
}

fn a_peer_without_the_key_gets_only_a_refusal() {
    let (mut m, mut b, _) = pair(false);
    let before = m.stats();
    // A plaintext HELLO, as an unkeyed backup sends.
    let mut a = Peer::connect(m.port());
    a.send_hello(&hello(0x0bad, 0, 0)).unwrap();
    only_an_auth_refusal(&mut a);
    // The key handshake with another key.
    let (_, init) = Initiator::start(&Psk::derive(OTHER));
    let mut a = Peer::connect(m.port());
    a.send_frame(FrameKind::KeyInit, 0, 0, &init).unwrap();
    only_an_auth_refusal(&mut a);
    // A key handshake message of the right size that is no handshake at all.
    let mut a = Peer::connect(m.port());
    a.send_frame(FrameKind::KeyInit, 0, 0, &[0x42; MESSAGE_LEN]).unwrap();
    only_an_auth_refusal(&mut a);
    wait_for("three authentication failures", 5, || m.stats().auth_failures == before.auth_failures + 3);
    let s = m.stats();
    assert_eq!((s.frames_rejected, s.handshakes_refused), (before.frames_rejected, before.handshakes_refused));
    assert!(m.book().logged("authentication failed"));
    undisturbed(&mut m, &mut b);
}

/// The backup's first handshake message, captured through a tap and replayed on new
/// connections: the master has seen its ephemeral key, so it refuses it at once, without a
/// reply (no Diffie-Hellman, nothing for the replayer to work with), and counts it. A KEY_INIT
/// the master never saw (recorded on its way, the backup's connection cut before it arrived)
/// gets a KEY_REPLY once, but nothing after it opens: the backup's sealed HELLO of another
/// handshake does not decrypt under this one's keys, a plaintext HELLO is not sealed at all,
/// and without the key no reply can be finished; the master closes it within its keepalive
/// time and counts it. Replayed again, that one is refused at once too.
fn a_replayed_key_handshake_never_gets_a_stream() {
    let (mut m, mut b, tap) = pair(true);
    let (up, _) = tap.as_ref().unwrap().recorded(0).unwrap();
    let key_init = &up[..frame_size(MESSAGE_LEN as u32)];
    let (first, _) = parse_frames(key_init).unwrap();
    assert_eq!((first.len(), first[0].kind), (1, FrameKind::KeyInit));
    // The backup's first sealed record: its HELLO (2-byte length, ciphertext).
    let rest = &up[key_init.len()..];
    let record = &rest[..2 + usize::from(u16::from_be_bytes([rest[0], rest[1]]))];
    let before = m.stats();

    // The backup's part replayed: KEY_INIT, and its sealed HELLO. Not a byte comes back.
    let mut a = Peer::connect(m.port());
    a.send(key_init).unwrap();
    let _ = a.send(record);
    let after = a.read_to_end(T);
    assert!(after.is_empty() && a.raw.is_empty(), "{} bytes answered a replay", a.raw.len());
    wait_for("counted", 5, || m.stats().auth_failures == before.auth_failures + 1);
    assert!(m.book().logged("replayed key handshake"));

    // A KEY_INIT the master never saw, then a plaintext HELLO where a sealed one is due, and
    // an attempt to finish the handshake without the key. Nothing more can come; the master
    // closes the connection at its handshake deadline, the keepalive time after it came.
    let (_, unseen) = Initiator::start(&Psk::derive(KEY));
    let unseen = frame(FrameKind::KeyInit, 0, 0, &unseen);
    let connected = Instant::now();
    let mut a = Peer::connect(m.port());
    a.send(&unseen).unwrap();
    let reply = a.expect(FrameKind::KeyReply, T);
    let (guess, _) = Initiator::start(&Psk::derive(OTHER));
    assert!(guess.finish(&reply.payload).is_err(), "a reply finished without the key");
    a.send(&hello_frame(&hello(0x6e71a, 0, 0))).unwrap();
    let after = a.read_to_end(Duration::from_secs(u64::from(KA) * 3));
    let open_for = connected.elapsed();
    assert!(open_for <= scaled(Duration::from_millis(u64::from(KA) * 1500)), "closed only after {open_for:?}");
    assert!(after.len() <= 2 + 256 + 16);
    assert!(!leaks_payload(&a.raw));
    wait_for("counted", 5, || m.stats().auth_failures == before.auth_failures + 2);
    // And replayed, it is refused without a word.
    let mut a = Peer::connect(m.port());
    a.send(&unseen).unwrap();
    assert!(a.read_to_end(T).is_empty() && a.raw.is_empty(), "a second replay was answered");
    wait_for("counted", 5, || m.stats().auth_failures == before.auth_failures + 3);
    assert!(m.book().logged("authentication failed"));
    let s = m.stats();
    assert_eq!((s.connections, s.full_resyncs), (1, 1), "a replay passed the handshake");
    undisturbed(&mut m, &mut b);
}

/// A fake master at the master's address that does not hold the key, answering the keyed
/// backup's handshake every way it can. The backup never reveals its HELLO, never clears or
/// applies anything, and counts every failed authentication.
fn a_fake_master_without_the_key_never_gets_the_backup_to_apply_anything() {
    let l = TcpListener::bind(loopback(0)).unwrap();
    let port = l.local_addr().unwrap().port();
    let mut b = keyed(false, port, KEY);
    let mut answers: Vec<Vec<u8>> = vec![
        // A KEY_REPLY of random-looking bytes.
        frame(FrameKind::KeyReply, 0, 0, &[0x5a; MESSAGE_LEN]),
        // A well-formed KEY_REPLY from a handshake with another key.
        {
            let (_, init) = Initiator::start(&Psk::derive(OTHER));
            let (reply, _, _) = respond(&[Psk::derive(OTHER)], &init).unwrap();
            frame(FrameKind::KeyReply, 0, 0, &reply)
        },
        // "Wrong key": a refusal for authentication.
        frame(FrameKind::Refuse, REFUSE_AUTH, 0, b"no such key here"),
        // Nothing: the connection closes.
        Vec::new(),
    ];
    // No key handshake at all: a plaintext master's WELCOME and a resync.
    let mut plain = frame(FrameKind::Welcome, 0, 0, &welcome(&hello(0, 0, 0), 0x1e55, 0).encode());
    plain.extend(frame(FrameKind::SyncBegin, 0, 1, &[]));
    plain.extend(frame(FrameKind::Data, 7, 2, b"SECRET!!planted by the impostor"));
    answers.push(plain);
    for answer in &answers {
        let (s, _) = l.accept().unwrap();
        let mut a = Peer::over(s);
        let init = a.expect(FrameKind::KeyInit, T);
        assert_eq!(init.payload.len(), MESSAGE_LEN);
        a.send(answer).unwrap();
        if answer.is_empty() {
            a.s.shutdown(std::net::Shutdown::Write).unwrap();
        }
        let (frames, _) = a.frames_to_end(T);
        assert!(frames.is_empty(), "the backup said more to a master that did not prove the key: {frames:?}");
    }
    // One authentication failure per answer but the plaintext one, a violation for that (a
    // WELCOME where the KEY_REPLY is due).
    wait_for("every answer counted", 5, || {
        let s = b.stats();
        (s.auth_failures, s.frames_rejected) == (4, 1)
    });
    let bb = b.book();
    assert_eq!((bb.ups, bb.clears, bb.decoded.len(), bb.sync_done.len()), (0, 0, 0, 0));
    assert!(bb.logged("authentication failed"));
    drop(bb);
    b.exit();
}

/// Finding 1 on a keyed master: a peer that holds the key is trusted to be a backup, not to
/// tell the truth about sequence numbers. It stops reading, so the master's output fills (4 KiB
/// payloads referenced until they are sealed), then acknowledges a frame that is not wholly
/// written. A violation, exactly as unkeyed: dropped, nothing freed or notified; the real
/// backup then gets everything.
fn a_key_holder_acknowledging_what_was_not_written_is_dropped_and_nothing_is_freed() {
    const WALKED: usize = 50;
    const N: usize = 2500;
    const LEN: usize = 4096;
    let mut m = Node::new(Config::new(true, false, 0x7f00_0001, 0, KA));
    m.ctx().set_auth_key(KEY).unwrap();
    m.fill_db(WALKED as u32, 64);
    m.start();
    let ids: Vec<u64> = (0..N).map(|_| m.queue(LEN, true)).collect();
    let mut a = KeyedPeer::connect(m.port(), KEY);
    let base = a.handshake(&hello(0x4e7a_c4e1, 0, 0)).seq;
    // The plaintext stream: WELCOME, SYNC_BEGIN, the walk, SYNC_END, the queued TLVs.
    let mut ends = Vec::new();
    let mut at = frame_size(40) as u64;
    let lens = std::iter::once(0).chain(std::iter::repeat_n(64, WALKED)).chain([8]);
    for (i, len) in lens.chain(std::iter::repeat_n(LEN, N)).enumerate() {
        at += frame_size(len as u32) as u64;
        ends.push((at, base + 1 + i as u64));
    }
    let (mine, theirs) = (a.s.local_addr().unwrap().port(), m.port());
    let written = wait_steady("the master's writing", 10, || {
        a.send_frame(FrameKind::Keepalive, 0, 0, &[]).unwrap();
        kernel_held(mine, theirs) + a.cipher_read
    });
    assert!(written + 2 * 1024 * 1024 < at, "not stalled: {written} of {at} bytes written");
    // Ciphertext bytes bound the plaintext written (records add a length and a tag): three
    // frames past the last that ends within them cannot have been delivered.
    let within = ends.iter().take_while(|&&(end, _)| end <= written).last().map_or(base, |&(_, s)| s);
    let target = within + 3;
    let before = m.stats();
    a.ack(target).unwrap();
    a.read_to_end(T);
    let (frames, _) = parse_frames(&a.raw).unwrap();
    let got_last = frames.iter().filter(|f| f.kind.is_sequenced()).map(|f| f.seq).max().unwrap();
    assert!(got_last < target, "the acknowledged frame {target} was delivered after all ({got_last})");
    wait_for("the violation logged", 5, || m.book().logged(&format!("acknowledges sequence {target}")));
    let s = m.stats();
    assert_eq!((s.frames_rejected, s.auth_failures), (before.frames_rejected + 1, before.auth_failures));
    {
        let mb = m.book();
        assert_eq!(mb.frees(), 0, "TLVs freed on an acknowledgement of what was never written");
        assert!(mb.acked.is_empty());
        assert!(!mb.logged("panicked"));
    }
    let mut b = keyed(false, m.port(), KEY);
    wait_for("the real backup has every TLV", 30, || b.book().decoded.len() == WALKED + N);
    assert_eq!(b.book().decoded[WALKED..], ids[..]);
    wait_for("every TLV acknowledged", 30, || m.book().acked.len() == N);
    b.exit();
    m.exit();
}
