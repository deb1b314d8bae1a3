//! The master's side of a session's stream: reading the backup's acknowledgements (each checked
//! against what this connection delivered) and freeing what they cover, and filling the
//! connection's output from the backlog.

use std::num::NonZeroU64;

use crate::engine::app::calls::WalkTag;
use crate::engine::app::path::AppPath;
use crate::engine::app::{App, Tlv};
use crate::engine::error::Fault;
use crate::engine::master::backlog::{Entry, Peek};
use crate::proto::wire::FrameKind;

use super::{payload_of, Master, BATCH_BYTES, MAX_READS_PER_STEP, OUT_HIGH_WATER};

impl<A: App> Master<A> {
    pub(super) fn link_step(&mut self, app: &mut AppPath<A>) -> Result<bool, Fault> {
        // Acknowledgements first: they free memory and may unpin the walk. Frames already
        // buffered (a liveness check may have read them) are taken before reading more.
        for _ in 0..MAX_READS_PER_STEP {
            self.take_frames(app)?;
            if app.halted() {
                return Ok(false);
            }
            let l = self.link.as_mut().expect("connected");
            if !l.conn.read_some()? {
                break;
            }
        }
        self.walk_step(app);
        if app.halted() {
            return Ok(false);
        }
        self.fill();
        let done = self.flush()?;
        // A walk held back by its budget waits for acknowledgements (readable), not for us.
        // One waiting out its backoff wakes the loop at its deadline.
        let more_to_fill = !self.walk_waits()
            && (self.backlog.send_seq() < self.backlog.next_seq() || (self.walk.is_some() && self.walk_may_go(app)));
        let c = &self.link.as_ref().expect("connected").conn;
        Ok(c.readable || (c.writable && (more_to_fill || !done)))
    }

    /// Writes what the connection has queued; zero-copy payloads come from the backlog.
    pub(super) fn flush(&mut self) -> Result<bool, Fault> {
        let Master { link, backlog, .. } = self;
        let l = link.as_mut().expect("connected");
        l.conn.flush(|seq| payload_of(backlog, seq))
    }

    /// Handles every complete frame the backup has sent.
    fn take_frames(&mut self, app: &mut AppPath<A>) -> Result<(), Fault> {
        loop {
            let l = self.link.as_mut().expect("connected");
            let Some(f) = l.conn.next_frame()? else { return Ok(()) };
            match f.header.kind {
                FrameKind::Ack => {
                    self.on_ack(app, f.header.seq)?;
                    if app.halted() {
                        return Ok(());
                    }
                }
                FrameKind::Keepalive => {}
                FrameKind::Refuse => {
                    let why = String::from_utf8_lossy(l.conn.payload(&f)).into_owned();
                    return Err(Fault::PeerRefused(why));
                }
                k => return Err(Fault::Violation(format!("unexpected {k:?} frame from a backup"))),
            }
        }
    }

    /// An acknowledgement: it may cover only what this connection delivered, and never go
    /// back.
    fn on_ack(&mut self, app: &mut AppPath<A>, seq: u64) -> Result<(), Fault> {
        let l = self.link.as_mut().expect("connected");
        let delivered = l.delivered();
        if seq > delivered {
            return Err(Fault::Violation(format!(
                "acknowledges sequence {seq}, but only up to {delivered} was delivered on this connection"
            )));
        }
        if seq < l.acked {
            return Err(Fault::Violation(format!("acknowledges sequence {seq} after {}", l.acked)));
        }
        l.acked = seq;
        self.overload.acked_to(seq);
        self.session_delivered = self.session_delivered.max(delivered);
        self.acknowledge(app, seq);
        Ok(())
    }

    /// Frees (and notifies) everything the backup has applied up to `upto`.
    pub(super) fn acknowledge(&mut self, app: &mut AppPath<A>, upto: u64) {
        while let Some((seq, e)) = self.backlog.pop_acked(upto) {
            self.overload.acked += 1;
            match e {
                Entry::Queued { tlv, ack } => {
                    self.progress.acked();
                    app.release(tlv, ack, None);
                }
                Entry::Walked(t) => {
                    // Of the walk going on, the application's cursor may point into it.
                    let tag = self
                        .walk
                        .as_ref()
                        .and_then(|w| Some(WalkTag { id: w.id, no: NonZeroU64::new(seq.checked_sub(w.base)?)? }));
                    self.walked_bytes -= t.size();
                    if let Some(r) = self.resync.as_mut() {
                        r.acked += 1;
                    }
                    app.release(t, false, tag);
                }
                Entry::SyncBegin => {}
                Entry::SyncEnd(n) => {
                    if let Some(r) = self.resync.as_mut() {
                        r.running = false;
                        r.complete = true;
                    }
                    app.shared.counters.resync_completed();
                    self.progress.resync_done();
                    self.resync_complete_here(app);
                    app.sync_done(n);
                }
            }
        }
        // Published here, on the loop thread, in both modes: waits never need a dispatch.
        self.progress.publish(&app.shared.waits);
        app.deliver();
    }

    /// Moves unsent backlog entries into the connection's output, up to the high-water mark:
    /// in BATCH frames (version 2: many TLVs per header and CRC) or a DATA frame each.
    pub(super) fn fill(&mut self) {
        if self.walk_waits() {
            return;
        }
        let Some(l) = self.link.as_mut() else { return };
        let c = &mut l.conn;
        let batches = c.version() >= 2;
        let crc = c.batch_crc();
        while c.out.pending() < OUT_HIGH_WATER {
            let Some((seq, e)) = self.backlog.take_unsent() else {
                break;
            };
            match e {
                Peek::Tlv(tlv) if batches => {
                    let mut b = c.out.begin_batch(seq, crc);
                    c.out.record(&mut b, tlv.tlv().tlv_type(), tlv.tlv().payload());
                    while b.len() < BATCH_BYTES {
                        let Some(Peek::Tlv(tlv)) = self.backlog.peek_unsent() else {
                            break;
                        };
                        c.out.record(&mut b, tlv.tlv().tlv_type(), tlv.tlv().payload());
                        self.backlog.skip_unsent();
                    }
                    c.out.end_batch(b);
                }
                Peek::Tlv(tlv) => c.out.data(seq, tlv.tlv().tlv_type(), tlv.tlv().payload()),
                Peek::SyncBegin => c.out.control(FrameKind::SyncBegin, seq, &[]),
                Peek::SyncEnd(n) => c.out.control(FrameKind::SyncEnd, seq, &n.to_le_bytes()),
            }
        }
    }
}
