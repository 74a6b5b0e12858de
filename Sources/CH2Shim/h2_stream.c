/* Streams: lifecycle, inbound deframing with flow-control accounting, outbound queue. */
#include "h2_stream.h"
#include "h2_loop.h"
#include "h2_mem.h"

#include <nghttp2/nghttp2.h>

h2_stream *h2_stream_new(h2_conn *c, h2_id id, bool is_client)
{
    h2_stream *st = h2_calloc(1, sizeof *st);
    if (!st) return NULL;
    st->kind = H2_OBJ_STREAM;
    st->id = id;
    st->conn = c;
    st->is_client = is_client;
    if (h2_map_put(&c->loop->local.map, id, st) != 0) {
        h2_free(st);
        return NULL;
    }
    st->next = c->streams;
    if (c->streams) c->streams->prev = st;
    c->streams = st;
    return st;
}

void h2_stream_set_user(h2_stream *st, void *user)
{
    h2_loop *L = st->conn->loop;
    st->user = user;
    st->counted = true;
    LSTAT_ADD(L, streams, 1);
    LSTAT_ADD(L, streams_total, 1);
}

void h2_stream_out_release(h2_conn *c, h2_msgbuf *b)
{
    b->queued = false;
    if (b->big) {
        b->big = false;
        c->big_queued--;
    }
    if (b->out_refs == 0) h2_msgbuf_put(&c->loop->pool, b);
}

void h2_stream_free(h2_stream *st)
{
    h2_conn *c = st->conn;
    h2_loop *L = c->loop;
    h2_map_del(&L->local.map, st->id);
    if (st->prev)
        st->prev->next = st->next;
    else
        c->streams = st->next;
    if (st->next) st->next->prev = st->prev;
    size_t buffered = h2_deframer_buffered(&st->deframer);
    if (buffered) LSTAT_SUB(L, inbound, buffered);
    h2_deframer_reset(&st->deframer, &L->pool);
    for (h2_msgbuf *b = st->out_head, *n; b; b = n) {
        n = b->next_out;
        if (b->msg && b->msg_sent < b->msg_len) LSTAT_SUB(L, outbound, b->msg_len - b->msg_sent);
        h2_stream_out_release(c, b);
    }
    if (st->counted) LSTAT_SUB(L, streams, 1);
    h2_free(st);
}

void h2_stream_finish(h2_stream *st, uint32_t code)
{
    h2_loop *L = st->conn->loop;
    void *user = st->user;
    st->user = NULL;
    if (user && L->cb.on_close) L->cb.on_close(L->cb.ctx, user, code);
    h2_stream_free(st);
}

int h2_stream_release(h2_stream *st, size_t n)
{
    if (n > st->received_unreleased) n = st->received_unreleased;
    if (n == 0) return 0;
    st->received_unreleased -= n;
    int rv = nghttp2_session_consume(st->conn->sess, st->sid, n);
    return (rv != 0 && nghttp2_is_fatal(rv)) ? rv : 0;
}

/* Discard the partial message and all further inbound bytes. */
static int in_error(h2_stream *st, int kind, size_t detail)
{
    h2_loop *L = st->conn->loop;
    st->in_err = true;
    st->partial_released = st->partial_withheld = 0;
    LSTAT_SUB(L, inbound, h2_deframer_buffered(&st->deframer));
    h2_deframer_reset(&st->deframer, &L->pool);
    if (st->user && L->cb.on_stream_error) L->cb.on_stream_error(L->cb.ctx, st->user, kind, detail);
    return h2_stream_release(st, st->received_unreleased);
}

/* The application took a message of `total` bytes (prefix included) and consumed
 * `consumed` of them now (the rest comes with h2_consume); `released` bytes of it were
 * given back early. */
static int delivered(h2_stream *st, size_t consumed, size_t total, size_t released)
{
    if (consumed > total) consumed = total;
    st->delivered_unconsumed += total - consumed;
    if (consumed >= released) return h2_stream_release(st, consumed - released);
    st->consume_credit += released - consumed;
    return 0;
}

