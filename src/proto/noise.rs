//! The keyed handshake: `Noise_NNpsk0_25519_AESGCM_SHA256` (the Noise Protocol Framework,
//! revision 34) through the `snow` crate. Nothing here is a construction of our own: the PSK is
//! derived from the configured key with HKDF-SHA256 (RFC 5869), and everything else is the
//! Noise pattern as specified.
//!
//! ```text
//! backup (initiator)                         master (responder)
//!   KEY_INIT  -> psk, e   (payload: empty, AEAD-tagged under a key mixed from the PSK)
//!   KEY_REPLY <- e, ee    (payload: empty, AEAD-tagged under PSK + ee)
//! ```
//! The first message proves nothing fresh (it can be replayed), so a master sends no
//! application byte until the backup's first transport message (its HELLO) decrypts: that
//! needs the PSK and the backup's ephemeral key of this very handshake. The prologue binds
//! the handshake's version and the roles, so a handshake cannot be reflected or moved to
//! another handshake version. (That version is 1 in every release: the stream version is
//! chosen afterwards, in the sealed HELLO and WELCOME.)
//! (The version bound there is the handshake's, 1 in every release: the stream version is
//! chosen later, inside the sealed HELLO and WELCOME.)

use ring::hkdf;
use snow::{HandshakeState, TransportState};
use zeroize::Zeroizing;

use super::handshake::HANDSHAKE_VERSION;

/// The Noise protocol name; both sides must use exactly this.
pub const PATTERN: &str = "Noise_NNpsk0_25519_AESGCM_SHA256";
/// Shortest key accepted.
pub const MIN_KEY_LEN: usize = 16;
/// Longest key accepted (a key file is read whole; more than this is not a key).
pub const MAX_KEY_LEN: usize = 4096;
/// Bytes of a handshake message (an ephemeral public key and an AEAD tag), either direction.
pub const MESSAGE_LEN: usize = 48;
/// Largest Noise message (transport record ciphertext).
pub const MAX_MESSAGE_LEN: usize = 65535;
/// Bytes an AEAD tag adds to each transport message.
pub const TAG_LEN: usize = 16;

const HKDF_SALT: &[u8] = b"junos-sync psk v1";

/// Binds version and direction into the handshake hash.
fn prologue() -> Vec<u8> {
    let mut p = b"junos-sync keyed handshake: backup initiates, master responds; version ".to_vec();
    p.extend_from_slice(&HANDSHAKE_VERSION.to_le_bytes());
    p
}

/// The 32-byte Noise PSK for a key, wiped when dropped.
pub struct Psk(Zeroizing<[u8; 32]>);

impl Psk {
    /// Derives the PSK from `key`, which the caller has checked is 16..=4096 bytes.
    pub fn derive(key: &[u8]) -> Psk {
        struct Len32;
        impl hkdf::KeyType for Len32 {
            fn len(&self) -> usize {
                32
            }
        }
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, HKDF_SALT).extract(key);
        let mut out = Zeroizing::new([0u8; 32]);
        prk.expand(&[b"noise psk"], Len32)
            .and_then(|okm| okm.fill(&mut out[..]))
            .expect("32 bytes is a valid HKDF-SHA256 length");
        Psk(out)
    }
}

fn builder(psk: &Psk) -> snow::Builder<'_> {
    let params = PATTERN.parse().expect("the pattern name is valid");
    snow::Builder::new(params).psk(0, &psk.0).expect("psk slot 0 exists in NNpsk0")
}

/// Why a handshake message was not accepted.
#[derive(Debug, PartialEq, Eq)]
pub struct HandshakeFailed;

impl std::fmt::Display for HandshakeFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the peer's handshake does not authenticate with our key")
    }
}

/// The backup's side: makes KEY_INIT, then takes KEY_REPLY.
pub struct Initiator(HandshakeState);

impl Initiator {
    /// A new handshake with fresh ephemeral keys, and the KEY_INIT payload to send.
    pub fn start(psk: &Psk) -> (Initiator, Vec<u8>) {
        let p = prologue();
        let mut hs = builder(psk)
            .prologue(&p)
            .expect("prologue set once")
            .build_initiator()
            .expect("initiator builds with a psk and an RNG");
        let mut msg = vec![0u8; MESSAGE_LEN];
        let n = hs.write_message(&[], &mut msg).expect("first message fits");
        msg.truncate(n);
        (Initiator(hs), msg)
    }

