//! The handshake decoder over arbitrary bytes: never panics; whatever it accepts re-encodes to
//! the same bytes (apart from the reserved field, which it ignores).
#![no_main]

use junos_sync::proto::handshake::Hello;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = Hello::decode(data) {
        let mut again = h.encode();
        again[12..16].copy_from_slice(&data[12..16]);
        assert_eq!(&again[..], data);
    }
});