/* A message whole inside one DATA chunk: delivered from nghttp2's buffer. */
static int deliver_whole(h2_stream *st, const h2_df_msg *m)
{
    h2_loop *L = st->conn->loop;
    size_t total = m->len + H2_GRPC_PREFIX_LEN, r = total;
    if (L->cb.on_message) r = L->cb.on_message(L->cb.ctx, st->user, m->compressed, m->data, m->len);
    return delivered(st, r, total, 0);
}

/* The assembled message: its buffer goes to the application (on_message_buf) or back to the pool. */
static int deliver_assembled(h2_stream *st, const h2_df_msg *m)
{
    h2_loop *L = st->conn->loop;
    size_t total = m->len + H2_GRPC_PREFIX_LEN, released = st->partial_released, r = total;
    st->partial_released = st->partial_withheld = 0; /* withheld bytes are now the application's to consume */
    LSTAT_SUB(L, inbound, total);
    if (!m->buf) { /* empty message: nothing was allocated */
        if (L->cb.on_message) r = L->cb.on_message(L->cb.ctx, st->user, m->compressed, m->data, 0);
    } else if (L->cb.on_message_buf) {
        r = L->cb.on_message_buf(L->cb.ctx, st->user, m->compressed, (uint8_t *)m->data, m->len);
    } else {
        if (L->cb.on_message) r = L->cb.on_message(L->cb.ctx, st->user, m->compressed, m->data, m->len);
        h2_msgbuf_put(&L->pool, m->buf);
    }
    return delivered(st, r, total, released);
}

int h2_stream_in_data(h2_stream *st, const uint8_t *d, size_t len)
{
    h2_loop *L = st->conn->loop;
    int rv;
    st->received_unreleased += len;
    if (!st->user || st->in_err || st->in_ended) return h2_stream_release(st, len);
    while (len) {
        size_t copied;
        h2_df_msg m;
        int ev = h2_deframer_step(&st->deframer, &L->pool, L->cfg.max_recv_message, &d, &len, &copied, &m);
        if (copied) {
            LSTAT_ADD(L, inbound, copied);
            if (st->delivered_unconsumed == 0) {
                st->partial_released += copied;
                if ((rv = h2_stream_release(st, copied)) != 0) return rv;
            } else {
                st->partial_withheld += copied;
            }
        }
        switch (ev) {
        case H2_DF_MORE: return 0;
        case H2_DF_TOO_LARGE: return in_error(st, H2_STREAM_ERR_TOO_LARGE, m.len);
        case H2_DF_NOMEM: return NGHTTP2_ERR_NOMEM;
        case H2_DF_WHOLE: rv = deliver_whole(st, &m); break;
        default: rv = deliver_assembled(st, &m); break;
        }
        if (rv != 0) return rv;
        if (st->in_err || !st->user) return h2_stream_release(st, st->received_unreleased);
    }
    return 0;
}

void h2_stream_in_end(h2_stream *st)
{
    h2_loop *L = st->conn->loop;
    if (!st->user || st->in_ended) return;
    st->in_ended = true;
    if (!st->in_err && st->deframer.prefix_got > 0)
        (void)in_error(st, H2_STREAM_ERR_TRUNCATED, h2_deframer_buffered(&st->deframer));
    if (st->user && L->cb.on_end) L->cb.on_end(L->cb.ctx, st->user);
}

size_t h2_stream_consumed(h2_stream *st, size_t n)
{
    st->delivered_unconsumed -= n < st->delivered_unconsumed ? n : st->delivered_unconsumed;
    size_t credit = n < st->consume_credit ? n : st->consume_credit;
    st->consume_credit -= credit;
    n -= credit;
    if (st->delivered_unconsumed == 0 && st->partial_withheld) { /* caught up: the message being assembled may continue */
        st->partial_released += st->partial_withheld;
        n += st->partial_withheld;
        st->partial_withheld = 0;
    }
    return n;
}

void h2_stream_enqueue(h2_stream *st, h2_msgbuf *b)
{
    b->next_out = NULL;
    b->queued = true;
    if (st->out_tail)
        st->out_tail->next_out = b;
    else
        st->out_head = b;
    st->out_tail = b;
}
