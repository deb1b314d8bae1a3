//! Encode and decode cost of the frames on the hot path: what the master's loop pays per
//! queued TLV and what the backup's loop pays per applied one.

use std::io::{self, IoSlice, Write};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use junos_sync::proto::inbuf::InBuf;
use junos_sync::proto::out::Out;
use junos_sync::proto::wire::{push_frame, FrameKind};

/// A socket that accepts everything.
struct Sink(usize);
impl Write for Sink {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.0 += b.len();
        Ok(b.len())
    }
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let n = bufs.iter().map(|b| b.len()).sum();
        self.0 += n;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

const BATCH: usize = 1000;

fn encode(c: &mut Criterion) {
    let mut g = c.benchmark_group("encode");
    for size in [64usize, 1024] {
        let payloads: Vec<Vec<u8>> = (0..BATCH).map(|i| vec![i as u8; size]).collect();
        g.throughput(Throughput::Elements(BATCH as u64));
        g.bench_with_input(BenchmarkId::from_parameter(size), &payloads, |b, p| {
            let mut out = Out::default();
            let mut sink = Sink(0);
            b.iter(|| {
                for (i, x) in p.iter().enumerate() {
                    out.data(i as u64, 7, x);
                }
                out.flush(&mut sink, |seq| p.get(seq as usize).map(|v| &v[..])).unwrap();
            })
        });
    }
    g.finish();
}

fn decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode");
    for size in [64usize, 1024] {
        let mut stream = Vec::new();
        for i in 0..BATCH {
            push_frame(&mut stream, FrameKind::Data, 7, i as u64, &vec![i as u8; size]);
        }
        g.throughput(Throughput::Elements(BATCH as u64));
        g.bench_with_input(BenchmarkId::from_parameter(size), &stream, |b, s| {
            let mut inb = InBuf::new(s.len() + 64, 16 << 20);
            b.iter(|| {
                let mut src = &s[..];
                let mut sum = 0usize;
                while !src.is_empty() {
                    inb.fill(&mut src).unwrap();
                    while let Some(f) = inb.next_frame().unwrap() {
                        sum += inb.payload(&f)[0] as usize;
                    }
                }
                sum
            })
        });
    }
    g.finish();
}

criterion_group!(benches, encode, decode);
criterion_main!(benches);
