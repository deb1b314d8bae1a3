/*
 * Full resync: a 50k-entry master database walked with sync_data_get_next_func, then live
 * add/update/delete. Checks the get_next cursor contract (first call NULL, then the previous
 * return value; the TLV handed over by the previous call is still alive, not freed, while the
 * next call runs, and the cursor that points into it is read), sync_db_clear_func on the backup,
 * sync_init_sync_done_func on both sides with the same n, and that data queued during the walk
 * (from inside get_next and from another thread) arrives after the walk, in queue order.
 */
#include "pair.h"

#define WALK_EXTRA 64 /* payload padding: makes the walk bigger than the socket buffers */

/* ---- master ---------------------------------------------------------------------------- */

static h_table_t mtab;
static h_cbstat_t mcs;
static junos_sync_context_t *mctx;
static in_port_t mport;
static long m_sync_done_calls;
static size_t m_sync_n;

/* get_next contract bookkeeping (loop thread, read by the test after the fact). */
static long g_calls, g_walks, g_walk_tlvs, g_walk_ends;
static long g_cursor_mismatch;  /* current_node != previous return value */
static long g_first_not_null;   /* a walk's first call had a non-NULL cursor */
static long g_prev_freed_early; /* the previous TLV was freed before this call */
static long g_cursor_bad;       /* reading through the cursor gave the wrong entry */
static void *g_prev_ret;
static junos_sync_tlv_t *g_prev_tlv;
static uint32_t g_prev_id;
static uint64_t g_walk_idx;
static bool g_in_walk;
static void *g_watch;       /* the TLV handed over by the latest get_next call */
static long g_watch_freed;  /* ... was freed */
static long g_skip_odd;     /* test_get_next_skips: hand over no TLV for odd ids */
static h_wire_t g_skip_cursor[2];
static long g_queue_every;  /* get_next queues a live update every this many entries (0: no) */
static long g_walk_limit_pause; /* test_walk_restarts: pause the walk after this many TLVs */

static long g_freed_during_walk; /* frees while a walk runs: acks were processed mid-walk */

static void watch_hook(void *p)
{
    if (g_in_walk)
        H_INC(g_freed_during_walk);
    if (p != NULL && p == __atomic_load_n(&g_watch, __ATOMIC_SEQ_CST))
        H_STORE(g_watch_freed, 1);
}

/* Live changes: one lock so that the sequence number order is the queue order. */
static pthread_mutex_t live_mu = PTHREAD_MUTEX_INITIALIZER;
static uint64_t live_seq;
static long live_queue_errors;

static void live_change(uint32_t op, uint32_t id, uint64_t val)
{
    pthread_mutex_lock(&live_mu);
    h_rec_t r = {id, 1, val};
    h_rec_t old;
    if (h_table_get(&mtab, id, &old))
        r.ver = old.ver + 1;
    if (op == H_OP_DEL)
        h_table_del(&mtab, id);
    else
        h_table_put(&mtab, &r);
    uint64_t seq = H_INC(live_seq);
    junos_sync_tlv_t *t = h_tlv_rec(op, &r, seq, 0, (size_t)(seq % 13));
    if (junos_sync_queue(mctx, t, seq % 5 == 0) != JUNOS_SYNC_OK) {
        H_INC(live_queue_errors);
        h_free(t);
    }
    pthread_mutex_unlock(&live_mu);
}

