//! A producer that shares its CPU with the loop does not run ahead of it (issue 13,
//! `src/engine/queue/pace.rs`). On one CPU the scheduler gives the two threads the same time,
//! and a call to `queue` costs a fraction of what the loop spends framing, writing and freeing
//! a TLV: without the producer's yield, a burst of a million TLVs held about half of them at its
//! peak (tens of megabytes of the application's memory, all of it fresh pages). Real sockets
//! on loopback; the master's two threads pinned to one CPU, the backup's to another when there
//! is one. Thread mode: the lean application here has no dispatching thread.

mod common;
use common::*;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use junos_sync::{App, Context, Freer, Tlv};

/// A TLV: its payload, whose first 8 bytes are its number.
struct Msg(Box<[u8]>);

impl Tlv for Msg {
    fn tlv_type(&self) -> u32 {
        7
    }
    fn payload(&self) -> &[u8] {
        &self.0
    }
}

/// Counts and checks, nothing more: the producer must be as cheap as a C daemon's.
#[derive(Clone, Default)]
struct Lean {
    freed: Arc<AtomicU64>,
    decoded: Arc<AtomicU64>,
    out_of_order: Arc<AtomicU64>,
    port: Arc<AtomicU64>,
}

impl App for Lean {
    type Tlv = Msg;
    type Cursor = u32;
    fn decode(&mut self, p: &mut [u8]) {
        let want = self.decoded.fetch_add(1, Ordering::Relaxed);
        if p.get(..8).map(|w| u64::from_le_bytes(w.try_into().unwrap())) != Some(want) {
            self.out_of_order.fetch_add(1, Ordering::Relaxed);
        }
    }
    fn ack_notify(&mut self, _: &Msg) {}
    fn free(&mut self, _: Msg) {
        self.freed.fetch_add(1, Ordering::Relaxed);
    }
    fn freer(&self) -> Freer<Msg> {
        let freed = self.freed.clone();
        Arc::new(move |_| {
            freed.fetch_add(1, Ordering::Relaxed);
        })
    }
    fn get_next(&mut self, _: Option<u32>) -> Option<(u32, Option<Msg>)> {
        None
    }
    fn conn_status(&mut self, _: bool) {}
    fn init_sync_done(&mut self, _: usize) {}
    fn bind_done(&mut self, port: u16) {
        self.port.store(u64::from(port), Ordering::Relaxed);
    }
    fn db_clear(&mut self) {}
    fn can_walk(&self) -> bool {
        true
    }
    fn can_decode(&self) -> bool {
        true
    }
}

/// The CPUs this process may run on.
fn cpus() -> Vec<usize> {
    // SAFETY: a zeroed cpu_set_t is valid; sched_getaffinity writes into it, CPU_ISSET reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        assert_eq!(libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set), 0);
        (0..libc::CPU_SETSIZE as usize).filter(|&c| libc::CPU_ISSET(c, &set)).collect()
    }
}

/// Pins the calling thread, and the threads it starts from now on, to `cpu`.
fn pin(cpu: usize) {
    // SAFETY: as in `cpus`; sched_setaffinity reads the set.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        assert_eq!(libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set), 0);
    }
}

const N: u64 = 1_000_000;
const LEN: usize = 64;

#[test]
fn a_burst_on_the_loops_cpu_stays_a_few_ms_ahead_of_it() {
    let cpus = cpus();
    let (a, b) = (cpus[0], *cpus.get(1).unwrap_or(&cpus[0]));
    let log: junos_sync::Logger = Arc::new(|l: &str| eprintln!("{l}"));
    let (m_app, b_app) = (Lean::default(), Lean::default());
    let master = std::thread::scope(|s| {
        // The master's loop thread inherits the CPU of the thread that starts it.
        s.spawn(|| {
            pin(a);
            let m = Context::new(master_cfg(true), m_app.clone(), log.clone()).expect("master");
            // Room for the whole burst: a producer running ahead shows as a peak, not an error.
            m.set_backlog_limit(1 << 30).unwrap();
            m.start().expect("master start");
            m
        })
        .join()
        .unwrap()
    });
    let port = m_app.port.load(Ordering::Relaxed) as u16;
    assert_ne!(port, 0, "bind_done gave the master's port");
    let backup = std::thread::scope(|s| {
        s.spawn(|| {
            pin(b);
            let k = Context::new(backup_cfg(port, true), b_app.clone(), log.clone()).expect("backup");
            k.start().expect("backup start");
            k
        })
        .join()
        .unwrap()
    });
    wait_for("the backup up", 20, || master.status().unwrap().state == junos_sync::LinkState::Up);
    let held_max = std::thread::scope(|s| {
        s.spawn(|| {
            pin(a);
            let mut held_max = 0;
            for i in 0..N {
                let mut p = vec![0u8; LEN].into_boxed_slice();
                p[..8].copy_from_slice(&i.to_le_bytes());
                if let Err((e, _)) = master.queue(Msg(p), false) {
                    panic!("queue {i}: {e:?}");
                }
                if i % 1024 == 0 {
                    held_max = held_max.max(master.stats().unwrap().backlog_bytes);
                }
            }
            held_max
        })
        .join()
        .unwrap()
    });
    wait_for("every TLV applied and freed", 60, || {
        b_app.decoded.load(Ordering::Relaxed) == N && m_app.freed.load(Ordering::Relaxed) == N
    });
    assert_eq!(b_app.out_of_order.load(Ordering::Relaxed), 0, "the backup applied them in order");
    assert_eq!(master.stats().unwrap().overflows, 0);
    // A TLV counts its payload and 64 bytes besides (ENTRY_COST) against the limit.
    let per_tlv = LEN as u64 + 64;
    let peak = held_max / per_tlv;
    eprintln!("peak held: {peak} TLVs of {N} ({} KiB), CPUs {a} and {b}", held_max / 1024);
    // What the sockets hold on loopback (a few MB) and the producer's slack of BEHIND entries
    // fit in a tenth of the burst (a fifth with three busy loops on two CPUs, when the backup
    // acknowledges late); running ahead, the producer held about half of it.
    assert!(peak < N / 4, "the producer ran {peak} TLVs ahead of the loop on a shared CPU");
    backup.exit(());
    master.exit(());
}
