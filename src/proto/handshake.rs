//! The HELLO / WELCOME payload: who is talking, which protocol, and where the session resumes.
//!
//! ```text
//! 0..4   magic          "JSYN"
//! 4..6   version        PROTOCOL_VERSION
//! 6      role           0 = backup, 1 = master
//! 7      flags          bit 0: sender has no_resync; bit 1 (WELCOME): session resumes
//! 8..12  keepalive_ms   sender's keepalive_time; both sides use the smaller one
//! 12..14 max_version    HELLO: the highest stream version the backup speaks (0 from release
//!                       1.1 and older: version 1); WELCOME: 0
//! 14..16 reserved       0
//! 16..24 session        sender's session id (random per context and role)
//! 24..32 peer_session   HELLO: master session last synced with (0: none); WELCOME: echo
//! 32..40 seq            HELLO: last applied sequence; WELCOME: data continues after this one
//! ```

use super::wire::MAX_CONTROL_LEN;

pub const MAGIC: [u8; 4] = *b"JSYN";
/// The `version` every HELLO carries, whatever the backup speaks: every release's master
/// accepts it and reads `max_version` (release 1.1 and older ignore it and answer version 1).
pub const HANDSHAKE_VERSION: u16 = 1;
/// The highest stream version this build speaks: 2, batch frames. A WELCOME's `version` is the
/// one the session uses: the highest both sides speak.
pub const PROTOCOL_VERSION: u16 = 2;
pub const HELLO_LEN: usize = 40;
const _: () = assert!(HELLO_LEN as u32 <= MAX_CONTROL_LEN);

pub const FLAG_NO_RESYNC: u8 = 1;
pub const FLAG_RESUME: u8 = 2;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Backup = 0,
    Master = 1,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hello {
    pub version: u16,
    pub role: Role,
    pub flags: u8,
    pub keepalive_ms: u32,
    /// HELLO: the highest stream version the sender speaks (0: version 1).
    pub max_version: u16,
    pub session: u64,
    pub peer_session: u64,
    pub seq: u64,
}

/// Why a handshake payload is unusable: malformed (`Length`, `Magic`, `Role`) or well formed
/// but not from a peer we can talk to (`Version`, `SameRole`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HelloError {
    Length(usize),
    Magic,
    Role(u8),
    Version(u16),
    SameRole(Role),
}

impl HelloError {
    /// Whether the bytes were malformed, as opposed to a well-formed refusal.
    pub fn is_malformed(&self) -> bool {
        matches!(self, Self::Length(_) | Self::Magic | Self::Role(_))
    }
}

impl std::fmt::Display for HelloError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Length(n) => write!(f, "handshake of {n} bytes, expected {HELLO_LEN}"),
            Self::Magic => write!(f, "handshake magic is not JSYN: not a junos-sync peer"),
            Self::Role(r) => write!(f, "handshake names unknown role {r}"),
            Self::Version(v) => write!(f, "protocol version {v} is not one of ours (1 to {PROTOCOL_VERSION})"),
            Self::SameRole(Role::Master) => write!(f, "peer is a master too: two masters"),
            Self::SameRole(Role::Backup) => write!(f, "peer is a backup too: two backups"),
        }
    }
}

impl Hello {
    pub fn encode(&self) -> [u8; HELLO_LEN] {
        let mut b = [0u8; HELLO_LEN];
        b[0..4].copy_from_slice(&MAGIC);
        b[4..6].copy_from_slice(&self.version.to_le_bytes());
        b[6] = self.role as u8;
        b[7] = self.flags;
        b[8..12].copy_from_slice(&self.keepalive_ms.to_le_bytes());
        b[12..14].copy_from_slice(&self.max_version.to_le_bytes());
        b[16..24].copy_from_slice(&self.session.to_le_bytes());
        b[24..32].copy_from_slice(&self.peer_session.to_le_bytes());
        b[32..40].copy_from_slice(&self.seq.to_le_bytes());
        b
    }

    /// Master: whether the backup that sent this HELLO can talk to us (the handshake's version,
    /// a backup).
    pub fn check_hello(&self) -> Result<(), HelloError> {
        self.check(self.version == HANDSHAKE_VERSION, Role::Backup)
    }

