/*
 * Trusted replication (issue 7) through the C API: the key functions' arguments and states, a
 * keyed pair, a pair with different keys, JUNOS_SYNC_AUTH_KEY_FILE failing closed at
 * junos_sync_init, and junos_sync_exit called again from the callbacks junos_sync_exit itself
 * causes (the DOWN it reports, the frees of its teardown): those second calls do nothing.
 */
#include "pair.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>

static const char KEY[] = "c-tests/test_trust: the pair key";   /* 32 bytes */
static const char OTHER[] = "c-tests/test_trust: another key!"; /* 32 bytes */
#define KEY_LEN 32

/* ---- master ---------------------------------------------------------------------------- */

static h_table_t mtab;
static h_cbstat_t mcs;
static junos_sync_context_t *mctx;
static in_port_t mport;
static long m_binds, m_sync_done_calls, m_walk_bad;
static size_t m_sync_n;
static long g_exit_from_down; /* a DOWN callback calls junos_sync_exit on its own context */
static long g_exit_from_free; /* sync_free_func calls junos_sync_exit(g_free_ctx) */
static junos_sync_context_t *g_free_ctx;
static long g_nested_exits;   /* exits made from those callbacks */

/* conn_status of side `which` (1 master, 2 backup): exits its own context on DOWN when
 * g_exit_from_down names it. */
static void conn_maybe_exit(h_cbstat_t *cs, junos_sync_context_t *ctx, long which,
                            junos_sync_conn_status_t st)
{
    h_cb_enter(cs);
    h_cb_conn(cs, st);
    if (st == JUNOS_SYNC_CONN_DOWN && H_LOAD(g_exit_from_down) == which) {
        junos_sync_exit(ctx);
        H_INC(g_nested_exits);
    }
    h_cb_leave(cs);
}

static void m_conn(junos_sync_conn_status_t st)
{
    conn_maybe_exit(&mcs, mctx, 1, st);
}

H_CB_SYNC_DONE(m_sync_done, mcs, m_sync_n, m_sync_done_calls)
H_CB_WALK(m_walk, mcs, mtab, 16, m_walk_bad)
H_CB_BIND(m_bind, mport, m_binds)

/* ---- backup ---------------------------------------------------------------------------- */

static h_table_t btab;
static h_cbstat_t bcs;
static junos_sync_context_t *bctx;
static long b_sync_done_calls, b_clears, b_bad, b_decodes;
static size_t b_sync_n;
static long b_gate_at, b_gate_reached, b_gate_open; /* decode number b_gate_at waits */

static void b_conn(junos_sync_conn_status_t st)
{
    conn_maybe_exit(&bcs, bctx, 2, st);
}

H_CB_SYNC_DONE(b_sync_done, bcs, b_sync_n, b_sync_done_calls)
H_CB_DB_CLEAR(b_db_clear, bcs, btab, b_clears)

static void b_decode(void *data, size_t len)
{
    h_cb_enter(&bcs);
    long n = H_INC(b_decodes);
    h_wire_t w;
    if (h_wire_decode(data, len, &w))
        h_table_apply(&btab, &w);
    else
        H_INC(b_bad);
    if (H_LOAD(b_gate_at) != 0 && n == H_LOAD(b_gate_at)) {
        H_STORE(b_gate_reached, 1);
        while (!H_LOAD(b_gate_open))
            h_sleep_us(500);
    }
    h_cb_leave(&bcs);
}

/* ---- setup ----------------------------------------------------------------------------- */

/* sync_free_func of the contexts: h_free, after an exit of g_free_ctx when asked to. */
static void free_maybe_exit(void *p)
{
    if (H_LOAD(g_exit_from_free)) {
        junos_sync_exit(g_free_ctx);
        H_INC(g_nested_exits);
    }
    h_free(p);
}

