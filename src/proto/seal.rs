//! The encrypted byte stream of a keyed connection, after its handshake: the plaintext frame
//! stream cut into Noise transport messages, each sent as a record
//!
//! ```text
//! 0..2  length of the ciphertext, big-endian (17..=65535)
//! 2..   ciphertext: AES-256-GCM of up to RECORD_MAX plaintext bytes, then its 16-byte tag
//! ```
//! (the framing the Noise specification suggests for TCP). Noise numbers the messages of each
//! direction itself, so a record dropped, repeated, reordered or altered fails to decrypt.
//! Memory per direction is two records at most, in buffers allocated once per connection: small
//! ones (`LOBBY_RECORD`) while the peer has not proven the key, `grow`n once it has.

use std::io::{self, Read, Write};

use snow::TransportState;

use super::noise::{MAX_MESSAGE_LEN, TAG_LEN};

/// Most plaintext bytes per record: enough to amortise the AEAD's fixed cost and the system
/// call, small enough to stay in cache.
pub const RECORD_MAX: usize = 32 * 1024;
const LEN_BYTES: usize = 2;
/// Largest record (plaintext) of a connection that has not proven the key yet: its sealed
/// HELLO and our sealed refusal fit; a larger record ends the connection.
pub const LOBBY_RECORD: usize = 512;

/// Why a record could not be opened. The connection ends either way.
#[derive(Debug, PartialEq, Eq)]
pub enum RecordError {
    /// A length field outside 17..=65535.
    Length(usize),
    /// The record does not decrypt: altered, replayed, reordered or from another key.
    Forged,
}

impl std::fmt::Display for RecordError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Length(n) => write!(f, "encrypted record of {n} bytes is malformed"),
            Self::Forged => f.write_str("encrypted record does not authenticate (altered, replayed or forged)"),
        }
    }
}

impl std::error::Error for RecordError {}

impl From<RecordError> for io::Error {
    fn from(e: RecordError) -> Self {
        io::Error::new(io::ErrorKind::InvalidData, e)
    }
}

/// Slack after every buffer handed to the AEAD: its assembly reads whole 16-byte blocks past the
/// end of a partial last block (masking them out), and those bytes must be initialised memory
/// of ours, or memory checkers see the tag depend on undefined bytes.
const SLACK: usize = 64;

/// A fixed, zero-initialised buffer of `n` bytes and the slack.
fn buffer(n: usize) -> Box<[u8]> {
    vec![0u8; n + SLACK].into_boxed_slice()
}

/// Seals outgoing plaintext into records and writes them out.
pub struct Sealer {
    /// Plaintext gathered for the next record (`plain_len` bytes of it).
    plain: Box<[u8]>,
    plain_len: usize,
    /// The record being written (`record_len` bytes), and how much of it is written.
    record: Box<[u8]>,
    record_len: usize,
    written: usize,
    /// Plaintext bytes in `record`.
    record_plain: usize,
    /// Plaintext bytes whose record is wholly written.
    delivered: u64,
    /// Most plaintext bytes per record.
    max: usize,
}

impl Default for Sealer {
    fn default() -> Self {
        Sealer::with_record(RECORD_MAX)
    }
}

impl Sealer {
    /// A sealer of records of at most `max` (at most `RECORD_MAX`) plaintext bytes.
    pub fn with_record(max: usize) -> Self {
        let max = max.clamp(1, RECORD_MAX);
        Sealer {
            plain: buffer(max),
            plain_len: 0,
            record: buffer(LEN_BYTES + max + TAG_LEN),
            record_len: 0,
            written: 0,
            record_plain: 0,
            delivered: 0,
            max,
        }
    }

    /// Buffers for records of `RECORD_MAX` from now on, with what is staged or being written.
    pub fn grow(&mut self) {
        if self.max == RECORD_MAX {
            return;
        }
        let mut big = Sealer::default();
        big.plain[..self.plain_len].copy_from_slice(&self.plain[..self.plain_len]);
        big.record[..self.record_len].copy_from_slice(&self.record[..self.record_len]);
        big.plain_len = self.plain_len;
        big.record_len = self.record_len;
        big.written = self.written;
        big.record_plain = self.record_plain;
        big.delivered = self.delivered;
        *self = big;
    }

