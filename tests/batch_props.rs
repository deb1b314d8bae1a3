//! BATCH frames (protocol version 2) as the master builds them and the backup checks them,
//! over random and mutated streams: every record of a valid stream comes back exactly, in
//! order, with its payload 8-aligned; a mutated stream (flipped, dropped or inserted bytes, a
//! cut tail) yields only records that were sent, at their own sequence numbers, or an error;
//! and a forged batch (a valid header and CRC over records that do not add up) is refused
//! before any record is taken.

use junos_sync::proto::inbuf::InBuf;
use junos_sync::proto::out::Out;
use junos_sync::proto::wire::{check_batch, encode_header_of, record_header, records, FrameKind, MAX_BATCH_LEN};

mod common;
use common::Rng;

/// A record as sent: sequence number, tlv_type, payload.
type Rec = (u64, u32, Vec<u8>);

/// A stream of a few BATCH frames (some records large enough to go out zero-copy) and the
/// records it carries.
fn valid_stream(rng: &mut Rng) -> (Vec<u8>, Vec<Rec>) {
    let mut recs: Vec<Rec> = Vec::new();
    let mut out = Out::default();
    let mut seq = 1 + rng.below(1 << 40);
    for _ in 0..1 + rng.pick(4) {
        let mut b = out.begin_batch(seq, true);
        for _ in 0..1 + rng.pick(6) {
            let len = if rng.pick(5) == 0 { 513 + rng.pick(1500) } else { rng.pick(80) };
            let p: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            let ty = rng.next() as u32;
            out.record(&mut b, ty, &p);
            recs.push((seq, ty, p));
            seq += 1;
        }
        out.end_batch(b);
    }
    let mut bytes = Vec::new();
    let first = recs[0].0;
    assert!(out.flush(&mut bytes, |s| recs.get((s - first) as usize).map(|r| &r.2[..])).unwrap());
    (bytes, recs)
}

/// Decodes `bytes` fed in random chunks as a backup does: a batch's records are taken only
/// after `check_batch` accepted all of them. Returns them and whether an error ended it.
fn decode_all(bytes: &[u8], rng: &mut Rng) -> (Vec<Rec>, bool) {
    let mut inb = InBuf::new(256, MAX_BATCH_LEN);
    let mut got = Vec::new();
    let mut rest = bytes;
    loop {
        loop {
            match inb.next_frame() {
                Ok(Some(f)) => {
                    assert_eq!(f.header.kind, FrameKind::Batch, "only batches were sent");
                    let p = inb.payload(&f);
                    if check_batch(p, f.header.aux).is_err() {
                        return (got, true);
                    }
                    for (k, (ty, r)) in records(p).enumerate() {
                        assert_eq!(p[r.start..].as_ptr() as usize % 8, 0, "payload not 8-aligned");
                        got.push((f.header.seq + k as u64, ty, p[r].to_vec()));
                    }
                }
                Ok(None) => break,
                Err(_) => return (got, true),
            }
        }
        if rest.is_empty() {
            return (got, false);
        }
        let n = 1 + rng.pick(rest.len().min(333));
        let mut chunk = &rest[..n];
        inb.fill(&mut chunk).unwrap();
        rest = &rest[n - chunk.len()..];
    }
}

#[test]
fn valid_batches_come_back_exactly() {
    let mut rng = Rng(0xba7c_0001);
    for _ in 0..5_000 {
        let (bytes, recs) = valid_stream(&mut rng);
        let (got, err) = decode_all(&bytes, &mut rng);
        assert!(!err);
        assert_eq!(got, recs);
    }
}

#[test]
fn mutated_batches_yield_only_what_was_sent() {
    let mut rng = Rng(0xba7c_0002);
    let (mut exact, mut failed) = (0, 0);
    for _ in 0..20_000 {
        let (mut bytes, recs) = valid_stream(&mut rng);
        for _ in 0..1 + rng.pick(3) {
            if bytes.is_empty() {
                break;
            }
            match rng.pick(4) {
                0 => {
                    let i = rng.pick(bytes.len());
                    bytes[i] ^= 1 << rng.pick(8);
                }
                1 => {
                    bytes.remove(rng.pick(bytes.len()));
                }
                2 => {
                    let i = rng.pick(bytes.len() + 1);
                    bytes.insert(i, rng.next() as u8);
                }
                _ => bytes.truncate(rng.pick(bytes.len())),
            }
        }
        let (got, err) = decode_all(&bytes, &mut rng);
        assert!(got.len() <= recs.len());
        assert_eq!(got[..], recs[..got.len()], "a record that was not sent, or not at its place");
        if err {
            failed += 1;
        } else if got == recs {
            exact += 1;
        }
    }
    assert!(failed > 10_000, "only {failed} mutated streams failed");
    assert!(exact < 1_000, "{exact} mutated streams decoded exactly");
}

/// Wraps `payload` in a BATCH frame claiming `count` records, with a valid header and CRC.
fn forged(payload: &[u8], count: u32) -> Vec<u8> {
    let mut b = encode_header_of(FrameKind::Batch, count, 7, payload.len(), crc32c::crc32c(payload)).to_vec();
    b.extend_from_slice(payload);
    b.resize(b.len() + (8 - payload.len() % 8) % 8, 0);
    b
}

#[test]
fn forged_batches_are_refused_before_any_record_is_taken() {
    let mut rec = record_header(1, 8).to_vec();
    rec.extend_from_slice(b"12345678");
    let two = [rec.clone(), rec.clone()].concat();
    let mut long = rec.clone();
    long[0..4].copy_from_slice(&9u32.to_le_bytes());
    let cases: [(&str, Vec<u8>, u32); 5] = [
        ("a count above what the bytes hold", two.clone(), 3),
        ("a count below the records", two.clone(), 1),
        ("no records", two, 0),
        ("a record running past the payload", long, 1),
        ("a record header alone", rec[..8].to_vec(), 1),
    ];
    for (what, payload, count) in cases {
        let bytes = forged(&payload, count);
        let mut inb = InBuf::new(256, MAX_BATCH_LEN);
        inb.fill(&mut &bytes[..]).unwrap();
        let f = inb.next_frame().expect("header and CRC are valid").expect("a whole frame");
        assert!(check_batch(inb.payload(&f), f.header.aux).is_err(), "{what} was accepted");
    }
    // The same records with the CRC of a keyed connection (none): refused where a CRC is due.
    let mut b = encode_header_of(FrameKind::Batch, 1, 7, rec.len(), 0).to_vec();
    b.extend_from_slice(&rec);
    let mut inb = InBuf::new(256, MAX_BATCH_LEN);
    inb.fill(&mut &b[..]).unwrap();
    assert!(inb.next_frame().is_err(), "a batch without its CRC on an unkeyed connection");
    // And a CRC where a keyed connection carries none is refused too.
    let mut inb = InBuf::new(256, MAX_BATCH_LEN);
    inb.set_batch_crc(false);
    let bytes = forged(&rec, 1);
    inb.fill(&mut &bytes[..]).unwrap();
    assert!(inb.next_frame().is_err(), "a CRC on a keyed connection");
    let mut inb = InBuf::new(256, MAX_BATCH_LEN);
    inb.set_batch_crc(false);
    inb.fill(&mut &b[..]).unwrap();
    assert!(inb.next_frame().unwrap().is_some(), "no CRC on a keyed connection is the rule");
}