static junos_sync_context_t *make_master(const char *key)
{
    junos_sync_state_t st = h_master_state(false, 2);
    junos_sync_callbacks_t cb = h_master_callbacks(NULL, m_walk, m_conn, m_sync_done, m_bind);
    cb.sync_free_func = free_maybe_exit;
    junos_sync_context_t *c = junos_sync_init(&st, &cb);
    if (c != NULL && key != NULL && junos_sync_set_auth_key(c, key, KEY_LEN) != JUNOS_SYNC_OK)
        h_fail(__FILE__, __LINE__, "junos_sync_set_auth_key on the master failed");
    return c;
}

static junos_sync_context_t *make_backup(const char *key)
{
    junos_sync_state_t st = h_backup_state(mport, false, 2);
    junos_sync_callbacks_t cb = h_backup_callbacks(b_decode, b_conn, b_sync_done, b_db_clear);
    cb.sync_free_func = free_maybe_exit;
    junos_sync_context_t *c = junos_sync_init(&st, &cb);
    if (c != NULL && key != NULL && junos_sync_set_auth_key(c, key, KEY_LEN) != JUNOS_SYNC_OK)
        h_fail(__FILE__, __LINE__, "junos_sync_set_auth_key on the backup failed");
    return c;
}

static void fill_master_db(uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        h_rec_t r = {i, 1, (uint64_t)i * 3};
        h_table_put(&mtab, &r);
    }
}

/* Queues n changes of ids from `first`, each with `extra` pattern bytes. */
static void queue_records(uint32_t first, long n, size_t extra, bool ack)
{
    static uint64_t seq;
    for (long i = 0; i < n; i++) {
        h_rec_t r = {first + (uint32_t)i, 2, (uint64_t)i};
        h_table_put(&mtab, &r);
        junos_sync_tlv_t *t = h_tlv_rec(H_OP_PUT, &r, ++seq, 0, extra);
        junos_sync_status_t s = junos_sync_queue(mctx, t, ack);
        if (s != JUNOS_SYNC_OK) {
            h_fail(__FILE__, __LINE__, "junos_sync_queue returned %d", (int)s);
            h_free(t);
            return;
        }
    }
}

static junos_sync_stats_t stats_of(junos_sync_context_t *c)
{
    junos_sync_stats_t s;
    memset(&s, 0, sizeof s);
    if (junos_sync_get_stats(c, &s) != JUNOS_SYNC_OK)
        h_fail(__FILE__, __LINE__, "junos_sync_get_stats failed");
    return s;
}

static uint64_t auth_failures(junos_sync_context_t *c)
{
    return stats_of(c).auth_failures;
}

/* A keyed pair converges (walk and stream): the common end of several tests. */
static void converge(void)
{
    CHECK_WAIT(H_LOAD(b_sync_done_calls) == 1, 10000);
    queue_records(100000, 2000, 40, false);
    CHECK_WAIT(h_tables_equal(&mtab, &btab), 10000);
    CHECK_TABLES_EQUAL(&mtab, &btab);
    CHECK_EQ(H_LOAD(b_bad), 0);
    CHECK_EQ(auth_failures(mctx), 0);
    CHECK_EQ(auth_failures(bctx), 0);
}

/* ---- key functions --------------------------------------------------------------------- */