    /// Backup: whether this WELCOME comes from a master and chose a stream version we offered
    /// (`offered`: our HELLO's `max_version`).
    pub fn check_welcome(&self, offered: u16) -> Result<(), HelloError> {
        self.check((1..=offered.max(1)).contains(&self.version), Role::Master)
    }

    fn check(&self, version_ok: bool, peer_role: Role) -> Result<(), HelloError> {
        if !version_ok {
            return Err(HelloError::Version(self.version));
        }
        if self.role != peer_role {
            return Err(HelloError::SameRole(self.role));
        }
        Ok(())
    }

    /// Master: the stream version a session with the backup that sent this HELLO uses.
    pub fn negotiate(&self) -> u16 {
        self.max_version.clamp(1, PROTOCOL_VERSION)
    }

    /// Parses a handshake. The version is returned, not checked (see `check`), so that the
    /// caller can name both versions in its refusal.
    pub fn decode(b: &[u8]) -> Result<Self, HelloError> {
        if b.len() != HELLO_LEN {
            return Err(HelloError::Length(b.len()));
        }
        if b[0..4] != MAGIC {
            return Err(HelloError::Magic);
        }
        let role = match b[6] {
            0 => Role::Backup,
            1 => Role::Master,
            r => return Err(HelloError::Role(r)),
        };
        let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        Ok(Hello {
            version: u16::from_le_bytes([b[4], b[5]]),
            role,
            flags: b[7],
            keepalive_ms: u32::from_le_bytes(b[8..12].try_into().expect("4 bytes")),
            max_version: u16::from_le_bytes([b[12], b[13]]),
            session: u64_at(16),
            peer_session: u64_at(24),
            seq: u64_at(32),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let h = Hello {
            version: PROTOCOL_VERSION,
            role: Role::Master,
            flags: FLAG_RESUME,
            keepalive_ms: 3000,
            max_version: 2,
            session: u64::MAX - 1,
            peer_session: 77,
            seq: 1 << 40,
        };
        assert_eq!(Hello::decode(&h.encode()), Ok(h));
    }

    fn backup_hello() -> Hello {
        Hello {
            version: 1,
            role: Role::Backup,
            flags: 0,
            keepalive_ms: 1,
            max_version: 0,
            session: 1,
            peer_session: 0,
            seq: 0,
        }
    }

    #[test]
    fn rejects_garbage() {
        let h = backup_hello();
        let mut b = h.encode();
        assert_eq!(Hello::decode(&b[..39]), Err(HelloError::Length(39)));
        b[6] = 2;
        assert_eq!(Hello::decode(&b), Err(HelloError::Role(2)));
        b[0] = b'X';
        assert_eq!(Hello::decode(&b), Err(HelloError::Magic));
    }

    #[test]
    fn check_wants_our_version_and_the_other_role() {
        let h = backup_hello();
        assert_eq!(h.check_hello(), Ok(()));
        assert_eq!(h.check_welcome(2), Err(HelloError::SameRole(Role::Backup)));
        let v2 = Hello { version: 2, ..h };
        assert_eq!(v2.check_hello(), Err(HelloError::Version(2)), "a HELLO is always version 1");
        assert!(!HelloError::Version(2).is_malformed() && HelloError::Magic.is_malformed());
    }

    #[test]
    fn the_session_speaks_the_highest_version_both_sides_do() {
        let old = backup_hello();
        let new = Hello { max_version: PROTOCOL_VERSION, ..old };
        assert_eq!(old.negotiate(), 1, "release 1.1 sends 0 there");
        assert_eq!(new.negotiate(), 2);
        assert_eq!(Hello { max_version: 9, ..old }.negotiate(), PROTOCOL_VERSION, "a later backup");
        let welcome = |version| Hello { version, role: Role::Master, ..old };
        assert_eq!(welcome(2).check_welcome(2), Ok(()));
        assert_eq!(welcome(1).check_welcome(2), Ok(()), "a 1.1 master answers version 1");
        assert_eq!(welcome(2).check_welcome(1), Err(HelloError::Version(2)), "not what we offered");
        assert_eq!(welcome(0).check_welcome(2), Err(HelloError::Version(0)));
        assert_eq!(Hello::decode(&new.encode()), Ok(new));
    }
}
