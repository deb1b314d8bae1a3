//! The frame decoder over arbitrary bytes, fed in arbitrary chunks: it must never panic, never
//! grow its buffer past what a checked length allows, and either decode frames whose CRCs hold
//! or report an error.
#![no_main]

use junos_sync::proto::inbuf::InBuf;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&split, bytes)) = data.split_first() else { return };
    let chunk = 1 + split as usize;
    // Both limits the library uses: a handshake-stage connection and a backup's.
    for max in [256u32, 16 << 20] {
        let mut inb = InBuf::new(512, max);
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
                    Ok(Some(f)) => assert!(inb.payload(&f).len() as u32 <= max),
                    Ok(None) => break,
                    Err(_) => break 'feed,
                }
            }
        }
    }
});
