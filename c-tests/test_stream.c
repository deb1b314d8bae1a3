/*
 * Master -> backup streaming: 100k records (adds, updates, deletes) with digest equality, queue
 * order on the backup, ack_requested -> exactly one sync_ack_notify_func per such TLV, every TLV
 * freed exactly once (counting allocator balanced after junos_sync_exit), payload integrity for
 * large and empty payloads, queueing from inside callbacks and before start, a backup that starts
 * before its master.
 */
#include "pair.h"

/* ---- master side ----------------------------------------------------------------------- */

static h_table_t mtab;
static h_cbstat_t mcs;
static junos_sync_context_t *mctx;
static in_port_t mport;
static long m_bind_calls;
static long m_acks, m_ack_bad;
static long m_sync_done_calls;
static size_t m_sync_n;
static long m_walk_bad;
/* Queue-from-callback chain: every acked record with aux H_CHAIN queues the next one. */
#define H_ACKFLAG 1u
#define H_CHAIN 2u
static long m_chain_left;
static uint64_t m_chain_seq;   /* only touched on the loop thread once the chain runs */
static long m_queue_errors;

static void m_ack(junos_sync_tlv_t *tlv, size_t len)
{
    h_cb_enter(&mcs);
    h_wire_t w;
    if (tlv == NULL || !h_block_live(tlv) || len != tlv->tlv_len ||
        !h_wire_decode(tlv->tlv_value, tlv->tlv_len, &w) || !(w.aux & H_ACKFLAG)) {
        H_INC(m_ack_bad);
    } else if ((w.aux & H_CHAIN) && H_LOAD(m_chain_left) > 0) {
        H_DEC(m_chain_left);
        h_rec_t r = {(uint32_t)(900000 + m_chain_seq), 1, m_chain_seq};
        h_table_put(&mtab, &r);
        junos_sync_tlv_t *t = h_tlv_rec(H_OP_PUT, &r, ++m_chain_seq, H_ACKFLAG | H_CHAIN, 3);
        if (junos_sync_queue(mctx, t, true) != JUNOS_SYNC_OK) {
            H_INC(m_queue_errors);
            h_free(t);
        }
    }
    H_INC(m_acks);
    h_cb_leave(&mcs);
}

H_CB_WALK(m_get_next, mcs, mtab, 8, m_walk_bad)
H_CB_CONN(m_conn, mcs)
H_CB_SYNC_DONE(m_sync_done, mcs, m_sync_n, m_sync_done_calls)

H_CB_BIND(m_bind, mport, m_bind_calls)

/* ---- backup side ----------------------------------------------------------------------- */

static h_table_t btab;
static h_cbstat_t bcs;
static junos_sync_context_t *bctx;
static long b_decodes, b_live, b_walked;
static long b_bad_payload, b_misaligned, b_order_errors, b_live_before_sync;
static uint64_t b_last_seq;
static long b_db_clears, b_sync_done_calls;
static size_t b_sync_n;
static long b_big_ok, b_big_bad;

/* A big payload: sequence pattern from a seed in the first 8 bytes. */
static uint8_t big_byte(uint64_t seed, size_t i)
{
    return (uint8_t)((seed * 131u) ^ (i * 2654435761u >> 7) ^ (i >> 13));
}

static void b_decode(void *data, size_t len)
{
    h_cb_enter(&bcs);
    H_INC(b_decodes);
    if (((uintptr_t)data & 7) != 0)
        H_INC(b_misaligned);
    if (len >= 65536) {
        uint64_t seed;
        memcpy(&seed, data, 8);
        seed = be64toh(seed);
        bool ok = true;
        for (size_t i = 8; i < len && ok; i++)
            ok = ((uint8_t *)data)[i] == big_byte(seed, i);
        H_INC(*(ok ? &b_big_ok : &b_big_bad));
        /* The buffer is writable. */
        ((uint8_t *)data)[len - 1] ^= 0xff;
        h_cb_leave(&bcs);
        return;
    }
    if (len == 0) {
        H_INC(b_big_ok); /* the empty TLV of test_large_and_empty_payloads */
        h_cb_leave(&bcs);
        return;
    }
    h_wire_t w;
    if (!h_wire_decode(data, len, &w)) {
        H_INC(b_bad_payload);
        h_cb_leave(&bcs);
        return;
    }
    if (w.op == H_OP_WALK) {
        H_INC(b_walked);
    } else {
        if (w.seq != b_last_seq + 1)
            H_INC(b_order_errors);
        b_last_seq = w.seq;
        H_INC(b_live);
        if (H_LOAD(b_sync_done_calls) == 0)
            H_INC(b_live_before_sync);
    }
    h_table_apply(&btab, &w);
    memset(data, 0xee, len); /* writable, and the library must not need it afterwards */
    h_cb_leave(&bcs);
}

