//! Fault injection between a live master and backup: a seeded schedule of link faults (cut,
//! blackhole, delay, corrupt, truncate) and backup restarts, interleaved with random
//! add/update/delete traffic. After every fault the backup's table must converge to the
//! master's; at the end every TLV must have been freed exactly once, after the backup applied
//! it (nothing is dropped: no path that frees undelivered TLVs is allowed), every requested
//! acknowledgement notified in order, and every link fault on an established session must have
//! been healed by a partial resync.
//!
//! `JUNOS_SYNC_SOAK_SEED` picks the schedule; `JUNOS_SYNC_SOAK_FAULTS` its length.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::proxy::{Dir, Mode, Proxy, Shot};
use common::*;

engine_tests!(seeded_fault_soak);

fn stat(s: &Node, f: impl Fn(&junos_sync::Stats) -> u64) -> u64 {
    f(&s.stats())
}

fn converge(m: &Node, b: &Node, what: &str, seed: u64) {
    let end = deadline(Duration::from_secs(15));
    loop {
        let ok = {
            let (bd, md) = (b.book(), m.db.lock());
            bd.table == *md && bd.ups == bd.downs + 1
        };
        if ok {
            return;
        }
        if Instant::now() >= end {
            let (bd, md) = (b.book(), m.db.lock());
            let diff: Vec<_> = md.iter().filter(|(k, v)| bd.table.get(k) != Some(v)).take(5).collect();
            let extra: Vec<_> = bd.table.iter().filter(|(k, _)| !md.contains_key(k)).take(5).collect();
            panic!(
                "seed {seed}: backup never converged after {what}: ups {} downs {}, {} vs {} entries, differ {diff:?}, extra {extra:?}\nmaster {:?}\nbackup {:?}",
                bd.ups,
                bd.downs,
                bd.table.len(),
                md.len(),
                m.ctx().stats(),
                b.ctx().stats()
            );
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// `ops` random operations; the ids of those that ask for an acknowledgement go to `asked`.
fn traffic(m: &Node, rng: &mut Rng, keys: u32, ops: u64, asked: &mut Vec<u64>) {
    for _ in 0..ops {
        let k = 1 + rng.below(u64::from(keys)) as u32;
        let v = if rng.below(5) == 0 { 0 } else { 1 + rng.below(1 << 30) as u32 };
        let ack = rng.below(4) == 0;
        let id = m.put(k, v, ack);
        if ack {
            asked.push(id);
        }
    }
}

fn seeded_fault_soak() {
    let seed: u64 = std::env::var("JUNOS_SYNC_SOAK_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1
    });
    let faults: u32 = std::env::var("JUNOS_SYNC_SOAK_FAULTS").ok().and_then(|s| s.parse().ok()).unwrap_or(200);
    eprintln!("fault soak: seed {seed}, {faults} faults (JUNOS_SYNC_SOAK_SEED={seed} to replay)");
    let mut rng = Rng(seed);
    const KEYS: u32 = 10_000;

    let mut m = Node::new(junos_sync::Config::new(true, false, 0x7f00_0001, 0, 1));
    m.fill_db(KEYS, OP_LEN);
    m.start();
    let port = m.port();
    let proxy = Proxy::new(SocketAddr::from(([127, 0, 0, 1], port)));
    let bcfg = junos_sync::Config::new(false, false, 0x7f00_0001, proxy.port, 1);
    let mut b = Node::new(bcfg);
    b.start();
    converge(&m, &b, "start", seed);
    let mut asked = Vec::new();

    let (mut link_faults, mut restarts) = (0u64, 0u64);
    let started = Instant::now();
    for i in 0..faults {
        let ops = 20 + rng.below(200);
        traffic(&m, &mut rng, KEYS, ops, &mut asked);
        let full_before = stat(&m, |s| s.full_resyncs);
        let part_before = stat(&m, |s| s.partial_resyncs);
        let conns_before = stat(&m, |s| s.connections);
        let kind = rng.below(100);
        let what;
        let mut restarted = false;
        match kind {
            0..=29 => {
                what = "cut";
                proxy.cut();
            }
            30..=49 => {
                what = "corrupt";
                let dir = if rng.below(2) == 0 { Dir::ToBackup } else { Dir::ToMaster };
                proxy.shoot(dir, Shot::Corrupt(rng.below(4096) as usize));
                traffic(&m, &mut rng, KEYS, 50, &mut asked);
            }
            50..=69 => {
                what = "truncate";
                proxy.shoot(Dir::ToBackup, Shot::Truncate(1 + rng.below(200) as usize));
                traffic(&m, &mut rng, KEYS, 50, &mut asked);
            }
            70..=79 => {
                what = "delay";
                proxy.set_mode(Mode::Delay(Duration::from_millis(1 + rng.below(20))));
                traffic(&m, &mut rng, KEYS, 100, &mut asked);
            }
            80..=84 => {
                what = "blackhole";
                proxy.set_mode(Mode::Blackhole);
                traffic(&m, &mut rng, KEYS, 100, &mut asked);
                // Long enough for both sides' keepalive (1 s) to declare the peer dead.
                let downs = b.book().downs;
                wait_for("blackhole detected", 10, || b.book().downs > downs);
            }
            _ => {
                what = "backup restart";
                restarted = true;
                b.exit();
                b = Node::new(bcfg);
                b.start();
            }
        }
        if std::env::var_os("JUNOS_SYNC_SOAK_VERBOSE").is_some() {
            eprintln!("fault {i}: {what}");
        }
        // A shot stays armed until traffic carries it (keepalives do within a third of a
        // second) and the proxy has done its damage.
        wait_for("fault delivered", 10, || !proxy.shot_pending());
        proxy.set_mode(Mode::Forward);
        // What breaks the link ends in a new connection; until the master has one, the old one
        // may still look up (its end not noticed yet), and the next fault would find it gone.
        if matches!(what, "cut" | "corrupt" | "truncate" | "blackhole") {
            wait_for("a new connection", 15, || stat(&m, |s| s.connections) > conns_before);
        }
        converge(&m, &b, what, seed);
        if restarted {
            restarts += 1;
            let fb = full_before;
            wait_for("full resync done", 10, || {
                stat(&m, |s| s.full_resyncs) == fb + 1 && b.book().sync_done.len() == 1
            });
        } else if stat(&m, |s| s.connections) > conns_before {
            link_faults += 1;
            assert_eq!(
                stat(&m, |s| s.full_resyncs),
                full_before,
                "seed {seed}, fault {i} ({what}): a link fault caused a full resync"
            );
            assert!(
                stat(&m, |s| s.partial_resyncs) > part_before,
                "seed {seed}, fault {i} ({what}): reconnect without partial resync"
            );
        }
    }
    eprintln!(
        "fault soak: {faults} faults in {:.1?}: {link_faults} reconnects healed by partial resync, {restarts} restarts by full resync",
        started.elapsed()
    );
    assert!(link_faults > u64::from(faults) / 3, "seed {seed}: too few faults broke the link ({link_faults})");
    wait_for("all acknowledged", 15, || m.book().unfreed() == 0);
    assert_eq!(m.book().acked, asked, "seed {seed}: the acknowledgements asked for, in queue order");
    b.exit();
    m.exit();
}
