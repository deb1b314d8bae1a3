//! A context's counters: `Stats` as the API reports them and the live atomics behind them,
//! both expanded from the one list in `counters_list.rs`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use parking_lot::Mutex;

macro_rules! counters {
    ($( $name:ident, $words:literal, $master:literal, $kind:ident, $help:literal; )*) => {
        /// A context's counters, as the API reports them (`junos_sync_stats_t`, in its order).
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct Stats {
            $( #[doc = $help] pub $name: u64, )*
        }

        impl Stats {
            /// The counters' names, in order: the C struct's fields, the status JSON's keys.
            pub const NAMES: &'static [&'static str] = &[$(stringify!($name)),*];
            pub const COUNT: usize = Self::NAMES.len();

            /// Their values, in the same order.
            pub fn values(&self) -> [u64; Self::COUNT] {
                [$(self.$name),*]
            }
        }

        /// The live counters, one atomic each (a gauge's is unused: it is read when asked).
        #[derive(Default)]
        pub(crate) struct Counters {
            $( pub $name: AtomicU64, )*
            /// When the last full resync completed, for the gauge `resync_age_ms`.
            resync_done_at: Mutex<Option<Instant>>,
            /// `resyncs_aborted` when the last full resync completed, and when the first
            /// abort since then happened: the warning state (`behind`).
            aborted_at_done: AtomicU64,
            first_abort_at: Mutex<Option<Instant>>,
        }

        impl Counters {
            /// The counters now, with the gauge `backlog_bytes` as given.
            pub(crate) fn snapshot(&self, backlog_bytes: u64) -> Stats {
                let mut s = Stats { $( $name: self.$name.load(Ordering::Relaxed), )* };
                s.backlog_bytes = backlog_bytes;
                s.resync_age_ms = self.resync_done_at.lock().map_or(u64::MAX, |t| {
                    u64::try_from(t.elapsed().as_millis()).unwrap_or(u64::MAX - 1)
                });
                s
            }
        }
    };
}

include!("counters_list.rs");

impl Counters {
    pub(crate) fn bump(n: &AtomicU64) {
        n.fetch_add(1, Ordering::Relaxed);
    }

    /// A full resync began (either role).
    pub(crate) fn resync_started(&self) {
        Self::bump(&self.resyncs_started);
    }

    /// The full resync under way completed: counted, and the age gauge starts again from now.
    pub(crate) fn resync_completed(&self) {
        Self::bump(&self.resyncs_completed);
        *self.resync_done_at.lock() = Some(Instant::now());
        *self.first_abort_at.lock() = None;
        self.aborted_at_done.store(self.resyncs_aborted.load(Ordering::Relaxed), Ordering::Relaxed);
    }

    /// The full resync under way ended before it completed.
    pub(crate) fn resync_aborted(&self) {
        Self::bump(&self.resyncs_aborted);
        self.first_abort_at.lock().get_or_insert_with(Instant::now);
    }

    /// The warning state, once two full resyncs in a row aborted: how long no complete copy
    /// has existed (since the last complete resync, or since the first of those aborts if none
    /// completed) and how many aborted. What a lag figure cannot show: each overflow empties
    /// the backlog, so the lag looks short while the backup holds no complete table.
    pub(crate) fn behind(&self) -> Option<String> {
        let aborted =
            self.resyncs_aborted.load(Ordering::Relaxed).saturating_sub(self.aborted_at_done.load(Ordering::Relaxed));
        if aborted < 2 {
            return None;
        }
        let since = (*self.resync_done_at.lock()).or(*self.first_abort_at.lock())?;
        Some(format!("behind: no complete copy for {} s, {aborted} aborted resyncs", since.elapsed().as_secs()))
    }
}
