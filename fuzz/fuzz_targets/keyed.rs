//! The keyed handshake and the sealed record layer over arbitrary bytes. The first byte picks
//! what the rest feeds:
//!
//! - the master's side of the handshake, `noise::respond` with a fixed list of keys, taking a
//!   KEY_INIT;
//! - the backup's side, `Initiator::finish`, taking a KEY_REPLY;
//! - the master's replay window, `noise::respond_once`: a real KEY_INIT, then the input's
//!   48-byte chunks, each followed by the real one again: nothing the input holds
//!   authenticates or enters the window, and the real message stays refused as a replay;
//! - an `Opener` reading arbitrary ciphertext, in chunks of a chosen size, with a transport from
//!   a real handshake;
//! - real records sealed by a `Sealer` from the input's plaintext, then bits of them flipped
//!   where the input says: what opens is always a prefix of what was sealed, and all of it only
//!   if no bit changed.
//!
//! Nothing may panic; nothing forged may open.
#![no_main]

use std::io::{self, Read, Write};
use std::sync::OnceLock;

use junos_sync::proto::noise::{respond, respond_once, InitRefused, Initiator, Psk, ReplayWindow, MESSAGE_LEN};
use junos_sync::proto::seal::{Opener, Sealer};
use libfuzzer_sys::fuzz_target;

fn keys() -> &'static [Psk] {
    static KEYS: OnceLock<Vec<Psk>> = OnceLock::new();
    KEYS.get_or_init(|| vec![Psk::derive(b"fuzz: the first key of the list"), Psk::derive(&[7; 16])])
}

/// Both ends of a real handshake with the first key: (backup's transport, master's). (Macros
/// rather than functions: the transport's type is snow's, which this crate does not name.)
macro_rules! transports {
    () => {{
        let (i, init) = Initiator::start(&keys()[0]);
        let (reply, m, which) = respond(keys(), &init).expect("a real KEY_INIT authenticates");
        assert_eq!(which, 0);
        (i.finish(&reply).expect("a real KEY_REPLY authenticates"), m)
    }};
}

/// Everything `wire` opens to with transport `noise`, fed `step` bytes at a time, or the error
/// that stopped it.
macro_rules! open_all {
    ($noise:expr, $wire:expr, $step:expr) => {{
        let mut o = Opener::default();
        let mut src: &[u8] = $wire;
        let mut got = Vec::new();
        loop {
            if o.plain_ready() {
                if let Err(e) = o.read_to_end(&mut got) {
                    break Err::<Vec<u8>, io::Error>(e);
                }
                continue;
            }
            let mut chunk = &src[..src.len().min($step)];
            let before = chunk.len();
            match o.read_from($noise, &mut chunk) {
                Ok(0) => break Ok(got),
                Ok(_) => src = &src[before - chunk.len()..],
                Err(e) => break Err(e),
            }
        }
    }};
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    match mode % 5 {
        0 => {
            if let Ok((reply, _, which)) = respond(keys(), rest) {
                // Only a message made with one of the keys can get here.
                assert!(which < keys().len());
                assert_eq!(reply.len(), MESSAGE_LEN);
            }
        }
        1 => {
            let (i, _) = Initiator::start(&keys()[usize::from(mode >> 7)]);
            // A reply made for another handshake (another ephemeral key) cannot finish this one.
            assert!(i.finish(rest).is_err(), "a KEY_REPLY from the fuzzer authenticated");
        }
        2 => {
            let (mut backup, _master) = transports!();
            let step = 1 + usize::from(mode >> 2) * 97;
            // Arbitrary ciphertext opens to nothing: any record in it would be a forgery.
            if let Ok(plain) = open_all!(&mut backup, rest, step) {
                assert!(plain.is_empty(), "{} forged plaintext bytes opened", plain.len());
            }
        }
        4 => {
            let mut w = ReplayWindow::new(1 + usize::from(mode >> 4));
            let (_, real) = Initiator::start(&keys()[0]);
            assert!(respond_once(keys(), &real, &mut w).is_ok(), "a real KEY_INIT was refused");
            for chunk in rest.chunks(MESSAGE_LEN) {
                assert!(respond_once(keys(), chunk, &mut w).is_err(), "a KEY_INIT from the fuzzer authenticated");
                assert_eq!(respond_once(keys(), &real, &mut w).err(), Some(InitRefused::Replayed));
            }
            assert_eq!(w.len(), 1, "something the fuzzer made entered the window");
        }
        _ => {
            let (mut backup, mut master) = transports!();
            let half = rest.len() / 2;
            let (plain, flips) = rest.split_at(half);
            // Several records: the plaintext is repeated past a record's size sometimes.
            let plain: Vec<u8> =
                if mode & 0x80 != 0 { plain.repeat(1 + (40_000 / (plain.len() + 1))) } else { plain.to_vec() };
            let mut s = Sealer::default();
            let mut wire = Vec::new();
            let mut fed = 0;
            while fed < plain.len() || s.busy() {
                if fed < plain.len() {
                    fed += s.staging().write(&plain[fed..]).unwrap_or(0);
                }
                assert!(s.flush(&mut master, &mut wire).is_ok());
            }
            let sealed = wire.clone();
            for f in flips.chunks_exact(3) {
                if !wire.is_empty() {
                    let at = usize::from(u16::from_le_bytes([f[0], f[1]])) % wire.len();
                    wire[at] ^= f[2];
                }
            }
            let step = 1 + usize::from(mode >> 2) * 509;
            match open_all!(&mut backup, &wire, step) {
                Ok(got) => {
                    assert!(plain.starts_with(&got), "opened bytes that were never sealed");
                    if wire == sealed {
                        assert_eq!(got, plain, "untouched records did not all open");
                    } else {
                        assert!(got.len() < plain.len() || plain.is_empty(), "altered records opened");
                    }
                }
                Err(e) => assert!(wire != sealed, "untouched records failed to open: {e}"),
            }
        }
    }
});
