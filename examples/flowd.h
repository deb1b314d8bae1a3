/*
 * flowd.h -- replication record format of the flowd example daemon.
 *
 * Every record travels as the payload of one junos_sync TLV. junos-sync never byte-swaps a
 * payload, so the daemon does: every multi-byte field is in network byte order on the wire.
 * The backup's decode callback gets the payload without the TLV header, so the record repeats
 * its operation in fr_op.
 */

#ifndef FLOWD_H
#define FLOWD_H

#include <stddef.h>
#include <stdint.h>

/* Operations, used both as tlv_type and as fr_op. */
#define FLOWD_OP_ADD     1  /* a new flow (or a full record during a resync walk) */
#define FLOWD_OP_UPDATE  2  /* new counters for an existing flow */
#define FLOWD_OP_DELETE  3  /* the flow expired; only the key part is sent */
#define FLOWD_OP_BARRIER 4  /* no data: queued with ack_requested to learn what the backup applied */

/* One flow as it travels; all multi-byte fields in network byte order. */
typedef struct flowd_rec_s {
    uint8_t  fr_op;          /* FLOWD_OP_* */
    uint8_t  fr_proto;       /* IPPROTO_TCP, IPPROTO_UDP, ... */
    uint16_t fr_reserved;    /* zero */
    uint32_t fr_src_addr;    /* IPv4 source address */
    uint32_t fr_dst_addr;    /* IPv4 destination address */
    uint16_t fr_src_port;
    uint16_t fr_dst_port;
    /* ---- FLOWD_REC_KEY_LEN: a DELETE ends here ---- */
    uint32_t fr_first_seen;  /* seconds since the epoch */
    uint32_t fr_last_seen;
    uint64_t fr_packets;     /* htobe64 */
    uint64_t fr_bytes;       /* htobe64 */
} flowd_rec_t;

#define FLOWD_REC_KEY_LEN offsetof(flowd_rec_t, fr_first_seen)

/* A barrier: FLOWD_OP_BARRIER and an id (network byte order). */
typedef struct flowd_barrier_s {
    uint8_t  fb_op;
    uint8_t  fb_reserved[3];
    uint32_t fb_id;
} flowd_barrier_t;

/* The wire layout is fixed: 40-byte records, 16-byte keys, 8-byte barriers. */
typedef char flowd_rec_size_check[sizeof(flowd_rec_t) == 40 ? 1 : -1];
typedef char flowd_key_size_check[FLOWD_REC_KEY_LEN == 16 ? 1 : -1];
typedef char flowd_barrier_size_check[sizeof(flowd_barrier_t) == 8 ? 1 : -1];

#endif /* FLOWD_H */