H_CB_CONN(b_conn, bcs)
H_CB_SYNC_DONE(b_sync_done, bcs, b_sync_n, b_sync_done_calls)
H_CB_DB_CLEAR(b_db_clear, bcs, btab, b_db_clears)

/* ---- setup ----------------------------------------------------------------------------- */

static junos_sync_callbacks_t master_callbacks(void)
{
    return h_master_callbacks(m_ack, m_get_next, m_conn, m_sync_done, m_bind);
}

static bool start_master(void)
{
    junos_sync_state_t st = h_master_state(false, 0);
    junos_sync_callbacks_t cb = master_callbacks();
    mctx = junos_sync_init(&st, &cb);
    if (mctx == NULL)
        return false;
    return junos_sync_start(mctx) == JUNOS_SYNC_OK && mport != 0;
}

static bool start_backup(in_port_t port)
{
    junos_sync_state_t st = h_backup_state(port, false, 0);
    junos_sync_callbacks_t cb = h_backup_callbacks(b_decode, b_conn, b_sync_done, b_db_clear);
    bctx = junos_sync_init(&st, &cb);
    return bctx != NULL && junos_sync_start(bctx) == JUNOS_SYNC_OK;
}

/* Master first (DOWN on both), then backup; checks the callback invariants on both. */
static void exit_both(void)
{
    h_exit(mctx, &mcs);
    CHECK_WAIT(H_LOAD(bcs.down) >= H_LOAD(bcs.up), 10000);
    h_exit(bctx, &bcs);
    CHECK_EQ(H_LOAD(mcs.up), H_LOAD(mcs.down));
    CHECK_EQ(H_LOAD(bcs.up), H_LOAD(bcs.down));
    CHECK_CBSTAT(&mcs);
    CHECK_CBSTAT(&bcs);
    CHECK_EQ(H_LOAD(m_walk_bad), 0);
}

/* ---- tests ----------------------------------------------------------------------------- */

static void test_stream_100k(void)
{
    const size_t n = h_scaled_min(100000, 2000);
    const uint32_t ids = (uint32_t)(n / 5);
    h_table_init(&mtab, ids + 100);
    h_table_init(&btab, ids + 100);
    uint64_t seq = 0, rnd = 0x1234567;
    long with_ack = 0;

    /* Queued before junos_sync_start: delivered like everything else. */
    junos_sync_state_t st = h_master_state(false, 0);
    junos_sync_callbacks_t cb = master_callbacks();
    mctx = junos_sync_init(&st, &cb);
    REQUIRE(mctx != NULL);
    for (int i = 0; i < 10; i++) {
        h_rec_t r = {(uint32_t)i, 1, 1000u + (uint64_t)i};
        h_table_put(&mtab, &r);
        CHECK_EQ(junos_sync_queue(mctx, h_tlv_rec(H_OP_PUT, &r, ++seq, 0, 0), false),
                 JUNOS_SYNC_OK);
    }
    REQUIRE(junos_sync_start(mctx) == JUNOS_SYNC_OK);
    REQUIRE(mport != 0);
    CHECK_EQ(H_LOAD(m_bind_calls), 1);

    /* Backup with junk in its table: the resync must clear it. */
    h_rec_t junk = {424242, 9, 9};
    h_table_put(&btab, &junk);
    REQUIRE(start_backup(mport));
    CHECK_WAIT(H_LOAD(b_sync_done_calls) == 1 && H_LOAD(m_sync_done_calls) == 1, 10000);
    CHECK_WAIT(H_LOAD(b_live) == 10, 10000);
    CHECK_EQ(H_LOAD(mcs.up), 1);
    CHECK_EQ(H_LOAD(bcs.up), 1);
    CHECK_EQ(H_LOAD(b_db_clears), 1);
    CHECK_EQ(m_sync_n, 10);
    CHECK_EQ(b_sync_n, 10);
    CHECK_EQ(H_LOAD(b_walked), 10);

    /* The stream: puts (adds and updates) and deletes over a key space a fifth of n. */
    int64_t t0 = h_now_ms();
    for (size_t i = 0; i < n; i++) {
        uint32_t id = (uint32_t)(h_rand(&rnd) % ids);
        bool ack = h_rand(&rnd) % 7 == 0;
        h_rec_t r = {id, 0, h_rand(&rnd)};
        uint32_t op = H_OP_PUT;
        h_rec_t old;
        if (h_table_get(&mtab, id, &old)) {
            if (h_rand(&rnd) % 3 == 0)
                op = H_OP_DEL;
            r.ver = old.ver + 1;
        }
        if (op == H_OP_DEL) {
            h_table_del(&mtab, id);
            r = old;
        } else {
            h_table_put(&mtab, &r);
        }
        junos_sync_tlv_t *t = h_tlv_rec(op, &r, ++seq, ack ? H_ACKFLAG : 0, (size_t)(i % 41));
        junos_sync_status_t s = junos_sync_queue(mctx, t, ack);
        if (s != JUNOS_SYNC_OK) {
            h_fail(__FILE__, __LINE__, "junos_sync_queue returned %d at record %zu", (int)s, i);
            h_free(t);
            break;
        }
        if (ack)
            with_ack++;
    }
    int64_t t_queued = h_now_ms();
    CHECK_WAIT(H_LOAD(b_live) == (long)seq, 60000);
    CHECK_WAIT(H_LOAD(m_acks) == with_ack && h_alloc_outstanding() == 0, 20000);
    h_note("%zu records: queued in %lld ms, applied and acknowledged in %lld ms", n,
           (long long)(t_queued - t0), (long long)(h_now_ms() - t0));

    CHECK_TABLES_EQUAL(&mtab, &btab);
    CHECK(!h_table_get(&btab, 424242, NULL));
    CHECK_EQ(H_LOAD(m_acks), with_ack);
    CHECK_EQ(H_LOAD(m_ack_bad), 0);
    CHECK_EQ(H_LOAD(b_order_errors), 0);
    CHECK_EQ(H_LOAD(b_bad_payload), 0);
    CHECK_EQ(H_LOAD(b_misaligned), 0);
    CHECK_EQ(H_LOAD(b_live_before_sync), 0);
    CHECK_EQ(H_LOAD(b_decodes), (long)seq + 10);
    CHECK_EQ(H_LOAD(b_db_clears), 1);
    junos_sync_stats_t ms;
    CHECK_EQ(junos_sync_get_stats(mctx, &ms), JUNOS_SYNC_OK);
    CHECK_EQ(ms.connections, 1);
    CHECK_EQ(ms.full_resyncs, 1);
    CHECK_EQ(ms.backlog_bytes, 0);
    CHECK_EQ(ms.frames_rejected, 0);

    exit_both();
    CHECK_EQ(H_LOAD(mcs.down), 1);
    CHECK_ALLOC_BALANCED(1000);
    CHECK_EQ(H_LOAD(m_acks), with_ack); /* exit notifies nothing */
    CHECK_EQ(H_LOAD(h_log_bad_fmt), 0);
    h_table_destroy(&mtab);
    h_table_destroy(&btab);
}

