/*
 * A connection's output queue (private), in the manner of swift-nio's
 * PendingWritesManager: frames nghttp2 produced are copied into one growing buffer,
 * large DATA payloads are referenced in place in their message buffer (NO_COPY), and
 * the whole queue goes out in order with one vectored write per call (up to
 * H2_OUTQ_MAX_IOV pieces). A short write keeps its position; the rest waits for the
 * socket to be writable.
 */
#ifndef H2_OUTQ_H
#define H2_OUTQ_H

#include "h2_msgbuf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#define H2_OUTQ_BATCH (64 * 1024) /* copied bytes per flush before nghttp2 is asked for no more */
#define H2_OUTQ_MAX_IOV 64

/* One piece of output: bytes of the copy buffer (buf == NULL), or message bytes of a
 * buffer that stays alive (buf->out_refs) until they are written. */
typedef struct h2_outseg {
    h2_msgbuf *buf;
    const uint8_t *p; /* reference pieces */
    size_t off;       /* copy pieces: offset into the copy buffer (which may move) */
    size_t len;
} h2_outseg;

typedef struct h2_outq {
    h2_bufpool *pool;     /* where referenced buffers go once written */
    uint8_t *copy;        /* copied frame bytes */
    size_t copy_len, copy_cap;
    h2_outseg *segs;
    size_t nsegs, segs_cap;
    size_t first;         /* first piece not fully written */
    size_t first_written; /* bytes of it written */
    size_t queued_bytes;  /* bytes of all pieces queued since the last reset */
} h2_outq;

/* Writes iov[0..n) like sendmsg; returns bytes written or -1 with errno. */
typedef ssize_t (*h2_outq_writev_fn)(void *ctx, const struct iovec *iov, int n);

void h2_outq_init(h2_outq *q, h2_bufpool *pool);
/* Appends a copy of n bytes. Returns 0 or -1 (out of memory). */
int h2_outq_copy(h2_outq *q, const uint8_t *p, size_t n);
/* Appends n message bytes of `buf` by reference (buf->out_refs counts it). 0 or -1. */
int h2_outq_ref(h2_outq *q, h2_msgbuf *buf, const uint8_t *p, size_t n);
/* Enough queued for one write: copies are bounded tighter (they cost memory) than references. */
static inline bool h2_outq_full(const h2_outq *q)
{
    return q->copy_len >= H2_OUTQ_BATCH || q->queued_bytes >= 16 * H2_OUTQ_BATCH;
}
static inline bool h2_outq_pending(const h2_outq *q) { return q->first < q->nsegs; }
/* Writes what is queued. Returns 1 once all of it went out, 0 if the writer would block
 * or wrote short, -errno on error. */
int h2_outq_write(h2_outq *q, h2_outq_writev_fn fn, void *ctx);
/* Empties a fully written queue (keeps its memory). */
void h2_outq_reset(h2_outq *q);
/* Frees the memory of an empty queue grown by a burst. */
void h2_outq_shrink(h2_outq *q);
/* Frees all the memory of a fully written queue (an idle connection keeps none). */
void h2_outq_release(h2_outq *q);
/* Drops unwritten output, releasing the buffers it references; frees the memory. */
void h2_outq_free(h2_outq *q);

#endif
