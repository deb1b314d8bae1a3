/*
 * Faults, with real processes (fork; the children report through MAP_SHARED memory):
 *   - keepalive: a SIGSTOPped backup is declared dead by the master within keepalive_time and
 *     half of it again (that half stretched by h_tmo, like every bound here: the library's
 *     timer runs on the wall clock, its loop thread slower under valgrind and ASan), and after
 *     SIGCONT it comes back and converges (unacknowledged data retransmitted);
 *   - a backup killed with SIGKILL and restarted (a new process) gets a full resync and ends with
 *     the master's table, including what was queued while no backup was there;
 *   - switchover: the master process is killed, the backup is promoted in place with
 *     junos_sync_switchover (bind_done reports the new port), a second backup process attaches
 *     and gets the whole table by resync, then live changes;
 *   - bind errors: a master on a taken port gets JUNOS_SYNC_ERR_SOCKET from junos_sync_start
 *     (and may be started again later), a switchover onto a taken port changes nothing.
 * Children are forked before the parent creates any junos-sync context.
 */
#include "pair.h"

/* ---- shared memory between the test process and one child ------------------------------ */

typedef struct {
    /* parent -> child */
    int go;             /* start (backup: connect to `port`; master: fill and bind) */
    int quit;           /* exit cleanly */
    int cmd_live;       /* master child: do the live changes */
    in_port_t port;     /* backup child: the master's port */
    uint32_t keepalive;
    uint32_t n_entries; /* master child: database size */
    uint32_t n_live;    /* master child: live changes */
    /* child -> parent (atomics) */
    in_port_t my_port;  /* master child: bound port */
    int live_done;
    long up, down, sync_done, db_clears, decodes, order_err, bad, cb_errors;
    uint64_t sync_n;
    uint64_t dseq;      /* seqlock over the digest below */
    uint64_t dcount, dsum, dxr;
} shm_t;

static void shm_publish(shm_t *s, h_digest_t d)
{
    H_INC(s->dseq);
    H_STORE(s->dcount, d.count);
    H_STORE(s->dsum, d.sum);
    H_STORE(s->dxr, d.xr);
    H_INC(s->dseq);
}

static h_digest_t shm_digest(shm_t *s)
{
    for (;;) {
        uint64_t a = H_LOAD(s->dseq);
        h_digest_t d;
        d.count = H_LOAD(s->dcount);
        d.sum = H_LOAD(s->dsum);
        d.xr = H_LOAD(s->dxr);
        uint64_t b = H_LOAD(s->dseq);
        if (a == b && (a & 1) == 0)
            return d;
        h_sleep_us(100);
    }
}

/* ---- a backup in a child process -------------------------------------------------------- */

static shm_t *c_shm;           /* in the child: its own slot */
static h_table_t c_tab;
static h_cbstat_t c_cs;
static uint64_t c_last_seq;

static void c_decode(void *data, size_t len)
{
    h_cb_enter(&c_cs);
    H_INC(c_shm->decodes);
    h_wire_t w;
    if (!h_wire_decode(data, len, &w)) {
        H_INC(c_shm->bad);
    } else {
        if (w.op != H_OP_WALK) {
            /* Strictly increasing within one connection (a resync may skip acked ones). */
            if (w.seq <= c_last_seq)
                H_INC(c_shm->order_err);
            c_last_seq = w.seq;
        }
        h_table_apply(&c_tab, &w);
        shm_publish(c_shm, h_table_digest(&c_tab));
    }
    h_cb_leave(&c_cs);
}

static void c_conn(junos_sync_conn_status_t st)
{
    h_cb_enter(&c_cs);
    h_cb_conn(&c_cs, st);
    if (st == JUNOS_SYNC_CONN_UP) {
        c_last_seq = 0;
        H_INC(c_shm->up);
    } else {
        H_INC(c_shm->down);
    }
    h_cb_leave(&c_cs);
}

static void c_sync_done(size_t n)
{
    h_cb_enter(&c_cs);
    H_STORE(c_shm->sync_n, (uint64_t)n);
    H_INC(c_shm->sync_done);
    h_cb_leave(&c_cs);
}

