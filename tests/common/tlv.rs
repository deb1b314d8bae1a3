//! The test application's TLVs: every payload starts with a unique id and a mark, so that any
//! copy of it (a decode, a frame a raw peer reads) names the TLV it came from. Two kinds:
//! a tag (id, mark, pattern bytes) and a database operation (id, its own mark, key, value,
//! pattern bytes; value 0 deletes the key).

#![allow(dead_code)]

use junos_sync::Tlv;

/// After a tag's id: application bytes are recognisable at a glance (in a sniffed stream).
pub const MARK: &[u8; 8] = b"SECRET!!";
/// After a database operation's id.
pub const OP_MARK: &[u8; 8] = b"SECRET!=";
/// What both marks start with.
const MARK_STEM: &[u8] = b"SECRET!";
/// Shortest tag: id and mark.
pub const MIN_LEN: usize = 16;
/// Shortest operation: id, mark, key, value.
pub const OP_LEN: usize = 24;

pub struct Tag {
    pub id: u64,
    pub data: Vec<u8>,
}

impl Tlv for Tag {
    fn tlv_type(&self) -> u32 {
        7
    }
    fn payload(&self) -> &[u8] {
        &self.data
    }
}

fn pattern(id: u64, i: usize) -> u8 {
    (id.wrapping_mul(31).wrapping_add(i as u64 * 7) % 251) as u8
}

fn padded(mut d: Vec<u8>, id: u64, len: usize) -> Vec<u8> {
    let at = d.len();
    d.extend((at..len.max(at)).map(|i| pattern(id, i)));
    d
}

/// The payload of tag `id`: the id, the mark, then pattern bytes up to `len` (at least 16).
pub fn payload(id: u64, len: usize) -> Vec<u8> {
    let mut d = Vec::with_capacity(len.max(MIN_LEN));
    d.extend_from_slice(&id.to_le_bytes());
    d.extend_from_slice(MARK);
    padded(d, id, len)
}

/// The payload of operation `id`, setting `key` to `value` (0: deleting it), `len` bytes (at
/// least 24).
pub fn op_payload(id: u64, key: u32, value: u32, len: usize) -> Vec<u8> {
    let mut d = Vec::with_capacity(len.max(OP_LEN));
    d.extend_from_slice(&id.to_le_bytes());
    d.extend_from_slice(OP_MARK);
    d.extend_from_slice(&key.to_be_bytes());
    d.extend_from_slice(&value.to_be_bytes());
    padded(d, id, len)
}

/// What an intact payload of ours is: its id, and the operation if it is one.
pub fn parse(p: &[u8]) -> Option<(u64, Option<(u32, u32)>)> {
    if p.len() < MIN_LEN {
        return None;
    }
    let id = u64::from_le_bytes(p[..8].try_into().unwrap());
    let (op, body) = match &p[8..16] {
        m if m == MARK => (None, MIN_LEN),
        m if m == OP_MARK && p.len() >= OP_LEN => {
            let word = |at: usize| u32::from_be_bytes(p[at..at + 4].try_into().unwrap());
            (Some((word(16), word(20))), OP_LEN)
        }
        _ => return None,
    };
    p.iter().enumerate().skip(body).all(|(i, &b)| b == pattern(id, i)).then_some((id, op))
}

/// The id an intact payload of ours names.
pub fn id_of(p: &[u8]) -> Option<u64> {
    parse(p).map(|(id, _)| id)
}

/// Whether `hay` contains application bytes: the mark of any payload.
pub fn leaks_payload(hay: &[u8]) -> bool {
    hay.windows(MARK_STEM.len()).any(|w| w == MARK_STEM)
}
