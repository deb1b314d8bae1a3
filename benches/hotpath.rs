//! The hot-path prototype of issue 13: two ways for `junos_sync_queue` to hand TLVs to the loop
//! thread without a per-message object crossing threads, measured against raw TCP in one run.
//!
//! - `ring`: the queueing thread stores the TLV's pointer (and its ack bit) in a multi-producer
//!   ring of slots; the loop frames at write time (a batch header, 8 bytes per record, the
//!   payload copied into its output buffer, one CRC32C per batch).
//! - `log`: the queueing thread writes the framed record (16-byte record header holding the TLV
//!   pointer, then the payload) into a shared byte log (Aeron's way: claim with a fetch-add,
//!   commit with a release store); the loop takes the pointers out of the committed records,
//!   zeroes their pointer field and writes the log's bytes as they are behind a batch header.
//! - `raw`: the application mallocs, fills, frames (4-byte length) into 64 KiB buffers, frees,
//!   and writes (tcp_baseline.c's `stream`).
//!
//! Each run forks a receiver (CPU 1) that parses, checks and acknowledges every 64 KiB; the
//! sender process (CPU 0, both its threads) frees every TLV only after its acknowledgement, on
//! the loop thread, as the library does. `cargo bench --bench hotpath -- ROUNDS N LEN` prints the
//! medians of ROUNDS interleaved runs: messages per second and sender CPU per message.
//! Pinning: `HOTPATH_PIN=0` disables it (both processes float).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{fence, AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

const RECV_BUF: usize = 256 * 1024;
const BATCH_BYTES: usize = 64 * 1024;

/// Experiment switches (prototype only).
fn knob(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| v == "1")
}

static NOFENCE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();

fn pin(cpu: usize) {
    if std::env::var("HOTPATH_PIN").is_ok_and(|v| v == "0") {
        return;
    }
    // SAFETY: a zeroed cpu_set_t is valid; CPU_SET writes inside it; sched_setaffinity reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

fn cpu_secs() -> f64 {
    // SAFETY: getrusage writes the struct we pass.
    let mut r: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut r) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(r.ru_utime) + t(r.ru_stime)
}

/// A TLV as the C API has it: 8-byte header, then the payload; malloc'd by the application.
fn new_tlv(len: usize, i: u64) -> *mut u8 {
    // SAFETY: malloc of header + payload; every byte is written before it is read.
    unsafe {
        let p = libc::malloc(8 + len) as *mut u8;
        assert!(!p.is_null());
        (p as *mut u32).write(7);
        (p.add(4) as *mut u32).write(len as u32);
        let v = p.add(8);
        for k in 0..len / 8 {
            (v.add(k * 8) as *mut u64).write_unaligned(i ^ (k as u64).wrapping_mul(0x9e37_79b9));
        }
        p
    }
}

fn tlv_len(p: *const u8) -> usize {
    // SAFETY: a live TLV from new_tlv.
    unsafe { (p.add(4) as *const u32).read() as usize }
}

// ---- receiver ----------------------------------------------------------------------------