/* Unacknowledged TLVs at exit are freed by exit (no ack notification), exactly once. */
static void test_exit_frees_unacked_without_backup(void)
{
    h_table_init(&mtab, 1000);
    REQUIRE(start_master());
    for (uint32_t i = 0; i < 500; i++) {
        h_rec_t r = {i, 1, i};
        CHECK_EQ(junos_sync_queue(mctx, h_tlv_rec(H_OP_PUT, &r, i + 1, H_ACKFLAG, 5), i % 2),
                 JUNOS_SYNC_OK);
    }
    junos_sync_stats_t ms;
    CHECK_EQ(junos_sync_get_stats(mctx, &ms), JUNOS_SYNC_OK);
    /* Each TLV counts its payload and 64 bytes for its entry (header, allocation, bookkeeping). */
    CHECK_EQ(ms.backlog_bytes, 500 * (64 + sizeof(h_wire_t) + 5));
    CHECK_EQ(h_alloc_outstanding(), 500);
    h_exit(mctx, &mcs);
    CHECK_EQ(H_LOAD(m_acks), 0);
    CHECK_EQ(H_LOAD(mcs.up), 0);
    CHECK_EQ(H_LOAD(mcs.down), 0);
    CHECK_ALLOC_BALANCED(1000);
    CHECK_CBSTAT(&mcs);
    h_table_destroy(&mtab);
}

/* Payloads from 0 bytes to several MiB arrive intact, writable, aligned. */
static void test_large_and_empty_payloads(void)
{
    h_table_init(&mtab, 16);
    h_table_init(&btab, 16);
    REQUIRE(start_master());
    REQUIRE(start_backup(mport));
    CHECK_WAIT(H_LOAD(b_sync_done_calls) == 1 && H_LOAD(m_sync_done_calls) == 1, 10000);
    const size_t sizes[] = {65536, 65537, 1u << 20, (4u << 20) + 3, 200000};
    const int nsizes = (int)(sizeof sizes / sizeof sizes[0]);
    for (int i = 0; i < nsizes; i++) {
        junos_sync_tlv_t *t = h_tlv_alloc(0xbeef0000u + (uint32_t)i, sizes[i]);
        uint64_t seed = htobe64((uint64_t)i + 77);
        memcpy(t->tlv_value, &seed, 8);
        for (size_t j = 8; j < sizes[i]; j++)
            t->tlv_value[j] = big_byte((uint64_t)i + 77, j);
        CHECK_EQ(junos_sync_queue(mctx, t, true), JUNOS_SYNC_OK);
    }
    CHECK_EQ(junos_sync_queue(mctx, h_tlv_alloc(5, 0), true), JUNOS_SYNC_OK);
    CHECK_WAIT(H_LOAD(b_big_ok) + H_LOAD(b_big_bad) == nsizes + 1, 30000);
    CHECK_EQ(H_LOAD(b_big_bad), 0);
    CHECK_EQ(H_LOAD(b_misaligned), 0);
    CHECK_WAIT(h_alloc_outstanding() == 0, 10000);
    /* ack_notify saw every TLV, including the empty one (m_ack_bad counts those it could not
     * parse as records: all of these). */
    CHECK_EQ(H_LOAD(m_acks), nsizes + 1);
    exit_both();
    CHECK_ALLOC_BALANCED(1000);
    h_table_destroy(&mtab);
    h_table_destroy(&btab);
}

