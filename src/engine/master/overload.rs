//! The master under a backup that cannot keep up: an overflow counted once; the backup kept
//! connected and given a new full resync on the same connection (one without resync is told
//! why, REFUSE with the reason, before its connection closes); consecutive aborted resyncs backed
//! off (the next walk waits, longer each time, at most the keepalive time) and, from the second
//! in a row, named in one log line per episode (at most once a minute), with a line when a
//! resync completes again.

use std::time::{Duration, Instant};

use mio::Registry;

use super::{payload_of, Master};
use crate::engine::app::path::AppPath;
use crate::engine::app::App;
use crate::engine::counters::Counters;
use crate::engine::master::backlog::Entry;
use crate::proto::wire::REFUSE_OTHER;

/// The wait before the walk after the first aborted resync; it doubles with each one in a row.
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
/// The episode's log line is repeated at most this often.
const EPISODE_LOG_EVERY: Duration = Duration::from_secs(60);

/// Aborted resyncs in a row, since the last complete one.
#[derive(Default)]
pub(super) struct Overload {
    /// Resyncs aborted in a row.
    pub(super) in_row: u32,
    /// The next walk starts no earlier than this.
    pub(super) walk_after: Option<Instant>,
    /// After an overflow on a connection that stays: the last sequence number sent before
    /// it. The new walk starts only once the backup acknowledged it, so that what is on its
    /// way (in the socket buffers, megabytes, no longer counted against the limit once freed)
    /// is applied before more is sent: without it, each overflow would add the kernel's
    /// buffers' worth of stale stream before the walk, and a slow backup would take tens of
    /// seconds to reach it.
    pub(super) drain_to: Option<u64>,
    /// When the first of the row aborted, with the totals then (entries acknowledged, queued).
    since: Option<(Instant, u64, u64)>,
    /// When the episode's line was last logged.
    logged: Option<Instant>,
    /// Entries the backup acknowledged, and `junos_sync_queue` queued, over the role's life.
    pub(super) acked: u64,
    pub(super) queued: u64,
    /// When a full resync last completed (None: never in this role), with the totals then:
    /// the figures of the log line are rates since (or since the first abort, if none).
    pub(super) complete_at: Option<Instant>,
    base: Option<(Instant, u64, u64)>,
}

/// The wait before the walk after `n` aborted resyncs in a row, at most `cap`.
pub(super) fn backoff(n: u32, cap: Duration) -> Duration {
    BACKOFF_FIRST.saturating_mul(1u32 << n.saturating_sub(1).min(16)).min(cap)
}

impl Overload {
    /// Whether the next walk must still wait.
    pub(super) fn waits(&self, now: Instant) -> bool {
        self.walk_after.is_some_and(|t| now < t) || self.drain_to.is_some()
    }

    /// The backup acknowledged `acked` on the connection the overflow kept.
    pub(super) fn acked_to(&mut self, acked: u64) {
        if self.drain_to.is_some_and(|d| acked >= d) {
            self.drain_to = None;
        }
    }
}

impl<A: App> Master<A> {
    /// Frees the whole backlog (no ack notifications) and makes sure the backup gets a full
    /// resync, after a wait if resyncs keep aborting. A backup whose session takes walks stays
    /// connected: the frames already queued on its connection still go (their payloads
    /// copied), then the new walk's SYNC_BEGIN, numbered right after them. One that does not
    /// (no_resync) is told why (REFUSE) and dropped, as before.
    /// One overflow counted per backlog dropped: not again for TLVs that a walk not yet started
    /// covers anyway (no backup, or the backoff's wait).
    pub(crate) fn overflow(&mut self, app: &mut AppPath<A>, reg: &Registry) {
        let now = Instant::now();
        if self.walk.as_ref().is_some_and(|w| !w.asked) {
            // Its walk has not read the database yet: it carries every TLV queued so far.
            for (tlv, _) in std::mem::take(&mut self.held_back) {
                app.free(tlv);
            }
            return;
        }
        let again = self.dropped && self.link.is_none();
        let stays = self.link.as_ref().is_some_and(|l| l.walks) && self.copy_queued_payloads();
        if !again {
            let limit = app.shared.budget.limit();
            let then = if stays {
                "the backup stays connected and gets a full resync"
            } else if self.link.is_some() {
                "the backup, whose session runs without resync, is disconnected"
            } else {
                "the backup gets a full resync"
            };
            app.log(&format!("junos-sync master: backlog over its limit of {limit} bytes; dropping it, {then}"));
            Counters::bump(&app.shared.counters.overflows);
        }
        let walking = self.resync.is_some_and(|r| r.running);
        if stays {
            self.restart_walk(app, now);
            return;
        }
        let why = format!(
            "backlog over its limit of {} bytes: the master dropped it; this session runs without resync",
            app.shared.budget.limit()
        );
        let Master { link, backlog, .. } = self;
        if let Some(l) = link.as_mut() {
            l.conn.say_refuse(REFUSE_OTHER, &why, |seq| payload_of(backlog, seq));
        }
        self.end_session(app, reg, true);
        for (tlv, _) in self.purge(app) {
            app.free(tlv);
        }
        self.resume_from = None;
        self.backup_session = 0;
        self.dropped = true;
        if walking {
            self.resync_aborted_here(app, now);
        }
    }