    /// Where plaintext goes: a writer that takes up to a record's worth and then reports
    /// `WouldBlock`, so a producer that writes until blocked fills exactly one record.
    pub fn staging(&mut self) -> Staging<'_> {
        Staging { buf: &mut self.plain[..self.max], len: &mut self.plain_len }
    }

    /// Whether plaintext is waiting to be sealed, or a record to be written.
    pub fn busy(&self) -> bool {
        self.plain_len > 0 || self.written < self.record_len
    }

    /// Plaintext bytes known to be on the wire.
    pub fn delivered(&self) -> u64 {
        self.delivered
    }

    /// Writes the pending record, then seals what is staged and writes that, until nothing is
    /// left (Ok(true)) or the socket would block (Ok(false)).
    pub fn flush<W: Write>(&mut self, noise: &mut TransportState, w: &mut W) -> io::Result<bool> {
        loop {
            while self.written < self.record_len {
                match w.write(&self.record[self.written..self.record_len]) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) => self.written += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            self.delivered += self.record_plain as u64;
            self.record_plain = 0;
            if self.plain_len == 0 {
                return Ok(true);
            }
            self.seal(noise)?;
        }
    }

    fn seal(&mut self, noise: &mut TransportState) -> io::Result<()> {
        let n = self.plain_len;
        let c = noise
            .write_message(&self.plain[..n], &mut self.record[LEN_BYTES..LEN_BYTES + n + TAG_LEN])
            .map_err(|e| io::Error::other(format!("cannot encrypt a record: {e}")))?;
        debug_assert_eq!(c, n + TAG_LEN);
        self.record[..LEN_BYTES].copy_from_slice(&(c as u16).to_be_bytes());
        self.record_len = LEN_BYTES + c;
        self.written = 0;
        self.record_plain = n;
        self.plain_len = 0;
        Ok(())
    }
}

/// The plaintext side of a `Sealer`: takes bytes until a record is full.
pub struct Staging<'a> {
    buf: &'a mut [u8],
    len: &'a mut usize,
}

impl Write for Staging<'_> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        let room = self.buf.len() - *self.len;
        if room == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = room.min(b.len());
        self.buf[*self.len..*self.len + n].copy_from_slice(&b[..n]);
        *self.len += n;
        Ok(n)
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        let mut total = 0;
        for b in bufs {
            match self.write(b) {
                Ok(n) => {
                    total += n;
                    if n < b.len() {
                        break;
                    }
                }
                Err(e) if total == 0 => return Err(e),
                Err(_) => break,
            }
        }
        Ok(total)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Reads records and opens them; the plaintext is then read out through `Read`.
///
/// It reads as much as the socket has (up to two records' worth) and opens buffered records
/// before it reads again: a stream of small records costs one system call per batch of them,
/// not two per record.
pub struct Opener {
    /// Ciphertext read: records from `start`, the last one maybe partial, up to `end`.
    cipher: Box<[u8]>,
    start: usize,
    end: usize,
    /// The opened record's plaintext (`plain_len` bytes), `taken` of them read out.
    plain: Box<[u8]>,
    plain_len: usize,
    taken: usize,
    /// Largest record ciphertext taken; ciphertext buffered at most (two such records).
    max: usize,
    cap: usize,
}

impl Default for Opener {
    fn default() -> Self {
        Opener::with_record(MAX_MESSAGE_LEN)
    }
}

impl Opener {
    /// An opener of records of at most `max` ciphertext bytes (at most `MAX_MESSAGE_LEN`); a
    /// longer one is malformed.
    pub fn with_record(max: usize) -> Self {
        let max = max.clamp(TAG_LEN + 1, MAX_MESSAGE_LEN);
        let cap = 2 * (LEN_BYTES + max);
        Opener { cipher: buffer(cap), start: 0, end: 0, plain: buffer(max), plain_len: 0, taken: 0, max, cap }
    }

    /// Buffers for the largest records from now on, with what is buffered.
    pub fn grow(&mut self) {
        if self.max == MAX_MESSAGE_LEN {
            return;
        }
        let mut big = Opener::default();
        let n = self.end - self.start;
        big.cipher[..n].copy_from_slice(&self.cipher[self.start..self.end]);
        big.end = n;
        big.plain[..self.plain_len].copy_from_slice(&self.plain[..self.plain_len]);
        big.plain_len = self.plain_len;
        big.taken = self.taken;
        *self = big;
    }

    /// Opened plaintext not yet read out.
    pub fn plain_ready(&self) -> bool {
        self.taken < self.plain_len
    }