static void c_db_clear(void)
{
    h_cb_enter(&c_cs);
    h_table_clear(&c_tab);
    shm_publish(c_shm, h_table_digest(&c_tab));
    H_INC(c_shm->db_clears);
    h_cb_leave(&c_cs);
}

/* Runs in the child: waits for go, replicates until quit, exits 0 if all was well. */
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
    h_table_init(&c_tab, 200000);
    junos_sync_state_t st = h_backup_state(H_LOAD(s->port), false, s->keepalive);
    junos_sync_callbacks_t cb = h_backup_callbacks(c_decode, c_conn, c_sync_done, c_db_clear);
    junos_sync_context_t *ctx = junos_sync_init(&st, &cb);
    if (ctx == NULL || junos_sync_start(ctx) != JUNOS_SYNC_OK)
        exit(21);
    dl = h_now_ms() + h_tmo(300000);
    while (!H_LOAD(s->quit)) {
        if (h_now_ms() > dl)
            exit(22);
        h_sleep_us(2000);
    }
    h_exit(ctx, &c_cs);
    long bad = H_LOAD(c_cs.overlap) + H_LOAD(c_cs.after_exit) + H_LOAD(c_cs.wrong_thread) +
               H_LOAD(c_cs.bad_updown) + (H_LOAD(c_cs.up) != H_LOAD(c_cs.down)) +
               (h_alloc_outstanding() != 0) + H_LOAD(h_bad_frees) + H_LOAD(h_log_bad_fmt);
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

/* Tells a child to quit and checks it exited 0. */
static void quit_child(pid_t pid, shm_t *s, const char *what)
{
    H_STORE(s->quit, 1);
    int st = h_wait_child(pid, 30000);
    CHECK_MSG(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0,
              "%s: child exit status %d (signal %d), callback/alloc errors %ld", what,
              st != -1 && WIFEXITED(st) ? WEXITSTATUS(st) : -1,
              st != -1 && WIFSIGNALED(st) ? WTERMSIG(st) : 0, H_LOAD(s->cb_errors));
}

static void kill_child(pid_t pid)
{
    kill(pid, SIGKILL);
    int st;
    waitpid(pid, &st, 0);
}

/* ---- the master, in this process (also the promoted backup of test_switchover) ----------- */

static h_table_t mtab;
static h_cbstat_t mcs;
static junos_sync_context_t *mctx;
static in_port_t mport;
static long m_bind_calls;
static pthread_t m_bind_thread;
static long m_sync_done_calls, m_walk_bad, m_acks;
static size_t m_sync_n;
static uint64_t m_seq;

static void m_ack(junos_sync_tlv_t *t, size_t len)
{
    h_cb_enter(&mcs);
    (void)t;
    (void)len;
    H_INC(m_acks);
    h_cb_leave(&mcs);
}

H_CB_WALK(m_get_next, mcs, mtab, 24, m_walk_bad)
H_CB_CONN(m_conn, mcs)
H_CB_SYNC_DONE(m_sync_done, mcs, m_sync_n, m_sync_done_calls)

static void m_bind(in_port_t port)
{
    mport = port;
    m_bind_thread = pthread_self();
    H_INC(m_bind_calls);
}

static junos_sync_callbacks_t master_callbacks(void)
{
    return h_master_callbacks(m_ack, m_get_next, m_conn, m_sync_done, m_bind);
}

static junos_sync_context_t *start_master(in_port_t port, uint32_t keepalive)
{
    junos_sync_state_t st = h_master_state(false, keepalive);
    st.server_port = port;
    junos_sync_callbacks_t cb = master_callbacks();
    junos_sync_context_t *c = junos_sync_init(&st, &cb);
    if (c != NULL && junos_sync_start(c) != JUNOS_SYNC_OK) {
        junos_sync_exit(c);
        return NULL;
    }
    return c;
}