    /// The connection's queued frames stop pointing into the backlog; false if one points
    /// at an entry already gone (then only a close is safe).
    fn copy_queued_payloads(&mut self) -> bool {
        let Master { link, backlog, .. } = self;
        link.as_mut().is_some_and(|l| l.conn.out.copy_payloads(|seq| payload_of(backlog, seq)).is_ok())
    }

    /// The overflow on a connection that stays: everything held is freed (what was sent and
    /// not acknowledged too: the walk carries its effect), the walk in progress, if any, is
    /// aborted (and backed off), and a new one begins.
    fn restart_walk(&mut self, app: &mut AppPath<A>, now: Instant) {
        let sent = self.backlog.send_seq() - 1;
        if self.link.as_ref().is_some_and(|l| l.acked < sent) {
            self.overload.drain_to = Some(sent);
        }
        self.abort_walk(app);
        self.walked_bytes = 0;
        for e in self.backlog.take_all_after_sent() {
            if let Entry::Queued { tlv, .. } | Entry::Walked(tlv) = e {
                app.free(tlv);
            }
        }
        self.stamps.forget_from(self.backlog.next_seq());
        self.walk_starving = false;
        if self.abort_resync(app) {
            self.resync_aborted_here(app, now);
        }
        self.start_walk(app);
    }

    /// A full resync aborted by an overflow: the next waits; from the second in a row the
    /// episode is logged.
    fn resync_aborted_here(&mut self, app: &mut AppPath<A>, now: Instant) {
        let o = &mut self.overload;
        o.in_row += 1;
        let since = *o.since.get_or_insert((now, o.acked, o.queued));
        let wait = backoff(o.in_row, self.cfg.keepalive);
        o.walk_after = Some(now + wait);
        if o.in_row < 2 || o.logged.is_some_and(|t| now.duration_since(t) < EPISODE_LOG_EVERY) {
            return;
        }
        o.logged = Some(now);
        let from = o.base.unwrap_or(since);
        let secs = now.duration_since(from.0).as_secs_f64().max(0.001);
        let (acked, queued) = (o.acked - from.1, o.queued - from.2);
        let (applies, queues) = (acked as f64 / secs, queued as f64 / secs);
        let none_for = now.duration_since(o.complete_at.unwrap_or(since.0)).as_secs_f64();
        let n = o.in_row;
        app.log(&format!(
            "junos-sync master: WARNING: the backup cannot keep up: {n} full resyncs in a row aborted by backlog overflows; \
             the backup acknowledges about {applies:.0} entries/s, the master queues {queues:.0}/s \
             ({acked} and {queued} in {secs:.1} s); no complete resync for {none_for:.1} s; the next walk waits {} ms \
             (raise the backlog limit, or junos_sync_set_overflow_policy REFUSE to slow the producer)",
            wait.as_millis()
        ));
    }

    /// The backup acknowledged a whole walk: the episode, if any, is over.
    pub(super) fn resync_complete_here(&mut self, app: &mut AppPath<A>) {
        let now = Instant::now();
        let o = &mut self.overload;
        if o.logged.is_some() {
            let took = o.since.map_or(0, |s| now.duration_since(s.0).as_secs());
            app.log(&format!(
                "junos-sync master: the backup caught up: a full resync completed after {} aborted in a row ({took} s)",
                o.in_row
            ));
        }
        o.in_row = 0;
        o.walk_after = None;
        o.since = None;
        o.logged = None;
        o.complete_at = Some(now);
        o.base = Some((now, o.acked, o.queued));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_grows_and_stops_at_the_keepalive_time() {
        let ka = Duration::from_secs(3);
        let waits: Vec<u128> = (1..=8).map(|n| backoff(n, ka).as_millis()).collect();
        assert_eq!(waits, [100, 200, 400, 800, 1600, 3000, 3000, 3000]);
        assert_eq!(backoff(u32::MAX, ka), ka);
        assert_eq!(backoff(1, Duration::from_millis(50)).as_millis(), 50);
    }
}