static void *m_get_next(void *cur, junos_sync_getnext_data_t *gn)
{
    h_cb_enter(&mcs);
    H_INC(g_calls);
    h_rec_t r;
    bool bad = false, found;
    if (cur == NULL) {
        H_INC(g_walks);
        g_in_walk = true;
        g_walk_idx = 0;
        found = h_table_next(&mtab, true, 0, &r, &bad);
    } else {
        if (!g_in_walk)
            H_INC(g_first_not_null);
        if (cur != g_prev_ret)
            H_INC(g_cursor_mismatch);
        uint32_t after = g_prev_id;
        if (g_prev_tlv != NULL) {
            /* The previous TLV must still be alive: not given to sync_free_func yet. */
            if (H_LOAD(g_watch_freed) || !h_block_live(g_prev_tlv)) {
                H_INC(g_prev_freed_early);
            } else {
                /* A daemon reads its position through the cursor (into that TLV). */
                h_wire_t w;
                if (!h_wire_decode(cur, sizeof(h_wire_t), &w) || w.id != g_prev_id ||
                    w.op != H_OP_WALK)
                    H_INC(g_cursor_bad);
                else
                    after = w.id;
            }
        } else {
            after = ((h_wire_t *)cur)->id; /* a skip cursor (host order) */
        }
        found = h_table_next(&mtab, false, after, &r, &bad);
    }
    if (bad)
        H_INC(g_cursor_bad);
    if (!found) {
        gn->data = NULL;
        g_in_walk = false;
        g_prev_ret = NULL;
        g_prev_tlv = NULL;
        __atomic_store_n(&g_watch, (void *)NULL, __ATOMIC_SEQ_CST);
        H_INC(g_walk_ends);
        h_cb_leave(&mcs);
        return NULL;
    }
    void *ret;
    if (H_LOAD(g_skip_odd) && (r.id & 1)) {
        gn->data = NULL;
        h_wire_t *c = &g_skip_cursor[g_walk_idx & 1];
        c->id = r.id;
        g_prev_tlv = NULL;
        __atomic_store_n(&g_watch, (void *)NULL, __ATOMIC_SEQ_CST);
        ret = c;
    } else {
        junos_sync_tlv_t *t = h_tlv_rec(H_OP_WALK, &r, ++g_walk_idx, 0, WALK_EXTRA);
        gn->data = t;
        H_STORE(g_watch_freed, 0);
        __atomic_store_n(&g_watch, (void *)t, __ATOMIC_SEQ_CST);
        g_prev_tlv = t;
        ret = t->tlv_value;
        long n = H_INC(g_walk_tlvs);
        long every = H_LOAD(g_queue_every);
        if (every > 0 && n % every == 0) {
            /* Queue from inside get_next: an update of an entry already walked. */
            live_change(H_OP_PUT, r.id, (uint64_t)n * 1000003u);
        }
        long pause = H_LOAD(g_walk_limit_pause);
        if (pause > 0 && n == pause) {
            /* test_walk_restarts: give the test time to cut the backup mid-walk. */
            while (H_LOAD(g_walk_limit_pause) > 0)
                h_sleep_us(1000);
        }
    }
    g_prev_id = r.id;
    g_prev_ret = ret;
    h_cb_leave(&mcs);
    return ret;
}

H_CB_CONN(m_conn, mcs)
H_CB_SYNC_DONE(m_sync_done, mcs, m_sync_n, m_sync_done_calls)

static void m_bind(in_port_t port)
{
    mport = port;
}

/* ---- backup ---------------------------------------------------------------------------- */

static h_table_t btab;
static h_cbstat_t bcs;
static junos_sync_context_t *bctx;
static long b_decodes, b_walked, b_live, b_bad_payload;
static long b_walk_order_errors, b_walk_after_sync, b_live_before_sync, b_live_order_errors;
static long b_db_clears, b_clear_not_first, b_sync_done_calls;
static uint64_t b_walk_last, b_live_last;
static size_t b_sync_n;
static long b_decodes_this_sync;

static void b_decode(void *data, size_t len)
{
    h_cb_enter(&bcs);
    H_INC(b_decodes);
    H_INC(b_decodes_this_sync);
    h_wire_t w;
    if (!h_wire_decode(data, len, &w)) {
        H_INC(b_bad_payload);
    } else if (w.op == H_OP_WALK) {
        if (w.seq != b_walk_last + 1)
            H_INC(b_walk_order_errors);
        b_walk_last = w.seq;
        H_INC(b_walked);
        if (H_LOAD(b_sync_done_calls) > 0)
            H_INC(b_walk_after_sync);
        h_table_apply(&btab, &w);
    } else {
        if (b_live_last != 0 && w.seq != b_live_last + 1)
            H_INC(b_live_order_errors);
        b_live_last = w.seq;
        H_INC(b_live);
        if (H_LOAD(b_sync_done_calls) == 0)
            H_INC(b_live_before_sync);
        h_table_apply(&btab, &w);
    }
    h_cb_leave(&bcs);
}

