//! Frame layout on the wire. Pure functions over bytes; every field is little-endian.
//!
//! ```text
//! 0..4   len    payload bytes that follow the header (padding excluded)
//! 4      kind   FrameKind
//! 5..8   rsvd   reserved, 0
//! 8..12  aux    DATA: the TLV's tlv_type; REFUSE: the reason code; otherwise 0
//! 12..16 pcrc   CRC32C of the payload
//! 16..24 seq    sequence number (DATA, SYNC_BEGIN, SYNC_END, ACK), else 0
//! 24..28 rsvd   reserved, 0
//! 28..32 hcrc   CRC32C of bytes 0..28
//! ```
//! The header has its own CRC so that a corrupted length is caught before the receiver waits
//! for (or allocates) a payload that will never come. The payload is followed by zero padding
//! up to a multiple of 8 bytes, so that a payload read into an 8-aligned buffer stays 8-aligned
//! for the application's record casts.

/// Bytes in a frame header.
pub const HEADER_LEN: usize = 32;
/// Largest DATA payload (the TLV's `tlv_len`; the C API's `JUNOS_SYNC_MAX_TLV_LEN`).
pub const MAX_DATA_LEN: u32 = 16 * 1024 * 1024;
/// Largest payload of any non-DATA frame.
pub const MAX_CONTROL_LEN: u32 = 256;
/// REFUSE's `aux`: why the sender refuses. Authentication (key mismatch, keyed against
/// unkeyed) is told apart so that the peer can count it and try its next key.
pub const REFUSE_OTHER: u32 = 0;
pub const REFUSE_AUTH: u32 = 1;

/// What a frame is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameKind {
    /// Backup to master: first frame of a connection (handshake).
    Hello = 1,
    /// Master to backup: handshake accepted, and how the session continues.
    Welcome = 2,
    /// Either way: handshake refused; payload is a UTF-8 reason. The sender then closes.
    Refuse = 3,
    /// Master to backup: one TLV payload.
    Data = 4,
    /// Backup to master: every sequence number up to `seq` has been applied.
    Ack = 5,
    /// Either way: nothing else to say; proves the sender is alive.
    Keepalive = 6,
    /// Master to backup: a full resync starts; clear the database.
    SyncBegin = 7,
    /// Master to backup: the resync walk ended; payload is the entry count (u64).
    SyncEnd = 8,
    /// Backup to master, keyed contexts only: first Noise handshake message.
    KeyInit = 9,
    /// Master to backup, keyed contexts only: second Noise handshake message.
    KeyReply = 10,
}

impl FrameKind {
    fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => Self::Hello,
            2 => Self::Welcome,
            3 => Self::Refuse,
            4 => Self::Data,
            5 => Self::Ack,
            6 => Self::Keepalive,
            7 => Self::SyncBegin,
            8 => Self::SyncEnd,
            9 => Self::KeyInit,
            10 => Self::KeyReply,
            _ => return None,
        })
    }

    /// Whether frames of this kind carry a sequence number of the replicated stream.
    pub fn is_sequenced(self) -> bool {
        matches!(self, Self::Data | Self::SyncBegin | Self::SyncEnd)
    }

    fn max_len(self) -> u32 {
        match self {
            Self::Data => MAX_DATA_LEN,
            Self::Keepalive | Self::SyncBegin | Self::Ack => 0,
            _ => MAX_CONTROL_LEN,
        }
    }
}

/// A decoded, validated frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub kind: FrameKind,
    pub len: u32,
    pub aux: u32,
    pub seq: u64,
    pub payload_crc: u32,
}

/// Why bytes are not a valid frame. Every variant ends the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameError {
    UnknownKind(u8),
    ReservedBitsSet,
    TooLong { kind: FrameKind, len: u32 },
    BadHeaderCrc,
    BadCrc { expected: u32, got: u32 },
    NonZeroPadding,
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::UnknownKind(k) => write!(f, "unknown frame kind {k}"),
            Self::ReservedBitsSet => write!(f, "reserved header bits set"),
            Self::TooLong { kind, len } => {
                write!(f, "{kind:?} frame of {len} bytes is over the limit")
            }
            Self::BadHeaderCrc => write!(f, "header CRC32C mismatch"),
            Self::NonZeroPadding => write!(f, "padding after the payload is not zero"),
            Self::BadCrc { expected, got } => {
                write!(f, "CRC32C mismatch (frame says {expected:#010x}, computed {got:#010x})")
            }
        }
    }
}

/// Total bytes a frame with `len` payload bytes occupies on the wire.
pub fn frame_size(len: u32) -> usize {
    HEADER_LEN + padded(len as usize)
}

/// `n` rounded up to a multiple of 8.
pub fn padded(n: usize) -> usize {
    (n + 7) & !7
}

/// Builds a header for `payload`, computing both CRCs.
pub fn encode_header(kind: FrameKind, aux: u32, seq: u64, payload: &[u8]) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[0..4].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    h[4] = kind as u8;
    h[8..12].copy_from_slice(&aux.to_le_bytes());
    h[12..16].copy_from_slice(&crc32(payload).to_le_bytes());
    h[16..24].copy_from_slice(&seq.to_le_bytes());
    let hcrc = crc32(&h[0..28]);
    h[28..32].copy_from_slice(&hcrc.to_le_bytes());
    h
}

fn crc32(data: &[u8]) -> u32 {
    crate::sys::crc32c_append(0, data)
}

