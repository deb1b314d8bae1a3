/*
 * ABI and API surface: struct layouts (x86-64 / aarch64 LP64), enum values, the way existing
 * libjunos-sync callers fill the structs (must compile with -Wall -Wextra -Werror), NULL and
 * invalid arguments, init validation, error codes and TLV ownership on errors.
 */
#include "pair.h"

#include <dlfcn.h>
#include <stddef.h>
#include <strings.h>

/* ---- what existing callers write; these must compile unchanged ------------------------- */

static in_port_t g_bound_port;
static long g_bind_calls;
static pthread_t g_bind_thread;

static void my_bind_done(in_port_t port)
{
    g_bound_port = port;
    g_bind_thread = pthread_self();
    H_INC(g_bind_calls);
}

typedef struct {
    uint32_t key;
    uint32_t value;
} my_record_t;

static void my_decode(void *data, size_t len)
{
    (void)data;
    (void)len;
}

static void *my_get_next(void *current, junos_sync_getnext_data_t *gn)
{
    (void)current;
    gn->data = NULL;
    return NULL;
}

static void fill_like_a_junos_daemon(junos_sync_state_t *st, junos_sync_callbacks_t *cb)
{
    bzero(st, sizeof(*st));
    bzero(cb, sizeof(*cb));
    st->is_master = true;
    st->no_resync = false;
    st->server_addr = 0;
    st->server_port = 0;
    st->keepalive_time = 3;
    cb->sync_data_get_next_func = my_get_next;
    cb->sync_bind_done_func = my_bind_done;
    cb->sync_log_msg_func = log_msg;
    cb->sync_malloc_func = malloc;
    cb->sync_free_func = free;
}