/// Parses what the sender's mode sends, checks every message's first word (its index) and
/// acknowledges the count received after every read.
fn receiver(mut s: TcpStream, mode: &str, n: u64) {
    pin(1);
    let mut buf = vec![0u8; RECV_BUF * 2];
    let (mut start, mut end) = (0usize, 0usize);
    let mut got = 0u64;
    let mut last_ack = 0u64;
    while got < n {
        if start == end {
            start = 0;
            end = 0;
        } else if end + 64 * 1024 > buf.len() {
            buf.copy_within(start..end, 0);
            end -= start;
            start = 0;
        }
        let r = s.read(&mut buf[end..]).expect("read");
        assert!(r > 0, "sender closed early at {got}");
        end += r;
        loop {
            let avail = &buf[start..end];
            let used = match mode {
                "raw" => {
                    if avail.len() < 4 {
                        break;
                    }
                    let len = u32::from_le_bytes(avail[0..4].try_into().unwrap()) as usize;
                    if avail.len() < 4 + len {
                        break;
                    }
                    check(&avail[4..4 + len], got);
                    got += 1;
                    4 + len
                }
                _ => {
                    // batch: len u32, count u32, first u64, crc u32, pad u32; then records
                    if avail.len() < 24 {
                        break;
                    }
                    let len = u32::from_le_bytes(avail[0..4].try_into().unwrap()) as usize;
                    if avail.len() < 24 + len {
                        break;
                    }
                    let count = u32::from_le_bytes(avail[4..8].try_into().unwrap());
                    let crc = u32::from_le_bytes(avail[16..20].try_into().unwrap());
                    let recs = &avail[24..24 + len];
                    assert_eq!(crc32c::crc32c(recs), crc, "batch crc");
                    let hdr = if mode == "log" { 16 } else { 8 };
                    let mut at = 0;
                    for _ in 0..count {
                        let l = u32::from_le_bytes(recs[at..at + 4].try_into().unwrap()) as usize;
                        check(&recs[at + hdr..at + hdr + l], got);
                        got += 1;
                        at += hdr + ((l + 7) & !7);
                    }
                    assert_eq!(at, len);
                    24 + len
                }
            };
            start += used;
        }
        if got > last_ack {
            s.write_all(&got.to_le_bytes()).expect("ack");
            last_ack = got;
        }
    }
}

fn check(p: &[u8], i: u64) {
    assert_eq!(u64::from_le_bytes(p[0..8].try_into().unwrap()), i, "message out of order");
}

// ---- the loop's wake-up ---------------------------------------------------------------------

struct Bell {
    sleeping: AtomicBool,
    fd: i32,
}

impl Bell {
    fn new() -> Self {
        // SAFETY: eventfd takes no pointers.
        Bell { sleeping: AtomicBool::new(false), fd: unsafe { libc::eventfd(0, libc::EFD_NONBLOCK) } }
    }
    /// Producer, after publishing (the SeqCst fence pairs with the loop's).
    fn after_publish(&self) {
        if !*NOFENCE.get_or_init(|| knob("HOTPATH_NOFENCE")) {
            fence(Ordering::SeqCst);
        }
        if self.sleeping.load(Ordering::Relaxed) && self.sleeping.swap(false, Ordering::AcqRel) {
            let one = 1u64;
            // SAFETY: 8 bytes from a local to our eventfd.
            unsafe { libc::write(self.fd, &one as *const u64 as *const _, 8) };
        }
    }
}

/// Loop: waits until `work()` or the socket (readable; writable when `want_write`).
fn wait(bell: &Bell, sock: i32, want_write: bool, work: impl Fn() -> bool) {
    bell.sleeping.store(true, Ordering::SeqCst);
    fence(Ordering::SeqCst);
    if work() {
        bell.sleeping.store(false, Ordering::Relaxed);
        return;
    }
    let ev = libc::POLLIN | if want_write { libc::POLLOUT } else { 0 };
    let mut fds = [
        libc::pollfd { fd: sock, events: ev, revents: 0 },
        libc::pollfd { fd: bell.fd, events: libc::POLLIN, revents: 0 },
    ];
    // SAFETY: two valid pollfds.
    unsafe { libc::poll(fds.as_mut_ptr(), 2, 100) };
    bell.sleeping.store(false, Ordering::Relaxed);
    if fds[1].revents != 0 {
        let mut x = 0u64;
        // SAFETY: 8 bytes into a local from our eventfd.
        unsafe { libc::read(bell.fd, &mut x as *mut u64 as *mut _, 8) };
    }
}

// ---- the two hand-offs -----------------------------------------------------------------------

/// `ring`: slot i holds TLV i's address (0: not yet published). Preallocated for the run.
struct Ring {
    tail: AtomicU64,
    slots: Vec<AtomicU64>,
}

/// `log`: records at 8-aligned offsets: [len u32][type u32][ptr u64][payload, padded to 8];
/// the pointer is written last (release) and is the commit mark.
struct Log {
    tail: AtomicU64,
    bytes: Vec<AtomicU64>,
}

impl Log {
    fn base(&self) -> *mut u8 {
        self.bytes.as_ptr() as *mut u8
    }
    fn word(&self, off: usize) -> &AtomicU64 {
        &self.bytes[off / 8]
    }
}

enum Hand {
    Ring(Ring),
    Log(Log),
}

