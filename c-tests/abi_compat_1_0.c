/*
 * A program built against release 1.0, run against this library: junos_sync_get_stats must
 * fill the six fields 1.0's struct junos_sync_stats_s had and write nothing beyond them (1.1
 * appended two), which the compatibility symbol junos_sync_get_stats@JUNOS_SYNC_1.0 ensures.
 *
 * It declares what it calls of the 1.0 API itself, as the 1.0 header did, instead of including
 * today's header. The stats struct is followed by a canary in the same allocation; the canary
 * must come back untouched and the six fields written (a new master context counts nothing:
 * all 0). scripts/check-compat-1.0.sh links it against stand-ins of the 1.0 library and runs
 * it against build/lib.
 */
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- release 1.0's declarations ------------------------------------------------------- */

typedef struct junos_sync_context_s junos_sync_context_t;

typedef enum junos_sync_status_e {
    JUNOS_SYNC_OK = 0,
    JUNOS_SYNC_ERR_INVALID = 1,
    JUNOS_SYNC_ERR_STATE = 2,
    JUNOS_SYNC_ERR_NOMEM = 3,
    JUNOS_SYNC_ERR_BACKLOG_FULL = 4,
    JUNOS_SYNC_ERR_SOCKET = 5,
    JUNOS_SYNC_ERR_INTERNAL = 6,
} junos_sync_status_t;

typedef struct junos_sync_state_s {
    bool is_master;
    bool no_resync;
    uint32_t server_addr;
    uint16_t server_port;
    uint32_t keepalive_time;
} junos_sync_state_t;

typedef struct junos_sync_tlv_s junos_sync_tlv_t;
typedef struct junos_sync_getnext_data_s junos_sync_getnext_data_t;
typedef enum junos_sync_conn_status_e {
    JUNOS_SYNC_CONN_DOWN = 0,
    JUNOS_SYNC_CONN_UP = 1,
} junos_sync_conn_status_t;

typedef struct junos_sync_callbacks_s {
    void (*sync_ack_notify_func)(junos_sync_tlv_t *data, size_t len);
    void (*sync_data_decode_func)(void *data, size_t len);
    void *(*sync_data_get_next_func)(void *current_node, junos_sync_getnext_data_t *gndata);
    void (*sync_conn_status_change_func)(junos_sync_conn_status_t conn_status);
    void (*sync_init_sync_done_func)(size_t num_of_entries_synced);
    void (*sync_bind_done_func)(in_port_t port);
    void (*sync_log_msg_func)(const char *format, ...);
    void *(*sync_malloc_func)(size_t size);
    void (*sync_free_func)(void *ptr);
    void (*sync_db_clear_func)(void);
} junos_sync_callbacks_t;

/* Six counters in 1.0. */
typedef struct junos_sync_stats_s {
    uint64_t full_resyncs;
    uint64_t partial_resyncs;
    uint64_t connections;
    uint64_t frames_rejected;
    uint64_t overflows;
    uint64_t backlog_bytes;
} junos_sync_stats_t;

junos_sync_context_t *junos_sync_init(junos_sync_state_t *state, junos_sync_callbacks_t *callbacks);
junos_sync_status_t junos_sync_get_stats(junos_sync_context_t *ctx, junos_sync_stats_t *stats);
void junos_sync_exit(junos_sync_context_t *ctx);

/* ---- the test -------------------------------------------------------------------------- */

#define CANARY UINT64_C(0xa5a5a5a5a5a5a5a5)

/* The stats as the application allocates them, with whatever it keeps next to them. */
struct stats_and_canary {
    junos_sync_stats_t stats;
    uint64_t canary[2];
};

static void log_msg(const char *format, ...)
{
    (void)format; /* nothing to say: init succeeds or the test fails on NULL */
}

int main(void)
{
    junos_sync_state_t state;
    junos_sync_callbacks_t callbacks;
    memset(&state, 0, sizeof state);
    memset(&callbacks, 0, sizeof callbacks);
    state.is_master = true;
    state.no_resync = true; /* a master without resync needs no walk callback */
    callbacks.sync_log_msg_func = log_msg;

    junos_sync_context_t *ctx = junos_sync_init(&state, &callbacks);
    if (ctx == NULL) {
        fprintf(stderr, "abi_compat_1_0: junos_sync_init returned NULL\n");
        return 1;
    }
    struct stats_and_canary *s = malloc(sizeof *s);
    if (s == NULL) {
        fprintf(stderr, "abi_compat_1_0: out of memory\n");
        return 1;
    }
    memset(s, 0xa5, sizeof *s);
    junos_sync_status_t rc = junos_sync_get_stats(ctx, &s->stats);
    junos_sync_exit(ctx);

    int ok = 1;
    if (rc != JUNOS_SYNC_OK) {
        fprintf(stderr, "abi_compat_1_0: junos_sync_get_stats returned %d\n", (int)rc);
        ok = 0;
    }
    for (int i = 0; i < 2; i++) {
        if (s->canary[i] != CANARY) {
            fprintf(stderr, "abi_compat_1_0: the %zu bytes after the 1.0 stats were overwritten:"
                            " canary[%d] = %#llx\n", sizeof s->canary, i,
                    (unsigned long long)s->canary[i]);
            ok = 0;
        }
    }
    const uint64_t f[6] = {s->stats.full_resyncs, s->stats.partial_resyncs, s->stats.connections,
                           s->stats.frames_rejected, s->stats.overflows, s->stats.backlog_bytes};
    static const char *const names[6] = {"full_resyncs", "partial_resyncs", "connections",
                                         "frames_rejected", "overflows", "backlog_bytes"};
    for (int i = 0; i < 6; i++) {
        if (f[i] != 0) {
            fprintf(stderr, "abi_compat_1_0: %s = %#llx, not 0 (not written?)\n", names[i],
                    (unsigned long long)f[i]);
            ok = 0;
        }
    }
    free(s);
    if (!ok)
        return 1;
    printf("abi_compat_1_0: junos_sync_get_stats wrote the six 1.0 counters (all 0 on a new"
           " context) and not the canary after them\n");
    return 0;
}
