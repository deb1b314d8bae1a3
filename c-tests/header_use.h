/*
 * Shared body of the header compile checks (included after the headers by header_compile.c,
 * header_order_after.c and header_order_none.c): uses every type and function the way a
 * libjunos-sync application does, so a mismatch is a compile error. Compiled as C99, C11 and
 * C++17 with -Wall -Wextra -Werror; object only, never run. The includer defines HC_FN.
 */
#ifndef JSYNC_C_TESTS_HEADER_USE_H
#define JSYNC_C_TESTS_HEADER_USE_H

#include <stdlib.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    uint32_t key;
    uint32_t value;
} hc_record_t;

static void hc_ack(junos_sync_tlv_t *data, size_t len) { (void)data; (void)len; }
static void hc_decode(void *data, size_t len)
{
    hc_record_t *r = (hc_record_t *)data;
    (void)r;
    (void)len;
}
static void *hc_get_next(void *cur, junos_sync_getnext_data_t *gn)
{
    (void)cur;
    gn->data = NULL;
    return NULL;
}
static void hc_conn(junos_sync_conn_status_t s) { (void)s; }
static void hc_done(size_t n) { (void)n; }
static void hc_bind(in_port_t port) { (void)port; }
static void hc_log(const char *fmt, ...) { (void)fmt; }
static void hc_clear(void) {}

int HC_FN(junos_sync_context_t *ctx, evContext ev)
{
    junos_sync_state_t st;
    junos_sync_callbacks_t cb;
    junos_sync_stats_t stats;
    memset(&st, 0, sizeof st);
    memset(&cb, 0, sizeof cb);
    st.is_master = true;
    st.no_resync = false;
    st.server_addr = 0x7f000001;
    st.server_port = 4000;
    st.keepalive_time = 10;
    cb.sync_ack_notify_func = hc_ack;
    cb.sync_data_decode_func = hc_decode;
    cb.sync_data_get_next_func = hc_get_next;
    cb.sync_conn_status_change_func = hc_conn;
    cb.sync_init_sync_done_func = hc_done;
    cb.sync_bind_done_func = hc_bind;
    cb.sync_log_msg_func = hc_log;
    cb.sync_malloc_func = malloc;
    cb.sync_free_func = free;
    cb.sync_db_clear_func = hc_clear;

    junos_sync_tlv_t *tlv = (junos_sync_tlv_t *)malloc(sizeof(junos_sync_tlv_t) + sizeof(hc_record_t));
    if (tlv == NULL)
        return -1;
    tlv->tlv_type = 1;
    tlv->tlv_len = sizeof(hc_record_t);
    hc_record_t *rec = (hc_record_t *)&tlv->tlv_value;
    rec->key = 1;
    rec->value = (uint32_t)JUNOS_SYNC_MAX_TLV_LEN;

    junos_sync_getnext_data_t gn;
    gn.data = tlv;

    int r = 0;
    junos_sync_context_t *c2 = junos_sync_init(&st, &cb);
    r += (int)junos_sync_set_event_context(ctx, ev);
    r += (int)junos_sync_start(ctx);
    r += (int)junos_sync_queue(ctx, gn.data, true);
    r += (int)junos_sync_switchover(ctx, &st, &cb);
    r += (int)junos_sync_set_backlog_limit(ctx, 1024);
    r += (int)junos_sync_get_stats(ctx, &stats);
    junos_sync_exit(c2);

    junos_sync_status_t s = JUNOS_SYNC_OK;
    junos_sync_conn_status_t cs = JUNOS_SYNC_CONN_UP;
    switch (s) {
    case JUNOS_SYNC_OK:
    case JUNOS_SYNC_ERR_INVALID:
    case JUNOS_SYNC_ERR_STATE:
    case JUNOS_SYNC_ERR_NOMEM:
    case JUNOS_SYNC_ERR_BACKLOG_FULL:
    case JUNOS_SYNC_ERR_SOCKET:
    case JUNOS_SYNC_ERR_INTERNAL:
    case JUNOS_SYNC_ERR_TIMEOUT:
        break;
    }
    switch (cs) {
    case JUNOS_SYNC_CONN_DOWN:
    case JUNOS_SYNC_CONN_UP:
        break;
    }
    struct junos_sync_tlv_s *t2 = tlv;
    struct junos_sync_state_s *s2 = &st;
    struct junos_sync_callbacks_s *cb2 = &cb;
    struct junos_sync_getnext_data_s *gn2 = &gn;
    struct junos_sync_stats_s *st2 = &stats;
    (void)t2; (void)s2; (void)cb2; (void)gn2; (void)st2;
    return r + (int)stats.connections;
}

#ifdef __cplusplus
}
#endif

#endif /* JSYNC_C_TESTS_HEADER_USE_H */