fn queue(h: &Hand, bell: &Bell, p: *mut u8) {
    match h {
        Hand::Ring(r) => {
            let i = r.tail.fetch_add(1, Ordering::Relaxed) as usize;
            r.slots[i].store(p as u64, Ordering::Release);
        }
        Hand::Log(l) => {
            let len = tlv_len(p);
            let rec = 16 + ((len + 7) & !7);
            let off = l.tail.fetch_add(rec as u64, Ordering::Relaxed) as usize;
            // SAFETY: [off, off + rec) was claimed by this thread alone; the TLV is live.
            unsafe {
                let d = l.base().add(off);
                (d as *mut u32).write(len as u32);
                (d.add(4) as *mut u32).write((p as *const u32).read());
                std::ptr::copy_nonoverlapping(p.add(8), d.add(16), len);
            }
            l.word(off + 8).store(p as u64, Ordering::Release);
        }
    }
    bell.after_publish();
}

// ---- sender ----------------------------------------------------------------------------------

fn sender(mode: &str, n: u64, len: usize, mut s: TcpStream) -> (f64, f64) {
    pin(0);
    s.set_nodelay(true).unwrap();
    let t0 = Instant::now();
    let c0 = cpu_secs();
    if mode == "raw" {
        let mut buf = Vec::with_capacity(BATCH_BYTES + 4 + len);
        let mut ack = [0u8; 8];
        for i in 0..n {
            let p = new_tlv(len, i);
            buf.extend_from_slice(&(len as u32).to_le_bytes());
            // SAFETY: a live TLV of `len` payload bytes.
            buf.extend_from_slice(unsafe { std::slice::from_raw_parts(p.add(8), len) });
            // SAFETY: ours, freed once.
            unsafe { libc::free(p as *mut _) };
            if buf.len() >= BATCH_BYTES || i + 1 == n {
                s.write_all(&buf).unwrap();
                buf.clear();
            }
        }
        loop {
            s.read_exact(&mut ack).unwrap();
            if u64::from_le_bytes(ack) == n {
                break;
            }
        }
        return (t0.elapsed().as_secs_f64(), cpu_secs() - c0);
    }
    let hand = Arc::new(match mode {
        "ring" => Hand::Ring(Ring { tail: AtomicU64::new(0), slots: (0..n).map(|_| AtomicU64::new(0)).collect() }),
        _ => Hand::Log(Log {
            tail: AtomicU64::new(0),
            bytes: (0..(n as usize * (16 + ((len + 7) & !7))) / 8).map(|_| AtomicU64::new(0)).collect(),
        }),
    });
    let bell = Arc::new(Bell::new());
    let (h2, b2) = (hand.clone(), bell.clone());
    // HOTPATH_APPFREE=1 (ring): the loop publishes how many TLVs were acknowledged and the
    // application thread frees them, inside its queue calls.
    let appfree = knob("HOTPATH_APPFREE") && matches!(*hand, Hand::Ring(_));
    let acked = Arc::new(AtomicU64::new(0));
    let a2 = acked.clone();
    let app = std::thread::spawn(move || {
        let mut app_freed = 0u64;
        let free_upto = |app_freed: &mut u64, upto: u64| {
            if let Hand::Ring(r) = &*h2 {
                while *app_freed < upto {
                    let p = r.slots[*app_freed as usize].load(Ordering::Relaxed);
                    // SAFETY: acknowledged, freed exactly once.
                    unsafe { libc::free(p as *mut _) };
                    *app_freed += 1;
                }
            }
        };
        for i in 0..n {
            if appfree {
                free_upto(&mut app_freed, a2.load(Ordering::Acquire));
            }
            queue(&h2, &b2, new_tlv(len, i));
        }
        if appfree {
            while app_freed < n {
                free_upto(&mut app_freed, a2.load(Ordering::Acquire));
                std::thread::yield_now();
            }
        }
    });
    if knob("HOTPATH_BATCH") {
        // SAFETY: sched_param is plain data; 0 is the calling thread (the loop).
        unsafe {
            let sp = libc::sched_param { sched_priority: 0 };
            libc::sched_setscheduler(0, libc::SCHED_BATCH, &sp);
        }
    }
    s.set_nonblocking(true).unwrap();
    let fd = s.as_raw_fd();
    let mut backlog: std::collections::VecDeque<u64> = std::collections::VecDeque::new();
    let (mut taken_recs, mut taken_off) = (0u64, 0usize);
    let mut freed = 0u64;
    let mut out: Vec<u8> = Vec::with_capacity(BATCH_BYTES * 2);
    let mut out_at = 0usize;
    // log mode: the log range waiting to be written after the header in `out`
    let mut pending_log: Option<(usize, usize)> = None;
    let mut acks = [0u8; 4096];
    let mut ack_buf: Vec<u8> = Vec::new();
    while freed < n {
        // acknowledgements: free in order
        loop {
            // SAFETY: read into a local buffer.
            let r = unsafe { libc::read(fd, acks.as_mut_ptr() as *mut _, acks.len()) };
            if r <= 0 {
                break;
            }
            ack_buf.extend_from_slice(&acks[..r as usize]);
        }
        let mut upto = None;
        while ack_buf.len() >= 8 {
            upto = Some(u64::from_le_bytes(ack_buf[..8].try_into().unwrap()));
            ack_buf.drain(..8);
        }
        if let Some(u) = upto {
            while freed < u {
                let p = backlog.pop_front().unwrap();
                if !appfree {
                    // SAFETY: acknowledged, freed exactly once.
                    unsafe { libc::free(p as *mut _) };
                }
                freed += 1;
            }
            acked.store(freed, Ordering::Release);
        }
        // a batch if the last one is written
        if out_at == out.len() && pending_log.is_none() {
            out.clear();
            out_at = 0;
            let first = taken_recs;
            match &*hand {
                Hand::Ring(r) => {
                    out.resize(24, 0);
                    while out.len() < BATCH_BYTES && (taken_recs as usize) < r.slots.len() {
                        let p = r.slots[taken_recs as usize].load(Ordering::Acquire);
                        if p == 0 {
                            break;
                        }
                        let l = tlv_len(p as *const u8);
                        // SAFETY: a live TLV (freed only after its ack).
                        unsafe {
                            out.extend_from_slice(&(l as u32).to_le_bytes());
                            out.extend_from_slice(&(p as *const u32).read().to_le_bytes());
                            out.extend_from_slice(std::slice::from_raw_parts((p as *const u8).add(8), l));
                        }
                        out.resize(out.len() + (((l + 7) & !7) - l), 0);
                        backlog.push_back(p);
                        taken_recs += 1;
                    }
                    if taken_recs > first {
                        let body = out.len() - 24;
                        let crc = crc32c::crc32c(&out[24..]);
                        out[0..4].copy_from_slice(&(body as u32).to_le_bytes());
                        out[4..8].copy_from_slice(&((taken_recs - first) as u32).to_le_bytes());
                        out[8..16].copy_from_slice(&first.to_le_bytes());
                        out[16..20].copy_from_slice(&crc.to_le_bytes());
                    } else {
                        out.clear();
                    }
                }
                Hand::Log(l) => {
                    let start = taken_off;
                    let cap = l.bytes.len() * 8;
                    while taken_off - start < BATCH_BYTES && taken_off < cap {
                        let p = l.word(taken_off + 8).load(Ordering::Acquire);
                        if p == 0 {
                            break;
                        }
                        let len = tlv_len(p as *const u8);
                        l.word(taken_off + 8).store(0, Ordering::Relaxed);
                        backlog.push_back(p);
                        taken_recs += 1;
                        taken_off += 16 + ((len + 7) & !7);
                    }
                    if taken_recs > first {
                        // SAFETY: the committed records [start, taken_off), ours from now on.
                        let body = unsafe { std::slice::from_raw_parts(l.base().add(start), taken_off - start) };
                        let crc = crc32c::crc32c(body);
                        out.resize(24, 0);
                        out[0..4].copy_from_slice(&((taken_off - start) as u32).to_le_bytes());
                        out[4..8].copy_from_slice(&((taken_recs - first) as u32).to_le_bytes());
                        out[8..16].copy_from_slice(&first.to_le_bytes());
                        out[16..20].copy_from_slice(&crc.to_le_bytes());
                        pending_log = Some((start, taken_off));
                    }
                }
            }
        }
        // write
        let mut blocked = false;
        if out_at < out.len() || pending_log.is_some() {
            let (lb, le) = pending_log.unwrap_or((0, 0));
            let iov = [
                libc::iovec { iov_base: out[out_at..].as_ptr() as *mut _, iov_len: out.len() - out_at },
                libc::iovec {
                    iov_base: match &*hand {
                        Hand::Log(l) => (unsafe { l.base().add(lb) }) as *mut _,
                        Hand::Ring(_) => std::ptr::null_mut(),
                    },
                    iov_len: le - lb,
                },
            ];
            // SAFETY: both iovecs point into live buffers of ours.
            let w = unsafe { libc::writev(fd, iov.as_ptr(), if pending_log.is_some() { 2 } else { 1 }) };
            if w < 0 {
                blocked = true;
            } else {
                let mut w = w as usize;
                let a = (out.len() - out_at).min(w);
                out_at += a;
                w -= a;
                if let Some((b, e)) = pending_log.as_mut() {
                    *b += w;
                    if *b == *e {
                        pending_log = None;
                    }
                }
            }
        }
        let idle = out_at == out.len() && pending_log.is_none();
        if blocked || idle {
            let more = || match &*hand {
                Hand::Ring(r) => {
                    (taken_recs as usize) < r.slots.len() && r.slots[taken_recs as usize].load(Ordering::SeqCst) != 0
                }
                Hand::Log(l) => taken_off < l.bytes.len() * 8 && l.word(taken_off + 8).load(Ordering::SeqCst) != 0,
            };
            if blocked || !more() {
                wait(&bell, fd, blocked, more);
            }
        }
    }
    app.join().unwrap();
    (t0.elapsed().as_secs_f64(), cpu_secs() - c0)
}