static void test_auth_key_arguments_and_state(void)
{
    static char huge[4097];
    memset(huge, 'k', sizeof huge);
    junos_sync_state_t st = h_master_state(true, 2);
    junos_sync_callbacks_t cb = h_master_callbacks(NULL, NULL, NULL, NULL, m_bind);
    junos_sync_context_t *c = junos_sync_init(&st, &cb);
    REQUIRE(c != NULL);
    CHECK_EQ(junos_sync_set_auth_key(NULL, KEY, KEY_LEN), JUNOS_SYNC_ERR_INVALID);
    CHECK_EQ(junos_sync_add_auth_key(NULL, KEY, KEY_LEN), JUNOS_SYNC_ERR_INVALID);
    CHECK_EQ(junos_sync_set_auth_key(c, NULL, KEY_LEN), JUNOS_SYNC_ERR_INVALID);
    CHECK(h_log_contains("junos_sync_set_auth_key: key is NULL"));
    CHECK_EQ(junos_sync_add_auth_key(c, NULL, KEY_LEN), JUNOS_SYNC_ERR_INVALID);
    CHECK(h_log_contains("junos_sync_add_auth_key: key is NULL"));
    CHECK_EQ(junos_sync_set_auth_key(c, KEY, JUNOS_SYNC_MIN_KEY_LEN - 1), JUNOS_SYNC_ERR_INVALID);
    CHECK(h_log_contains("at least 16 bytes (this one has 15)"));
    CHECK_EQ(junos_sync_set_auth_key(c, KEY, 0), JUNOS_SYNC_ERR_INVALID);
    CHECK_EQ(junos_sync_add_auth_key(c, KEY, JUNOS_SYNC_MIN_KEY_LEN - 1), JUNOS_SYNC_ERR_INVALID);
    CHECK_EQ(junos_sync_set_auth_key(c, huge, sizeof huge), JUNOS_SYNC_ERR_INVALID);
    CHECK(h_log_contains("at most 4096 bytes"));
    CHECK_EQ(junos_sync_set_auth_key(c, huge, sizeof huge - 1), JUNOS_SYNC_OK);
    CHECK_EQ(junos_sync_set_auth_key(c, KEY, JUNOS_SYNC_MIN_KEY_LEN), JUNOS_SYNC_OK);
    /* Rotation: at most 4 keys; set replaces them all. */
    CHECK_EQ(junos_sync_add_auth_key(c, OTHER, KEY_LEN), JUNOS_SYNC_OK);
    CHECK_EQ(junos_sync_add_auth_key(c, OTHER, 20), JUNOS_SYNC_OK);
    CHECK_EQ(junos_sync_add_auth_key(c, OTHER, 24), JUNOS_SYNC_OK);
    CHECK_EQ(junos_sync_add_auth_key(c, OTHER, 28), JUNOS_SYNC_ERR_INVALID);
    CHECK(h_log_contains("at most 4 keys"));
    CHECK_EQ(junos_sync_set_auth_key(c, KEY, KEY_LEN), JUNOS_SYNC_OK);
    CHECK_EQ(junos_sync_add_auth_key(c, OTHER, KEY_LEN), JUNOS_SYNC_OK);
    CHECK_EQ(junos_sync_start(c), JUNOS_SYNC_OK);
    CHECK_EQ(junos_sync_set_auth_key(c, KEY, KEY_LEN), JUNOS_SYNC_ERR_STATE);
    CHECK(h_log_contains("keys are set before junos_sync_start"));
    CHECK_EQ(junos_sync_add_auth_key(c, OTHER, KEY_LEN), JUNOS_SYNC_ERR_STATE);
    /* Arguments are checked before the state. */
    CHECK_EQ(junos_sync_set_auth_key(c, KEY, 3), JUNOS_SYNC_ERR_INVALID);
    CHECK_EQ(h_log_bad_fmt, 0);
    junos_sync_exit(c);
    CHECK_ALLOC_BALANCED(1000);
}

/* The two tables, `cap` entries each, and `entries` of them in the master's database. */
static void tables_begin(size_t cap, uint32_t entries)
{
    h_table_init(&mtab, cap);
    h_table_init(&btab, cap);
    fill_master_db(entries);
}

/* After both exits: every callback well-behaved, every allocation freed; the tables go. */
static void tables_end(void)
{
    CHECK_CBSTAT(&mcs);
    CHECK_CBSTAT(&bcs);
    CHECK_ALLOC_BALANCED(1000);
    h_table_destroy(&mtab);
    h_table_destroy(&btab);
}

/* ---- keyed pairs ----------------------------------------------------------------------- */