H_CB_CONN(b_conn, bcs)
H_CB_SYNC_DONE(b_sync_done, bcs, b_sync_n, b_sync_done_calls)

static void b_db_clear(void)
{
    h_cb_enter(&bcs);
    if (H_LOAD(b_decodes_this_sync) != 0)
        H_INC(b_clear_not_first);
    b_walk_last = 0;
    H_INC(b_db_clears);
    h_table_clear(&btab);
    h_cb_leave(&bcs);
}

/* ---- setup ----------------------------------------------------------------------------- */

static junos_sync_callbacks_t master_callbacks(void)
{
    return h_master_callbacks(NULL, m_get_next, m_conn, m_sync_done, m_bind);
}

static void start_master(bool no_resync)
{
    junos_sync_state_t st = h_master_state(no_resync, 0);
    junos_sync_callbacks_t cb = master_callbacks();
    mctx = junos_sync_init(&st, &cb);
    if (mctx == NULL || junos_sync_start(mctx) != JUNOS_SYNC_OK || mport == 0) {
        fprintf(stderr, "master did not start\n");
        exit(10);
    }
}

static void start_backup(bool no_resync)
{
    junos_sync_state_t st = h_backup_state(mport, no_resync, 0);
    junos_sync_callbacks_t cb = h_backup_callbacks(b_decode, b_conn, b_sync_done, b_db_clear);
    bctx = junos_sync_init(&st, &cb);
    if (bctx == NULL || junos_sync_start(bctx) != JUNOS_SYNC_OK) {
        fprintf(stderr, "backup did not start\n");
        exit(10);
    }
}

static void fill_master(uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        h_rec_t r = {i * 7u + 3u, 1, (uint64_t)i * 0x9e3779b9u};
        h_table_put(&mtab, &r);
    }
}

static void check_cursor_contract(void)
{
    CHECK_EQ(H_LOAD(g_cursor_mismatch), 0);
    CHECK_EQ(H_LOAD(g_first_not_null), 0);
    CHECK_EQ(H_LOAD(g_prev_freed_early), 0);
    CHECK_EQ(H_LOAD(g_cursor_bad), 0);
}

static void exit_both(void)
{
    h_exit(bctx, &bcs);
    CHECK_WAIT(H_LOAD(mcs.down) == H_LOAD(mcs.up), 10000);
    h_exit(mctx, &mcs);
    CHECK_EQ(H_LOAD(mcs.up), H_LOAD(mcs.down));
    CHECK_EQ(H_LOAD(bcs.up), H_LOAD(bcs.down));
    CHECK_CBSTAT(&mcs);
    CHECK_CBSTAT(&bcs);
}

/* ---- tests ----------------------------------------------------------------------------- */

static void *producer(void *arg)
{
    long n = (long)(intptr_t)arg;
    uint64_t rnd = 99;
    for (long i = 0; i < n; i++) {
        uint32_t id = (uint32_t)(h_rand(&rnd) % 1000) * 7u + 3u; /* existing entries only */
        live_change(H_OP_PUT, id, h_rand(&rnd));
        if (i % 16 == 0)
            h_sleep_us(50); /* pacing, so that some of it overlaps the walk */
    }
    return NULL;
}

