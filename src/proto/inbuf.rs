//! Incoming bytes of one connection, cut into validated frames in place.
//!
//! Frames start at multiples of 8 in a buffer from the global allocator, so payloads handed to
//! the application are 8-aligned. Memory is bounded by what the peer has proven: the buffer
//! starts at its base capacity and grows only for a frame whose header has been checked
//! (CRC, kind, length within this connection's limit), and then only by doubling as that
//! frame's bytes actually arrive, never past the frame's size. `fill` never grows the buffer:
//! callers alternate one `fill` with `next_frame` calls, which is what makes room.

use std::io::{self, Read};
use std::ops::Range;

use super::wire::{self, FrameError, FrameKind, Header, HEADER_LEN};

pub struct InBuf {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    base_cap: usize,
    /// Largest payload this connection accepts: its peer has no business sending more.
    max_payload: u32,
    /// BATCH frames carry a CRC32C of their records (not on a keyed connection, where the AEAD
    /// tag covers them and the field must be 0).
    batch_crc: bool,
}

/// A complete, CRC-checked frame inside the buffer.
pub struct Frame {
    pub header: Header,
    range: Range<usize>,
}

impl InBuf {
    /// A buffer of `capacity` bytes (at least one largest control frame) that refuses frames
    /// with more than `max_payload` bytes before growing for them.
    pub fn new(capacity: usize, max_payload: u32) -> Self {
        let base_cap = wire::padded(capacity.max(wire::frame_size(wire::MAX_CONTROL_LEN)));
        InBuf { buf: vec![0; base_cap], start: 0, end: 0, base_cap, max_payload, batch_crc: true }
    }

    /// Whether BATCH frames carry a CRC32C (see the field).
    pub fn set_batch_crc(&mut self, on: bool) {
        self.batch_crc = on;
    }

