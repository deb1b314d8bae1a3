//! What the engine tests share: the one test application and its oracle (app.rs, node.rs,
//! book.rs, ledger.rs, tlv.rs), both modes for every test (mode.rs), scaled deadlines (time.rs), and
//! tools for speaking the wire by hand (wire_peer.rs) or breaking it (proxy.rs).

// Each test binary uses some of it.
#![allow(dead_code)]

pub mod app;
pub mod book;
pub mod env;
pub mod ledger;
pub mod mode;
pub mod node;
pub mod proxy;
pub mod time;
pub mod tlv;
pub mod wire_peer;

// What `use common::*` brings (each test binary uses some of it).
#[allow(unused_imports)]
pub use self::{
    app::{PANIC_ACK, PANIC_DECODE},
    env::env_lock,
    ledger::Undelivered,
    mode::Mode,
    node::Node,
    time::{deadline, scaled, secs, wait_for, wait_steady},
    tlv::{id_of, Tag, OP_LEN},
};
#[allow(unused_imports)]
pub(crate) use mode::engine_tests;

use junos_sync::Config;

/// xorshift64*: seeded schedules and inputs without a dependency.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// An index below `n`.
    pub fn pick(&mut self, n: usize) -> usize {
        self.below(n as u64) as usize
    }
}

/// A master on loopback, on a port of the kernel's choosing, keepalive 2 s.
pub fn master_cfg(no_resync: bool) -> Config {
    Config::new(true, no_resync, 0x7f00_0001, 0, 2)
}

/// A backup of the master at `port` on loopback, keepalive 2 s.
pub fn backup_cfg(port: u16, no_resync: bool) -> Config {
    Config::new(false, no_resync, 0x7f00_0001, port, 2)
}