static void test_struct_layouts(void)
{
    /* TLV: 8-byte header, payload right after it. */
    CHECK_EQ(sizeof(junos_sync_tlv_t), 8);
    CHECK_EQ(offsetof(junos_sync_tlv_t, tlv_type), 0);
    CHECK_EQ(offsetof(junos_sync_tlv_t, tlv_len), 4);
    CHECK_EQ(offsetof(junos_sync_tlv_t, tlv_value), 8);
    CHECK_EQ(sizeof(((junos_sync_tlv_t *)0)->tlv_type), 4);
    CHECK_EQ(sizeof(((junos_sync_tlv_t *)0)->tlv_len), 4);
    CHECK_EQ(sizeof(struct junos_sync_tlv_s), sizeof(junos_sync_tlv_t));

    /* State. */
    CHECK_EQ(offsetof(junos_sync_state_t, is_master), 0);
    CHECK_EQ(offsetof(junos_sync_state_t, no_resync), 1);
    CHECK_EQ(offsetof(junos_sync_state_t, server_addr), 4);
    CHECK_EQ(offsetof(junos_sync_state_t, server_port), 8);
    CHECK_EQ(offsetof(junos_sync_state_t, keepalive_time), 12);
    CHECK_EQ(sizeof(junos_sync_state_t), 16);
    CHECK_EQ(sizeof(((junos_sync_state_t *)0)->is_master), 1);
    CHECK_EQ(sizeof(((junos_sync_state_t *)0)->server_addr), 4);
    CHECK_EQ(sizeof(((junos_sync_state_t *)0)->server_port), 2);
    CHECK_EQ(sizeof(((junos_sync_state_t *)0)->keepalive_time), 4);

    /* Callbacks: exactly libjunos-sync's field order, one pointer each. */
    const size_t p = sizeof(void *);
    CHECK_EQ(offsetof(junos_sync_callbacks_t, sync_ack_notify_func), 0 * p);
    CHECK_EQ(offsetof(junos_sync_callbacks_t, sync_data_decode_func), 1 * p);
    CHECK_EQ(offsetof(junos_sync_callbacks_t, sync_data_get_next_func), 2 * p);
    CHECK_EQ(offsetof(junos_sync_callbacks_t, sync_conn_status_change_func), 3 * p);
    CHECK_EQ(offsetof(junos_sync_callbacks_t, sync_init_sync_done_func), 4 * p);
    CHECK_EQ(offsetof(junos_sync_callbacks_t, sync_bind_done_func), 5 * p);
    CHECK_EQ(offsetof(junos_sync_callbacks_t, sync_log_msg_func), 6 * p);
    CHECK_EQ(offsetof(junos_sync_callbacks_t, sync_malloc_func), 7 * p);
    CHECK_EQ(offsetof(junos_sync_callbacks_t, sync_free_func), 8 * p);
    CHECK_EQ(offsetof(junos_sync_callbacks_t, sync_db_clear_func), 9 * p);
    CHECK_EQ(sizeof(junos_sync_callbacks_t), 10 * p);

    /* get_next out-parameter. */
    CHECK_EQ(sizeof(junos_sync_getnext_data_t), sizeof(void *));
    CHECK_EQ(offsetof(junos_sync_getnext_data_t, data), 0);

    /* Stats: release 1.0's six fields, then 1.1's two, then 1.2's six appended (older
     * binaries get their layout through junos_sync_get_stats@JUNOS_SYNC_1.0 and @JUNOS_SYNC_1.1). */
    CHECK_EQ(sizeof(junos_sync_stats_t), 14 * 8);
    CHECK_EQ(offsetof(junos_sync_stats_t, full_resyncs), 0);
    CHECK_EQ(offsetof(junos_sync_stats_t, partial_resyncs), 8);
    CHECK_EQ(offsetof(junos_sync_stats_t, connections), 16);
    CHECK_EQ(offsetof(junos_sync_stats_t, frames_rejected), 24);
    CHECK_EQ(offsetof(junos_sync_stats_t, overflows), 32);
    CHECK_EQ(offsetof(junos_sync_stats_t, backlog_bytes), 40);
    CHECK_EQ(offsetof(junos_sync_stats_t, auth_failures), 48);
    CHECK_EQ(offsetof(junos_sync_stats_t, handshakes_refused), 56);
    CHECK_EQ(offsetof(junos_sync_stats_t, waits_satisfied), 64);
    CHECK_EQ(offsetof(junos_sync_stats_t, waits_timed_out), 72);
    CHECK_EQ(offsetof(junos_sync_stats_t, resyncs_started), 80);
    CHECK_EQ(offsetof(junos_sync_stats_t, resyncs_completed), 88);
    CHECK_EQ(offsetof(junos_sync_stats_t, resyncs_aborted), 96);
    CHECK_EQ(offsetof(junos_sync_stats_t, resync_age_ms), 104);

    /* Scalars the callbacks use. */
    CHECK_EQ(sizeof(in_port_t), sizeof(uint16_t));
    CHECK_EQ(sizeof(evContext), sizeof(void *));
    CHECK_EQ(sizeof(junos_sync_status_t), sizeof(int));
    CHECK_EQ(sizeof(junos_sync_conn_status_t), sizeof(int));
}

static void test_enum_values(void)
{
    CHECK_EQ(JUNOS_SYNC_OK, 0);
    CHECK_EQ(JUNOS_SYNC_ERR_INVALID, 1);
    CHECK_EQ(JUNOS_SYNC_ERR_STATE, 2);
    CHECK_EQ(JUNOS_SYNC_ERR_NOMEM, 3);
    CHECK_EQ(JUNOS_SYNC_ERR_BACKLOG_FULL, 4);
    CHECK_EQ(JUNOS_SYNC_ERR_SOCKET, 5);
    CHECK_EQ(JUNOS_SYNC_ERR_INTERNAL, 6);
    CHECK_EQ(JUNOS_SYNC_ERR_TIMEOUT, 7);
    CHECK_EQ(JUNOS_SYNC_CONN_DOWN, 0);
    CHECK_EQ(JUNOS_SYNC_CONN_UP, 1);
    CHECK_EQ(JUNOS_SYNC_MAX_TLV_LEN, 16 * 1024 * 1024);
}

/* Callers cast &tlv->tlv_value to their own record type and fill it in place. */
static void test_tlv_record_cast(void)
{
    junos_sync_tlv_t *tlv = (junos_sync_tlv_t *)malloc(sizeof(*tlv) + sizeof(my_record_t));
    REQUIRE(tlv != NULL);
    tlv->tlv_type = 7;
    tlv->tlv_len = sizeof(my_record_t);
    my_record_t *r = (my_record_t *)&tlv->tlv_value;
    r->key = htonl(42);
    r->value = htonl(4242);
    CHECK((uint8_t *)r == (uint8_t *)tlv + 8);
    CHECK_EQ(ntohl(((my_record_t *)tlv->tlv_value)->key), 42);
    free(tlv);
}