fn run(mode: &str, n: u64, len: usize) -> (f64, f64) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let exe = std::env::current_exe().unwrap();
    let mut child =
        std::process::Command::new(exe).args(["recv", mode, &n.to_string(), &port.to_string()]).spawn().unwrap();
    let (s, _) = l.accept().unwrap();
    let (wall, cpu) = sender(mode, n, len, s);
    assert!(child.wait().unwrap().success(), "receiver failed");
    (wall, cpu)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    if args.first().map(String::as_str) == Some("recv") {
        let n: u64 = args[2].parse().unwrap();
        let s = TcpStream::connect(("127.0.0.1", args[3].parse::<u16>().unwrap())).unwrap();
        s.set_nodelay(true).unwrap();
        receiver(s, &args[1], n);
        return;
    }
    let rounds: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(5);
    let n: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(2_000_000);
    let len: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(64);
    let only = std::env::var("HOTPATH_MODES").unwrap_or_default();
    let modes: Vec<&str> =
        ["raw", "ring", "log"].into_iter().filter(|m| only.is_empty() || only.split(',').any(|o| o == *m)).collect();
    let mut res: Vec<(Vec<f64>, Vec<f64>)> = modes.iter().map(|_| (vec![], vec![])).collect();
    for r in 0..rounds {
        for (i, m) in modes.iter().enumerate() {
            let (w, c) = run(m, n, len);
            eprintln!("round {r} {m:4}: {:.2} M msgs/s, {:.1} ns CPU/msg", n as f64 / w / 1e6, c / n as f64 * 1e9);
            res[i].0.push(n as f64 / w);
            res[i].1.push(c / n as f64 * 1e9);
        }
    }
    println!("| {len} B, {n} msgs, median of {rounds} | msgs/s | sender CPU ns/msg | vs raw (rate) | vs raw (CPU) |");
    println!("|---|---:|---:|---:|---:|");
    let (raw_r, raw_c) = (median(res[0].0.clone()), median(res[0].1.clone())); // the first mode is the reference
    for (i, m) in modes.iter().enumerate() {
        let (rt, c) = (median(res[i].0.clone()), median(res[i].1.clone()));
        println!("| {m} | {:.2} M | {c:.1} | {:.2}x | {:.2}x |", rt / 1e6, rt / raw_r, c / raw_c);
    }
}
