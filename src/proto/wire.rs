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
//!
//! Protocol version 2 carries the stream in BATCH frames: `aux` is the number of records,
//! `seq` the sequence number of the first (the others follow one by one), `pcrc` the CRC32C of
//! all the records (0 on a keyed connection, whose records the AEAD tag already covers), and
//! the payload is the records one after the other, each
//!
//! ```text
//! 0..4   len    the TLV's payload bytes
//! 4..8   type   the TLV's tlv_type
//! 8..    the payload, then zero padding up to a multiple of 8
//! ```

/// Bytes in a frame header.
pub const HEADER_LEN: usize = 32;
/// Largest DATA payload (the TLV's `tlv_len`; the C API's `JUNOS_SYNC_MAX_TLV_LEN`).
pub const MAX_DATA_LEN: u32 = 16 * 1024 * 1024;
/// Bytes of a record's header in a BATCH frame.
pub const RECORD_HEADER_LEN: usize = 8;
/// Largest BATCH payload: one largest TLV (a batch of small records stays far below it).
pub const MAX_BATCH_LEN: u32 = MAX_DATA_LEN + RECORD_HEADER_LEN as u32;
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
    /// Master to backup, protocol version 2: a run of TLV records (see the module comment).
    Batch = 11,
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
            11 => Self::Batch,
            _ => return None,
        })
    }

    /// Whether frames of this kind carry a sequence number of the replicated stream.
    pub fn is_sequenced(self) -> bool {
        matches!(self, Self::Data | Self::SyncBegin | Self::SyncEnd | Self::Batch)
    }

    fn max_len(self) -> u32 {
        match self {
            Self::Data => MAX_DATA_LEN,
            Self::Batch => MAX_BATCH_LEN,
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
    TooLong {
        kind: FrameKind,
        len: u32,
    },
    BadHeaderCrc,
    BadCrc {
        expected: u32,
        got: u32,
    },
    NonZeroPadding,
    /// A BATCH whose records do not add up: a record running past the frame, a count that
    /// does not match, a CRC where none belongs.
    BadBatch(&'static str),
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
            Self::BadBatch(why) => write!(f, "malformed batch: {why}"),
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
    encode_header_of(kind, aux, seq, payload.len(), crc32(payload))
}

/// Builds a header for a payload of `len` bytes whose CRC32C (or 0, see BATCH) is `pcrc`.
pub fn encode_header_of(kind: FrameKind, aux: u32, seq: u64, len: usize, pcrc: u32) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[0..4].copy_from_slice(&(len as u32).to_le_bytes());
    h[4] = kind as u8;
    h[8..12].copy_from_slice(&aux.to_le_bytes());
    h[12..16].copy_from_slice(&pcrc.to_le_bytes());
    h[16..24].copy_from_slice(&seq.to_le_bytes());
    let hcrc = crc32(&h[0..28]);
    h[28..32].copy_from_slice(&hcrc.to_le_bytes());
    h
}

/// CRC32C of `data`, continuing from `crc` (0 to start).
pub fn crc32_append(crc: u32, data: &[u8]) -> u32 {
    crate::sys::crc32c_append(crc, data)
}

fn crc32(data: &[u8]) -> u32 {
    crc32_append(0, data)
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

/// The header of one record of a BATCH payload.
pub fn record_header(tlv_type: u32, len: usize) -> [u8; RECORD_HEADER_LEN] {
    let mut h = [0u8; RECORD_HEADER_LEN];
    h[0..4].copy_from_slice(&(len as u32).to_le_bytes());
    h[4..8].copy_from_slice(&tlv_type.to_le_bytes());
    h
}

/// Checks a BATCH payload's records before any is applied: `count` records (at least one),
/// each within the payload and within the TLV limit, zero padding after each, nothing left
/// over. Only then does `records` walk them.
pub fn check_batch(payload: &[u8], count: u32) -> Result<(), FrameError> {
    if count == 0 {
        return Err(FrameError::BadBatch("no records"));
    }
    if count as usize > payload.len() / RECORD_HEADER_LEN {
        return Err(FrameError::BadBatch("more records than bytes"));
    }
    let mut at = 0;
    for _ in 0..count {
        let h = payload.get(at..at + RECORD_HEADER_LEN).ok_or(FrameError::BadBatch("record header past the end"))?;
        let len = u32_at(h, 0);
        if len > MAX_DATA_LEN {
            return Err(FrameError::BadBatch("record over the TLV limit"));
        }
        let start = at + RECORD_HEADER_LEN;
        let end = start + padded(len as usize);
        let rec = payload.get(start..end).ok_or(FrameError::BadBatch("record past the end"))?;
        if rec[len as usize..].iter().any(|&b| b != 0) {
            return Err(FrameError::NonZeroPadding);
        }
        at = end;
    }
    if at != payload.len() {
        return Err(FrameError::BadBatch("bytes after the last record"));
    }
    Ok(())
}

/// The record at offset `at` of a BATCH payload that `check_batch` accepted: its tlv_type,
/// its payload's range, and the offset of the next record.
pub fn record_at(payload: &[u8], at: usize) -> (u32, std::ops::Range<usize>, usize) {
    let (len, ty) = (u32_at(payload, at) as usize, u32_at(payload, at + 4));
    let start = at + RECORD_HEADER_LEN;
    (ty, start..start + len, start + padded(len))
}

/// The records of a BATCH payload that `check_batch` accepted: (tlv_type, payload range).
pub fn records(payload: &[u8]) -> impl Iterator<Item = (u32, std::ops::Range<usize>)> + '_ {
    let mut at = 0;
    std::iter::from_fn(move || {
        (at < payload.len()).then(|| {
            let (ty, r, next) = record_at(payload, at);
            at = next;
            (ty, r)
        })
    })
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

    /// A BATCH payload of `payloads` (and its record count).
    pub fn batch_of(payloads: &[&[u8]]) -> Vec<u8> {
        let mut b = Vec::new();
        for (i, p) in payloads.iter().enumerate() {
            b.extend_from_slice(&record_header(i as u32, p.len()));
            b.extend_from_slice(p);
            b.resize(b.len() + padded(p.len()) - p.len(), 0);
        }
        b
    }

    #[test]
    fn batch_records_are_checked_then_walked() {
        let ps: [&[u8]; 4] = [b"abc", b"", b"12345678", &[9u8; 100]];
        let b = batch_of(&ps);
        check_batch(&b, 4).unwrap();
        let got: Vec<_> = records(&b).map(|(ty, r)| (ty, b[r].to_vec())).collect();
        assert_eq!(got, ps.iter().enumerate().map(|(i, p)| (i as u32, p.to_vec())).collect::<Vec<_>>());
        assert_eq!(check_batch(&b, 3), Err(FrameError::BadBatch("bytes after the last record")));
        assert_eq!(check_batch(&b, 5), Err(FrameError::BadBatch("record header past the end")));
        assert_eq!(check_batch(&b, 0), Err(FrameError::BadBatch("no records")));
        assert_eq!(check_batch(&b, 1000), Err(FrameError::BadBatch("more records than bytes")));
        let mut long = b.clone();
        long[0..4].copy_from_slice(&1000u32.to_le_bytes());
        assert_eq!(check_batch(&long, 4), Err(FrameError::BadBatch("record past the end")));
        let mut huge = b.clone();
        huge[0..4].copy_from_slice(&(MAX_DATA_LEN + 1).to_le_bytes());
        assert_eq!(check_batch(&huge, 4), Err(FrameError::BadBatch("record over the TLV limit")));
        let mut pad = b.clone();
        pad[8 + 3] = 1;
        assert_eq!(check_batch(&pad, 4), Err(FrameError::NonZeroPadding));
        // Every truncation and every single-byte change of a length field is caught.
        for cut in 0..b.len() {
            assert!(check_batch(&b[..cut], 4).is_err(), "cut at {cut}");
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
