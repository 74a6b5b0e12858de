/*
 * Message buffers and their pool (private).
 *
 * A message buffer is one block: this header, then (at h2_msgbuf_data, 16-byte aligned)
 * `cap` bytes: header field arrays and strings, then a framed message (gRPC prefix +
 * payload). It is at once
 *   - an outbound message: posted as an H2_CMD_SEND command (h2_send copies into one,
 *     h2_send_buf posts the one the application filled), then queued on its stream
 *     until nghttp2 took its bytes and the socket wrote those referenced in place;
 *   - an inbound message assembled from several DATA chunks, which the application may
 *     keep (on_message_buf) and release with h2_buf_free.
 * Blocks of at least H2_POOL_MIN bytes are recycled through a pool (any thread), so a
 * stream of large messages does not map and fault in fresh pages for each one.
 */
#ifndef H2_MSGBUF_H
#define H2_MSGBUF_H

#include "h2_cmd.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define H2_POOL_MIN (64 * 1024)      /* buffers this large are recycled through the pool */
#define H2_POOL_ROUND (64 * 1024)    /* ... with their size rounded up to a multiple of this */
#define H2_POOL_MAX_BYTES (8u << 20) /* most memory a pool keeps */

typedef struct h2_msgbuf {
    h2_cmd cmd;                   /* kind H2_CMD_SEND, id = stream; cmd.next links the pool too */
    struct h2_msgbuf *next_out;   /* the stream's outbound queue */
    int flags;                    /* H2_SEND_* */
    nghttp2_nv *hdrs;             /* response/request headers to submit first, or NULL */
    size_t nhdrs;
    nghttp2_nv *trls;             /* trailers after the message (ends the stream), or NULL */
    size_t ntrls;
    uint8_t *msg;                 /* framed message (prefix included), NULL = none */
    size_t msg_len;               /* framed bytes */
    size_t msg_sent;              /* framed bytes already handed to nghttp2 */
    size_t cap;                   /* data bytes of the block */
    uint32_t out_refs;            /* output segments (writev) still pointing into msg */
    bool queued;                  /* on a stream's outbound queue */
    bool big;                     /* queued with >= H2_NOCOPY_MIN message bytes (conn->big_queued) */
} h2_msgbuf;

#define H2_MSGBUF_BASE ((sizeof(h2_msgbuf) + 15) & ~(size_t)15)

static inline uint8_t *h2_msgbuf_data(h2_msgbuf *b) { return (uint8_t *)b + H2_MSGBUF_BASE; }
static inline h2_msgbuf *h2_msgbuf_from_data(uint8_t *data) { return (h2_msgbuf *)(data - H2_MSGBUF_BASE); }

typedef struct h2_bufpool {
    pthread_mutex_t lock;
    h2_cmd *free;                 /* pooled buffers (h2_msgbuf), under lock */
    size_t bytes;                 /* under lock */
    atomic_uint_fast64_t pooled;  /* = bytes, readable without the lock (h2_loop_stats) */
} h2_bufpool;

int h2_bufpool_init(h2_bufpool *p); /* 0 or -1 */
/* Frees every pooled buffer (idle trim); the pool stays usable. */
void h2_bufpool_trim(h2_bufpool *p);
void h2_bufpool_destroy(h2_bufpool *p); /* trims, then destroys the lock */
bool h2_bufpool_empty(h2_bufpool *p);

/* A buffer with room for `need` data bytes, header zeroed (kind H2_CMD_SEND); large ones
 * come from the pool when one fits. NULL when out of memory. Any thread. */
h2_msgbuf *h2_msgbuf_get(h2_bufpool *p, size_t need);
/* Frees a buffer, or keeps a large one in the pool (bounded by H2_POOL_MAX_BYTES). Any thread. */
void h2_msgbuf_put(h2_bufpool *p, h2_msgbuf *b);
/* An output segment referencing the buffer was written or dropped. */
static inline void h2_msgbuf_unref(h2_bufpool *p, h2_msgbuf *b)
{
    if (--b->out_refs == 0 && !b->queued) h2_msgbuf_put(p, b);
}

#endif