/* A change on the master's table, queued (the application's ordinary write path). */
static void master_change(junos_sync_context_t *ctx, h_table_t *t, uint64_t *seq, uint64_t *rnd,
                          uint32_t key_space)
{
    uint32_t id = (uint32_t)(h_rand(rnd) % key_space);
    h_rec_t old, r = {id, 1, h_rand(rnd)};
    uint32_t op = H_OP_PUT;
    if (h_table_get(t, id, &old)) {
        r.ver = old.ver + 1;
        if (h_rand(rnd) % 3 == 0) {
            op = H_OP_DEL;
            r = old;
        }
    }
    if (op == H_OP_DEL)
        h_table_del(t, id);
    else
        h_table_put(t, &r);
    uint64_t sq = ++*seq;
    junos_sync_tlv_t *tlv = h_tlv_rec(op, &r, sq, 0, (size_t)(sq % 11));
    if (junos_sync_queue(ctx, tlv, *seq % 4 == 0) != JUNOS_SYNC_OK) {
        h_fail(__FILE__, __LINE__, "junos_sync_queue failed");
        h_free(tlv);
    }
}

static void fill(h_table_t *t, uint32_t n, uint32_t key_space)
{
    for (uint32_t i = 0; i < n; i++) {
        h_rec_t r = {(uint32_t)(((uint64_t)i * 2654435761u) % key_space), 1, i};
        h_table_put(t, &r);
    }
}

#define CHECK_CHILD_HAS(s, tab, ms)                                                           \
    do {                                                                                      \
        if (!WAIT_UNTIL(h_digest_eq(shm_digest(s), h_table_digest(tab)), ms)) {               \
            h_digest_t c_ = shm_digest(s), m_ = h_table_digest(tab);                          \
            h_fail(__FILE__, __LINE__, "child table != %s: %llu vs %llu entries", #tab,       \
                   (unsigned long long)c_.count, (unsigned long long)m_.count);               \
        }                                                                                     \
    } while (0)

/* ---- tests ----------------------------------------------------------------------------- */

static void test_keepalive_detects_stopped_backup(void)
{
    const uint32_t keepalive = 2;
    shm_t *s = (shm_t *)h_shared_alloc(sizeof(shm_t));
    pid_t b = fork_backup_child(s);

    h_table_init(&mtab, 20000);
    fill(&mtab, 1000, 10000);
    mctx = start_master(0, keepalive);
    REQUIRE(mctx != NULL);
    s->port = mport;
    s->keepalive = keepalive;
    H_STORE(s->go, 1);
    CHECK_WAIT(H_LOAD(m_sync_done_calls) == 1 && H_LOAD(s->sync_done) == 1, 20000);
    CHECK_EQ(m_sync_n, 1000);
    CHECK_CHILD_HAS(s, &mtab, 10000);
    uint64_t rnd = 3;
    for (int i = 0; i < 300; i++)
        master_change(mctx, &mtab, &m_seq, &rnd, 10000);
    CHECK_CHILD_HAS(s, &mtab, 10000);
    CHECK_WAIT(h_alloc_outstanding() == 0, 10000);

    /* Hang the backup. Not the wall clock of any wait: the property measured. */
    int64_t t0 = h_now_ms();
    REQUIRE(kill(b, SIGSTOP) == 0);
    const int64_t limit = 1000 * keepalive + h_tmo(500 * keepalive); /* ms; see the top */
    while (H_LOAD(mcs.down) == 0 && h_now_ms() - t0 < limit + h_tmo(5000))
        h_sleep_us(1000);
    int64_t took = h_now_ms() - t0;
    h_note("stopped backup declared dead after %lld ms (keepalive_time %u s, limit %lld ms)",
           (long long)took, keepalive, (long long)limit);
    CHECK_EQ(H_LOAD(mcs.down), 1);
    CHECK_LE(took, limit);
    CHECK_MSG(took >= 1000 * keepalive / 2, "declared dead after only %lld ms", (long long)took);

    /* Changes while it hangs: queued, delivered after it comes back. */
    for (int i = 0; i < 300; i++)
        master_change(mctx, &mtab, &m_seq, &rnd, 10000);
    REQUIRE(kill(b, SIGCONT) == 0);
    CHECK_WAIT(H_LOAD(mcs.up) == 2 && H_LOAD(s->up) == 2, 20000);
    CHECK_CHILD_HAS(s, &mtab, 20000);
    CHECK_WAIT(h_alloc_outstanding() == 0, 10000);
    CHECK_EQ(H_LOAD(s->down), 1);
    CHECK_EQ(H_LOAD(s->order_err), 0);
    CHECK_EQ(H_LOAD(s->bad), 0);
    junos_sync_stats_t st;
    CHECK_EQ(junos_sync_get_stats(mctx, &st), JUNOS_SYNC_OK);
    CHECK_EQ(st.connections, 2);
    h_note("after the hang: %llu full, %llu partial resyncs", (unsigned long long)st.full_resyncs,
           (unsigned long long)st.partial_resyncs);

    quit_child(b, s, "backup");
    CHECK_WAIT(H_LOAD(mcs.down) == 2, 10000);
    h_exit(mctx, &mcs);
    CHECK_CBSTAT(&mcs);
    CHECK_EQ(H_LOAD(m_walk_bad), 0);
    CHECK_ALLOC_BALANCED(1000);
    h_table_destroy(&mtab);
}