static void test_resync_50k_then_live(void)
{
    const uint32_t n = (uint32_t)h_scaled_min(50000, 5000);
    const uint32_t live = (uint32_t)h_scaled_min(5000, 500);
    h_table_init(&mtab, n + live + 10);
    h_table_init(&btab, n + live + 10);
    h_free_hook = watch_hook;
    fill_master(n);
    start_master(false);
    /* Junk the resync must clear. */
    for (uint32_t i = 0; i < 100; i++) {
        h_rec_t r = {i * 7u + 4u, 5, 5};
        h_table_put(&btab, &r);
    }
    H_STORE(g_queue_every, 1000);
    start_backup(false);
    pthread_t th;
    REQUIRE(pthread_create(&th, NULL, producer, (void *)(intptr_t)2000) == 0);
    CHECK_WAIT(H_LOAD(b_sync_done_calls) == 1 && H_LOAD(m_sync_done_calls) == 1, 30000);
    pthread_join(th, NULL);
    H_STORE(g_queue_every, 0);

    CHECK_EQ(H_LOAD(g_walks), 1);
    CHECK_EQ(H_LOAD(g_walk_ends), 1);
    CHECK_EQ(H_LOAD(g_walk_tlvs), n);
    CHECK_EQ(H_LOAD(g_calls), (long)n + 1);
    CHECK_EQ(m_sync_n, n);
    CHECK_EQ(b_sync_n, n);
    CHECK_EQ(H_LOAD(b_walked), n);
    CHECK_EQ(H_LOAD(b_db_clears), 1);
    CHECK_EQ(H_LOAD(b_clear_not_first), 0);
    check_cursor_contract();

    /* Live add / update / delete after the resync. */
    uint64_t rnd = 7;
    for (uint32_t i = 0; i < live; i++) {
        live_change(H_OP_PUT, 1000000u + i, i);                                /* add */
        live_change(H_OP_PUT, (uint32_t)(h_rand(&rnd) % n) * 7u + 3u, i);      /* update */
        live_change(H_OP_DEL, (uint32_t)(h_rand(&rnd) % n) * 7u + 3u, 0);      /* delete */
    }
    CHECK_WAIT(H_LOAD(b_live) == (long)H_LOAD(live_seq), 30000);
    CHECK_WAIT(h_alloc_outstanding() == 0, 10000);
    CHECK_EQ(H_LOAD(live_queue_errors), 0);
    CHECK_EQ(H_LOAD(b_live_before_sync), 0);  /* everything queued during the walk came after it */
    CHECK_EQ(H_LOAD(b_walk_after_sync), 0);
    CHECK_EQ(H_LOAD(b_live_order_errors), 0);
    CHECK_EQ(H_LOAD(b_walk_order_errors), 0);
    CHECK_EQ(H_LOAD(b_bad_payload), 0);
    CHECK_TABLES_EQUAL(&mtab, &btab);
    CHECK_EQ(H_LOAD(b_db_clears), 1);
    junos_sync_stats_t s;
    CHECK_EQ(junos_sync_get_stats(mctx, &s), JUNOS_SYNC_OK);
    CHECK_EQ(s.full_resyncs, 1);
    CHECK_EQ(s.connections, 1);
    h_note("walk of %u entries, %llu live changes (%ld queued from inside get_next), %ld TLVs"
           " freed while the walk ran", n, (unsigned long long)H_LOAD(live_seq), (long)n / 1000,
           H_LOAD(g_freed_during_walk));
    exit_both();
    CHECK_ALLOC_BALANCED(1000);
    h_table_destroy(&mtab);
    h_table_destroy(&btab);
}

/* A small backlog limit paces the walk: each burst is sent and acknowledged before the walk goes
 * on, so the TLV the cursor points into is acknowledged before the next get_next call: the
 * library must keep it alive anyway.
 */