/* junos_sync_queue from inside sync_ack_notify_func: a chain where each ack queues the next. */
static void test_queue_from_ack_callback(void)
{
    const long chain = (long)h_scaled_min(2000, 200);
    h_table_init(&mtab, (size_t)chain + 10);
    h_table_init(&btab, (size_t)chain + 10);
    REQUIRE(start_master());
    REQUIRE(start_backup(mport));
    CHECK_WAIT(H_LOAD(b_sync_done_calls) == 1, 10000);
    H_STORE(m_chain_left, chain);
    m_chain_seq = 1;
    h_rec_t r = {900000, 1, 0};
    h_table_put(&mtab, &r);
    CHECK_EQ(junos_sync_queue(mctx, h_tlv_rec(H_OP_PUT, &r, 1, H_ACKFLAG | H_CHAIN, 3), true),
             JUNOS_SYNC_OK);
    CHECK_WAIT(H_LOAD(m_acks) == chain + 1 && h_alloc_outstanding() == 0, 30000);
    CHECK_EQ(H_LOAD(m_chain_left), 0);
    CHECK_EQ(H_LOAD(m_queue_errors), 0);
    CHECK_EQ(H_LOAD(b_live), chain + 1);
    CHECK_EQ(H_LOAD(b_order_errors), 0);
    CHECK_TABLES_EQUAL(&mtab, &btab);
    exit_both();
    CHECK_ALLOC_BALANCED(1000);
    h_table_destroy(&mtab);
    h_table_destroy(&btab);
}

/* A backup started while nobody listens keeps retrying and connects once the master is up. */
static void test_backup_starts_before_master(void)
{
    h_table_init(&mtab, 100);
    h_table_init(&btab, 100);
    /* Learn a free port, then free it again. */
    REQUIRE(start_master());
    in_port_t port = mport;
    junos_sync_exit(mctx);
    mctx = NULL;

    REQUIRE(start_backup(port));
    int64_t t_start = h_now_ms();
    /* Let it fail a few connection attempts (nothing to wait for: nobody listens). */
    h_sleep_us(700 * 1000);
    CHECK_EQ(H_LOAD(bcs.up), 0);
    for (uint32_t i = 0; i < 20; i++) {
        h_rec_t r = {i, 1, i * 3u};
        h_table_put(&mtab, &r);
    }
    junos_sync_state_t st = h_master_state(false, 0);
    st.server_port = port;
    junos_sync_callbacks_t cb = master_callbacks();
    mctx = junos_sync_init(&st, &cb);
    REQUIRE(mctx != NULL);
    REQUIRE(junos_sync_start(mctx) == JUNOS_SYNC_OK);
    CHECK_EQ(mport, port);
    int64_t t_master = h_now_ms();
    CHECK_WAIT(H_LOAD(b_sync_done_calls) == 1 && H_LOAD(m_sync_done_calls) == 1, 10000);
    /* Backoff is capped (the cap is not documented; anything near it is fine): it must not
     * take as long as an uncapped exponential backoff would after ~700 ms of failures. */
    CHECK_LE(h_now_ms() - t_master, h_tmo(10000));
    CHECK_EQ(b_sync_n, 20);
    CHECK_TABLES_EQUAL(&mtab, &btab);
    h_note("backup waited %lld ms for the master, connected %lld ms after it started",
           (long long)(t_master - t_start), (long long)(h_now_ms() - t_master));
    exit_both();
    CHECK_ALLOC_BALANCED(1000);
    h_table_destroy(&mtab);
    h_table_destroy(&btab);
}

int main(int argc, char **argv)
{
    h_init(argc, argv);
    RUN_T(test_stream_100k, 120);
    RUN(test_exit_frees_unacked_without_backup);
    RUN(test_large_and_empty_payloads);
    RUN(test_queue_from_ack_callback);
    RUN(test_backup_starts_before_master);
    return h_summary();
}