/// Recomputes a header's own CRC after its fields were changed by hand: how tests and fuzzers
/// forge headers that get past the CRC to the checks behind it.
pub fn seal_header(b: &mut [u8]) {
    let c = crc32(&b[0..28]);
    b[28..32].copy_from_slice(&c.to_le_bytes());
}

fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

/// Parses a header without trusting anything in it: its CRC first, then the length against
/// the kind's limit, all before anyone allocates or waits for that many bytes.
pub fn decode_header(b: &[u8; HEADER_LEN]) -> Result<Header, FrameError> {
    if crc32(&b[0..28]) != u32_at(b, 28) {
        return Err(FrameError::BadHeaderCrc);
    }
    let len = u32_at(b, 0);
    let kind = FrameKind::from_u8(b[4]).ok_or(FrameError::UnknownKind(b[4]))?;
    if b[5..8] != [0, 0, 0] || b[24..28] != [0, 0, 0, 0] {
        return Err(FrameError::ReservedBitsSet);
    }
    if len > kind.max_len() {
        return Err(FrameError::TooLong { kind, len });
    }
    let mut s = [0u8; 8];
    s.copy_from_slice(&b[16..24]);
    Ok(Header { kind, len, aux: u32_at(b, 8), seq: u64::from_le_bytes(s), payload_crc: u32_at(b, 12) })
}

/// Checks a frame's payload CRC once the payload is complete.
pub fn verify(h: &Header, payload: &[u8]) -> Result<(), FrameError> {
    let got = crc32(payload);
    if got == h.payload_crc {
        Ok(())
    } else {
        Err(FrameError::BadCrc { expected: h.payload_crc, got })
    }
}

/// Appends a complete frame (header, payload, padding) to `out`.
pub fn push_frame(out: &mut Vec<u8>, kind: FrameKind, aux: u32, seq: u64, payload: &[u8]) {
    out.extend_from_slice(&encode_header(kind, aux, seq, payload));
    out.extend_from_slice(payload);
    out.resize(out.len() + padded(payload.len()) - payload.len(), 0);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hdr(v: &[u8]) -> [u8; HEADER_LEN] {
        v[..HEADER_LEN].try_into().unwrap()
    }

    #[test]
    fn round_trip_and_padding() {
        let mut out = Vec::new();
        push_frame(&mut out, FrameKind::Data, 0xdead_beef, 42, b"hello");
        assert_eq!(out.len(), HEADER_LEN + 8);
        assert_eq!(out.len(), frame_size(5));
        let h = decode_header(&hdr(&out)).unwrap();
        assert_eq!((h.kind, h.len, h.aux, h.seq), (FrameKind::Data, 5, 0xdead_beef, 42));
        verify(&h, &out[HEADER_LEN..HEADER_LEN + 5]).unwrap();
        assert_eq!(&out[HEADER_LEN + 5..], &[0, 0, 0]);
    }

    #[test]
    fn any_flipped_bit_is_caught() {
        let mut out = Vec::new();
        push_frame(&mut out, FrameKind::Data, 7, 9, b"payload!");
        for i in 0..HEADER_LEN + 8 {
            for bit in 0..8 {
                let mut c = out.clone();
                c[i] ^= 1 << bit;
                let caught = match decode_header(&hdr(&c)) {
                    Err(_) => true,
                    Ok(h) => h.len != 8 || verify(&h, &c[HEADER_LEN..HEADER_LEN + 8]).is_err(),
                };
                assert!(caught, "flip of byte {i} bit {bit} went unnoticed");
            }
        }
    }

    #[test]
    fn limits_are_checked_before_payload() {
        // Headers with a valid CRC but a bad field: what a hostile peer can send.
        let forge = |f: &dyn Fn(&mut [u8; HEADER_LEN])| {
            let mut b = encode_header(FrameKind::Hello, 0, 0, b"");
            f(&mut b);
            let c = crc32(&b[0..28]);
            b[28..32].copy_from_slice(&c.to_le_bytes());
            decode_header(&b)
        };
        assert!(matches!(
            forge(&|b| {
                b[4] = FrameKind::Data as u8;
                b[0..4].copy_from_slice(&(MAX_DATA_LEN + 1).to_le_bytes());
            }),
            Err(FrameError::TooLong { .. })
        ));
        let len_field = |b: &mut [u8; HEADER_LEN], len: u32| b[0..4].copy_from_slice(&len.to_le_bytes());
        assert_eq!(
            forge(&|b| len_field(b, MAX_CONTROL_LEN + 1)),
            Err(FrameError::TooLong { kind: FrameKind::Hello, len: MAX_CONTROL_LEN + 1 })
        );
        assert!(forge(&|b| len_field(b, MAX_CONTROL_LEN)).is_ok(), "the limit itself is allowed");
        assert!(matches!(
            forge(&|b| {
                b[4] = FrameKind::Keepalive as u8;
                b[0] = 1;
            }),
            Err(FrameError::TooLong { .. })
        ));
        assert_eq!(forge(&|b| b[4] = 99), Err(FrameError::UnknownKind(99)));
        assert_eq!(forge(&|b| b[6] = 1), Err(FrameError::ReservedBitsSet));
        assert_eq!(forge(&|b| b[25] = 1), Err(FrameError::ReservedBitsSet));
        let mut b = encode_header(FrameKind::Hello, 0, 0, b"");
        b[0] = 9;
        assert_eq!(decode_header(&b), Err(FrameError::BadHeaderCrc));
    }
}