static void test_cursor_survives_ack_of_last_walked(void)
{
    const uint32_t n = (uint32_t)h_scaled_min(20000, 5000);
    h_table_init(&mtab, n + 10);
    h_table_init(&btab, n + 10);
    h_free_hook = watch_hook;
    fill_master(n);
    junos_sync_state_t st = h_master_state(false, 0);
    junos_sync_callbacks_t cb = master_callbacks();
    mctx = junos_sync_init(&st, &cb);
    REQUIRE(mctx != NULL);
    CHECK_EQ(junos_sync_set_backlog_limit(mctx, 16 * 1024), JUNOS_SYNC_OK);
    REQUIRE(junos_sync_start(mctx) == JUNOS_SYNC_OK);
    start_backup(false);
    CHECK_WAIT(H_LOAD(b_sync_done_calls) == 1 && H_LOAD(m_sync_done_calls) == 1, 60000);
    CHECK_EQ(H_LOAD(g_walk_tlvs), n);
    CHECK_EQ(m_sync_n, n);
    CHECK_EQ(b_sync_n, n);
    CHECK_EQ(H_LOAD(b_walk_order_errors), 0);
    check_cursor_contract();
    CHECK_TABLES_EQUAL(&mtab, &btab);
    h_note("%ld TLVs freed while the walk ran", H_LOAD(g_freed_during_walk));
    CHECK_WAIT(h_alloc_outstanding() == 0, 10000);
    exit_both();
    CHECK_ALLOC_BALANCED(1000);
    h_table_destroy(&mtab);
    h_table_destroy(&btab);
}

/* gn->data == NULL skips an entry: it is not sent and not counted in init_sync_done. */
static void test_get_next_skips(void)
{
    h_table_init(&mtab, 1100);
    h_table_init(&btab, 1100);
    h_free_hook = watch_hook;
    for (uint32_t i = 0; i < 1000; i++) {
        h_rec_t r = {i, 1, i};
        h_table_put(&mtab, &r);
    }
    H_STORE(g_skip_odd, 1);
    start_master(false);
    start_backup(false);
    CHECK_WAIT(H_LOAD(b_sync_done_calls) == 1 && H_LOAD(m_sync_done_calls) == 1, 10000);
    CHECK_EQ(H_LOAD(g_walk_tlvs), 500);
    CHECK_EQ(H_LOAD(g_calls), 1001);
    CHECK_EQ(m_sync_n, 500);
    CHECK_EQ(b_sync_n, 500);
    CHECK_EQ(H_LOAD(b_walked), 500);
    CHECK_EQ(h_table_count(&btab), 500);
    for (uint32_t i = 0; i < 1000; i++)
        CHECK_EQ(h_table_get(&btab, i, NULL), !(i & 1));
    check_cursor_contract();
    exit_both();
    CHECK_ALLOC_BALANCED(1000);
    h_table_destroy(&mtab);
    h_table_destroy(&btab);
}

/* An empty database: init_sync_done(0) on both sides, db_clear still called. */
static void test_empty_resync(void)
{
    h_table_init(&mtab, 16);
    h_table_init(&btab, 16);
    h_rec_t junk = {1, 1, 1};
    h_table_put(&btab, &junk);
    start_master(false);
    start_backup(false);
    CHECK_WAIT(H_LOAD(b_sync_done_calls) == 1 && H_LOAD(m_sync_done_calls) == 1, 10000);
    CHECK_EQ(m_sync_n, 0);
    CHECK_EQ(b_sync_n, 0);
    CHECK_EQ(H_LOAD(g_calls), 1);
    CHECK_EQ(H_LOAD(b_db_clears), 1);
    CHECK_EQ(h_table_count(&btab), 0);
    exit_both();
    CHECK_ALLOC_BALANCED(1000);
    h_table_destroy(&mtab);
    h_table_destroy(&btab);
}