static void test_keyed_pair_converges(void)
{
    tables_begin(4000, 1000);
    mctx = make_master(KEY);
    REQUIRE(mctx != NULL && junos_sync_start(mctx) == JUNOS_SYNC_OK);
    bctx = make_backup(KEY);
    REQUIRE(bctx != NULL && junos_sync_start(bctx) == JUNOS_SYNC_OK);
    CHECK_WAIT(H_LOAD(b_sync_done_calls) == 1, 10000);
    CHECK(h_log_contains("authenticated and encrypted"));
    converge();
    CHECK_EQ(b_sync_n, 1000);
    CHECK_EQ(H_LOAD(b_clears), 1);
    h_exit(bctx, &bcs);
    h_exit(mctx, &mcs);
    CHECK_EQ(H_LOAD(mcs.up), 1);
    CHECK_EQ(H_LOAD(bcs.up), 1);
    tables_end();
}

static void test_different_keys_never_connect(void)
{
    tables_begin(100, 10);
    mctx = make_master(KEY);
    REQUIRE(mctx != NULL && junos_sync_start(mctx) == JUNOS_SYNC_OK);
    queue_records(1000, 10, 0, true);
    bctx = make_backup(OTHER);
    REQUIRE(bctx != NULL && junos_sync_start(bctx) == JUNOS_SYNC_OK);
    CHECK_WAIT(auth_failures(mctx) > 0 && auth_failures(bctx) > 0, 10000);
    /* A few more attempts: none gets through. */
    uint64_t m_fail = auth_failures(mctx);
    CHECK_WAIT(auth_failures(mctx) >= m_fail + 2, 10000);
    CHECK(h_log_contains("authentication failed"));
    CHECK_EQ(H_LOAD(mcs.up), 0);
    CHECK_EQ(H_LOAD(bcs.up), 0);
    CHECK_EQ(H_LOAD(b_clears), 0);
    CHECK_EQ(H_LOAD(b_decodes), 0);
    CHECK_EQ(stats_of(mctx).connections, 0);
    h_exit(bctx, &bcs);
    h_exit(mctx, &mcs);
    tables_end();
}

/* ---- JUNOS_SYNC_AUTH_KEY_FILE ---------------------------------------------------------- */

static char g_dir[64];

static void key_dir(void)
{
    h_tmp_dir(g_dir, sizeof g_dir, "trust");
}

/* Writes `n` bytes of `bytes` to g_dir/name with `mode`; the path in `path`. */
static void key_file(char *path, size_t cap, const char *name, const void *bytes, size_t n, mode_t mode)
{
    h_write_file(path, cap, g_dir, name, bytes, n, mode);
}

static void test_key_file_fails_closed(void)
{
    static const struct {
        const char *name;
        size_t len;
        mode_t mode; /* 0: no file */
        const char *why;
    } cases[] = {
        {"missing", 0, 0, "cannot read key file"},
        {"empty", 0, 0600, "at least 16 bytes (this one has 0)"},
        {"short", 15, 0600, "at least 16 bytes (this one has 15)"},
        {"group", KEY_LEN, 0640, "accessible by group or others (mode 640)"},
        {"others", KEY_LEN, 0604, "accessible by group or others (mode 604)"},
    };
    key_dir();
    mport = 9; /* a backup needs some port: the key file is read after the state is checked */
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char path[128];
        if (cases[i].mode != 0)
            key_file(path, sizeof path, cases[i].name, KEY, cases[i].len, cases[i].mode);
        else
            snprintf(path, sizeof path, "%s/%s", g_dir, cases[i].name);
        REQUIRE(setenv("JUNOS_SYNC_AUTH_KEY_FILE", path, 1) == 0);
        long lines = h_log_count();
        junos_sync_context_t *c = make_master(NULL);
        CHECK_MSG(c == NULL, "junos_sync_init with a %s key file returned a context", cases[i].name);
        if (c != NULL)
            junos_sync_exit(c);
        c = make_backup(NULL);
        CHECK_MSG(c == NULL, "a backup's junos_sync_init with a %s key file returned a context", cases[i].name);
        if (c != NULL)
            junos_sync_exit(c);
        CHECK_EQ(h_log_count(), lines + 2);
        CHECK_MSG(h_log_contains(cases[i].why) && h_log_contains("JUNOS_SYNC_AUTH_KEY_FILE"),
                  "no log line saying '%s' for the %s key file", cases[i].why, cases[i].name);
        unlink(path);
    }
    /* Unset: no key, a context as usual (set but empty fails: test_config.c). */
    unsetenv("JUNOS_SYNC_AUTH_KEY_FILE");
    junos_sync_context_t *c = make_master(NULL);
    CHECK(c != NULL);
    junos_sync_exit(c);
    rmdir(g_dir);
    CHECK_ALLOC_BALANCED(1000);
}