    /// Reads once from `r` into free space. Ok(0) means end of stream. Err(OutOfMemory) if
    /// there is no free space, which `next_frame` between fills rules out.
    pub fn fill<R: Read>(&mut self, r: &mut R) -> io::Result<usize> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            if self.buf.len() > self.base_cap {
                self.buf.truncate(self.base_cap);
                self.buf.shrink_to_fit();
            }
        }
        if self.start > 0 && self.buf.len() - self.end < self.buf.len() / 4 {
            // Little room left: move the partial frame to the front rather than read in dribs.
            self.compact();
        }
        if self.end == self.buf.len() {
            // Reading into an empty slice would look like end of stream.
            return Err(io::Error::new(io::ErrorKind::OutOfMemory, "read buffer full"));
        }
        let n = r.read(&mut self.buf[self.end..])?;
        self.end += n;
        Ok(n)
    }

    fn compact(&mut self) {
        self.buf.copy_within(self.start..self.end, 0);
        self.end -= self.start;
        self.start = 0;
    }

    /// The header of the frame at the front, checked, if its 32 bytes are in.
    #[inline]
    fn front_header(&self) -> Result<Option<Header>, FrameError> {
        if self.end - self.start < HEADER_LEN {
            return Ok(None);
        }
        let hb: &[u8; HEADER_LEN] = self.buf[self.start..self.start + HEADER_LEN].try_into().expect("header length");
        let header = wire::decode_header(hb)?;
        if header.len > self.max_payload {
            return Err(FrameError::TooLong { kind: header.kind, len: header.len });
        }
        Ok(Some(header))
    }

    /// The next complete frame, if one is buffered. A partial frame with a valid header makes
    /// room for more of itself (see the module comment).
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        let Some(header) = self.front_header()? else { return Ok(None) };
        let size = wire::frame_size(header.len);
        if self.end - self.start < size {
            if self.end == self.buf.len() {
                if self.start > 0 {
                    self.compact();
                } else {
                    let grown = (self.buf.len() * 2).min(wire::padded(size));
                    self.buf.resize(grown, 0);
                }
            }
            return Ok(None);
        }
        let range = self.start + HEADER_LEN..self.start + HEADER_LEN + header.len as usize;
        if header.kind != FrameKind::Batch || self.batch_crc {
            wire::verify(&header, &self.buf[range.clone()])?;
        } else if header.payload_crc != 0 {
            return Err(FrameError::BadBatch("a CRC on a keyed connection"));
        }
        if self.buf[range.end..self.start + size].iter().any(|&b| b != 0) {
            return Err(FrameError::NonZeroPadding);
        }
        self.start += size;
        Ok(Some(Frame { header, range }))
    }

    /// Whether a whole frame (by its header's length) is buffered; its CRCs are checked only
    /// when `next_frame` takes it. Liveness counts frames, not bytes.
    pub fn frame_buffered(&self) -> bool {
        matches!(self.front_header(), Ok(Some(h)) if self.end - self.start >= wire::frame_size(h.len))
    }

    /// The frame's payload, writable. Valid until the next `fill`.
    pub fn payload(&mut self, f: &Frame) -> &mut [u8] {
        &mut self.buf[f.range.clone()]
    }

    /// Bytes held beyond the frames already returned.
    pub fn buffered(&self) -> usize {
        self.end - self.start
    }

    /// Bytes of memory the buffer holds.
    pub fn capacity(&self) -> usize {
        self.buf.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::wire::push_frame;

    /// Feeds `bytes` in chunks of `step`, alternating fills and frame takes as callers must.
    fn decode(bytes: &[u8], step: usize, cap: usize) -> (Vec<(u64, usize, Option<u8>)>, usize) {
        let mut inb = InBuf::new(cap, wire::MAX_DATA_LEN);
        let mut got = Vec::new();
        let mut most = 0;
        for chunk in bytes.chunks(step) {
            let mut c = chunk;
            while !c.is_empty() {
                inb.fill(&mut c).unwrap();
                most = most.max(inb.capacity());
                while let Some(f) = inb.next_frame().unwrap() {
                    let p = inb.payload(&f);
                    assert_eq!(p.as_ptr() as usize % 8, 0, "payload not 8-aligned");
                    got.push((f.header.seq, p.len(), p.first().copied()));
                }
            }
        }
        assert_eq!(inb.buffered(), 0);
        (got, most)
    }

    #[test]
    fn frames_split_anywhere_and_one_larger_than_the_buffer() {
        let mut bytes = Vec::new();
        let big = vec![7u8; 10_000];
        push_frame(&mut bytes, FrameKind::Data, 1, 1, b"abc");
        push_frame(&mut bytes, FrameKind::Data, 2, 2, &big);
        push_frame(&mut bytes, FrameKind::Ack, 0, 2, b"");
        for step in [1usize, 5, 24, 999, 20_000] {
            let (got, most) = decode(&bytes, step, 512);
            assert_eq!(got, vec![(1, 3, Some(b'a')), (2, 10_000, Some(7)), (2, 0, None)], "step {step}");
            assert!(most <= 2 * wire::frame_size(10_000), "step {step}: grew to {most}");
        }
    }

    #[test]
    fn grows_only_as_an_announced_frame_arrives() {
        let mut bytes = Vec::new();
        push_frame(&mut bytes, FrameKind::Data, 1, 1, &vec![1u8; 1 << 20]);
        let mut inb = InBuf::new(512, wire::MAX_DATA_LEN);
        // The header and 4 KiB of a 1 MiB frame: the buffer holds a few KiB, not a MiB.
        let mut part = &bytes[..HEADER_LEN + 4096];
        while !part.is_empty() {
            inb.fill(&mut part).unwrap();
            assert!(inb.next_frame().unwrap().is_none());
        }
        assert!(inb.capacity() <= 16 * 1024, "grew to {} for 4 KiB received", inb.capacity());
        assert!(!inb.frame_buffered());
    }

    #[test]
    fn fill_without_taking_frames_stops_at_the_capacity() {
        let garbage = vec![0xabu8; 64 * 1024];
        let mut inb = InBuf::new(512, wire::MAX_CONTROL_LEN);
        let mut src = &garbage[..];
        let mut err = None;
        for _ in 0..1000 {
            if let Err(e) = inb.fill(&mut src) {
                err = Some(e.kind());
                break;
            }
        }
        assert_eq!(err, Some(io::ErrorKind::OutOfMemory));
        assert_eq!(inb.capacity(), 512);
        assert_eq!(inb.next_frame().err(), Some(FrameError::BadHeaderCrc));
    }

    #[test]
    fn a_length_over_the_connections_limit_is_refused_before_growing() {
        let mut bytes = Vec::new();
        push_frame(&mut bytes, FrameKind::Data, 1, 1, &[0u8; 300]);
        let mut inb = InBuf::new(64, wire::MAX_CONTROL_LEN);
        inb.fill(&mut &bytes[..HEADER_LEN]).unwrap();
        assert_eq!(inb.next_frame().err(), Some(FrameError::TooLong { kind: FrameKind::Data, len: 300 }));
        assert_eq!(inb.capacity(), wire::padded(wire::frame_size(wire::MAX_CONTROL_LEN)));
    }

    #[test]
    fn corrupt_payload_is_an_error() {
        let mut bytes = Vec::new();
        push_frame(&mut bytes, FrameKind::Data, 1, 1, b"abcdefgh");
        bytes[HEADER_LEN + 2] ^= 0x10;
        let mut inb = InBuf::new(64, wire::MAX_DATA_LEN);
        inb.fill(&mut &bytes[..]).unwrap();
        assert!(inb.frame_buffered(), "complete by length");
        assert!(matches!(inb.next_frame(), Err(FrameError::BadCrc { .. })));
    }
}
