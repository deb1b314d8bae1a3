//! Outgoing bytes of one connection: our own (headers, control frames, small payloads, padding)
//! interleaved with large TLV payloads written straight from the application's memory.
//!
//! It also knows which sequenced frames have left: the stream offset where each one ends, so
//! that once the bytes up to an offset are known to be on the wire (`deliver`), the last
//! sequence number fully sent is exact. A peer can only acknowledge what it received.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};

use super::wire::{self, FrameKind};

/// Payloads up to this size are copied: a memcpy is cheaper than another iovec.
const INLINE_MAX: usize = 512;
/// Most iovecs per `writev`.
const MAX_IOV: usize = 256;
static ZEROS: [u8; 8] = [0; 8];

enum Seg {
    /// The next `n` bytes of `buf`.
    Own(usize),
    /// Bytes `off..` of the payload of entry `seq`, whose length is `len`.
    Ext { seq: u64, off: usize, len: usize },
}

/// A BATCH frame under construction in an `Out` (see `Out::begin_batch`).
pub struct BatchFrame {
    /// Where its header is in the buffer.
    at: usize,
    seq: u64,
    count: u32,
    /// Bytes of records so far.
    len: usize,
    /// The frame carries a CRC32C of its records: computed over the buffer at the end, or, once
    /// a zero-copy payload is among them (`ext`), record by record (the CRC so far).
    crc: Option<u32>,
    ext: bool,
}

impl BatchFrame {
    /// Records so far.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// Bytes of records so far.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

#[derive(Default)]
pub struct Out {
    buf: Vec<u8>,
    head: usize,
    segs: VecDeque<Seg>,
    pending: usize,
    /// Stream offset of the end of everything queued so far.
    queued: u64,
    /// Stream offset up to which bytes have been handed to a writer.
    taken: u64,
    /// (stream offset of the frame's end, sequence number) of sequenced frames not yet known
    /// to be delivered, in order.
    marks: VecDeque<(u64, u64)>,
    delivered_seq: Option<u64>,
}

impl Out {
    /// Bytes not yet written.
    pub fn pending(&self) -> usize {
        self.pending
    }

    /// Stream offset up to which bytes have been handed to a writer by `flush`.
    pub fn taken(&self) -> u64 {
        self.taken
    }

    /// Records that the stream's bytes up to `offset` are on the wire; returns the last
    /// sequence number now fully delivered, if any was.
    pub fn deliver(&mut self, offset: u64) -> Option<u64> {
        debug_assert!(offset <= self.taken);
        while let Some(&(end, seq)) = self.marks.front() {
            if end > offset {
                break;
            }
            self.delivered_seq = Some(seq);
            self.marks.pop_front();
        }
        self.delivered_seq
    }

    fn mark(&mut self, seq: u64) {
        self.marks.push_back((self.queued, seq));
    }

    fn own(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
        self.pending += bytes.len();
        self.queued += bytes.len() as u64;
        match self.segs.back_mut() {
            Some(Seg::Own(n)) => *n += bytes.len(),
            _ => self.segs.push_back(Seg::Own(bytes.len())),
        }
    }

    /// `own` of three pieces at once (a record: header, payload, padding).
    fn own3(&mut self, a: &[u8], b: &[u8], c: &[u8]) {
        let n = a.len() + b.len() + c.len();
        self.buf.reserve(n);
        self.buf.extend_from_slice(a);
        self.buf.extend_from_slice(b);
        self.buf.extend_from_slice(c);
        self.pending += n;
        self.queued += n as u64;
        match self.segs.back_mut() {
            Some(Seg::Own(k)) => *k += n,
            _ => self.segs.push_back(Seg::Own(n)),
        }
    }

    pub fn control(&mut self, kind: FrameKind, seq: u64, payload: &[u8]) {
        self.control_aux(kind, 0, seq, payload);
    }

    /// A REFUSE frame: the reason code (`wire::REFUSE_*`) and a UTF-8 reason, at most 200 bytes.
    pub fn refuse(&mut self, code: u32, reason: &str) {
        let mut end = reason.len().min(200);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        self.control_aux(FrameKind::Refuse, code, 0, &reason.as_bytes()[..end]);
    }

