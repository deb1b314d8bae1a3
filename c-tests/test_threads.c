/*
 * Concurrency: 4 master/backup pairs in one process at once (own tables, ports, loop threads);
 * 8 threads queueing concurrently into one master (per-thread order preserved, nothing lost or
 * duplicated); a queue on an idle loop is picked up at once (no lost wake-up).
 */
#include "pair.h"

/* ---- one master/backup pair; callbacks are generated per pair (no user-data argument) ---- */

typedef struct {
    h_table_t mtab, btab;
    h_cbstat_t mcs, bcs;
    junos_sync_context_t *m, *b;
    in_port_t port;
    long bind_calls;
    long m_sync, b_sync;
    size_t m_n, b_n;
    long walk_bad;
    long acks, ack_bad;
    long b_live, b_walked, b_bad, b_order_err;
    uint64_t b_last;
    long db_clears;
    uint64_t seq;  /* producer side */
    long with_ack; /* producer side */
} pair_t;

#define NPAIRS 4
static pair_t P[NPAIRS];

static void pair_m_ack(pair_t *p, junos_sync_tlv_t *t, size_t len)
{
    h_cb_enter(&p->mcs);
    if (t == NULL || len != t->tlv_len || !h_block_live(t))
        H_INC(p->ack_bad);
    H_INC(p->acks);
    h_cb_leave(&p->mcs);
}

static void pair_b_decode(pair_t *p, void *data, size_t len)
{
    h_cb_enter(&p->bcs);
    h_wire_t w;
    if (!h_wire_decode(data, len, &w)) {
        H_INC(p->b_bad);
    } else {
        if (w.op == H_OP_WALK) {
            H_INC(p->b_walked);
        } else {
            if (w.seq != p->b_last + 1)
                H_INC(p->b_order_err);
            p->b_last = w.seq;
            H_INC(p->b_live);
        }
        h_table_apply(&p->btab, &w);
    }
    h_cb_leave(&p->bcs);
}