static void test_backup_killed_and_restarted(void)
{
    const uint32_t n = (uint32_t)h_scaled_min(20000, 3000);
    const uint32_t keys = 2 * n;
    shm_t *s1 = (shm_t *)h_shared_alloc(sizeof(shm_t));
    shm_t *s2 = (shm_t *)h_shared_alloc(sizeof(shm_t));
    pid_t b1 = fork_backup_child(s1);
    pid_t b2 = fork_backup_child(s2); /* the restarted backup: a new process, forked now */

    h_table_init(&mtab, keys + 10);
    fill(&mtab, n, keys);
    mctx = start_master(0, 0);
    REQUIRE(mctx != NULL);
    s1->port = s2->port = mport;
    H_STORE(s1->go, 1);
    CHECK_WAIT(H_LOAD(s1->sync_done) == 1 && H_LOAD(m_sync_done_calls) == 1, 30000);
    CHECK_EQ(H_LOAD(s1->sync_n), h_table_count(&mtab));
    uint64_t rnd = 11;
    const int live = (int)h_scaled_min(3000, 300);
    for (int i = 0; i < live; i++)
        master_change(mctx, &mtab, &m_seq, &rnd, keys);
    CHECK_CHILD_HAS(s1, &mtab, 20000);

    kill_child(b1);
    CHECK_WAIT(H_LOAD(mcs.down) == 1, 10000);
    /* Changes while no backup is there. */
    for (int i = 0; i < live; i++)
        master_change(mctx, &mtab, &m_seq, &rnd, keys);
    size_t count_at_walk = h_table_count(&mtab);

    H_STORE(s2->go, 1);
    CHECK_WAIT(H_LOAD(s2->sync_done) == 1 && H_LOAD(m_sync_done_calls) == 2, 30000);
    CHECK_EQ(H_LOAD(s2->db_clears), 1);
    CHECK_EQ(H_LOAD(s2->sync_n), count_at_walk);
    CHECK_EQ(m_sync_n, count_at_walk);
    CHECK_CHILD_HAS(s2, &mtab, 20000);
    /* And it keeps following. */
    for (int i = 0; i < live; i++)
        master_change(mctx, &mtab, &m_seq, &rnd, keys);
    CHECK_CHILD_HAS(s2, &mtab, 20000);
    CHECK_WAIT(h_alloc_outstanding() == 0, 10000);
    CHECK_EQ(H_LOAD(s2->order_err), 0);
    CHECK_EQ(H_LOAD(s2->bad), 0);
    junos_sync_stats_t st;
    CHECK_EQ(junos_sync_get_stats(mctx, &st), JUNOS_SYNC_OK);
    CHECK_EQ(st.full_resyncs, 2);
    CHECK_EQ(st.connections, 2);

    quit_child(b2, s2, "restarted backup");
    CHECK_WAIT(H_LOAD(mcs.down) == 2, 10000);
    h_exit(mctx, &mcs);
    CHECK_CBSTAT(&mcs);
    CHECK_EQ(H_LOAD(m_walk_bad), 0);
    CHECK_ALLOC_BALANCED(1000);
    h_table_destroy(&mtab);
}

/* ---- switchover -------------------------------------------------------------------------- */

/* The master, in a child process: fills its table, binds, streams on command, then idles until
 * it is killed. */