/* A daemon's way of filling the structs, with libc's malloc/free, works end to end. */
static void test_daemon_style_init(void)
{
    junos_sync_state_t st;
    junos_sync_callbacks_t cb;
    fill_like_a_junos_daemon(&st, &cb);
    H_STORE(g_bind_calls, 0);
    junos_sync_context_t *ctx = junos_sync_init(&st, &cb);
    REQUIRE(ctx != NULL);
    /* Both structs were copied: scribbling over them must not matter. */
    memset(&st, 0xa5, sizeof st);
    memset(&cb, 0, sizeof cb);
    evContext ev;
    ev.opaque = &ev;
    CHECK_EQ(junos_sync_set_event_context(ctx, ev), JUNOS_SYNC_OK);
    CHECK_EQ(junos_sync_start(ctx), JUNOS_SYNC_OK);
    CHECK_EQ(H_LOAD(g_bind_calls), 1);
    CHECK_NE(g_bound_port, 0);
    CHECK(pthread_equal(g_bind_thread, pthread_self()));
    /* A libc-malloc'ed TLV queued with libc free as the free hook. */
    junos_sync_tlv_t *tlv = (junos_sync_tlv_t *)malloc(sizeof(*tlv) + sizeof(my_record_t));
    REQUIRE(tlv != NULL);
    tlv->tlv_type = 1;
    tlv->tlv_len = sizeof(my_record_t);
    ((my_record_t *)&tlv->tlv_value)->key = htonl(1);
    ((my_record_t *)&tlv->tlv_value)->value = htonl(2);
    CHECK_EQ(junos_sync_queue(ctx, tlv, true), JUNOS_SYNC_OK);
    CHECK_EQ(H_LOAD(g_bind_calls), 1);
    junos_sync_exit(ctx); /* frees the TLV with libc free: valgrind/ASan see a leak otherwise */
}

/* Every entry point with NULL arguments returns an error code; exit(NULL) is a no-op. */
static void test_null_arguments(void)
{
    h_alloc_reset();
    junos_sync_state_t st = h_master_state(true, 0);
    junos_sync_callbacks_t cb = h_callbacks();

    CHECK(junos_sync_init(NULL, NULL) == NULL);
    CHECK(junos_sync_init(&st, NULL) == NULL);
    long logs = h_log_count();
    CHECK(junos_sync_init(NULL, &cb) == NULL);
    CHECK_MSG(h_log_count() > logs, "init(NULL state) did not say why through the log callback");

    evContext ev;
    ev.opaque = NULL;
    junos_sync_stats_t stats;
    junos_sync_tlv_t *tlv = h_tlv_alloc(1, 4);
    CHECK_EQ(junos_sync_set_event_context(NULL, ev), JUNOS_SYNC_ERR_INVALID);
    CHECK_EQ(junos_sync_start(NULL), JUNOS_SYNC_ERR_INVALID);
    CHECK_EQ(junos_sync_queue(NULL, tlv, false), JUNOS_SYNC_ERR_INVALID);
    CHECK_EQ(junos_sync_queue(NULL, tlv, true), JUNOS_SYNC_ERR_INVALID);
    CHECK_EQ(junos_sync_queue(NULL, NULL, false), JUNOS_SYNC_ERR_INVALID);
    CHECK_EQ(junos_sync_switchover(NULL, &st, &cb), JUNOS_SYNC_ERR_INVALID);
    CHECK_EQ(junos_sync_switchover(NULL, NULL, NULL), JUNOS_SYNC_ERR_INVALID);
    CHECK_EQ(junos_sync_set_backlog_limit(NULL, 1024), JUNOS_SYNC_ERR_INVALID);
    CHECK_EQ(junos_sync_get_stats(NULL, &stats), JUNOS_SYNC_ERR_INVALID);
    CHECK_EQ(junos_sync_get_stats(NULL, NULL), JUNOS_SYNC_ERR_INVALID);
    junos_sync_exit(NULL);

    /* NULL arguments next to a live (unstarted) context. */
    junos_sync_context_t *ctx = junos_sync_init(&st, &cb);
    REQUIRE(ctx != NULL);
    CHECK_EQ(junos_sync_queue(ctx, NULL, false), JUNOS_SYNC_ERR_INVALID);
    CHECK_EQ(junos_sync_queue(ctx, NULL, true), JUNOS_SYNC_ERR_INVALID);
    CHECK_EQ(junos_sync_switchover(ctx, NULL, &cb), JUNOS_SYNC_ERR_INVALID);
    CHECK_EQ(junos_sync_switchover(ctx, &st, NULL), JUNOS_SYNC_ERR_INVALID);
    CHECK_EQ(junos_sync_switchover(ctx, NULL, NULL), JUNOS_SYNC_ERR_INVALID);
    CHECK_EQ(junos_sync_get_stats(ctx, NULL), JUNOS_SYNC_ERR_INVALID);
    CHECK_EQ(junos_sync_set_backlog_limit(ctx, 0), JUNOS_SYNC_ERR_INVALID);
    memset(&stats, 0xff, sizeof stats);
    CHECK_EQ(junos_sync_get_stats(ctx, &stats), JUNOS_SYNC_OK);
    CHECK_EQ(stats.connections, 0);
    CHECK_EQ(stats.full_resyncs, 0);
    CHECK_EQ(stats.backlog_bytes, 0);
    CHECK_EQ(junos_sync_set_event_context(ctx, ev), JUNOS_SYNC_OK);
    junos_sync_exit(ctx);

    /* The TLV refused everywhere above is still ours, never freed by the library. */
    CHECK_EQ(H_LOAD(h_frees), 0);
    CHECK(h_block_live(tlv));
    h_free(tlv);
    CHECK_ALLOC_BALANCED(1000);
}