/* A good key file keys the context: the master gets the key through the environment, the
 * backup through junos_sync_set_auth_key, and they converge; an unkeyed backup does not get in. */
static void test_key_file_keys_the_context(void)
{
    char path[128];
    key_dir();
    key_file(path, sizeof path, "good", KEY, KEY_LEN, 0600);
    tables_begin(4000, 500);
    REQUIRE(setenv("JUNOS_SYNC_AUTH_KEY_FILE", path, 1) == 0);
    mctx = make_master(NULL);
    unsetenv("JUNOS_SYNC_AUTH_KEY_FILE");
    unlink(path);
    rmdir(g_dir);
    REQUIRE(mctx != NULL && junos_sync_start(mctx) == JUNOS_SYNC_OK);
    /* Unkeyed first: refused for authentication. */
    bctx = make_backup(NULL);
    REQUIRE(bctx != NULL && junos_sync_start(bctx) == JUNOS_SYNC_OK);
    CHECK_WAIT(auth_failures(mctx) > 0 && auth_failures(bctx) > 0, 10000);
    CHECK_EQ(H_LOAD(bcs.up), 0);
    junos_sync_exit(bctx);
    memset(&bcs, 0, sizeof bcs);
    uint64_t m_fail = auth_failures(mctx);
    bctx = make_backup(KEY);
    REQUIRE(bctx != NULL && junos_sync_start(bctx) == JUNOS_SYNC_OK);
    CHECK_WAIT(H_LOAD(b_sync_done_calls) == 1, 10000);
    CHECK(h_log_contains("authenticated and encrypted"));
    CHECK_EQ(b_sync_n, 500);
    queue_records(100000, 2000, 40, false);
    CHECK_WAIT(h_tables_equal(&mtab, &btab), 10000);
    CHECK_TABLES_EQUAL(&mtab, &btab);
    CHECK_EQ(auth_failures(mctx), m_fail);
    CHECK_EQ(auth_failures(bctx), 0);
    h_exit(bctx, &bcs);
    h_exit(mctx, &mcs);
    tables_end();
}

/* ---- exit from the callbacks exit causes ---------------------------------------------- */

/* junos_sync_exit reports DOWN; the DOWN callback calls junos_sync_exit on the same context
 * again: a no-op. `side` 1: the master's, 2: the backup's. */
