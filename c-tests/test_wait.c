/*
 * junos_sync_wait against a backup in a process of its own (fork; the child reports through
 * MAP_SHARED memory):
 *   - a wait returns OK only once the backup's decode of the last TLV queued before it returned
 *     (the child counts its decodes in shared memory, before each decode returns);
 *   - SIGSTOP the backup: waits time out, each within its timeout and a margin (the figures are
 *     printed; the bound asserted is generous, stretched by h_tmo under valgrind and ASan);
 *   - SIGCONT: a wait returns OK once the backup caught up;
 *   - JUNOS_SYNC_ERR_STATE on a backup and before start, JUNOS_SYNC_ERR_INVALID for NULL, and the
 *     counters waits_satisfied and waits_timed_out.
 * The child is forked before the parent creates any junos-sync context.
 */
#include "pair.h"

typedef struct {
    int go, quit;
    in_port_t port;
    long decodes, up, bad, cb_errors;
    uint64_t last_seq; /* seq of the last record decoded */
} shm_t;

static shm_t *c_shm;
static h_table_t c_tab;
static h_cbstat_t c_cs;

static void c_decode(void *data, size_t len)
{
    h_cb_enter(&c_cs);
    h_wire_t w;
    if (!h_wire_decode(data, len, &w)) {
        H_INC(c_shm->bad);
    } else {
        h_table_apply(&c_tab, &w);
        if (w.op != H_OP_WALK)
            H_STORE(c_shm->last_seq, w.seq);
    }
    H_INC(c_shm->decodes);
    h_cb_leave(&c_cs);
}

static void c_conn(junos_sync_conn_status_t st)
{
    h_cb_enter(&c_cs);
    h_cb_conn(&c_cs, st);
    if (st == JUNOS_SYNC_CONN_UP)
        H_INC(c_shm->up);
    h_cb_leave(&c_cs);
}

static void c_sync_done(size_t n)
{
    (void)n;
}

static void c_db_clear(void)
{
    h_table_clear(&c_tab);
}

static void backup_child(shm_t *s)
{
    h_after_fork_child();
    c_shm = s;
    h_alloc_reset();
    int64_t dl = h_now_ms() + h_tmo(120000);
    while (!H_LOAD(s->go)) {
        if (h_now_ms() > dl)
            exit(20);
        h_sleep_us(1000);
    }
    h_table_init(&c_tab, 10000);
    junos_sync_state_t st = h_backup_state(H_LOAD(s->port), false, 5);
    junos_sync_callbacks_t cb = h_backup_callbacks(c_decode, c_conn, c_sync_done, c_db_clear);
    junos_sync_context_t *ctx = junos_sync_init(&st, &cb);
    if (ctx == NULL || junos_sync_start(ctx) != JUNOS_SYNC_OK)
        exit(21);
    /* A backup never waits. */
    if (junos_sync_wait(ctx, 0) != JUNOS_SYNC_ERR_STATE)
        exit(24);
    dl = h_now_ms() + h_tmo(300000);
    while (!H_LOAD(s->quit)) {
        if (h_now_ms() > dl)
            exit(22);
        h_sleep_us(2000);
    }
    h_exit(ctx, &c_cs);
    long bad = H_LOAD(c_cs.overlap) + H_LOAD(c_cs.after_exit) + H_LOAD(c_cs.wrong_thread) +
               H_LOAD(c_cs.bad_updown) + (h_alloc_outstanding() != 0) + H_LOAD(h_bad_frees);
    H_STORE(s->cb_errors, bad);
    h_table_destroy(&c_tab);
    fflush(stdout);
    exit(bad == 0 ? 0 : 23);
}

static pid_t fork_backup_child(shm_t *s)
{
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        exit(2);
    }
    if (pid == 0)
        backup_child(s);
    return pid;
}

static h_table_t mtab;
static h_cbstat_t mcs;
static in_port_t mport;
static long m_bind_calls, m_sync_done_calls, m_walk_bad;
static size_t m_sync_n;
static uint64_t m_seq;

H_CB_WALK(m_get_next, mcs, mtab, 8, m_walk_bad)
H_CB_CONN(m_conn, mcs)
H_CB_SYNC_DONE(m_sync_done, mcs, m_sync_n, m_sync_done_calls)
H_CB_BIND(m_bind, mport, m_bind_calls)

/* Queues `n` changes (seq numbers from m_seq + 1); the last seq queued. */
static uint64_t queue_changes(junos_sync_context_t *ctx, int n)
{
    for (int i = 0; i < n; i++) {
        uint64_t sq = ++m_seq;
        h_rec_t r = {(uint32_t)(sq % 1000), (uint32_t)sq, sq};
        h_table_put(&mtab, &r);
        junos_sync_tlv_t *t = h_tlv_rec(H_OP_PUT, &r, sq, 0, 16);
        if (junos_sync_queue(ctx, t, false) != JUNOS_SYNC_OK) {
            h_fail(__FILE__, __LINE__, "junos_sync_queue failed");
            h_free(t);
        }
    }
    return m_seq;
}