    /// Opens the next record if it is wholly buffered: true if it did (its plaintext is then
    /// ready), false if more ciphertext is needed first.
    pub fn open_next(&mut self, noise: &mut TransportState) -> Result<bool, RecordError> {
        debug_assert!(!self.plain_ready(), "read out the opened plaintext first");
        let avail = self.end - self.start;
        if avail < LEN_BYTES {
            return Ok(false);
        }
        let len = usize::from(u16::from_be_bytes([self.cipher[self.start], self.cipher[self.start + 1]]));
        if len <= TAG_LEN || len > self.max {
            return Err(RecordError::Length(len));
        }
        if avail < LEN_BYTES + len {
            return Ok(false);
        }
        let at = self.start + LEN_BYTES;
        // Room for the whole ciphertext: snow then decrypts in place in our buffer, where it
        // would otherwise copy the record into a fresh allocation every time.
        let n =
            noise.read_message(&self.cipher[at..at + len], &mut self.plain[..len]).map_err(|_| RecordError::Forged)?;
        self.plain_len = n;
        self.taken = 0;
        self.start = at + len;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        Ok(true)
    }

    /// Reads ciphertext once from `r` (as much as fits) and opens the next record if it is
    /// then complete. Ok(0) is end of stream; otherwise the bytes read.
    pub fn read_from<R: Read>(&mut self, noise: &mut TransportState, r: &mut R) -> io::Result<usize> {
        if self.start > 0 {
            self.cipher.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let n = r.read(&mut self.cipher[self.end..self.cap])?;
        self.end += n;
        if n > 0 {
            self.open_next(noise)?;
        }
        Ok(n)
    }
}

impl Read for Opener {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let n = out.len().min(self.plain_len - self.taken);
        out[..n].copy_from_slice(&self.plain[self.taken..self.taken + n]);
        self.taken += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::noise::{respond, Initiator, Psk};

    fn transports() -> (TransportState, TransportState) {
        let psk = Psk::derive(b"sixteen byte key");
        let (i, init) = Initiator::start(&psk);
        let (reply, m, _) = respond(&[psk], &init).unwrap();
        (i.finish(&reply).unwrap(), m)
    }

    /// Writes at most `chunk` bytes per call, blocking every other call.
    struct Trickle {
        wire: Vec<u8>,
        chunk: usize,
        calls: usize,
    }
    impl Write for Trickle {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.calls += 1;
            if self.calls % 2 == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = b.len().min(self.chunk);
            self.wire.extend_from_slice(&b[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn open_all(noise: &mut TransportState, wire: &[u8], step: usize) -> io::Result<Vec<u8>> {
        let mut o = Opener::default();
        let mut src = wire;
        let mut got = Vec::new();
        loop {
            if o.plain_ready() {
                o.read_to_end(&mut got)?;
                continue;
            }
            if o.open_next(noise)? {
                continue;
            }
            let mut chunk = &src[..src.len().min(step)];
            let before = chunk.len();
            if o.read_from(noise, &mut chunk)? == 0 {
                return Ok(got);
            }
            src = &src[before - chunk.len()..];
        }
    }

    #[test]
    fn a_stream_survives_records_and_partial_io() {
        let (mut b, mut m) = transports();
        let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 + i / 300) as u8).collect();
        let mut s = Sealer::default();
        let mut w = Trickle { wire: Vec::new(), chunk: 5000, calls: 0 };
        let mut fed = 0;
        while fed < data.len() || s.busy() {
            if fed < data.len() {
                fed += s.staging().write(&data[fed..]).unwrap_or(0);
            }
            let _ = s.flush(&mut m, &mut w).unwrap();
            assert!(s.delivered() <= fed as u64);
        }
        assert_eq!(s.delivered(), data.len() as u64);
        assert!(!w.wire.windows(32).any(|x| data.windows(32).take(1000).any(|d| d == x)), "plaintext leaked");
        for step in [1, 7, 4096, 1 << 20] {
            let (mut b2, mut m2) = transports();
            let mut s2 = Sealer::default();
            let mut w2 = Trickle { wire: Vec::new(), chunk: 1 << 20, calls: 0 };
            let mut fed = 0;
            while fed < data.len() || s2.busy() {
                if fed < data.len() {
                    fed += s2.staging().write(&data[fed..]).unwrap_or(0);
                }
                let _ = s2.flush(&mut m2, &mut w2).unwrap();
            }
            assert_eq!(open_all(&mut b2, &w2.wire, step).unwrap(), data, "step {step}");
            let _ = &mut m2;
        }
        assert_eq!(open_all(&mut b, &w.wire, 333).unwrap(), data);
    }

