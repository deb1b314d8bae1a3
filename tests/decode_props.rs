//! The frame and handshake decoders over 100k+ random and mutated inputs: no panic, no
//! allocation driven by an unchecked length, every error reported, never a wrong frame
//! accepted.

use junos_sync::proto::handshake::{Hello, Role};
use junos_sync::proto::inbuf::InBuf;
use junos_sync::proto::wire::{push_frame, seal_header, FrameKind};

mod common;
use common::Rng;

const KINDS: [FrameKind; 10] = [
    FrameKind::Hello,
    FrameKind::Welcome,
    FrameKind::Refuse,
    FrameKind::Data,
    FrameKind::Ack,
    FrameKind::Keepalive,
    FrameKind::SyncBegin,
    FrameKind::SyncEnd,
    FrameKind::KeyInit,
    FrameKind::KeyReply,
];

/// A decoded frame: kind, sequence number, payload.
type Decoded = (FrameKind, u64, Vec<u8>);

/// A valid stream of a few frames and the (kind, seq, payload) it encodes.
fn valid_stream(rng: &mut Rng) -> (Vec<u8>, Vec<Decoded>) {
    let mut out = Vec::new();
    let mut frames = Vec::new();
    for _ in 0..1 + rng.pick(5) {
        let kind = KINDS[rng.pick(KINDS.len())];
        let len = match kind {
            FrameKind::Data => rng.pick(300),
            FrameKind::Ack | FrameKind::Keepalive | FrameKind::SyncBegin => 0,
            _ => rng.pick(64),
        };
        let payload: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        let seq = rng.next();
        push_frame(&mut out, kind, 0, seq, &payload);
        frames.push((kind, seq, payload));
    }
    (out, frames)
}

/// Feeds `bytes` in random chunks, taking frames between reads as the engine does; returns the
/// frames decoded and whether an error ended it. Checks on the way that the buffer never holds
/// more than twice what has arrived (plus its base capacity): no length a peer announces makes
/// it allocate ahead of the bytes.
fn decode_all(bytes: &[u8], rng: &mut Rng) -> (Vec<Decoded>, bool) {
    let mut inb = InBuf::new(256, 16 << 20);
    let base = inb.capacity();
    let mut got = Vec::new();
    let mut rest = bytes;
    loop {
        loop {
            match inb.next_frame() {
                Ok(Some(f)) => got.push((f.header.kind, f.header.seq, inb.payload(&f).to_vec())),
                Ok(None) => break,
                Err(e) => {
                    assert!(!e.to_string().is_empty());
                    return (got, true);
                }
            }
        }
        let arrived = bytes.len() - rest.len();
        assert!(inb.capacity() <= base.max(2 * arrived), "buffer of {} after {arrived} bytes", inb.capacity());
        if rest.is_empty() {
            return (got, false);
        }
        let n = 1 + rng.pick(rest.len().min(97));
        let mut chunk = &rest[..n];
        inb.fill(&mut chunk).unwrap();
        rest = &rest[n - chunk.len()..];
    }
}

#[test]
fn random_bytes_never_panic_and_are_rejected_or_incomplete() {
    let mut rng = Rng(0x5eed_0001);
    let mut rejected = 0;
    for _ in 0..60_000 {
        let len = rng.pick(200);
        let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        let (frames, err) = decode_all(&bytes, &mut rng);
        // A random 24-byte header passes the CRC with probability 2^-32: none should.
        assert!(frames.is_empty(), "random bytes decoded as a frame");
        rejected += usize::from(err);
        let _ = Hello::decode(&bytes);
    }
    assert!(rejected > 50_000, "only {rejected} random inputs were rejected");
}

#[test]
fn mutated_streams_decode_exactly_or_fail() {
    const RUNS: usize = 60_000;
    let mut rng = Rng(0x5eed_0002);
    let (mut exact, mut failed, mut short) = (0, 0, 0);
    for _ in 0..RUNS {
        let (mut bytes, frames) = valid_stream(&mut rng);
        let (clean, err) = decode_all(&bytes, &mut rng);
        assert!(!err);
        assert_eq!(clean, frames);
        // Flip, drop or insert a few bytes, or cut the tail.
        let mut lost_bytes = false;
        for _ in 0..1 + rng.pick(3) {
            match rng.pick(4) {
                0 => {
                    let i = rng.pick(bytes.len());
                    bytes[i] ^= 1 << rng.pick(8);
                }
                1 => {
                    let i = rng.pick(bytes.len());
                    bytes.remove(i);
                    lost_bytes = true;
                }
                2 => {
                    let i = rng.pick(bytes.len() + 1);
                    bytes.insert(i, rng.next() as u8);
                }
                _ => {
                    bytes.truncate(rng.pick(bytes.len()));
                    lost_bytes = true;
                }
            }
            if bytes.is_empty() {
                break;
            }
        }
        let (got, err) = decode_all(&bytes, &mut rng);
        // Whatever decodes must be a prefix of what was sent: corruption never yields a frame
        // that was not there.
        assert!(got.len() <= frames.len());
        assert_eq!(&frames[..got.len()], &got[..], "a mutated stream decoded a frame that was never sent");
        if err {
            failed += 1;
        } else if got.len() == frames.len() {
            // Only bytes appended after the last frame leave every frame intact.
            exact += 1;
        } else {
            // A stream that ends inside a frame without an error has lost bytes.
            assert!(lost_bytes, "a stream with no byte lost stopped short of its frames without an error");
            short += 1;
        }
    }
    assert_eq!(failed + exact + short, RUNS);
    assert!(failed > 10_000, "mutations rejected only {failed} times");
    assert!(exact > 0 && short > 0, "exact {exact}, short {short}: the mutations did not cover both");
}

#[test]
fn huge_lengths_are_refused_before_allocation() {
    for kind in 1u8..=10 {
        for len in [257u32, 1 << 20, (16 << 20) + 1, u32::MAX] {
            let mut h = [0u8; 32];
            h[0..4].copy_from_slice(&len.to_le_bytes());
            h[4] = kind;
            seal_header(&mut h);
            let mut inb = InBuf::new(256, 16 << 20);
            let base = inb.capacity();
            inb.fill(&mut &h[..]).unwrap();
            let r = inb.next_frame();
            assert_eq!(inb.capacity(), base, "kind {kind} len {len}: the buffer grew for a header alone");
            if kind == 4 && len <= 16 << 20 {
                // A DATA frame may be this long: it waits for its bytes (CRC checked at the end).
                assert!(matches!(r, Ok(None)));
            } else {
                assert!(r.is_err(), "kind {kind} len {len} was not refused");
            }
        }
    }
}

#[test]
fn handshake_round_trips_and_rejects() {
    let mut rng = Rng(0x5eed_0003);
    for _ in 0..20_000 {
        let h = Hello {
            version: rng.next() as u16,
            role: if rng.pick(2) == 0 { Role::Backup } else { Role::Master },
            flags: rng.next() as u8,
            keepalive_ms: rng.next() as u32,
            max_version: rng.next() as u16,
            session: rng.next(),
            peer_session: rng.next(),
            seq: rng.next(),
        };
        let mut b = h.encode();
        assert_eq!(Hello::decode(&b), Ok(h));
        b[rng.pick(4)] ^= 1 << rng.pick(8);
        assert!(Hello::decode(&b).is_err(), "bad magic accepted");
    }
}
