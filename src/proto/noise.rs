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
/// (Stateless: a master uses `respond_once`, which also refuses replays.)
pub fn respond(keys: &[Psk], init: &[u8]) -> Result<(Vec<u8>, TransportState, usize), HandshakeFailed> {
    let (hs, i) = open_init(keys, init)?;
    let (reply, t) = answer(hs)?;
    Ok((reply, t, i))
}

/// Why a master did not answer a KEY_INIT.
#[derive(Debug, PartialEq, Eq)]
pub enum InitRefused {
    /// Its ephemeral key authenticated before, within the window: a recorded message replayed.
    /// Refused before any Diffie-Hellman and without a reply.
    Replayed,
    /// It does not authenticate with any of our keys (no Diffie-Hellman either: reading the
    /// first message of NNpsk0 is hashing and one AEAD tag check).
    Unauthenticated,
}

impl std::fmt::Display for InitRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Replayed => f.write_str("a replayed key handshake (its ephemeral key was seen before)"),
            Self::Unauthenticated => HandshakeFailed.fmt(f),
        }
    }
}

/// `respond`, for a master that remembers: a KEY_INIT whose ephemeral key is in `window` is
/// refused before it costs anything but a lookup; one that authenticates is remembered before
/// the reply is made (the reply is where the Diffie-Hellman work is: a fresh ephemeral key
/// and `ee`). Only authenticated ephemerals enter the window, so garbage cannot push the
/// recorded ones out of it.
pub fn respond_once(
    keys: &[Psk],
    init: &[u8],
    window: &mut ReplayWindow,
) -> Result<(Vec<u8>, TransportState, usize), InitRefused> {
    let e = ephemeral_of(init).ok_or(InitRefused::Unauthenticated)?;
    if window.contains(e) {
        return Err(InitRefused::Replayed);
    }
    let (hs, i) = open_init(keys, init).map_err(|_| InitRefused::Unauthenticated)?;
    window.insert(e);
    let (reply, t) = answer(hs).map_err(|_| InitRefused::Unauthenticated)?;
    Ok((reply, t, i))
}

/// The fingerprint of a KEY_INIT's ephemeral public key (its first bytes, in the clear at the
/// message's start), if the message has the size of one.
fn ephemeral_of(init: &[u8]) -> Option<u64> {
    (init.len() == MESSAGE_LEN).then(|| u64::from_le_bytes(init[..8].try_into().expect("8 bytes")))
}

/// Reads KEY_INIT with each key in turn: the handshake state of the first that opens its tag.
fn open_init(keys: &[Psk], init: &[u8]) -> Result<(HandshakeState, usize), HandshakeFailed> {
    if init.len() != MESSAGE_LEN {
        return Err(HandshakeFailed);
    }
    let p = prologue();
    let mut scratch = [0u8; MESSAGE_LEN];
    for (i, psk) in keys.iter().enumerate() {
        let mut hs = builder(psk).prologue(&p).expect("prologue set once").build_responder().expect("responder builds");
        if hs.read_message(init, &mut scratch).is_ok() {
            return Ok((hs, i));
        }
    }
    Err(HandshakeFailed)
}

/// Writes KEY_REPLY (a fresh ephemeral key, the `ee` Diffie-Hellman) and ends the handshake.
fn answer(mut hs: HandshakeState) -> Result<(Vec<u8>, TransportState), HandshakeFailed> {
    let mut reply = vec![0u8; MESSAGE_LEN];
    let n = hs.write_message(&[], &mut reply).map_err(|_| HandshakeFailed)?;
    reply.truncate(n);
    let t = hs.into_transport_mode().map_err(|_| HandshakeFailed)?;
    Ok((reply, t))
}

/// Ephemeral keys remembered against replays: the most recent `REPLAY_WINDOW`.
pub const REPLAY_WINDOW: usize = 1 << 16;

/// The ephemeral keys (64-bit fingerprints) of the last `cap` KEY_INITs that authenticated, in
/// a ring: memory is bounded (16 bytes or so per entry, about 1.5 MiB once full, which takes
/// that many real handshakes), and a recorded message stays refused until that many newer
/// real handshakes came after it. A fingerprint collision between two real ephemerals (odds of
/// 2^-33 over a full window) costs that backup one retry with a fresh key.
pub struct ReplayWindow {
    set: std::collections::HashSet<u64>,
    ring: std::collections::VecDeque<u64>,
    cap: usize,
}

impl Default for ReplayWindow {
    fn default() -> Self {
        ReplayWindow::new(REPLAY_WINDOW)
    }
}

impl ReplayWindow {
    /// A window of `cap` (at least 1) ephemerals; grows as they come, up to that.
    pub fn new(cap: usize) -> Self {
        ReplayWindow { set: Default::default(), ring: Default::default(), cap: cap.max(1) }
    }

    /// Ephemerals remembered now.
    pub fn len(&self) -> usize {
        self.ring.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ring.is_empty()
    }

    fn contains(&self, e: u64) -> bool {
        self.set.contains(&e)
    }

    fn insert(&mut self, e: u64) {
        if !self.set.insert(e) {
            return;
        }
        if self.ring.len() == self.cap {
            if let Some(old) = self.ring.pop_front() {
                self.set.remove(&old);
            }
        }
        self.ring.push_back(e);
    }
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
    fn a_replay_within_the_window_is_refused_and_garbage_never_enters_it() {
        let psk = [Psk::derive(b"0123456789abcdef")];
        let mut w = ReplayWindow::new(3);
        let inits: Vec<Vec<u8>> = (0..4).map(|_| Initiator::start(&psk[0]).1).collect();
        assert!(respond_once(&psk, &inits[0], &mut w).is_ok());
        assert_eq!(respond_once(&psk, &inits[0], &mut w).err(), Some(InitRefused::Replayed));
        // Garbage, and a message under another key, are refused and not remembered.
        for _ in 0..10 {
            let (_, other) = Initiator::start(&Psk::derive(&[3; 16]));
            assert_eq!(respond_once(&psk, &other, &mut w).err(), Some(InitRefused::Unauthenticated));
            assert_eq!(respond_once(&psk, &[9; 5], &mut w).err(), Some(InitRefused::Unauthenticated));
        }
        assert_eq!(w.len(), 1, "only what authenticated is remembered");
        // Altered in its ephemeral key's fingerprint, a replay is no longer one but does not
        // authenticate; altered elsewhere, it is still refused as one.
        let mut bent = inits[0].clone();
        bent[3] ^= 1;
        assert_eq!(respond_once(&psk, &bent, &mut w).err(), Some(InitRefused::Unauthenticated));
        bent[3] ^= 1;
        bent[20] ^= 1;
        assert_eq!(respond_once(&psk, &bent, &mut w).err(), Some(InitRefused::Replayed));
        for i in &inits[1..] {
            assert!(respond_once(&psk, i, &mut w).is_ok());
        }
        assert_eq!(w.len(), 3, "bounded");
        assert!(respond_once(&psk, &inits[0], &mut w).is_ok(), "out of the window after 3 newer ones");
        assert_eq!(respond_once(&psk, &inits[3], &mut w).err(), Some(InitRefused::Replayed));
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
