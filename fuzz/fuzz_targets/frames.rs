//! The frame decoder over arbitrary bytes, fed in arbitrary chunks: it must never panic, never
//! grow its buffer past what a checked length allows, and either decode frames whose CRCs hold
//! or report an error. A BATCH frame's records are then checked as a backup checks them before
//! applying any (with and without the batch CRC, as on an unkeyed and a keyed connection), and
//! walked when they pass: every record within the payload, the walk ending at its end.
#![no_main]

use junos_sync::proto::inbuf::InBuf;
use junos_sync::proto::wire::{check_batch, records, FrameKind};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&split, bytes)) = data.split_first() else { return };
    let chunk = 1 + split as usize;
    // Both limits the library uses: a handshake-stage connection and a backup's; a keyed
    // backup's connection carries no batch CRC.
    for (max, batch_crc) in [(256u32, true), ((16 << 20) + 8, true), ((16 << 20) + 8, false)] {
        let mut inb = InBuf::new(512, max);
        inb.set_batch_crc(batch_crc);
        let mut rest = bytes;
        'feed: while !rest.is_empty() {
            let n = chunk.min(rest.len());
            let mut c = &rest[..n];
            rest = &rest[n..];
            while !c.is_empty() {
                inb.fill(&mut c).expect("reading from a slice cannot fail");
            }
            loop {
                match inb.next_frame() {
                    Ok(Some(f)) => {
                        let p = inb.payload(&f);
                        assert!(p.len() as u32 <= max);
                        if f.header.kind == FrameKind::Batch && check_batch(p, f.header.aux).is_ok() {
                            let mut n = 0u32;
                            let mut end = 0;
                            for (_, r) in records(p) {
                                assert!(r.start >= end && r.end <= p.len() && r.start % 8 == 0);
                                end = r.end;
                                n += 1;
                            }
                            assert_eq!(n, f.header.aux);
                        }
                    }
                    Ok(None) => break,
                    Err(_) => break 'feed,
                }
            }
        }
    }
});
