//! The backup's resync buffer (`junos_sync_set_resync_buffer`): a full resync's entries held
//! by the library until its SYNC_END, so that `sync_db_clear_func` and their decodes run only
//! once the whole walk arrived and an aborted resync leaves the application's table as it was.
//! Past the buffer's bytes, or with none set, today's order: clear at SYNC_BEGIN, each entry
//! decoded as it comes. The held entries are acknowledged as they arrive (the library has
//! them), so the master's walk keeps its pace; a connection lost during the walk drops them,
//! and the master starts a new walk (a walk in progress gives no resume point).

use std::sync::atomic::Ordering;

use crate::engine::app::path::AppPath;
use crate::engine::app::App;

/// Bytes an entry costs beyond its payload: its sequence number and the box.
const ENTRY_COST: usize = 16;

/// The full resync in progress, held.
pub(super) struct Hold {
    /// SYNC_BEGIN's sequence number.
    begin: u64,
    entries: Vec<(u64, Box<[u8]>)>,
    bytes: usize,
    limit: usize,
    /// The last sequence number held: what may be acknowledged.
    last: u64,
}

/// SYNC_BEGIN at `seq`: held if the context asks for it, else the application clears now.
pub(super) fn begin<A: App>(hold: &mut Option<Hold>, app: &mut AppPath<A>, seq: u64) {
    if let Some(h) = hold.take() {
        app.log(&format!(
            "junos-sync backup: full resync restarted by the master before its end; the application's table is kept as it was ({} entries held dropped)",
            h.entries.len()
        ));
    }
    let limit = app.shared.resync_buffer.load(Ordering::Relaxed);
    if limit == 0 {
        app.db_clear(seq);
    } else {
        *hold = Some(Hold { begin: seq, entries: Vec::new(), bytes: 0, limit, last: seq });
    }
}

/// An entry of the stream: held during a held resync while it fits, else decoded.
pub(super) fn entry<A: App>(hold: &mut Option<Hold>, app: &mut AppPath<A>, payload: &mut [u8], seq: u64) {
    if let Some(h) = hold.as_mut() {
        let cost = payload.len() + ENTRY_COST;
        if h.bytes + cost <= h.limit {
            h.bytes += cost;
            h.entries.push((seq, payload.into()));
            h.last = seq;
            return;
        }
        app.log(&format!(
            "junos-sync backup: the full resync is larger than the resync buffer of {} bytes ({} entries held); \
             clearing the database now and applying it as it comes",
            h.limit,
            h.entries.len()
        ));
        release(hold, app);
    }
    app.decode(payload, seq);
}

/// SYNC_END arrived (or the buffer is full): the clear, then every held entry, in order.
pub(super) fn release<A: App>(hold: &mut Option<Hold>, app: &mut AppPath<A>) {
    let Some(h) = hold.take() else { return };
    app.db_clear(h.begin);
    for (seq, mut p) in h.entries {
        app.decode(&mut p, seq);
    }
}

/// The connection went during a held resync: the application keeps its table.
pub(super) fn cut<A: App>(hold: &mut Option<Hold>, app: &mut AppPath<A>) {
    if let Some(h) = hold.take() {
        app.log(&format!(
            "junos-sync backup: full resync cut before its end; the application's table is kept as it was ({} entries held dropped)",
            h.entries.len()
        ));
    }
}

/// What may be acknowledged beyond what the application applied.
pub(super) fn held_upto(hold: &Option<Hold>) -> u64 {
    hold.as_ref().map_or(0, |h| h.last)
}
