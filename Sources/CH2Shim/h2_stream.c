/* Streams: lifecycle, inbound deframing with flow-control accounting, outbound queue. */
#include "h2_stream.h"
#include "h2_loop.h"
#include "h2_mem.h"

#include <nghttp2/nghttp2.h>

/* ---- partial messages: budget and waiters */

static void assembling_add(h2_stream *st, size_t n)
{
    h2_loop *L = st->conn->loop;
    st->conn->assembling += n;
    L->local.assembling += n;
    LSTAT_ADD(L, inbound, n);
}

static void assembling_sub(h2_stream *st, size_t n)
{
    if (n == 0) return;
    h2_loop *L = st->conn->loop;
    st->conn->assembling -= n;
    L->local.assembling -= n;
    LSTAT_SUB(L, inbound, n);
    if (L->local.waiters_head) L->local.budget_freed = true;
}

/* Whether the bytes of the message being assembled may be given back before it is whole. */
static bool may_release_early(const h2_stream *st)
{
    const h2_loop *L = st->conn->loop;
    return st->delivered_unconsumed == 0 &&
           (st == L->local.favoured || (st->conn->assembling <= L->cfg.max_partial_bytes_per_conn &&
                                        L->local.assembling <= L->cfg.max_partial_bytes));
}

static void wait_add(h2_stream *st)
{
    if (st->waiting) return;
    h2_loop_local *lo = &st->conn->loop->local;
    st->waiting = true;
    st->wait_next = NULL;
    st->wait_prev = lo->waiters_tail;
    if (lo->waiters_tail)
        lo->waiters_tail->wait_next = st;
    else
        lo->waiters_head = st;
    lo->waiters_tail = st;
    LSTAT_ADD(st->conn->loop, assembling_waits, 1);
}

/* The favoured stream's message is whole, or the stream failed or went away. */
static void unfavour(h2_stream *st)
{
    h2_loop_local *lo = &st->conn->loop->local;
    if (lo->favoured != st) return;
    lo->favoured = NULL;
    if (lo->waiters_head) lo->budget_freed = true; /* the next waiter gets the favour */
}

static void wait_del(h2_stream *st)
{
    if (!st->waiting) return;
    h2_loop_local *lo = &st->conn->loop->local;
    if (st->wait_prev)
        st->wait_prev->wait_next = st->wait_next;
    else
        lo->waiters_head = st->wait_next;
    if (st->wait_next)
        st->wait_next->wait_prev = st->wait_prev;
    else
        lo->waiters_tail = st->wait_prev;
    st->wait_prev = st->wait_next = NULL;
    st->waiting = false;
}

/* Gives the withheld bytes of the message being assembled back now. */
static int release_withheld(h2_stream *st)
{
    size_t n = st->partial_withheld;
    st->partial_released += n;
    st->partial_withheld = 0;
    wait_del(st);
    return h2_stream_release(st, n);
}

void h2_stream_resume_waiters(h2_loop *L)
{
    h2_loop_local *lo = &L->local;
    lo->budget_freed = false;
    while (!lo->favoured && lo->waiters_head) {
        h2_stream *st = lo->waiters_head;
        if (st->delivered_unconsumed) { /* waits for the application now, not the budget */
            wait_del(st);
            continue;
        }
        lo->favoured = st;
        lo->favoured_progressed = true;
        h2_conn_check(st->conn, release_withheld(st));
        h2_conn_mark(st->conn);
    }
    for (h2_stream *st = lo->waiters_head, *next; st && lo->assembling <= L->cfg.max_partial_bytes; st = next) {
        next = st->wait_next;
        if (st->delivered_unconsumed) { /* waits for the application now, not the budget */
            wait_del(st);
        } else if (may_release_early(st)) {
            h2_conn_check(st->conn, release_withheld(st));
            h2_conn_mark(st->conn);
        }
    }
}

void h2_stream_tick(h2_loop *L)
{
    h2_loop_local *lo = &L->local;
    h2_stream *st = lo->favoured;
    if (!st) return;
    if (!lo->favoured_progressed && lo->waiters_head) { /* stalled: the next waiter's turn */
        lo->favoured = NULL;
        if (st->partial_withheld || st->deframer.prefix_got) wait_add(st);
        lo->budget_freed = true;
    }
    lo->favoured_progressed = false;
}

/* ---- streams */

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
    wait_del(st);
    unfavour(st);
    assembling_sub(st, h2_deframer_buffered(&st->deframer));
    h2_deframer_reset(&st->deframer, &L->pool);
    for (h2_msgbuf *b = st->out_head, *n; b; b = n) {
        n = b->next_out;
        if (b->msg && b->msg_sent < b->msg_len) {
            LSTAT_SUB(L, outbound, b->msg_len - b->msg_sent);
            c->unsent -= b->msg_len - b->msg_sent;
        }
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
    wait_del(st);
    unfavour(st);
    assembling_sub(st, h2_deframer_buffered(&st->deframer));
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
    wait_del(st);
    unfavour(st);
    assembling_sub(st, total);
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
            if (st == L->local.favoured) L->local.favoured_progressed = true;
            assembling_add(st, copied);
            st->partial_withheld += copied;
            if (L->local.assembling > h2_stream_hard_partial_limit(&L->cfg)) {
                LSTAT_ADD(L, assembling_busy, 1);
                return in_error(st, H2_STREAM_ERR_BUSY, h2_stream_hard_partial_limit(&L->cfg));
            }
            if (may_release_early(st)) {
                if ((rv = release_withheld(st)) != 0) return rv;
            } else if (st->delivered_unconsumed == 0) {
                wait_add(st); /* over the budget: the window stays closed until it has room */
                if (!L->local.favoured) L->local.budget_freed = true; /* someone must go on */
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
        if (may_release_early(st)) {
            st->partial_released += st->partial_withheld;
            n += st->partial_withheld;
            st->partial_withheld = 0;
            wait_del(st);
        } else {
            wait_add(st);
        }
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