static void master_child(shm_t *s)
{
    h_after_fork_child();
    int64_t dl = h_now_ms() + h_tmo(120000);
    while (!H_LOAD(s->go)) {
        if (h_now_ms() > dl)
            exit(20);
        h_sleep_us(1000);
    }
    uint32_t keys = 2 * s->n_entries + 10;
    h_table_init(&mtab, keys);
    fill(&mtab, s->n_entries, keys);
    mctx = start_master(0, 0);
    if (mctx == NULL)
        exit(21);
    shm_publish(s, h_table_digest(&mtab));
    H_STORE(s->my_port, mport);
    while (!H_LOAD(s->cmd_live)) {
        if (h_now_ms() > dl)
            exit(22);
        h_sleep_us(1000);
    }
    uint64_t rnd = 77, seq = 0;
    for (uint32_t i = 0; i < s->n_live; i++)
        master_change(mctx, &mtab, &seq, &rnd, keys);
    shm_publish(s, h_table_digest(&mtab));
    H_STORE(s->live_done, 1);
    for (;;)
        pause(); /* killed by the test */
}

/* The promoted side's backup-time callbacks (this process). */
static h_cbstat_t pcs;
static long p_sync_done, p_db_clears, p_bad, p_decodes_after_switch, p_switched;

static void p_decode(void *data, size_t len)
{
    h_cb_enter(&pcs);
    if (H_LOAD(p_switched))
        H_INC(p_decodes_after_switch);
    h_wire_t w;
    if (!h_wire_decode(data, len, &w))
        H_INC(p_bad);
    else
        h_table_apply(&mtab, &w); /* the promoted backup's database is mtab */
    h_cb_leave(&pcs);
}

H_CB_CONN(p_conn, pcs)

static void p_sync(size_t n)
{
    h_cb_enter(&pcs);
    (void)n;
    H_INC(p_sync_done);
    h_cb_leave(&pcs);
}

H_CB_DB_CLEAR(p_clear, pcs, mtab, p_db_clears)

