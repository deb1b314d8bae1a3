//! Incoming bytes of one connection, cut into validated frames in place.
//!
//! Frames start at multiples of 8 in a buffer from the global allocator, so payloads handed to
//! the application are 8-aligned. A frame's length is checked against its kind's limit before
//! the buffer grows for it.

use std::io::{self, Read};
use std::ops::Range;

use super::wire::{self, FrameError, Header, HEADER_LEN};

pub struct InBuf {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    base_cap: usize,
    /// Largest payload this connection accepts: its peer has no business sending more.
    max_payload: u32,
}

/// A complete, CRC-checked frame inside the buffer.
pub struct Frame {
    pub header: Header,
    range: Range<usize>,
}

impl InBuf {
    /// A buffer of `capacity` bytes that refuses frames with more than `max_payload` bytes
    /// before growing for them.
    pub fn new(capacity: usize, max_payload: u32) -> Self {
        let base_cap = wire::padded(capacity.max(wire::frame_size(wire::MAX_CONTROL_LEN)));
        InBuf { buf: vec![0; base_cap], start: 0, end: 0, base_cap, max_payload }
    }

    /// Reads once from `r` into free space. Ok(0) means end of stream.
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
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            // Unreachable while next_frame runs between fills; never read into an empty slice,
            // which would look like end of stream.
            let grown = self.buf.len() * 2;
            self.buf.resize(grown, 0);
        }
        let n = r.read(&mut self.buf[self.end..])?;
        self.end += n;
        Ok(n)
    }

    /// The next complete frame, if one is buffered.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        let avail = self.end - self.start;
        if avail < HEADER_LEN {
            return Ok(None);
        }
        let hb: &[u8; HEADER_LEN] = self.buf[self.start..self.start + HEADER_LEN].try_into().expect("header length");
        let header = wire::decode_header(hb)?;
        if header.len > self.max_payload {
            return Err(FrameError::TooLong { kind: header.kind, len: header.len });
        }
        let size = wire::frame_size(header.len);
        if avail < size {
            if size > self.buf.len() - self.start {
                // Make room for the whole frame: first move it to the front, then grow.
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
                if size > self.buf.len() {
                    self.buf.resize(size, 0);
                }
            }
            return Ok(None);
        }
        let range = self.start + HEADER_LEN..self.start + HEADER_LEN + header.len as usize;
        wire::verify(&header, &self.buf[range.clone()])?;
        if self.buf[range.end..self.start + size].iter().any(|&b| b != 0) {
            return Err(FrameError::NonZeroPadding);
        }
        self.start += size;
        Ok(Some(Frame { header, range }))
    }

    /// The frame's payload, writable. Valid until the next `fill`.
    pub fn payload(&mut self, f: &Frame) -> &mut [u8] {
        &mut self.buf[f.range.clone()]
    }

    /// Bytes held beyond the frames already returned.
    pub fn buffered(&self) -> usize {
        self.end - self.start
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::wire::{push_frame, FrameKind};

    #[test]
    fn frames_split_anywhere_and_one_larger_than_the_buffer() {
        let mut bytes = Vec::new();
        let big = vec![7u8; 10_000];
        push_frame(&mut bytes, FrameKind::Data, 1, 1, b"abc");
        push_frame(&mut bytes, FrameKind::Data, 2, 2, &big);
        push_frame(&mut bytes, FrameKind::Ack, 0, 2, b"");
        for step in [1usize, 5, 24, 999, 20_000] {
            let mut inb = InBuf::new(512, wire::MAX_DATA_LEN);
            let mut got = Vec::new();
            for chunk in bytes.chunks(step) {
                let mut c = chunk;
                while !c.is_empty() {
                    inb.fill(&mut c).unwrap();
                    while let Some(f) = inb.next_frame().unwrap() {
                        let p = inb.payload(&f);
                        assert_eq!(p.as_ptr() as usize % 8, 0, "payload not 8-aligned");
                        got.push((f.header.seq, p.len(), p.first().copied()));
                    }
                }
            }
            assert_eq!(got, vec![(1, 3, Some(b'a')), (2, 10_000, Some(7)), (2, 0, None)], "step {step}");
            assert_eq!(inb.buffered(), 0);
        }
    }

    #[test]
    fn corrupt_payload_is_an_error() {
        let mut bytes = Vec::new();
        push_frame(&mut bytes, FrameKind::Data, 1, 1, b"abcdefgh");
        bytes[HEADER_LEN + 2] ^= 0x10;
        let mut inb = InBuf::new(64, wire::MAX_DATA_LEN);
        inb.fill(&mut &bytes[..]).unwrap();
        assert!(matches!(inb.next_frame(), Err(FrameError::BadCrc { .. })));
    }
}