static void test_init_validation(void)
{
    junos_sync_callbacks_t cb;
    junos_sync_state_t st;
    junos_sync_context_t *ctx;
    long logs;

    cb = h_callbacks_log();
    cb.sync_data_decode_func = my_decode;

    /* Backup without the master's address. */
    st = h_backup_state(4000, false, 0);
    st.server_addr = 0;
    logs = h_log_count();
    CHECK(junos_sync_init(&st, &cb) == NULL);
    CHECK_MSG(h_log_count() > logs, "refused init (no server_addr) logged nothing");

    /* Backup without the master's port. */
    st = h_backup_state(0, false, 0);
    logs = h_log_count();
    CHECK(junos_sync_init(&st, &cb) == NULL);
    CHECK_MSG(h_log_count() > logs, "refused init (no server_port) logged nothing");

    /* Backup without decode, with and without resync. */
    cb.sync_data_decode_func = NULL;
    st = h_backup_state(4000, false, 0);
    logs = h_log_count();
    CHECK(junos_sync_init(&st, &cb) == NULL);
    CHECK_MSG(h_log_count() > logs, "refused init (backup without decode) logged nothing");
    st.no_resync = true;
    CHECK(junos_sync_init(&st, &cb) == NULL);

    /* Master with resync but no get_next. */
    st = h_master_state(false, 0);
    logs = h_log_count();
    CHECK(junos_sync_init(&st, &cb) == NULL);
    CHECK_MSG(h_log_count() > logs, "refused init (master without get_next) logged nothing");

    /* Refused without a log callback: still NULL, no crash. */
    cb.sync_log_msg_func = NULL;
    CHECK(junos_sync_init(&st, &cb) == NULL);

    /* Valid combinations. */
    st = h_master_state(true, 0); /* no_resync master needs no get_next */
    ctx = junos_sync_init(&st, &cb);
    CHECK(ctx != NULL);
    junos_sync_exit(ctx);

    cb.sync_data_decode_func = my_decode;
    st = h_backup_state(4000, false, 0); /* everything else NULL: fine */
    ctx = junos_sync_init(&st, &cb);
    CHECK(ctx != NULL);
    junos_sync_exit(ctx);

    memset(&cb, 0, sizeof cb);
    cb.sync_data_get_next_func = my_get_next;
    st = h_master_state(false, 0);
    ctx = junos_sync_init(&st, &cb);
    CHECK(ctx != NULL);
    junos_sync_exit(ctx);
}