static void test_switchover(void)
{
    /* It asserts that bind_done of the switchover has run when junos_sync_switchover returns;
     * in dispatch mode it runs at the application's next dispatch instead (the header's
     * junos_sync_set_event_context), so that check would race the application thread.
     * test_eventlib.c's test_eventlib_switchover covers the switchover in dispatch mode. */
    H_SKIP_IN_DISPATCH("bind_done of a switchover runs at the next dispatch, not before"
                       " junos_sync_switchover returns");
    const uint32_t n = (uint32_t)h_scaled_min(10000, 2000);
    shm_t *sm = (shm_t *)h_shared_alloc(sizeof(shm_t));
    shm_t *s2 = (shm_t *)h_shared_alloc(sizeof(shm_t));
    sm->n_entries = n;
    sm->n_live = (uint32_t)h_scaled_min(3000, 300);
    fflush(stdout);
    fflush(stderr);
    pid_t m = fork();
    REQUIRE(m >= 0);
    if (m == 0)
        master_child(sm);
    pid_t b2 = fork_backup_child(s2);

    /* This process: the first backup. */
    H_STORE(sm->go, 1);
    CHECK_WAIT(H_LOAD(sm->my_port) != 0, 20000);
    in_port_t old_port = H_LOAD(sm->my_port);
    h_table_init(&mtab, 2 * n + 20);
    h_rec_t junk = {0xfffffff0u, 1, 1};
    h_table_put(&mtab, &junk);
    junos_sync_state_t st = h_backup_state(old_port, false, 0);
    junos_sync_callbacks_t cb = h_backup_callbacks(p_decode, p_conn, p_sync, p_clear);
    cb.sync_bind_done_func = m_bind; /* a backup never binds */
    mctx = junos_sync_init(&st, &cb);
    REQUIRE(mctx != NULL && junos_sync_start(mctx) == JUNOS_SYNC_OK);
    CHECK_WAIT(H_LOAD(p_sync_done) == 1, 30000);
    CHECK_EQ(H_LOAD(p_db_clears), 1);
    CHECK_CHILD_HAS(sm, &mtab, 20000);
    H_STORE(sm->cmd_live, 1);
    CHECK_WAIT(H_LOAD(sm->live_done), 20000);
    CHECK_CHILD_HAS(sm, &mtab, 20000); /* the master's final table */
    CHECK_EQ(H_LOAD(p_bad), 0);
    CHECK_EQ(H_LOAD(m_bind_calls), 0);

    /* The master dies. */
    kill_child(m);
    CHECK_WAIT(H_LOAD(pcs.down) == 1, 10000);
    h_digest_t before = h_table_digest(&mtab);

    /* Promotion in place: new role, new callbacks, a new port. */
    junos_sync_state_t mst = h_master_state(false, 0);
    junos_sync_callbacks_t mcb = master_callbacks();
    H_STORE(p_switched, 1);
    junos_sync_status_t r = junos_sync_switchover(mctx, &mst, &mcb);
    CHECK_EQ(r, JUNOS_SYNC_OK);
    CHECK_EQ(H_LOAD(m_bind_calls), 1); /* before switchover returned */
    CHECK_NE(mport, 0);
    CHECK(!pthread_equal(m_bind_thread, pthread_self())); /* on the loop thread */
    h_note("old master port %u, promoted master bound %u", (unsigned)old_port, (unsigned)mport);
    CHECK(h_digest_eq(h_table_digest(&mtab), before)); /* database untouched */
    CHECK_EQ(H_LOAD(pcs.up), H_LOAD(pcs.down));

    /* A second backup attaches and gets everything by resync. */
    s2->port = mport;
    H_STORE(s2->go, 1);
    CHECK_WAIT(H_LOAD(s2->sync_done) == 1 && H_LOAD(m_sync_done_calls) == 1, 30000);
    CHECK_EQ(H_LOAD(s2->db_clears), 1);
    CHECK_EQ(H_LOAD(s2->sync_n), h_table_count(&mtab));
    CHECK_EQ(m_sync_n, h_table_count(&mtab));
    CHECK_CHILD_HAS(s2, &mtab, 20000);
    CHECK(h_table_get(&mtab, 0xfffffff0u, NULL) == false); /* cleared by the first resync */

    /* The promoted master streams live changes. */
    uint64_t rnd = 5;
    for (int i = 0; i < 1000; i++)
        master_change(mctx, &mtab, &m_seq, &rnd, 2 * n + 10);
    CHECK_CHILD_HAS(s2, &mtab, 20000);
    CHECK_WAIT(h_alloc_outstanding() == 0, 10000);
    CHECK_EQ(H_LOAD(p_decodes_after_switch), 0);
    CHECK_EQ(H_LOAD(s2->order_err), 0);
    junos_sync_stats_t stats;
    CHECK_EQ(junos_sync_get_stats(mctx, &stats), JUNOS_SYNC_OK);
    CHECK_EQ(stats.full_resyncs, 1);

    quit_child(b2, s2, "second backup");
    CHECK_WAIT(H_LOAD(mcs.down) == 1, 10000);
    h_exit(mctx, &mcs);
    H_STORE(pcs.exited, 1);
    CHECK_CBSTAT(&mcs);
    CHECK_CBSTAT(&pcs);
    CHECK_EQ(H_LOAD(m_walk_bad), 0);
    CHECK_ALLOC_BALANCED(1000);
    h_table_destroy(&mtab);
}

/* ---- bind errors ------------------------------------------------------------------------- */