static void exit_from_down_during_exit(long side)
{
    tables_begin(4000, 300);
    int threads0 = h_thread_count();
    mctx = make_master(KEY);
    REQUIRE(mctx != NULL && junos_sync_start(mctx) == JUNOS_SYNC_OK);
    bctx = make_backup(KEY);
    REQUIRE(bctx != NULL && junos_sync_start(bctx) == JUNOS_SYNC_OK);
    CHECK_WAIT(H_LOAD(b_sync_done_calls) == 1, 10000);
    queue_records(100000, 1000, 600, true); /* in flight as the exit comes */
    H_STORE(g_exit_from_down, side);
    if (side == 1) {
        h_exit(mctx, &mcs);
        CHECK_EQ(H_LOAD(g_nested_exits), 1);
        CHECK_EQ(H_LOAD(mcs.down), 1);
        CHECK_WAIT(H_LOAD(bcs.down) == 1, 10000);
        H_STORE(g_exit_from_down, 0);
        h_exit(bctx, &bcs);
    } else {
        h_exit(bctx, &bcs);
        CHECK_EQ(H_LOAD(g_nested_exits), 1);
        CHECK_EQ(H_LOAD(bcs.down), 1);
        CHECK_WAIT(H_LOAD(mcs.down) == 1, 10000);
        H_STORE(g_exit_from_down, 0);
        h_exit(mctx, &mcs);
    }
    CHECK_EQ(H_LOAD(g_nested_exits), 1);
    CHECK_EQ(H_LOAD(mcs.up), 1);
    CHECK_EQ(H_LOAD(bcs.up), 1);
    CHECK_WAIT(h_thread_count() == threads0, 5000);
    tables_end();
}

static void test_exit_from_master_down_during_exit(void) { exit_from_down_during_exit(1); }
static void test_exit_from_backup_down_during_exit(void) { exit_from_down_during_exit(2); }

/* The master's teardown frees what it holds (TLVs in its output, unacknowledged, queued);
 * sync_free_func calls junos_sync_exit on that master each time: every call a no-op, every TLV
 * freed once. (The header says free must not call into the library; exit must still not
 * crash.) */
static void test_exit_from_free_during_exit(void)
{
    const long n = 3000;
    tables_begin(5000, 200);
    int threads0 = h_thread_count();
    mctx = make_master(NULL);
    REQUIRE(mctx != NULL && junos_sync_start(mctx) == JUNOS_SYNC_OK);
    bctx = make_backup(NULL);
    REQUIRE(bctx != NULL);
    H_STORE(b_gate_at, 200 + 100);
    REQUIRE(junos_sync_start(bctx) == JUNOS_SYNC_OK);
    CHECK_WAIT(H_LOAD(b_sync_done_calls) == 1, 10000);
    queue_records(100000, n, 600, true);
    CHECK_WAIT(H_LOAD(b_gate_reached), 10000);
    /* Acknowledgements sent before the gate may still be on their way: wait until the master
     * holds a steady number of TLVs (unchanged for h_tmo(100) ms), so that every free from here
     * on is the exit's. */
    long held = h_alloc_outstanding();
    for (int64_t since = h_now_ms(); h_now_ms() - since < h_tmo(100);) {
        h_sleep_us(1000);
        long now = h_alloc_outstanding();
        if (now != held) {
            held = now;
            since = h_now_ms();
        }
    }
    h_note("%ld TLVs held by the master at its exit", held);
    CHECK(held >= n - 100);
    g_free_ctx = mctx;
    H_STORE(g_exit_from_free, 1);
    h_exit(mctx, &mcs);
    H_STORE(g_exit_from_free, 0);
    CHECK_EQ(H_LOAD(g_nested_exits), held);
    CHECK_EQ(h_alloc_outstanding(), 0);
    CHECK_EQ(H_LOAD(mcs.down), 1);
    H_STORE(b_gate_open, 1);
    CHECK_WAIT(H_LOAD(bcs.down) == 1, 10000);
    h_exit(bctx, &bcs);
    CHECK_EQ(H_LOAD(b_bad), 0);
    CHECK_WAIT(h_thread_count() == threads0, 5000);
    tables_end();
}

int main(int argc, char **argv)
{
    h_init(argc, argv);
    RUN_T(test_auth_key_arguments_and_state, 30);
    RUN_T(test_keyed_pair_converges, 60);
    RUN_T(test_different_keys_never_connect, 60);
    RUN_T(test_key_file_fails_closed, 30);
    RUN_T(test_key_file_keys_the_context, 60);
    RUN_T(test_exit_from_master_down_during_exit, 60);
    RUN_T(test_exit_from_backup_down_during_exit, 60);
    RUN_T(test_exit_from_free_during_exit, 60);
    return h_summary();
}