/* A wait that must time out (the backup is stopped): its duration in µs. */
static int64_t wait_times_out(junos_sync_context_t *ctx, uint32_t ms)
{
    int64_t t0 = h_now_us();
    junos_sync_status_t r = junos_sync_wait(ctx, ms);
    int64_t took = h_now_us() - t0;
    CHECK_EQ(r, JUNOS_SYNC_ERR_TIMEOUT);
    h_note("wait(%u ms) against a SIGSTOPped backup: JUNOS_SYNC_ERR_TIMEOUT after %.2f ms", ms,
           (double)took / 1000.0);
    CHECK_LE((int64_t)ms * 1000, took);
    CHECK_LE(took, ((int64_t)ms + h_tmo(500)) * 1000);
    return took;
}

static void test_wait_against_a_stopped_backup(void)
{
    shm_t *s = (shm_t *)h_shared_alloc(sizeof(shm_t));
    pid_t b = fork_backup_child(s);

    h_table_init(&mtab, 10000);
    for (uint32_t i = 0; i < 100; i++) {
        h_rec_t r = {i + 5000, 1, i};
        h_table_put(&mtab, &r);
    }
    junos_sync_state_t st = h_master_state(false, 5);
    junos_sync_callbacks_t cb = h_master_callbacks(NULL, m_get_next, m_conn, m_sync_done, m_bind);
    junos_sync_context_t *ctx = junos_sync_init(&st, &cb);
    REQUIRE(ctx != NULL);
    CHECK_EQ(junos_sync_wait(NULL, 0), JUNOS_SYNC_ERR_INVALID);
    CHECK_EQ(junos_sync_wait(ctx, 0), JUNOS_SYNC_ERR_STATE); /* not started */
    REQUIRE(junos_sync_start(ctx) == JUNOS_SYNC_OK);
    CHECK_EQ(junos_sync_wait(ctx, 0), JUNOS_SYNC_OK); /* nothing accepted yet */
    s->port = mport;
    H_STORE(s->go, 1);
    CHECK_WAIT(H_LOAD(m_sync_done_calls) == 1 && H_LOAD(s->up) == 1, 20000);

    /* Streaming: each wait returns after the backup decoded the last TLV queued before it. */
    for (int round = 0; round < 20; round++) {
        uint64_t last = queue_changes(ctx, 50);
        CHECK_EQ(junos_sync_wait(ctx, (uint32_t)h_tmo(20000)), JUNOS_SYNC_OK);
        CHECK_EQ(H_LOAD(s->last_seq), last);
    }

    /* Stopped: the queued changes stay unacknowledged, every wait times out. */
    REQUIRE(h_stop_child(b, 10000));
    uint64_t last = queue_changes(ctx, 100);
    wait_times_out(ctx, 0);
    wait_times_out(ctx, 50);
    wait_times_out(ctx, 200);
    CHECK(H_LOAD(s->last_seq) < last);

    /* Resumed: it catches up (the keepalive is 5 s: the same connection). */
    REQUIRE(kill(b, SIGCONT) == 0);
    int64_t t0 = h_now_us();
    CHECK_EQ(junos_sync_wait(ctx, (uint32_t)h_tmo(20000)), JUNOS_SYNC_OK);
    h_note("after SIGCONT the wait returned OK in %.2f ms",
           (double)(h_now_us() - t0) / 1000.0);
    CHECK_EQ(H_LOAD(s->last_seq), last);
    CHECK_EQ(H_LOAD(s->bad), 0);

    junos_sync_stats_t stats;
    CHECK_EQ(junos_sync_get_stats(ctx, &stats), JUNOS_SYNC_OK);
    CHECK_EQ(stats.waits_satisfied, 22);
    CHECK_EQ(stats.waits_timed_out, 3);

    H_STORE(s->quit, 1);
    int ws = h_wait_child(b, 30000);
    CHECK_MSG(ws != -1 && WIFEXITED(ws) && WEXITSTATUS(ws) == 0, "backup child: status %d", ws);
    CHECK_WAIT(H_LOAD(mcs.down) == 1, 10000);
    h_exit(ctx, &mcs);
    CHECK_CBSTAT(&mcs);
    CHECK_EQ(H_LOAD(m_walk_bad), 0);
    CHECK_ALLOC_BALANCED(1000);
    h_table_destroy(&mtab);
}

int main(int argc, char **argv)
{
    h_init(argc, argv);
    RUN_T(test_wait_against_a_stopped_backup, 120);
    return h_summary();
}