/* The backup goes away mid-walk; a new backup gets a new walk from NULL and the whole table. */
static void test_walk_restarts_after_backup_loss(void)
{
    const uint32_t n = (uint32_t)h_scaled_min(20000, 3000);
    h_table_init(&mtab, n + 10);
    h_table_init(&btab, n + 10);
    h_free_hook = watch_hook;
    fill_master(n);
    H_STORE(g_walk_limit_pause, (long)n / 3);
    start_master(false);
    start_backup(false);
    CHECK_WAIT(H_LOAD(g_walk_tlvs) >= (long)n / 3, 10000);
    /* The loop thread is parked inside get_next; the backup leaves. */
    h_exit(bctx, &bcs);
    CHECK_EQ(H_LOAD(bcs.up), H_LOAD(bcs.down));
    CHECK_EQ(H_LOAD(b_sync_done_calls), 0);
    H_STORE(g_walk_limit_pause, 0);
    CHECK_WAIT(H_LOAD(mcs.down) == 1, 10000);
    CHECK_EQ(H_LOAD(m_sync_done_calls), 0);

    /* A new backup (same globals, fresh bookkeeping). */
    long clears_first = H_LOAD(b_db_clears); /* 0 or 1: whether SyncBegin got out in time */
    CHECK_LE(clears_first, 1);
    memset(&bcs, 0, sizeof bcs);
    H_STORE(b_db_clears, 0);
    H_STORE(b_walked, 0);
    H_STORE(b_decodes_this_sync, 0);
    b_walk_last = 0;
    start_backup(false);
    CHECK_WAIT(H_LOAD(b_sync_done_calls) == 1 && H_LOAD(m_sync_done_calls) == 1, 30000);
    CHECK_EQ(H_LOAD(g_walks), 2);
    CHECK_EQ(m_sync_n, n);
    CHECK_EQ(b_sync_n, n);
    CHECK_EQ(H_LOAD(b_walked), n);
    CHECK_EQ(H_LOAD(b_db_clears), 1);
    CHECK_TABLES_EQUAL(&mtab, &btab);
    check_cursor_contract();
    CHECK_WAIT(h_alloc_outstanding() == 0, 10000);
    junos_sync_stats_t s;
    CHECK_EQ(junos_sync_get_stats(mctx, &s), JUNOS_SYNC_OK);
    CHECK_EQ(s.full_resyncs, 2);
    CHECK_EQ(s.connections, 2);
    exit_both();
    CHECK_ALLOC_BALANCED(1000);
    h_table_destroy(&mtab);
    h_table_destroy(&btab);
}

/* no_resync on either side: no walk, no db_clear; live data still flows. */
static void no_resync_case(bool master_no, bool backup_no)
{
    h_table_init(&mtab, 200);
    h_table_init(&btab, 200);
    fill_master(50);
    h_rec_t junk = {999999, 1, 1};
    h_table_put(&btab, &junk);
    start_master(master_no);
    start_backup(backup_no);
    CHECK_WAIT(H_LOAD(mcs.up) == 1 && H_LOAD(bcs.up) == 1, 10000);
    for (uint32_t i = 0; i < 100; i++)
        live_change(H_OP_PUT, 5000u + i, i);
    CHECK_WAIT(H_LOAD(b_live) == 100, 10000);
    CHECK_WAIT(h_alloc_outstanding() == 0, 10000);
    CHECK_EQ(H_LOAD(g_calls), 0);
    CHECK_EQ(H_LOAD(b_db_clears), 0);
    CHECK_EQ(H_LOAD(b_walked), 0);
    CHECK_EQ(H_LOAD(b_live_order_errors), 0);
    CHECK(h_table_get(&btab, 999999, NULL)); /* untouched: no clear */
    CHECK_EQ(h_table_count(&btab), 101);
    exit_both();
    CHECK_ALLOC_BALANCED(1000);
    h_table_destroy(&mtab);
    h_table_destroy(&btab);
}

static void test_no_resync_master(void)
{
    no_resync_case(true, false);
}

static void test_no_resync_backup(void)
{
    no_resync_case(false, true);
}

int main(int argc, char **argv)
{
    h_init(argc, argv);
    RUN_T(test_resync_50k_then_live, 120);
    RUN_T(test_cursor_survives_ack_of_last_walked, 120);
    RUN(test_get_next_skips);
    RUN(test_empty_resync);
    RUN(test_walk_restarts_after_backup_loss);
    RUN(test_no_resync_master);
    RUN(test_no_resync_backup);
    return h_summary();
}