static void test_bind_error_on_taken_port(void)
{
    shm_t *s = (shm_t *)h_shared_alloc(sizeof(shm_t));
    pid_t b = fork_backup_child(s); /* used at the end, forked before any context exists */
    h_table_init(&mtab, 100);
    fill(&mtab, 10, 50);
    mctx = start_master(0, 0);
    REQUIRE(mctx != NULL);
    in_port_t taken = mport;
    CHECK_EQ(H_LOAD(m_bind_calls), 1);

    /* A second master on the same port. */
    junos_sync_state_t st = h_master_state(false, 0);
    st.server_port = taken;
    junos_sync_callbacks_t cb = master_callbacks();
    junos_sync_context_t *second = junos_sync_init(&st, &cb);
    REQUIRE(second != NULL);
    long logs = h_log_count();
    CHECK_EQ(junos_sync_start(second), JUNOS_SYNC_ERR_SOCKET);
    CHECK_EQ(H_LOAD(m_bind_calls), 1); /* no bind_done for a failed start */
    CHECK(h_log_count() > logs);
    CHECK_EQ(junos_sync_start(second), JUNOS_SYNC_ERR_SOCKET); /* still unstarted: may retry */

    /* Once the port is free, the same context starts. */
    junos_sync_exit(mctx);
    mctx = second;
    CHECK_EQ(junos_sync_start(second), JUNOS_SYNC_OK);
    CHECK_EQ(H_LOAD(m_bind_calls), 2);
    CHECK_EQ(mport, taken);

    /* And it works: a backup in a child process gets its table. */
    s->port = taken;
    H_STORE(s->go, 1);
    CHECK_WAIT(H_LOAD(s->sync_done) == 1, 20000);
    CHECK_CHILD_HAS(s, &mtab, 10000);
    quit_child(b, s, "backup of the restarted master");
    CHECK_WAIT(H_LOAD(mcs.down) == 1, 10000);
    junos_sync_exit(second);
    CHECK_ALLOC_BALANCED(1000);
    h_table_destroy(&mtab);
}

/* A backup switching over to master on a taken port: JUNOS_SYNC_ERR_SOCKET, nothing changed
 * (still a backup, still connected, still applying). */
static h_cbstat_t xcs;
static long x_decodes, x_bind_calls;
static void x_decode(void *d, size_t l)
{
    h_cb_enter(&xcs);
    (void)d;
    (void)l;
    H_INC(x_decodes);
    h_cb_leave(&xcs);
}
H_CB_CONN(x_conn, xcs)
static void x_bind(in_port_t p)
{
    (void)p;
    H_INC(x_bind_calls);
}

static void test_switchover_to_taken_port_changes_nothing(void)
{
    h_table_init(&mtab, 100);
    mctx = start_master(0, 0);
    REQUIRE(mctx != NULL);
    junos_sync_state_t st = h_backup_state(mport, true, 0);
    junos_sync_callbacks_t cb = h_callbacks_log();
    cb.sync_data_decode_func = x_decode;
    cb.sync_conn_status_change_func = x_conn;
    junos_sync_context_t *b = junos_sync_init(&st, &cb);
    REQUIRE(b != NULL && junos_sync_start(b) == JUNOS_SYNC_OK);
    CHECK_WAIT(H_LOAD(xcs.up) == 1 && H_LOAD(mcs.up) == 1, 10000);

    junos_sync_state_t mst = h_master_state(false, 0);
    mst.server_port = mport; /* taken by the master */
    junos_sync_callbacks_t mcb = master_callbacks();
    mcb.sync_bind_done_func = x_bind;
    CHECK_EQ(junos_sync_switchover(b, &mst, &mcb), JUNOS_SYNC_ERR_SOCKET);
    CHECK_EQ(H_LOAD(x_bind_calls), 0);
    /* Still the same backup on the same connection. */
    h_rec_t r = {1, 1, 1};
    CHECK_EQ(junos_sync_queue(mctx, h_tlv_rec(H_OP_PUT, &r, 1, 0, 0), false), JUNOS_SYNC_OK);
    CHECK_WAIT(H_LOAD(x_decodes) == 1, 10000);
    CHECK_EQ(H_LOAD(xcs.down), 0);
    CHECK_EQ(H_LOAD(mcs.down), 0);
    junos_sync_tlv_t *t = h_tlv_rec(H_OP_PUT, &r, 2, 0, 0);
    CHECK_EQ(junos_sync_queue(b, t, false), JUNOS_SYNC_ERR_STATE); /* not a master */
    h_free(t);
    h_exit(b, &xcs);
    h_exit(mctx, &mcs);
    CHECK_CBSTAT(&xcs);
    CHECK_CBSTAT(&mcs);
    CHECK_ALLOC_BALANCED(1000);
    h_table_destroy(&mtab);
}

int main(int argc, char **argv)
{
    h_init(argc, argv);
    RUN_T(test_keepalive_detects_stopped_backup, 90);
    RUN_T(test_backup_killed_and_restarted, 120);
    RUN_T(test_switchover, 120);
    RUN(test_bind_error_on_taken_port);
    RUN(test_switchover_to_taken_port_changes_nothing);
    return h_summary();
}
