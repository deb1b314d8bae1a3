/*
 * A program built against release 1.1.0's header and library, run on this library: its
 * junos_sync_stats_t has eight fields, and whatever it keeps after them must stay untouched.
 * It links against junos_sync_get_stats@JUNOS_SYNC_1.1, which this release keeps as a
 * compatibility symbol (abi/compat); the 1.2 default writes fourteen fields and would overwrite
 * the canary. `make mixed-test` builds it with 1.1.0's header (build/compat/1.1.0) and runs it
 * on build/lib.
 */
#include <jnx/junos_sync.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CANARY UINT64_C(0xa5a5a5a5a5a5a5a5)

struct stats_and_canary {
    junos_sync_stats_t stats;
    uint64_t canary[8];
};

static void log_msg(const char *format, ...)
{
    (void)format;
}

int main(void)
{
    junos_sync_state_t state;
    junos_sync_callbacks_t callbacks;
    memset(&state, 0, sizeof state);
    memset(&callbacks, 0, sizeof callbacks);
    state.is_master = true;
    state.no_resync = true;
    callbacks.sync_log_msg_func = log_msg;
    if (sizeof(junos_sync_stats_t) != 8 * sizeof(uint64_t)) {
        fprintf(stderr, "abi_compat_1_1: built against a header whose stats have %zu bytes, not 1.1.0's 64\n",
                sizeof(junos_sync_stats_t));
        return 1;
    }
    junos_sync_context_t *ctx = junos_sync_init(&state, &callbacks);
    if (ctx == NULL) {
        fprintf(stderr, "abi_compat_1_1: junos_sync_init returned NULL\n");
        return 1;
    }
    struct stats_and_canary *s = malloc(sizeof *s);
    if (s == NULL)
        return 1;
    memset(s, 0xa5, sizeof *s);
    junos_sync_status_t rc = junos_sync_get_stats(ctx, &s->stats);
    junos_sync_exit(ctx);
    int bad = rc != JUNOS_SYNC_OK;
    const uint64_t *f = (const uint64_t *)&s->stats;
    for (int i = 0; i < 8; i++)
        bad |= f[i] != 0; /* a new context: every 1.1 counter is 0 */
    for (int i = 0; i < 8; i++)
        bad |= s->canary[i] != CANARY;
    printf("abi_compat_1_1: junos_sync_get_stats returned %d, %s the eight 1.1 counters and %s the canary after them\n",
           (int)rc, bad ? "NOT (all of)" : "wrote", bad ? "maybe overwrote" : "left alone");
    free(s);
    return bad;
}