    fn control_aux(&mut self, kind: FrameKind, aux: u32, seq: u64, payload: &[u8]) {
        self.own(&wire::encode_header(kind, aux, seq, payload));
        self.own(payload);
        self.own(&ZEROS[..wire::padded(payload.len()) - payload.len()]);
        if kind.is_sequenced() {
            self.mark(seq);
        }
    }

    /// Appends a DATA frame for entry `seq`. Large payloads are not copied: `flush` reads them
    /// through its `payload_of` argument, so the entry must stay alive until they are written.
    pub fn data(&mut self, seq: u64, tlv_type: u32, payload: &[u8]) {
        self.own(&wire::encode_header(FrameKind::Data, tlv_type, seq, payload));
        if payload.len() <= INLINE_MAX {
            self.own(payload);
        } else {
            self.segs.push_back(Seg::Ext { seq, off: 0, len: payload.len() });
            self.pending += payload.len();
            self.queued += payload.len() as u64;
        }
        self.own(&ZEROS[..wire::padded(payload.len()) - payload.len()]);
        self.mark(seq);
    }

    /// Starts a BATCH frame (protocol version 2) whose first record is sequence `seq`, with a
    /// CRC32C of its records if `crc` (not on a keyed connection): reserves its header, which
    /// `end_batch` fills in.
    pub fn begin_batch(&mut self, seq: u64, crc: bool) -> BatchFrame {
        let at = self.buf.len();
        self.own(&[0u8; wire::HEADER_LEN]);
        BatchFrame { at, seq, count: 0, len: 0, crc: crc.then_some(0), ext: false }
    }

    /// Appends a record to `b`. Large payloads are not copied, as with `data`: record `k` of
    /// the batch is entry `b.seq + k` for `flush`'s `payload_of`.
    pub fn record(&mut self, b: &mut BatchFrame, tlv_type: u32, payload: &[u8]) {
        let head = wire::record_header(tlv_type, payload.len());
        let pad = &ZEROS[..wire::padded(payload.len()) - payload.len()];
        let inline = payload.len() <= INLINE_MAX;
        if !inline && !b.ext {
            // The records so far are contiguous in the buffer: their CRC in one pass; from the
            // first zero-copy payload on, record by record.
            b.ext = true;
            b.crc = b.crc.map(|_| wire::crc32_append(0, &self.buf[b.at + wire::HEADER_LEN..]));
        }
        if let Some(c) = b.crc.as_mut().filter(|_| b.ext) {
            *c = wire::crc32_append(wire::crc32_append(wire::crc32_append(*c, &head), payload), pad);
        }
        if inline {
            self.own3(&head, payload, pad);
        } else {
            self.own(&head);
            self.segs.push_back(Seg::Ext { seq: b.seq + u64::from(b.count), off: 0, len: payload.len() });
            self.pending += payload.len();
            self.queued += payload.len() as u64;
            self.own(pad);
        }
        b.count += 1;
        b.len += head.len() + payload.len() + pad.len();
    }

    /// Ends `b`: writes its header and marks its last record as delivered once the frame is
    /// wholly written. A batch with no record leaves nothing behind.
    pub fn end_batch(&mut self, b: BatchFrame) {
        if b.count == 0 {
            self.buf.truncate(b.at);
            self.pending -= wire::HEADER_LEN;
            self.queued -= wire::HEADER_LEN as u64;
            match self.segs.back_mut() {
                Some(Seg::Own(n)) if *n > wire::HEADER_LEN => *n -= wire::HEADER_LEN,
                _ => {
                    self.segs.pop_back();
                }
            }
            return;
        }
        let crc = match b.crc {
            Some(_) if !b.ext => wire::crc32_append(0, &self.buf[b.at + wire::HEADER_LEN..]),
            Some(c) => c,
            None => 0,
        };
        let h = wire::encode_header_of(FrameKind::Batch, b.count, b.seq, b.len, crc);
        self.buf[b.at..b.at + wire::HEADER_LEN].copy_from_slice(&h);
        self.mark(b.seq + u64::from(b.count) - 1);
    }