    #[test]
    fn small_buffers_take_small_records_refuse_large_ones_and_grow() {
        let (mut b, mut m) = transports();
        let mut s = Sealer::with_record(LOBBY_RECORD);
        let mut wire = Vec::new();
        s.staging().write_all(&[1; 100]).unwrap();
        while !s.flush(&mut m, &mut wire).unwrap() {}
        let mut o = Opener::with_record(LOBBY_RECORD + TAG_LEN);
        assert_eq!(o.read_from(&mut b, &mut &wire[..]).unwrap(), wire.len());
        let mut got = Vec::new();
        o.read_to_end(&mut got).unwrap();
        assert_eq!(got, [1; 100]);
        // Grown with a record half read and plaintext staged: nothing is lost.
        s.staging().write_all(&[2; 300]).unwrap();
        let mut wire = Vec::new();
        while !s.flush(&mut m, &mut wire).unwrap() {}
        o.read_from(&mut b, &mut &wire[..10]).unwrap();
        o.grow();
        s.staging().write_all(&[3; 200]).unwrap();
        s.grow();
        let _ = s.staging().write_all(&[5; 40_000]);
        while !s.flush(&mut m, &mut wire).unwrap() {}
        let mut rest = &wire[10..];
        let mut got = Vec::new();
        loop {
            if o.plain_ready() {
                o.read_to_end(&mut got).unwrap();
            } else if o.open_next(&mut b).unwrap() {
                continue;
            } else if rest.is_empty() {
                break;
            } else {
                o.read_from(&mut b, &mut rest).unwrap();
            }
        }
        assert_eq!(got.len(), 300 + RECORD_MAX, "a small record, then a full one");
        assert!(got[..300].iter().all(|&x| x == 2) && got[300..500].iter().all(|&x| x == 3));
        // A record larger than a small opener takes is malformed at once.
        let (mut b, mut m) = transports();
        let mut s = Sealer::default();
        let mut wire = Vec::new();
        s.staging().write_all(&[4; 1000]).unwrap();
        while !s.flush(&mut m, &mut wire).unwrap() {}
        let mut o = Opener::with_record(LOBBY_RECORD + TAG_LEN);
        let e = o.read_from(&mut b, &mut &wire[..]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn altered_replayed_and_malformed_records_are_refused() {
        // Two records, "first" then "second", sealed by `m` for `b`.
        let sealed = || {
            let (b, mut m) = transports();
            let mut s = Sealer::default();
            let mut wire = Vec::new();
            for msg in [&b"first"[..], b"second"] {
                s.staging().write_all(msg).unwrap();
                while !s.flush(&mut m, &mut wire).unwrap() {}
            }
            (b, wire)
        };
        let first_len = 2 + 5 + TAG_LEN;
        let (mut b, wire) = sealed();
        assert_eq!(open_all(&mut b, &wire, 100).unwrap(), b"firstsecond");
        let (mut b, mut wire) = sealed();
        wire[first_len + 5] ^= 1;
        let e = open_all(&mut b, &wire, 100).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData, "an altered record decrypted");
        let (mut b, wire) = sealed();
        assert!(open_all(&mut b, &wire[first_len..], 100).is_err(), "the second record alone opened");
        let (mut b, wire) = sealed();
        let replayed = [&wire[..first_len], &wire[..first_len]].concat();
        assert!(open_all(&mut b, &replayed, 100).is_err(), "a replayed record opened");
        let (mut b, _) = sealed();
        let mut o = Opener::default();
        assert!(o.read_from(&mut b, &mut &[0u8, 16][..]).is_err(), "a record shorter than its tag");
        // Many small records arrive in one read and are opened one by one without reading.
        let (mut b, wire) = sealed();
        let mut o = Opener::default();
        assert_eq!(o.read_from(&mut b, &mut &wire[..]).unwrap(), wire.len());
        let mut first = Vec::new();
        o.read_to_end(&mut first).unwrap();
        assert_eq!(first, b"first");
        assert!(o.open_next(&mut b).unwrap(), "the second record was buffered");
        let mut second = Vec::new();
        o.read_to_end(&mut second).unwrap();
        assert_eq!(second, b"second");
    }
}
