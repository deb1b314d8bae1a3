// The counters of a context, in the order of the C struct `junos_sync_stats_t`: the one place
// they are written. Not a module: a list that `counters!` macros expand, each its own way,
// where a definition follows from it: the engine's `Stats` and live counters
// (src/engine/counters.rs), the check of the C struct and its copy (src/ffi/stats.rs), the
// status JSON (src/engine/status), and junos-sync-stat's table (tools/junos-sync-stat).
//
// Each entry: name, words for people, whether only a master counts it, counter (grows) or
// gauge (a level, read when asked), and what it counts.
counters! {
    full_resyncs, "full resyncs", true, counter,
        "Master: sessions that started with a full resync (a database walk).";
    partial_resyncs, "partial resyncs", true, counter,
        "Master: sessions where a returning backup resumed after its last applied entry.";
    connections, "connections", true, counter,
        "Master: backup connections that passed the handshake.";
    frames_rejected, "frames rejected", false, counter,
        "Connections ended for malformed input or a protocol violation (an acknowledgement of what was never sent, a sequence gap, an impossible resume point).";
    overflows, "overflows", true, counter,
        "Master: times the backlog went over its limit and was dropped for a full resync.";
    backlog_bytes, "backlog bytes", true, gauge,
        "Master: TLV bytes held (queued, in flight, unacknowledged).";
    auth_failures, "auth failures", false, counter,
        "Handshakes that failed authentication: a wrong key, a keyed peer and an unkeyed one, or a handshake not completed with our key (a replayed one).";
    handshakes_refused, "handshakes refused", false, counter,
        "Well-formed handshakes refused: another protocol version, two masters or two backups, or a new backup while a live one is connected.";
    waits_satisfied, "waits satisfied", true, counter,
        "Master: junos_sync_wait calls that returned JUNOS_SYNC_OK (the backup had applied what they waited for).";
    waits_timed_out, "waits timed out", true, counter,
        "Master: junos_sync_wait calls that returned JUNOS_SYNC_ERR_TIMEOUT.";
    resyncs_started, "resyncs started", false, counter,
        "Full resyncs begun (master: walks started; backup: SYNC_BEGIN received), aborted ones included.";
    resyncs_completed, "resyncs completed", false, counter,
        "Full resyncs that completed (master: the backup acknowledged the whole walk; backup: SYNC_END applied).";
    resyncs_aborted, "resyncs aborted", false, counter,
        "Full resyncs that ended before completing: the connection was lost, or an overflow started the walk again.";
    resync_age_ms, "ms since last complete resync", false, gauge,
        "Milliseconds since the last full resync completed; UINT64_MAX if none has in this context's life.";
}
