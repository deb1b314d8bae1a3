/*
 * A backup that cannot keep up (issue 16), the C calls:
 *   - junos_sync_set_overflow_policy: NULL ctx and a value that is no policy are INVALID (the
 *     latter logged), a backup context is STATE; on a master with resync, REFUSE makes
 *     junos_sync_queue return JUNOS_SYNC_ERR_BACKLOG_FULL at the limit, the TLV the caller's
 *     (freed here, exactly once), no overflow counted; RESYNC again drops instead;
 *   - junos_sync_set_resync_buffer: NULL ctx INVALID, a master STATE, a backup OK (also after
 *     its start);
 *   - JUNOS_SYNC_RESYNC_BUFFER fails init closed for a value that is not a number of bytes.
 * Every block allocated is freed (valgrind and the counting allocator).
 */
#include "pair.h"

static h_table_t mtab;
static h_cbstat_t mcs;
static long m_walk_bad;

H_CB_WALK(m_get_next, mcs, mtab, 0, m_walk_bad)

static void b_decode(void *data, size_t len)
{
    (void)data;
    (void)len;
}

static junos_sync_context_t *init_master(void)
{
    junos_sync_state_t st = h_master_state(false, 2);
    junos_sync_callbacks_t cb = h_master_callbacks(NULL, m_get_next, NULL, NULL, NULL);
    return junos_sync_init(&st, &cb);
}

static junos_sync_context_t *init_backup(void)
{
    junos_sync_state_t st = h_backup_state(1, false, 2);
    junos_sync_callbacks_t cb = h_backup_callbacks(b_decode, NULL, NULL, NULL);
    return junos_sync_init(&st, &cb);
}

static void test_overflow_policy(void)
{
    h_table_init(&mtab, 16);
    CHECK_EQ(junos_sync_set_overflow_policy(NULL, JUNOS_SYNC_OVERFLOW_REFUSE), JUNOS_SYNC_ERR_INVALID);
    junos_sync_context_t *b = init_backup();
    REQUIRE(b != NULL);
    CHECK_EQ(junos_sync_set_overflow_policy(b, JUNOS_SYNC_OVERFLOW_REFUSE), JUNOS_SYNC_ERR_STATE);
    CHECK(h_log_contains("junos_sync_set_overflow_policy: this context is a backup"));
    junos_sync_exit(b);

    junos_sync_context_t *m = init_master();
    REQUIRE(m != NULL);
    CHECK_EQ(junos_sync_set_overflow_policy(m, 7), JUNOS_SYNC_ERR_INVALID);
    CHECK(h_log_contains("7 is not a junos_sync_overflow_policy_t"));
    CHECK_EQ(junos_sync_set_overflow_policy(m, JUNOS_SYNC_OVERFLOW_REFUSE), JUNOS_SYNC_OK);
    CHECK_EQ(junos_sync_set_backlog_limit(m, 4096), JUNOS_SYNC_OK);
    REQUIRE(junos_sync_start(m) == JUNOS_SYNC_OK);
    /* No backup: everything queued is held, up to the limit; then refused, the TLV ours. */
    /* What the backlog charges for one: the first TLV, its payload and its entry's cost. */
    junos_sync_stats_t s;
    REQUIRE(junos_sync_queue(m, h_tlv_alloc(1, 100), false) == JUNOS_SYNC_OK);
    REQUIRE(junos_sync_get_stats(m, &s) == JUNOS_SYNC_OK);
    const uint64_t cost = s.backlog_bytes;
    CHECK(cost > 100);
    int taken = 1;
    junos_sync_status_t r = JUNOS_SYNC_OK;
    for (int i = 0; i < 1000 && r == JUNOS_SYNC_OK; i++) {
        junos_sync_tlv_t *t = h_tlv_alloc(1, 100);
        r = junos_sync_queue(m, t, false);
        if (r == JUNOS_SYNC_OK)
            taken++;
        else
            h_free(t);
    }
    CHECK_EQ(r, JUNOS_SYNC_ERR_BACKLOG_FULL);
    CHECK_EQ((uint64_t)taken, 4096 / cost);
    REQUIRE(junos_sync_get_stats(m, &s) == JUNOS_SYNC_OK);
    CHECK_EQ(s.overflows, 0);
    CHECK_EQ(s.backlog_bytes, (uint64_t)taken * cost);
    /* Back to the default, after the start: the next one over the limit drops the backlog. */
    CHECK_EQ(junos_sync_set_overflow_policy(m, JUNOS_SYNC_OVERFLOW_RESYNC), JUNOS_SYNC_OK);
    CHECK_EQ(junos_sync_queue(m, h_tlv_alloc(1, 100), false), JUNOS_SYNC_OK);
    int64_t end = h_now_ms() + h_tmo(5000);
    do {
        REQUIRE(junos_sync_get_stats(m, &s) == JUNOS_SYNC_OK);
    } while (s.overflows == 0 && h_now_ms() < end);
    CHECK_EQ(s.overflows, 1);
    junos_sync_exit(m);
    h_table_destroy(&mtab);
    CHECK_ALLOC_BALANCED(1000);
}

static void test_resync_buffer(void)
{
    h_table_init(&mtab, 16);
    CHECK_EQ(junos_sync_set_resync_buffer(NULL, 1 << 20), JUNOS_SYNC_ERR_INVALID);
    junos_sync_context_t *m = init_master();
    REQUIRE(m != NULL);
    CHECK_EQ(junos_sync_set_resync_buffer(m, 1 << 20), JUNOS_SYNC_ERR_STATE);
    CHECK(h_log_contains("junos_sync_set_resync_buffer: this context is a master"));
    junos_sync_exit(m);
    junos_sync_context_t *b = init_backup();
    REQUIRE(b != NULL);
    CHECK_EQ(junos_sync_set_resync_buffer(b, 1 << 20), JUNOS_SYNC_OK);
    REQUIRE(junos_sync_start(b) == JUNOS_SYNC_OK);
    CHECK_EQ(junos_sync_set_resync_buffer(b, 0), JUNOS_SYNC_OK);
    junos_sync_exit(b);
    h_table_destroy(&mtab);
    CHECK_ALLOC_BALANCED(1000);
}

static void test_resync_buffer_variable_fails_closed(void)
{
    const char *bad[] = {"", "abc", "-1", "1M", " 5"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        REQUIRE(setenv("JUNOS_SYNC_RESYNC_BUFFER", bad[i], 1) == 0);
        junos_sync_context_t *b = init_backup();
        unsetenv("JUNOS_SYNC_RESYNC_BUFFER");
        CHECK_MSG(b == NULL, "JUNOS_SYNC_RESYNC_BUFFER=\"%s\" was taken", bad[i]);
        if (b != NULL)
            junos_sync_exit(b);
        CHECK(h_log_contains("JUNOS_SYNC_RESYNC_BUFFER=") && h_log_contains("not a resync buffer"));
    }
    REQUIRE(setenv("JUNOS_SYNC_RESYNC_BUFFER", "33554432", 1) == 0);
    junos_sync_context_t *b = init_backup();
    unsetenv("JUNOS_SYNC_RESYNC_BUFFER");
    CHECK(b != NULL);
    if (b != NULL)
        junos_sync_exit(b);
    CHECK_ALLOC_BALANCED(1000);
}

int main(int argc, char **argv)
{
    h_init(argc, argv);
    RUN_T(test_overflow_policy, 30);
    RUN_T(test_resync_buffer, 30);
    RUN_T(test_resync_buffer_variable_fails_closed, 30);
    return h_summary();
}
