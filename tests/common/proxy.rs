//! A TCP proxy between a backup and its master that breaks things on purpose: it can cut every
//! connection, blackhole them (half-open: nothing forwarded, nothing closed), delay them,
//! corrupt one byte, or truncate a frame and close.

#![allow(dead_code)]

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::Mutex;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Forward,
    /// Forward nothing, close nothing.
    Blackhole,
    /// Forward after holding each chunk this long.
    Delay(Duration),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    ToBackup,
    ToMaster,
}

/// A one-shot fault applied to the next chunk going in a direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shot {
    /// Flip one bit of the byte at this offset into the chunk (modulo its length).
    Corrupt(usize),
    /// Forward only this many bytes of the chunk, then close the connection.
    Truncate(usize),
}

struct State {
    mode: Mutex<Mode>,
    shot: Mutex<Option<(Dir, Shot)>>,
    /// Connections whose generation is below this are closed by their pumps.
    cut_gen: AtomicU64,
    stop: AtomicBool,
    streams: Mutex<Vec<TcpStream>>,
    pub accepted: AtomicU64,
}

pub struct Proxy {
    pub port: u16,
    st: Arc<State>,
    acceptor: Option<JoinHandle<()>>,
}

impl Proxy {
    pub fn new(upstream: SocketAddr) -> Proxy {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let port = l.local_addr().unwrap().port();
        let st = Arc::new(State {
            mode: Mutex::new(Mode::Forward),
            shot: Mutex::new(None),
            cut_gen: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            streams: Mutex::new(Vec::new()),
            accepted: AtomicU64::new(0),
        });
        let s2 = st.clone();
        let acceptor = std::thread::spawn(move || accept_loop(l, upstream, s2));
        Proxy { port, st, acceptor: Some(acceptor) }
    }

    pub fn set_mode(&self, m: Mode) {
        *self.st.mode.lock() = m;
    }

    pub fn shoot(&self, dir: Dir, shot: Shot) {
        *self.st.shot.lock() = Some((dir, shot));
    }

    pub fn shot_pending(&self) -> bool {
        self.st.shot.lock().is_some()
    }

    /// Closes every current connection (both sides see a reset or EOF).
    pub fn cut(&self) {
        self.st.cut_gen.fetch_add(1, Ordering::SeqCst);
        for s in self.st.streams.lock().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    pub fn accepted(&self) -> u64 {
        self.st.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.st.stop.store(true, Ordering::SeqCst);
        self.cut();
        if let Some(a) = self.acceptor.take() {
            let _ = a.join();
        }
    }
}

fn accept_loop(l: TcpListener, upstream: SocketAddr, st: Arc<State>) {
    let mut pumps = Vec::new();
    while !st.stop.load(Ordering::SeqCst) {
        match l.accept() {
            Ok((down, _)) => {
                let Ok(up) = TcpStream::connect(upstream) else {
                    drop(down);
                    continue;
                };
                st.accepted.fetch_add(1, Ordering::SeqCst);
                let gen = st.cut_gen.load(Ordering::SeqCst);
                down.set_nonblocking(false).unwrap();
                for s in [&down, &up] {
                    s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
                    let _ = s.set_nodelay(true);
                    st.streams.lock().push(s.try_clone().unwrap());
                }
                let (d2, u2) = (down.try_clone().unwrap(), up.try_clone().unwrap());
                let (sa, sb) = (st.clone(), st.clone());
                pumps.push(std::thread::spawn(move || pump(up, down, Dir::ToBackup, gen, sa)));
                pumps.push(std::thread::spawn(move || pump(d2, u2, Dir::ToMaster, gen, sb)));
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(5)),
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
        pumps.retain(|p: &JoinHandle<()>| !p.is_finished());
    }
    for p in pumps {
        let _ = p.join();
    }
}

fn pump(mut from: TcpStream, mut to: TcpStream, dir: Dir, gen: u64, st: Arc<State>) {
    let mut buf = vec![0u8; 64 * 1024];
    let close = |a: &TcpStream, b: &TcpStream| {
        let _ = a.shutdown(Shutdown::Both);
        let _ = b.shutdown(Shutdown::Both);
    };
    loop {
        if st.stop.load(Ordering::SeqCst) || st.cut_gen.load(Ordering::SeqCst) != gen {
            return close(&from, &to);
        }
        let mode = *st.mode.lock();
        if mode == Mode::Blackhole {
            // Half-open: hold everything, read nothing more (the sender's buffers fill up).
            std::thread::sleep(Duration::from_millis(10));
            continue;
        }
        let n = match from.read(&mut buf) {
            Ok(0) => return close(&from, &to),
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(_) => return close(&from, &to),
        };
        if let Mode::Delay(d) = mode {
            std::thread::sleep(d);
        }
        // A shot stays pending until it has done its damage: whoever waits for it then knows
        // the connection is broken (a truncation closed it, a corruption was sent).
        let shot = match *st.shot.lock() {
            Some((d, shot)) if d == dir => Some(shot),
            _ => None,
        };
        let fired = || *st.shot.lock() = None;
        match shot {
            Some(Shot::Corrupt(at)) => buf[at % n] ^= 0x20,
            Some(Shot::Truncate(keep)) => {
                let _ = to.write_all(&buf[..keep.min(n)]);
                close(&from, &to);
                return fired();
            }
            None => {}
        }
        let sent = to.write_all(&buf[..n]);
        if shot.is_some() {
            fired();
        }
        if sent.is_err() {
            return close(&from, &to);
        }
    }
}
