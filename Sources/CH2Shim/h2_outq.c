/* Output queue: copied and referenced pieces, written in order with one writev. */
#include "h2_outq.h"
#include "h2_mem.h"

#include <errno.h>
#include <string.h>

void h2_outq_init(h2_outq *q, h2_bufpool *pool)
{
    memset(q, 0, sizeof *q);
    q->pool = pool;
}

static int seg_push(h2_outq *q, h2_outseg g)
{
    if (q->nsegs == q->segs_cap) {
        size_t nc = q->segs_cap ? q->segs_cap * 2 : 16;
        h2_outseg *ns = h2_realloc(q->segs, nc * sizeof *ns);
        if (!ns) return -1;
        q->segs = ns;
        q->segs_cap = nc;
    }
    q->segs[q->nsegs++] = g;
    return 0;
}

int h2_outq_copy(h2_outq *q, const uint8_t *p, size_t n)
{
    if (n == 0) return 0;
    if (q->copy_len + n > q->copy_cap) {
        size_t nc = q->copy_cap ? q->copy_cap : 16384;
        while (nc < q->copy_len + n) nc *= 2;
        uint8_t *nb = h2_realloc(q->copy, nc);
        if (!nb) return -1;
        q->copy = nb;
        q->copy_cap = nc;
    }
    h2_outseg *last = q->nsegs ? &q->segs[q->nsegs - 1] : NULL;
    if (last && !last->buf && last->off + last->len == q->copy_len)
        last->len += n;
    else if (seg_push(q, (h2_outseg){.buf = NULL, .off = q->copy_len, .len = n}) != 0)
        return -1;
    memcpy(q->copy + q->copy_len, p, n);
    q->copy_len += n;
    q->queued_bytes += n;
    return 0;
}

int h2_outq_ref(h2_outq *q, h2_msgbuf *buf, const uint8_t *p, size_t n)
{
    if (n == 0) return 0;
    if (seg_push(q, (h2_outseg){.buf = buf, .p = p, .len = n}) != 0) return -1;
    buf->out_refs++;
    q->queued_bytes += n;
    return 0;
}

int h2_outq_write(h2_outq *q, h2_outq_writev_fn fn, void *ctx)
{
    while (q->first < q->nsegs) {
        struct iovec iov[H2_OUTQ_MAX_IOV];
        size_t want = 0;
        int n = 0;
        for (size_t i = q->first; i < q->nsegs && n < H2_OUTQ_MAX_IOV; i++, n++) {
            const h2_outseg *g = &q->segs[i];
            size_t skip = i == q->first ? q->first_written : 0;
            const uint8_t *base = g->buf ? g->p : q->copy + g->off;
            iov[n].iov_base = (void *)(uintptr_t)(base + skip);
            iov[n].iov_len = g->len - skip;
            want += g->len - skip;
        }
        ssize_t w = fn(ctx, iov, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
            return -errno;
        }
        size_t left = (size_t)w;
        while (left && q->first < q->nsegs) {
            h2_outseg *g = &q->segs[q->first];
            size_t rem = g->len - q->first_written;
            if (left < rem) {
                q->first_written += left;
                break;
            }
            left -= rem;
            q->first_written = 0;
            q->first++;
            if (g->buf) h2_msgbuf_unref(q->pool, g->buf);
        }
        if ((size_t)w < want) return 0; /* short write: kernel buffer full */
    }
    return 1;
}

void h2_outq_reset(h2_outq *q)
{
    q->nsegs = q->first = q->first_written = 0;
    q->copy_len = 0;
    q->queued_bytes = 0;
}

void h2_outq_shrink(h2_outq *q)
{
    if (q->copy_cap > 4 * H2_OUTQ_BATCH) {
        h2_free(q->copy);
        q->copy = NULL;
        q->copy_cap = 0;
    }
    if (q->segs_cap > 256) {
        h2_free(q->segs);
        q->segs = NULL;
        q->segs_cap = 0;
    }
}

void h2_outq_release(h2_outq *q)
{
    h2_outq_reset(q);
    h2_free(q->segs);
    h2_free(q->copy);
    q->segs = NULL;
    q->copy = NULL;
    q->segs_cap = q->copy_cap = 0;
}

void h2_outq_free(h2_outq *q)
{
    for (size_t i = q->first; i < q->nsegs; i++)
        if (q->segs[i].buf) h2_msgbuf_unref(q->pool, q->segs[i].buf);
    h2_outq_release(q);
}