    /// Takes KEY_REPLY; the master proved it holds the same key.
    pub fn finish(mut self, reply: &[u8]) -> Result<TransportState, HandshakeFailed> {
        let mut scratch = [0u8; MESSAGE_LEN];
        if reply.len() != MESSAGE_LEN {
            return Err(HandshakeFailed);
        }
        self.0.read_message(reply, &mut scratch).map_err(|_| HandshakeFailed)?;
        self.0.into_transport_mode().map_err(|_| HandshakeFailed)
    }
}

/// The master's side: takes KEY_INIT with whichever of its keys opens it, and answers.
/// Returns the KEY_REPLY payload, the transport, and the index of the key that matched.
pub fn respond(keys: &[Psk], init: &[u8]) -> Result<(Vec<u8>, TransportState, usize), HandshakeFailed> {
    if init.len() != MESSAGE_LEN {
        return Err(HandshakeFailed);
    }
    let p = prologue();
    let mut scratch = [0u8; MESSAGE_LEN];
    for (i, psk) in keys.iter().enumerate() {
        let mut hs = builder(psk).prologue(&p).expect("prologue set once").build_responder().expect("responder builds");
        if hs.read_message(init, &mut scratch).is_err() {
            continue;
        }
        let mut reply = vec![0u8; MESSAGE_LEN];
        let n = hs.write_message(&[], &mut reply).map_err(|_| HandshakeFailed)?;
        reply.truncate(n);
        let t = hs.into_transport_mode().map_err(|_| HandshakeFailed)?;
        return Ok((reply, t, i));
    }
    Err(HandshakeFailed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(ki: &[u8], km: &[&[u8]]) -> Result<(TransportState, TransportState, usize), HandshakeFailed> {
        let (i, init) = Initiator::start(&Psk::derive(ki));
        assert_eq!(init.len(), MESSAGE_LEN);
        let keys: Vec<Psk> = km.iter().map(|k| Psk::derive(k)).collect();
        let (reply, m, which) = respond(&keys, &init)?;
        Ok((i.finish(&reply)?, m, which))
    }

    #[test]
    fn same_key_agrees_and_encrypts_both_ways() {
        let (mut b, mut m, which) = pair(&[1; 16], &[&[9; 32], &[1; 16]]).unwrap();
        assert_eq!(which, 1, "the second of the master's keys matched");
        let mut ct = [0u8; 64];
        let mut pt = [0u8; 64];
        let n = b.write_message(b"hello master", &mut ct).unwrap();
        assert!(!ct[..n].windows(6).any(|w| w == b"master"), "plaintext on the wire");
        let k = m.read_message(&ct[..n], &mut pt).unwrap();
        assert_eq!(&pt[..k], b"hello master");
        let n = m.write_message(b"welcome", &mut ct).unwrap();
        let k = b.read_message(&ct[..n], &mut pt).unwrap();
        assert_eq!(&pt[..k], b"welcome");
    }

    #[test]
    fn another_key_fails_on_both_sides() {
        assert_eq!(pair(&[1; 16], &[&[2; 16]]).err(), Some(HandshakeFailed));
        // A master that accepts the backup's key but answers with another cannot fool it.
        let (i, _) = Initiator::start(&Psk::derive(&[1; 16]));
        let (_, other_init) = Initiator::start(&Psk::derive(&[2; 16]));
        let (wrong_reply, _, _) = respond(&[Psk::derive(&[2; 16])], &other_init).unwrap();
        assert_eq!(i.finish(&wrong_reply).err(), Some(HandshakeFailed));
    }

    #[test]
    fn a_replayed_first_message_gives_keys_the_replayer_cannot_use() {
        let psk = [Psk::derive(b"0123456789abcdef")];
        let (_, init) = Initiator::start(&psk[0]);
        let (_, mut m1, _) = respond(&psk, &init).unwrap();
        let (_, mut m2, _) = respond(&psk, &init).unwrap();
        // Fresh responder ephemerals: the two sessions do not share keys.
        let mut ct = [0u8; 64];
        let mut pt = [0u8; 64];
        let n = m1.write_message(b"x", &mut ct).unwrap();
        assert!(m2.read_message(&ct[..n], &mut pt).is_err());
    }

    #[test]
    fn garbage_and_truncation_are_refused() {
        let psk = [Psk::derive(&[5; 20])];
        assert!(respond(&psk, &[0u8; MESSAGE_LEN]).is_err());
        assert!(respond(&psk, &[0u8; 3]).is_err());
        let (i, _) = Initiator::start(&psk[0]);
        assert!(i.finish(&[0u8; MESSAGE_LEN + 1]).is_err());
    }
}