    /// Copies every zero-copy payload still to be written into the buffer, so that the
    /// entries they come from may be freed while the frames stay queued (an overflow that
    /// keeps the connection). Err: `payload_of` no longer knows one (nothing changed then).
    pub fn copy_payloads<'a>(&mut self, payload_of: impl Fn(u64) -> Option<&'a [u8]>) -> io::Result<()> {
        if !self.segs.iter().any(|s| matches!(s, Seg::Ext { .. })) {
            return Ok(());
        }
        let mut buf = Vec::with_capacity(self.pending);
        let mut pos = self.head;
        for s in &self.segs {
            buf.extend_from_slice(seg_bytes(&self.buf, &mut pos, s, &payload_of)?);
        }
        debug_assert_eq!(buf.len(), self.pending);
        self.buf = buf;
        self.head = 0;
        self.segs.clear();
        self.segs.push_back(Seg::Own(self.pending));
        Ok(())
    }

    /// Writes until everything is written (Ok(true)) or the socket would block (Ok(false)).
    /// `payload_of` resolves zero-copy payloads; one it no longer knows is an error (the
    /// entry was freed while its frame was still being written), never a panic.
    pub fn flush<'a, W: Write>(&mut self, w: &mut W, payload_of: impl Fn(u64) -> Option<&'a [u8]>) -> io::Result<bool> {
        while self.pending > 0 {
            let n = {
                // On the stack: a heap vector this size per write is a "large" request to glibc,
                // which consolidates its fastbins (the TLVs being freed) every time.
                let mut iov = [IoSlice::new(&[]); MAX_IOV];
                let mut k = 0;
                let mut pos = self.head;
                for s in self.segs.iter().take(MAX_IOV) {
                    iov[k] = IoSlice::new(seg_bytes(&self.buf, &mut pos, s, &payload_of)?);
                    k += 1;
                }
                match w.write_vectored(&iov[..k]) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                }
            };
            self.advance(n);
        }
        Ok(true)
    }

    fn advance(&mut self, mut n: usize) {
        self.pending -= n;
        self.taken += n as u64;
        while n > 0 {
            let s = self.segs.front_mut().expect("wrote more than was queued");
            let left = match s {
                Seg::Own(len) => {
                    let k = n.min(*len);
                    *len -= k;
                    self.head += k;
                    n -= k;
                    *len
                }
                Seg::Ext { off, len, .. } => {
                    let k = n.min(*len - *off);
                    *off += k;
                    n -= k;
                    *len - *off
                }
            };
            if left == 0 {
                self.segs.pop_front();
            }
        }
        if self.pending == 0 {
            self.buf.clear();
            self.head = 0;
            self.segs.clear();
        } else if self.head > 1 << 20 && self.head * 2 > self.buf.len() {
            self.buf.drain(..self.head);
            self.head = 0;
        }
    }
}

