/*
 * junos_sync_get_stats@JUNOS_SYNC_1.0, the compatibility symbol kept for programs built against
 * release 1.0: there struct junos_sync_stats_s had six fields (1.1 appended auth_failures and
 * handshakes_refused), so this version writes only those six. Implemented by
 * junos_sync_get_stats_1_0 in src/ffi/stats.rs, bound to JUNOS_SYNC_1.0 by .symver there.
 *
 * The prototype and the types it needs, as the 1.0 header declared them (abi/README.md,
 * "Changing a released function's ABI"). `make abi-check` compiles this with the implementing
 * function's name and the same .symver, and compares the result with the recorded 1.0 ABI.
 */
#include <stdint.h>

struct junos_sync_context_s;
typedef struct junos_sync_context_s junos_sync_context_t;

enum junos_sync_status_e {
    JUNOS_SYNC_OK = 0,
    JUNOS_SYNC_ERR_INVALID = 1,
    JUNOS_SYNC_ERR_STATE = 2,
    JUNOS_SYNC_ERR_NOMEM = 3,
    JUNOS_SYNC_ERR_BACKLOG_FULL = 4,
    JUNOS_SYNC_ERR_SOCKET = 5,
    JUNOS_SYNC_ERR_INTERNAL = 6,
};
typedef enum junos_sync_status_e junos_sync_status_t;

struct junos_sync_stats_s {
    uint64_t full_resyncs;
    uint64_t partial_resyncs;
    uint64_t connections;
    uint64_t frames_rejected;
    uint64_t overflows;
    uint64_t backlog_bytes;
};
typedef struct junos_sync_stats_s junos_sync_stats_t;

junos_sync_status_t junos_sync_get_stats_1_0(junos_sync_context_t *ctx, junos_sync_stats_t *stats);