static void test_queue_errors_leave_tlv_to_caller(void)
{
    h_alloc_reset();
    junos_sync_callbacks_t cb = h_callbacks();
    cb.sync_data_decode_func = my_decode;

    /* Queue on a backup: ERR_STATE, before and after start. */
    junos_sync_state_t st = h_backup_state(1, false, 0); /* nobody listens on port 1 */
    junos_sync_context_t *b = junos_sync_init(&st, &cb);
    REQUIRE(b != NULL);
    junos_sync_tlv_t *t = h_tlv_alloc(1, 16);
    CHECK_EQ(junos_sync_queue(b, t, false), JUNOS_SYNC_ERR_STATE);
    CHECK_EQ(junos_sync_start(b), JUNOS_SYNC_OK);
    CHECK_EQ(junos_sync_queue(b, t, true), JUNOS_SYNC_ERR_STATE);
    junos_sync_exit(b);
    CHECK_EQ(H_LOAD(h_frees), 0);
    CHECK(h_block_live(t));

    /* tlv_len over the maximum: ERR_INVALID, not read past the header, stays ours. */
    st = h_master_state(true, 0);
    junos_sync_context_t *m = junos_sync_init(&st, &cb);
    REQUIRE(m != NULL);
    t->tlv_len = JUNOS_SYNC_MAX_TLV_LEN + 1;
    CHECK_EQ(junos_sync_queue(m, t, false), JUNOS_SYNC_ERR_INVALID);
    t->tlv_len = 0xffffffffu;
    CHECK_EQ(junos_sync_queue(m, t, true), JUNOS_SYNC_ERR_INVALID);
    CHECK_EQ(H_LOAD(h_frees), 0);
    CHECK(h_block_live(t));
    t->tlv_len = 16;

    /* Queued before start and never started: exit frees it, exactly once. */
    CHECK_EQ(junos_sync_queue(m, t, true), JUNOS_SYNC_OK);
    junos_sync_tlv_t *empty = h_tlv_alloc(2, 0); /* a zero-length payload is a valid TLV */
    CHECK_EQ(junos_sync_queue(m, empty, false), JUNOS_SYNC_OK);
    junos_sync_exit(m);
    CHECK_ALLOC_BALANCED(1000);
}

/* With no_resync the backlog limit (payload + 64 bytes per TLV for its entry) refuses with
 * BACKLOG_FULL, and the refused TLV stays the caller's. */
static void test_backlog_full(void)
{
    h_alloc_reset();
    junos_sync_callbacks_t cb = h_callbacks();
    junos_sync_state_t st = h_master_state(true, 0);
    junos_sync_context_t *m = junos_sync_init(&st, &cb);
    REQUIRE(m != NULL);
    CHECK_EQ(junos_sync_set_backlog_limit(m, 210), JUNOS_SYNC_OK);
    /* 40-byte payloads count 104 bytes each (64 for the entry): two fit in 210, the third does
     * not. */
    junos_sync_tlv_t *t1 = h_tlv_alloc(1, 40), *t2 = h_tlv_alloc(1, 40), *t3 = h_tlv_alloc(1, 40);
    CHECK_EQ(junos_sync_queue(m, t1, false), JUNOS_SYNC_OK);
    CHECK_EQ(junos_sync_queue(m, t2, false), JUNOS_SYNC_OK);
    CHECK_EQ(junos_sync_queue(m, t3, false), JUNOS_SYNC_ERR_BACKLOG_FULL);
    junos_sync_stats_t s;
    CHECK_EQ(junos_sync_get_stats(m, &s), JUNOS_SYNC_OK);
    CHECK_EQ(s.backlog_bytes, 208);
    CHECK(h_block_live(t3));
    CHECK_EQ(junos_sync_set_backlog_limit(m, 1000), JUNOS_SYNC_OK);
    CHECK_EQ(junos_sync_queue(m, t3, false), JUNOS_SYNC_OK);
    junos_sync_exit(m);
    CHECK_ALLOC_BALANCED(1000);
}

