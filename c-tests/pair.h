/*
 * Master/backup scaffolding shared by the junos-sync C tests (on top of harness.h).
 *
 * The library's callbacks take no user-data pointer, so every test keeps its contexts' state in
 * globals and needs one small function per callback. The ones that only do the usual
 * bookkeeping are generated here, bound to the globals named at the point of use:
 *
 *   H_CB_CONN(name, cs)                      sync_conn_status_change_func: h_cb_conn on cs
 *   H_CB_SYNC_DONE(name, cs, n_out, calls)   sync_init_sync_done_func: n_out = n, calls++
 *   H_CB_WALK(name, cs, tab, extra, bad)     sync_data_get_next_func: h_walk_next over tab
 *   H_CB_DB_CLEAR(name, cs, tab, clears)     sync_db_clear_func: clears++, tab emptied
 *   H_CB_BIND(name, port_out, calls)         sync_bind_done_func: port_out = port, calls++
 *
 * (all but H_CB_BIND, which runs inside junos_sync_start, wrap their body in h_cb_enter /
 * h_cb_leave on cs), and callback tables are filled by
 * h_callbacks_log / h_callbacks / h_master_callbacks / h_backup_callbacks. h_exit ends a
 * context and marks its bookkeeping exited (a callback after that counts as after_exit).
 */
#ifndef JSYNC_C_TESTS_PAIR_H
#define JSYNC_C_TESTS_PAIR_H

#include "harness.h"

/* ------------------------------------------------------------------------------------------ */
/* Callbacks that only keep the books.                                                        */

#define H_CB_CONN(name, cs)                                                                   \
    static void name(junos_sync_conn_status_t st)                                             \
    {                                                                                         \
        h_cb_enter(&(cs));                                                                    \
        h_cb_conn(&(cs), st);                                                                 \
        h_cb_leave(&(cs));                                                                    \
    }

#define H_CB_SYNC_DONE(name, cs, n_out, calls)                                                \
    static void name(size_t n)                                                                \
    {                                                                                         \
        h_cb_enter(&(cs));                                                                    \
        (n_out) = n;                                                                          \
        H_INC(calls);                                                                         \
        h_cb_leave(&(cs));                                                                    \
    }

#define H_CB_WALK(name, cs, tab, extra, bad)                                                  \
    static void *name(void *cur, junos_sync_getnext_data_t *gn)                               \
    {                                                                                         \
        h_cb_enter(&(cs));                                                                    \
        void *h_r_ = h_walk_next(&(tab), cur, gn, (extra), &(bad));                           \
        h_cb_leave(&(cs));                                                                    \
        return h_r_;                                                                          \
    }

#define H_CB_DB_CLEAR(name, cs, tab, clears)                                                  \
    static void name(void)                                                                    \
    {                                                                                         \
        h_cb_enter(&(cs));                                                                    \
        H_INC(clears);                                                                        \
        h_table_clear(&(tab));                                                                \
        h_cb_leave(&(cs));                                                                    \
    }

#define H_CB_BIND(name, port_out, calls)                                                      \
    static void name(in_port_t port)                                                          \
    {                                                                                         \
        (port_out) = port;                                                                    \
        H_INC(calls);                                                                         \
    }

/* ------------------------------------------------------------------------------------------ */
/* Callback tables.                                                                           */

/* Everything NULL but the log callback. */
static inline junos_sync_callbacks_t h_callbacks_log(void)
{
    junos_sync_callbacks_t cb;
    memset(&cb, 0, sizeof cb);
    cb.sync_log_msg_func = log_msg;
    return cb;
}

/* The log callback and the counting allocator. */
static inline junos_sync_callbacks_t h_callbacks(void)
{
    junos_sync_callbacks_t cb = h_callbacks_log();
    cb.sync_malloc_func = h_malloc;
    cb.sync_free_func = h_free;
    return cb;
}

/* cb with the two callbacks both roles have. */
static inline junos_sync_callbacks_t h_with_status(junos_sync_callbacks_t cb,
                                                   junos_sync_conn_status_change_func_t conn,
                                                   junos_sync_init_sync_done_func_t sync_done)
{
    cb.sync_conn_status_change_func = conn;
    cb.sync_init_sync_done_func = sync_done;
    return cb;
}

/* A master's table and a backup's (log callback and counting allocator included); a NULL
 * callback stays unset. */
static inline junos_sync_callbacks_t h_master_callbacks(
    junos_sync_ack_notify_func_t ack, junos_sync_data_getnext_func_t get_next,
    junos_sync_conn_status_change_func_t conn, junos_sync_init_sync_done_func_t sync_done,
    junos_sync_bind_done_func_t bind)
{
    junos_sync_callbacks_t cb = h_callbacks();
    cb.sync_ack_notify_func = ack;
    cb.sync_data_get_next_func = get_next;
    cb.sync_bind_done_func = bind;
    return h_with_status(cb, conn, sync_done);
}

static inline junos_sync_callbacks_t h_backup_callbacks(junos_sync_data_decode_func_t decode,
    junos_sync_conn_status_change_func_t conn, junos_sync_init_sync_done_func_t sync_done,
    junos_sync_db_clear_func_t db_clear)
{
    junos_sync_callbacks_t cb = h_callbacks();
    cb.sync_data_decode_func = decode;
    cb.sync_db_clear_func = db_clear;
    return h_with_status(cb, conn, sync_done);
}

/* ------------------------------------------------------------------------------------------ */
/* Ending a context.                                                                          */

/* junos_sync_exit, then the context's bookkeeping is marked exited. */
static inline void h_exit(junos_sync_context_t *ctx, h_cbstat_t *cs)
{
    junos_sync_exit(ctx);
    H_STORE(cs->exited, 1);
}

#endif /* JSYNC_C_TESTS_PAIR_H */
