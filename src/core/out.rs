//! Outgoing bytes of one connection: our own (headers, control frames, small payloads, padding)
//! interleaved with large TLV payloads written straight from the application's memory.

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

#[derive(Default)]
pub struct Out {
    buf: Vec<u8>,
    head: usize,
    segs: VecDeque<Seg>,
    pending: usize,
}

impl Out {
    /// Bytes not yet written.
    pub fn pending(&self) -> usize {
        self.pending
    }

    pub fn clear(&mut self) {
        self.buf.clear();
        self.head = 0;
        self.segs.clear();
        self.pending = 0;
    }

    fn own(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
        self.pending += bytes.len();
        match self.segs.back_mut() {
            Some(Seg::Own(n)) => *n += bytes.len(),
            _ => self.segs.push_back(Seg::Own(bytes.len())),
        }
    }

    pub fn control(&mut self, kind: FrameKind, seq: u64, payload: &[u8]) {
        self.own(&wire::encode_header(kind, 0, seq, payload));
        self.own(payload);
        self.own(&ZEROS[..wire::padded(payload.len()) - payload.len()]);
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
        }
        self.own(&ZEROS[..wire::padded(payload.len()) - payload.len()]);
    }

    /// Writes until everything is written (Ok(true)) or the socket would block (Ok(false)).
    pub fn flush<'a, W: Write>(&mut self, w: &mut W, payload_of: impl Fn(u64) -> &'a [u8]) -> io::Result<bool> {
        while self.pending > 0 {
            let n = {
                let mut iov: Vec<IoSlice<'_>> = Vec::with_capacity(MAX_IOV.min(self.segs.len()));
                let mut pos = self.head;
                for s in self.segs.iter().take(MAX_IOV) {
                    match *s {
                        Seg::Own(n) => {
                            iov.push(IoSlice::new(&self.buf[pos..pos + n]));
                            pos += n;
                        }
                        Seg::Ext { seq, off, len } => iov.push(IoSlice::new(&payload_of(seq)[off..len])),
                    }
                }
                match w.write_vectored(&iov) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::inbuf::InBuf;

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
        while !out.flush(&mut w, |seq| &payloads[seq as usize]).unwrap() {}
        assert_eq!(out.pending(), 0);

        let mut inb = InBuf::new(64, crate::core::wire::MAX_DATA_LEN);
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
}