/* A second junos_sync_start is JUNOS_SYNC_ERR_STATE (master: no second bind_done), for a
 * master and for a backup. */
static void test_second_start_is_state_error(void)
{
    junos_sync_callbacks_t cb = h_callbacks_log();
    cb.sync_bind_done_func = my_bind_done;
    cb.sync_data_decode_func = my_decode;
    H_STORE(g_bind_calls, 0);
    junos_sync_state_t st = h_master_state(true, 0);
    junos_sync_context_t *m = junos_sync_init(&st, &cb);
    REQUIRE(m != NULL);
    CHECK_EQ(junos_sync_start(m), JUNOS_SYNC_OK);
    CHECK_EQ(junos_sync_start(m), JUNOS_SYNC_ERR_STATE);
    CHECK_EQ(H_LOAD(g_bind_calls), 1);
    junos_sync_exit(m);

    st = h_backup_state(1, false, 0);
    junos_sync_context_t *b = junos_sync_init(&st, &cb);
    REQUIRE(b != NULL);
    CHECK_EQ(junos_sync_start(b), JUNOS_SYNC_OK);
    CHECK_EQ(junos_sync_start(b), JUNOS_SYNC_ERR_STATE);
    junos_sync_exit(b);
}

/* Master start: bind_done exactly once, on the calling thread, before start returns; the
 * log callback is only ever called as log("%s", text). */
static void test_start_and_log_format(void)
{
    junos_sync_callbacks_t cb = h_callbacks_log();
    cb.sync_bind_done_func = my_bind_done;
    junos_sync_state_t st = h_master_state(true, 1);
    H_STORE(g_bind_calls, 0);
    g_bound_port = 0;
    junos_sync_context_t *m = junos_sync_init(&st, &cb);
    REQUIRE(m != NULL);
    CHECK_EQ(H_LOAD(g_bind_calls), 0); /* nothing runs before start */
    CHECK_EQ(junos_sync_start(m), JUNOS_SYNC_OK);
    CHECK_EQ(H_LOAD(g_bind_calls), 1);
    CHECK(pthread_equal(g_bind_thread, pthread_self()));
    CHECK_NE(g_bound_port, 0);
    junos_sync_exit(m);
    CHECK_EQ(H_LOAD(g_bind_calls), 1);

    /* Provoke log lines: refused init, NULL TLV, a backup that cannot connect. */
    long logs = h_log_count();
    st = h_backup_state(0, false, 0);
    CHECK(junos_sync_init(&st, &cb) == NULL);
    st = h_master_state(true, 0);
    m = junos_sync_init(&st, &cb);
    REQUIRE(m != NULL);
    CHECK_EQ(junos_sync_queue(m, NULL, false), JUNOS_SYNC_ERR_INVALID);
    junos_sync_exit(m);
    CHECK(h_log_count() >= logs + 2);
    CHECK_EQ(H_LOAD(h_log_bad_fmt), 0);
}

/* junos_sync_set_event_context in a process without ISC eventlib (this program has no
 * evSelectFD: it is not linked with c-tests/eventlib.c nor -rdynamic; test_eventlib.c is):
 * OK, one log line per call saying so, and the context stays in thread mode: callbacks on the
 * library's own thread, junos_sync_dispatch refused. Started and exited with the library's own
 * functions, not the harness's dispatch-mode wrappers: thread mode is what is tested. */
static h_cbstat_t ne_mcs, ne_bcs;
static long ne_decodes, ne_on_caller;
static pthread_t ne_caller;
H_CB_CONN(ne_m_conn, ne_mcs)
H_CB_CONN(ne_b_conn, ne_bcs)
static void ne_decode(void *data, size_t len)
{
    h_cb_enter(&ne_bcs);
    (void)data;
    (void)len;
    if (pthread_equal(pthread_self(), ne_caller))
        H_INC(ne_on_caller);
    H_INC(ne_decodes);
    h_cb_leave(&ne_bcs);
}
static in_port_t ne_port;
static long ne_binds;
H_CB_BIND(ne_bind, ne_port, ne_binds)