#define PAIR_CALLBACKS(i)                                                                     \
    static void m_ack_##i(junos_sync_tlv_t *t, size_t l) { pair_m_ack(&P[i], t, l); }         \
    H_CB_WALK(m_next_##i, P[i].mcs, P[i].mtab, 16, P[i].walk_bad)                             \
    H_CB_CONN(m_conn_##i, P[i].mcs)                                                           \
    H_CB_SYNC_DONE(m_sync_##i, P[i].mcs, P[i].m_n, P[i].m_sync)                               \
    H_CB_BIND(m_bind_##i, P[i].port, P[i].bind_calls)                                         \
    static void b_decode_##i(void *d, size_t l) { pair_b_decode(&P[i], d, l); }               \
    H_CB_CONN(b_conn_##i, P[i].bcs)                                                           \
    H_CB_SYNC_DONE(b_sync_##i, P[i].bcs, P[i].b_n, P[i].b_sync)                               \
    H_CB_DB_CLEAR(b_clear_##i, P[i].bcs, P[i].btab, P[i].db_clears)

PAIR_CALLBACKS(0)
PAIR_CALLBACKS(1)
PAIR_CALLBACKS(2)
PAIR_CALLBACKS(3)

typedef struct {
    junos_sync_ack_notify_func_t ack;
    junos_sync_data_getnext_func_t next;
    junos_sync_conn_status_change_func_t mconn;
    junos_sync_init_sync_done_func_t msync;
    junos_sync_bind_done_func_t bind;
    junos_sync_data_decode_func_t decode;
    junos_sync_conn_status_change_func_t bconn;
    junos_sync_init_sync_done_func_t bsync;
    junos_sync_db_clear_func_t clear;
} pair_cbs_t;

#define PAIR_CBS(i)                                                                           \
    {                                                                                         \
        m_ack_##i, m_next_##i, m_conn_##i, m_sync_##i, m_bind_##i, b_decode_##i, b_conn_##i,  \
            b_sync_##i, b_clear_##i                                                           \
    }

static const pair_cbs_t CBS[NPAIRS] = {PAIR_CBS(0), PAIR_CBS(1), PAIR_CBS(2), PAIR_CBS(3)};

static bool pair_start(int i)
{
    pair_t *p = &P[i];
    junos_sync_callbacks_t cb =
        h_master_callbacks(CBS[i].ack, CBS[i].next, CBS[i].mconn, CBS[i].msync, CBS[i].bind);
    junos_sync_state_t st = h_master_state(false, 0);
    p->m = junos_sync_init(&st, &cb);
    if (p->m == NULL || junos_sync_start(p->m) != JUNOS_SYNC_OK || p->port == 0)
        return false;
    cb = h_backup_callbacks(CBS[i].decode, CBS[i].bconn, CBS[i].bsync, CBS[i].clear);
    st = h_backup_state(p->port, false, 0);
    p->b = junos_sync_init(&st, &cb);
    return p->b != NULL && junos_sync_start(p->b) == JUNOS_SYNC_OK;
}

static void *pair_producer(void *arg)
{
    pair_t *p = &P[(intptr_t)arg];
    size_t n = h_scaled_min(25000, 1000);
    uint64_t rnd = 1000 + (uint64_t)(intptr_t)arg;
    for (size_t k = 0; k < n; k++) {
        uint32_t id = (uint32_t)(h_rand(&rnd) % 5000);
        h_rec_t r = {id, (uint32_t)k, h_rand(&rnd)};
        uint32_t op = H_OP_PUT;
        if (h_rand(&rnd) % 4 == 0) {
            op = H_OP_DEL;
            h_table_del(&p->mtab, id);
        } else {
            h_table_put(&p->mtab, &r);
        }
        bool ack = k % 10 == 0;
        junos_sync_tlv_t *t = h_tlv_rec(op, &r, ++p->seq, 0, k % 9);
        if (junos_sync_queue(p->m, t, ack) != JUNOS_SYNC_OK) {
            h_fail(__FILE__, __LINE__, "pair %d: queue failed", (int)(intptr_t)arg);
            h_free(t);
            break;
        }
        p->with_ack += ack;
    }
    return NULL;
}

static void test_four_pairs_at_once(void)
{
    int threads_before = h_thread_count();
    for (int i = 0; i < NPAIRS; i++) {
        h_table_init(&P[i].mtab, 20000);
        h_table_init(&P[i].btab, 20000);
        /* Distinct initial databases: 1000 * (i + 1) entries. */
        for (uint32_t k = 0; k < 1000u * (uint32_t)(i + 1); k++) {
            h_rec_t r = {100000u + k, (uint32_t)i, (uint64_t)k * 31u + (uint64_t)i};
            h_table_put(&P[i].mtab, &r);
        }
    }
    for (int i = 0; i < NPAIRS; i++)
        REQUIRE(pair_start(i));
    for (int i = 0; i < NPAIRS; i++)
        for (int j = i + 1; j < NPAIRS; j++)
            CHECK_NE(P[i].port, P[j].port);
    /* One loop thread per context. */
    CHECK_WAIT(h_thread_count() >= threads_before + 2 * NPAIRS, 5000);
    for (int i = 0; i < NPAIRS; i++) {
        pair_t *p = &P[i];
        CHECK_WAIT(H_LOAD(p->b_sync) == 1 && H_LOAD(p->m_sync) == 1, 20000);
        CHECK_EQ(p->m_n, 1000u * (unsigned)(i + 1));
        CHECK_EQ(p->b_n, 1000u * (unsigned)(i + 1));
    }
    /* All four stream at once. */
    pthread_t th[NPAIRS];
    for (int i = 0; i < NPAIRS; i++)
        REQUIRE(pthread_create(&th[i], NULL, pair_producer, (void *)(intptr_t)i) == 0);
    for (int i = 0; i < NPAIRS; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < NPAIRS; i++) {
        pair_t *p = &P[i];
        CHECK_WAIT(H_LOAD(p->b_live) == (long)p->seq && H_LOAD(p->acks) == p->with_ack, 60000);
        CHECK_TABLES_EQUAL(&p->mtab, &p->btab);
        CHECK_EQ(H_LOAD(p->b_order_err), 0);
        CHECK_EQ(H_LOAD(p->b_bad), 0);
        CHECK_EQ(H_LOAD(p->ack_bad), 0);
        CHECK_EQ(H_LOAD(p->walk_bad), 0);
        CHECK_EQ(H_LOAD(p->db_clears), 1);
        CHECK_EQ(H_LOAD(p->bind_calls), 1);
        CHECK_EQ(H_LOAD(p->mcs.up), 1);
        CHECK_EQ(H_LOAD(p->bcs.up), 1);
    }
    /* Nothing crossed between pairs: every backup differs from every other master. */
    for (int i = 0; i < NPAIRS; i++)
        for (int j = 0; j < NPAIRS; j++)
            if (i != j)
                CHECK(!h_tables_equal(&P[i].btab, &P[j].mtab));
    /* Eight distinct loop threads. */
    pthread_t loops[2 * NPAIRS];
    for (int i = 0; i < NPAIRS; i++) {
        loops[2 * i] = P[i].mcs.loop;
        loops[2 * i + 1] = P[i].bcs.loop;
    }
    for (int i = 0; i < 2 * NPAIRS; i++)
        for (int j = i + 1; j < 2 * NPAIRS; j++)
            CHECK(!pthread_equal(loops[i], loops[j]));
    CHECK_WAIT(h_alloc_outstanding() == 0, 10000);
    /* Exit in an interleaved order. */
    for (int i = 0; i < NPAIRS; i++) {
        pair_t *p = &P[i];
        if (i % 2 == 0) {
            h_exit(p->m, &p->mcs);
            CHECK_WAIT(H_LOAD(p->bcs.down) == 1, 10000);
            h_exit(p->b, &p->bcs);
        } else {
            h_exit(p->b, &p->bcs);
            CHECK_WAIT(H_LOAD(p->mcs.down) == 1, 10000);
            h_exit(p->m, &p->mcs);
        }
        CHECK_EQ(H_LOAD(p->mcs.down), 1);
        CHECK_EQ(H_LOAD(p->bcs.down), 1);
        CHECK_CBSTAT(&p->mcs);
        CHECK_CBSTAT(&p->bcs);
    }
    CHECK_ALLOC_BALANCED(1000);
    CHECK_WAIT(h_thread_count() == threads_before, 5000);
    for (int i = 0; i < NPAIRS; i++) {
        h_table_destroy(&P[i].mtab);
        h_table_destroy(&P[i].btab);
    }
}

/* ---- 8 producers into one master --------------------------------------------------------- */

#define NPROD 8

static junos_sync_context_t *g_m, *g_b;
static h_cbstat_t g_mcs, g_bcs;
static in_port_t g_port;
static long g_acks;
static long g_b_sync;
static uint64_t g_last[NPROD];   /* backup: last sequence seen per producer */
static long g_count[NPROD];      /* backup: records seen per producer */
static long g_order_err, g_bad, g_decodes;
static pthread_barrier_t g_barrier;
static size_t g_per_thread;
static long g_with_ack[NPROD];
static int64_t g_seen_us;        /* test_idle_queue_latency: when the backup decoded */

static void g_m_ack(junos_sync_tlv_t *t, size_t len)
{
    h_cb_enter(&g_mcs);
    (void)t;
    (void)len;
    H_INC(g_acks);
    h_cb_leave(&g_mcs);
}

H_CB_CONN(g_m_conn, g_mcs)

static void g_m_bind(in_port_t port)
{
    g_port = port;
}

static void g_b_decode(void *data, size_t len)
{
    h_cb_enter(&g_bcs);
    h_wire_t w;
    if (!h_wire_decode(data, len, &w) || w.aux >= NPROD) {
        H_INC(g_bad);
    } else {
        if (w.seq != g_last[w.aux] + 1)
            H_INC(g_order_err);
        g_last[w.aux] = w.seq;
        H_INC(g_count[w.aux]);
    }
    H_STORE(g_seen_us, h_now_us());
    H_INC(g_decodes);
    h_cb_leave(&g_bcs);
}

H_CB_CONN(g_b_conn, g_bcs)

static void g_b_syncdone(size_t n)
{
    (void)n;
    H_INC(g_b_sync);
}

/* A master without resync (nothing to walk) and a backup. */
static bool single_pair_start(uint32_t keepalive)
{
    junos_sync_callbacks_t cb = h_master_callbacks(g_m_ack, NULL, g_m_conn, NULL, g_m_bind);
    junos_sync_state_t st = h_master_state(true, keepalive);
    g_m = junos_sync_init(&st, &cb);
    if (g_m == NULL || junos_sync_start(g_m) != JUNOS_SYNC_OK)
        return false;
    cb = h_callbacks_log();
    cb.sync_data_decode_func = g_b_decode;
    cb.sync_conn_status_change_func = g_b_conn;
    cb.sync_init_sync_done_func = g_b_syncdone;
    cb.sync_log_msg_func = log_msg;
    st = h_backup_state(g_port, true, keepalive);
    g_b = junos_sync_init(&st, &cb);
    return g_b != NULL && junos_sync_start(g_b) == JUNOS_SYNC_OK;
}

static void single_pair_exit(void)
{
    h_exit(g_m, &g_mcs);
    CHECK_WAIT(H_LOAD(g_bcs.down) == H_LOAD(g_bcs.up), 10000);
    h_exit(g_b, &g_bcs);
    CHECK_EQ(H_LOAD(g_mcs.up), H_LOAD(g_mcs.down));
    CHECK_CBSTAT(&g_mcs);
    CHECK_CBSTAT(&g_bcs);
}

static void *queue_thread(void *arg)
{
    uint32_t me = (uint32_t)(intptr_t)arg;
    pthread_barrier_wait(&g_barrier);
    for (size_t k = 1; k <= g_per_thread; k++) {
        h_rec_t r = {me * 1000000u + (uint32_t)k, me, k};
        bool ack = (k % 3) == me % 3;
        junos_sync_tlv_t *t = h_tlv_rec(H_OP_PUT, &r, k, me, (k + me) % 17);
        junos_sync_status_t s = junos_sync_queue(g_m, t, ack);
        if (s != JUNOS_SYNC_OK) {
            h_fail(__FILE__, __LINE__, "thread %u: junos_sync_queue returned %d", me, (int)s);
            h_free(t);
            return NULL;
        }
        g_with_ack[me] += ack;
        if (k % 1024 == 0)
            sched_yield();
    }
    return NULL;
}

static void test_eight_threads_one_master(void)
{
    g_per_thread = h_scaled_min(25000, 1000);
    REQUIRE(single_pair_start(0));
    CHECK_WAIT(H_LOAD(g_mcs.up) == 1 && H_LOAD(g_bcs.up) == 1, 10000);
    pthread_barrier_init(&g_barrier, NULL, NPROD);
    pthread_t th[NPROD];
    for (int i = 0; i < NPROD; i++)
        REQUIRE(pthread_create(&th[i], NULL, queue_thread, (void *)(intptr_t)i) == 0);
    for (int i = 0; i < NPROD; i++)
        pthread_join(th[i], NULL);
    long total_ack = 0;
    for (int i = 0; i < NPROD; i++)
        total_ack += g_with_ack[i];
    CHECK_WAIT(H_LOAD(g_decodes) == (long)(NPROD * g_per_thread), 60000);
    CHECK_WAIT(H_LOAD(g_acks) == total_ack && h_alloc_outstanding() == 0, 20000);
    for (int i = 0; i < NPROD; i++) {
        CHECK_EQ(H_LOAD(g_count[i]), (long)g_per_thread);
        CHECK_EQ(g_last[i], g_per_thread);
    }
    CHECK_EQ(H_LOAD(g_order_err), 0);
    CHECK_EQ(H_LOAD(g_bad), 0);
    CHECK_EQ(H_LOAD(g_acks), total_ack);
    single_pair_exit();
    CHECK_ALLOC_BALANCED(1000);
    pthread_barrier_destroy(&g_barrier);
}

/* The loop sleeps when idle; a queue must wake it at once, not at its next timer (a 30 s
 * keepalive puts that 10 s away). Many rounds with jitter race the loop going to sleep. */
static void test_idle_queue_latency(void)
{
    REQUIRE(single_pair_start(30));
    CHECK_WAIT(H_LOAD(g_mcs.up) == 1 && H_LOAD(g_bcs.up) == 1, 10000);
    const int rounds = (int)h_scaled_min(400, 60);
    uint64_t rnd = 5;
    int64_t worst = 0;
    for (int k = 1; k <= rounds; k++) {
        h_sleep_us((long)(h_rand(&rnd) % 400));
        h_rec_t r = {(uint32_t)k, 1, 1};
        int64_t t0 = h_now_us();
        REQUIRE(junos_sync_queue(g_m, h_tlv_rec(H_OP_PUT, &r, (uint64_t)k, 0, 0), k % 2) ==
                JUNOS_SYNC_OK);
        if (!WAIT_UNTIL(H_LOAD(g_decodes) == k, 5000)) {
            h_fail(__FILE__, __LINE__, "round %d: not delivered", k);
            break;
        }
        int64_t lat = H_LOAD(g_seen_us) - t0;
        if (lat > worst)
            worst = lat;
    }
    h_note("worst queue->decode latency on an idle pair: %lld us", (long long)worst);
    CHECK_LE(worst, h_tmo(1500) * 1000);
    CHECK_EQ(H_LOAD(g_order_err), 0);
    CHECK_WAIT(h_alloc_outstanding() == 0, 5000);
    single_pair_exit();
    CHECK_ALLOC_BALANCED(1000);
}

int main(int argc, char **argv)
{
    h_init(argc, argv);
    RUN_T(test_four_pairs_at_once, 120);
    RUN_T(test_eight_threads_one_master, 120);
    RUN_T(test_idle_queue_latency, 120);
    return h_summary();
}