/// The bytes of segment `s`: ours start at `*pos` of `buf` (moved past them), a zero-copy
/// payload comes from `payload_of`; one it no longer knows is an error (the entry was freed
/// while its frame was still queued), never a panic.
#[inline]
fn seg_bytes<'s, 'a: 's>(
    buf: &'s [u8],
    pos: &mut usize,
    s: &Seg,
    payload_of: &impl Fn(u64) -> Option<&'a [u8]>,
) -> io::Result<&'s [u8]> {
    match *s {
        Seg::Own(n) => {
            *pos += n;
            Ok(&buf[*pos - n..*pos])
        }
        Seg::Ext { seq, off, len } => payload_of(seq)
            .and_then(|p| p.get(off..len))
            .ok_or_else(|| io::Error::other(format!("payload of sequence {seq} is gone"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::inbuf::InBuf;
    use crate::proto::wire::HEADER_LEN;

    /// A writer that takes at most `chunk` bytes per call and blocks every other call.
    struct Trickle {
        out: Vec<u8>,
        chunk: usize,
        calls: usize,
    }
    impl Write for Trickle {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.write_vectored(&[IoSlice::new(b)])
        }
        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            self.calls += 1;
            if self.calls % 2 == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let mut n = 0;
            for b in bufs {
                let k = b.len().min(self.chunk - n);
                self.out.extend_from_slice(&b[..k]);
                n += k;
                if n == self.chunk {
                    break;
                }
            }
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn partial_writes_reassemble_into_the_same_frames() {
        let payloads: Vec<Vec<u8>> = (0..50u32).map(|i| vec![i as u8; (i as usize * 97) % 2000]).collect();
        let mut out = Out::default();
        out.control(FrameKind::Keepalive, 0, &[]);
        for (i, p) in payloads.iter().enumerate() {
            out.data(i as u64, i as u32, p);
        }
        let mut w = Trickle { out: Vec::new(), chunk: 333, calls: 0 };
        let mut delivered = Vec::new();
        while !out.flush(&mut w, |seq| payloads.get(seq as usize).map(|p| &p[..])).unwrap() {
            // Whatever is reported delivered must be wholly in the bytes written so far.
            if let Some(seq) = out.deliver(w.out.len() as u64) {
                let end: usize = (0..=seq as usize).map(|i| wire::frame_size(payloads[i].len() as u32)).sum();
                assert!(end + HEADER_LEN <= w.out.len(), "seq {seq} reported before its last byte left");
                delivered.push(seq);
            }
        }
        assert_eq!(out.pending(), 0);
        assert_eq!(out.deliver(out.taken()), Some(49));
        assert!(delivered.windows(2).all(|w| w[0] <= w[1]) && delivered.len() > 10);

        // A payload that disappeared before its frame left is an error, not a panic.
        let mut gone = Out::default();
        gone.data(7, 0, &[1u8; 4096]);
        let mut sink = Vec::new();
        assert!(gone.flush(&mut sink, |_| None).is_err());

        let mut inb = InBuf::new(64, crate::proto::wire::MAX_DATA_LEN);
        let mut src = &w.out[..];
        let mut got = Vec::new();
        loop {
            while let Some(f) = inb.next_frame().unwrap() {
                got.push((f.header.kind, f.header.seq, inb.payload(&f).to_vec()));
            }
            if inb.fill(&mut src).unwrap() == 0 {
                break;
            }
        }
        assert_eq!(got[0].0, FrameKind::Keepalive);
        assert_eq!(got.len(), 51);
        for (i, p) in payloads.iter().enumerate() {
            assert_eq!((got[i + 1].0, got[i + 1].1), (FrameKind::Data, i as u64));
            assert_eq!(&got[i + 1].2, p);
        }
    }

    /// Frames half written, then their zero-copy payloads copied and the entries gone: the
    /// bytes on the wire are those of an undisturbed flush.
    #[test]
    fn copied_payloads_write_the_same_bytes_without_their_entries() {
        let payloads: Vec<Vec<u8>> = (0..20u32).map(|i| vec![i as u8 + 1; 300 + i as usize * 211]).collect();
        let build = || {
            let mut out = Out::default();
            for (i, p) in payloads.iter().enumerate() {
                out.data(i as u64, i as u32, p);
            }
            let mut b = out.begin_batch(20, true);
            for p in &payloads[..5] {
                out.record(&mut b, 9, p);
            }
            out.end_batch(b);
            out
        };
        let of = |seq: u64| payloads.get(seq as usize % 20).map(|p| &p[..]);
        let mut whole = Vec::new();
        assert!(build().flush(&mut whole, of).unwrap());
        let mut out = build();
        let mut w = Trickle { out: Vec::new(), chunk: 1000, calls: 0 };
        for _ in 0..7 {
            assert!(!out.flush(&mut w, of).unwrap());
        }
        out.copy_payloads(of).unwrap();
        while !out.flush(&mut w, |_| None).unwrap() {}
        assert_eq!(w.out, whole);
        // Nothing to copy is nothing to do; a payload already gone is an error.
        out.copy_payloads(|_| None).unwrap();
        let mut gone = Out::default();
        gone.data(7, 0, &[1u8; 4096]);
        assert!(gone.copy_payloads(|_| None).is_err());
    }
}