static void test_set_event_context_without_eventlib(void)
{
    REQUIRE(dlsym(RTLD_DEFAULT, "evSelectFD") == NULL);
    REQUIRE(dlsym(RTLD_DEFAULT, "evDeselectFD") == NULL);
    h_alloc_reset();
    ne_caller = pthread_self();
    junos_sync_state_t st = h_master_state(true, 0);
    junos_sync_callbacks_t cb = h_callbacks();
    cb.sync_conn_status_change_func = ne_m_conn;
    cb.sync_bind_done_func = ne_bind;
    junos_sync_context_t *m = junos_sync_init(&st, &cb);
    REQUIRE(m != NULL);
    evContext ev;
    ev.opaque = &ev; /* never used: there is no eventlib to give it to */
    CHECK_EQ(junos_sync_set_event_context(m, ev), JUNOS_SYNC_OK);
    CHECK_EQ(h_log_count_matching("is not in this process"), 1);
    REQUIRE((junos_sync_start)(m) == JUNOS_SYNC_OK);
    CHECK_EQ(junos_sync_dispatch(m), JUNOS_SYNC_ERR_STATE);

    st = h_backup_state(ne_port, true, 0);
    cb = h_callbacks();
    cb.sync_data_decode_func = ne_decode;
    cb.sync_conn_status_change_func = ne_b_conn;
    junos_sync_context_t *b = junos_sync_init(&st, &cb);
    REQUIRE(b != NULL);
    CHECK_EQ(junos_sync_set_event_context(b, ev), JUNOS_SYNC_OK);
    CHECK_EQ(h_log_count_matching("is not in this process"), 2);
    REQUIRE((junos_sync_start)(b) == JUNOS_SYNC_OK);
    CHECK_EQ(junos_sync_dispatch(b), JUNOS_SYNC_ERR_STATE);

    /* Nobody dispatches, and everything flows: the library's threads run the callbacks. */
    CHECK_WAIT(H_LOAD(ne_mcs.up) == 1 && H_LOAD(ne_bcs.up) == 1, 10000);
    for (uint32_t i = 0; i < 100; i++) {
        h_rec_t r = {i, 1, i};
        CHECK_EQ(junos_sync_queue(m, h_tlv_rec(H_OP_PUT, &r, i + 1, 0, 0), i % 2),
                 JUNOS_SYNC_OK);
    }
    CHECK_WAIT(H_LOAD(ne_decodes) == 100, 10000);
    CHECK_WAIT(h_alloc_outstanding() == 0, 10000);
    CHECK_EQ(H_LOAD(ne_on_caller), 0);
    CHECK(!pthread_equal(ne_mcs.loop, ne_caller));
    CHECK(!pthread_equal(ne_bcs.loop, ne_caller));
    CHECK(!pthread_equal(ne_mcs.loop, ne_bcs.loop));
    (junos_sync_exit)(b);
    H_STORE(ne_bcs.exited, 1);
    (junos_sync_exit)(m);
    H_STORE(ne_mcs.exited, 1);
    CHECK_EQ(H_LOAD(ne_mcs.down), 1);
    CHECK_EQ(H_LOAD(ne_bcs.down), 1);
    /* Not the harness's dispatch-mode check: this test's callbacks are in thread mode. */
    CHECK_EQ(H_LOAD(ne_mcs.overlap) + H_LOAD(ne_bcs.overlap), 0);
    CHECK_EQ(H_LOAD(ne_mcs.after_exit) + H_LOAD(ne_bcs.after_exit), 0);
    CHECK_EQ(H_LOAD(ne_mcs.bad_updown) + H_LOAD(ne_bcs.bad_updown), 0);
    CHECK_ALLOC_BALANCED(1000);
}

int main(int argc, char **argv)
{
    h_init(argc, argv);
    RUN_T(test_struct_layouts, 10);
    RUN_T(test_enum_values, 10);
    RUN_T(test_tlv_record_cast, 10);
    RUN_T(test_daemon_style_init, 10);
    RUN_T(test_null_arguments, 10);
    RUN_T(test_init_validation, 10);
    RUN_T(test_queue_errors_leave_tlv_to_caller, 10);
    RUN_T(test_backlog_full, 10);
    RUN_T(test_second_start_is_state_error, 10);
    RUN_T(test_start_and_log_format, 10);
    RUN_T(test_set_event_context_without_eventlib, 30);
    return h_summary();
}
