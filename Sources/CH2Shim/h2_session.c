/* The nghttp2 session: settings, receive callbacks, and the data source of outbound messages. */
#include "h2_session.h"
#include "h2_loop.h"
#include "h2_mem.h"

#include <stdio.h>
#include <string.h>

/* ---------------------------------------------------------------- data source */

static inline bool is_last(const h2_msgbuf *b) { return b->ntrls || (b->flags & H2_SEND_END); }

/* End of the stream's data: submits the buffer's trailers (DATA without END_STREAM) or sets EOF. */
static int data_eof(nghttp2_session *s, int32_t sid, h2_msgbuf *b, uint32_t *flags)
{
    if (b->ntrls) {
        int rv = nghttp2_submit_trailer(s, sid, b->trls, b->ntrls);
        if (rv != 0) return nghttp2_is_fatal(rv) ? NGHTTP2_ERR_CALLBACK_FAILURE : NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        *flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
    } else {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    }
    return 0;
}

/* A large message at the head of the queue goes out with NO_COPY: the frame references the
 * message and send_data_cb queues it for writev (no copy in user space). Small messages
 * are copied into nghttp2's frame buffer, several per frame. */
static ssize_t data_read_cb(nghttp2_session *s, int32_t sid, uint8_t *buf, size_t len, uint32_t *flags,
                            nghttp2_data_source *src, void *ud)
{
    h2_stream *st = src->ptr;
    h2_conn *c = ud;
    h2_loop *L = c->loop;
    size_t n = 0;
    h2_msgbuf *b = st->out_head;
    st->nc_pop_next = false;
    if (b && b->msg && b->msg_len - b->msg_sent >= H2_NOCOPY_MIN) {
        size_t r = b->msg_len - b->msg_sent;
        n = r < len ? r : len;
        if (n == r) {
            h2_msgbuf *end = is_last(b) ? b : NULL;
            if (!end && b->next_out && !b->next_out->msg && is_last(b->next_out)) end = b->next_out;
            if (end) {
                int rv = data_eof(s, sid, end, flags);
                if (rv != 0) return rv;
                st->nc_pop_next = end != b;
            }
        }
        *flags |= NGHTTP2_DATA_FLAG_NO_COPY;
        return (ssize_t)n;
    }
    while ((b = st->out_head) != NULL) {
        if (b->msg && b->msg_sent < b->msg_len) {
            size_t k = b->msg_len - b->msg_sent;
            if (k > len - n) k = len - n;
            memcpy(buf + n, b->msg + b->msg_sent, k);
            n += k;
            b->msg_sent += k;
            if (b->msg_sent < b->msg_len) break; /* frame full */
        }
        bool last = is_last(b);
        if (last) {
            int rv = data_eof(s, sid, b, flags);
            if (rv != 0) return rv;
        }
        st->out_head = b->next_out;
        if (!st->out_head) st->out_tail = NULL;
        h2_stream_out_release(c, b);
        if (last) break;
    }
    if (n) {
        LSTAT_SUB(L, outbound, n);
        c->unsent -= n;
        if (st->user && L->cb.on_drain) L->cb.on_drain(L->cb.ctx, st->user, n);
    } else if (!(*flags & NGHTTP2_DATA_FLAG_EOF)) {
        st->data_deferred = true;
        return NGHTTP2_ERR_DEFERRED;
    }
    return (ssize_t)n;
}

/* The NO_COPY frame data_read_cb chose: its header is copied, its payload referenced. */
static int send_data_cb(nghttp2_session *s, nghttp2_frame *f, const uint8_t *framehd, size_t length,
                        nghttp2_data_source *src, void *ud)
{
    (void)s;
    h2_conn *c = ud;
    h2_loop *L = c->loop;
    h2_stream *st = src->ptr;
    h2_msgbuf *b = st->out_head;
    if (!b || !b->msg || b->msg_len - b->msg_sent < length || f->data.padlen != 0) return NGHTTP2_ERR_CALLBACK_FAILURE;
    if (h2_outq_copy(&c->out, framehd, H2_FRAME_HEADER_LEN) != 0 || h2_outq_ref(&c->out, b, b->msg + b->msg_sent, length) != 0)
        return NGHTTP2_ERR_CALLBACK_FAILURE; /* out of memory: the connection closes */
    b->msg_sent += length;
    if (b->msg_sent == b->msg_len) {
        st->out_head = b->next_out;
        if (st->nc_pop_next && st->out_head) { /* the END-only buffer whose EOF this frame carries */
            h2_msgbuf *e = st->out_head;
            st->out_head = e->next_out;
            h2_stream_out_release(c, e);
        }
        if (!st->out_head) st->out_tail = NULL;
        h2_stream_out_release(c, b);
    }
    st->nc_pop_next = false;
    LSTAT_SUB(L, outbound, length);
    c->unsent -= length;
    if (st->user && L->cb.on_drain) L->cb.on_drain(L->cb.ctx, st->user, length);
    return h2_outq_full(&c->out) ? NGHTTP2_ERR_PAUSE : 0;
}

/* DATA frames of large messages are as large as the peer allows (up to H2_MAX_SEND_FRAME);
 * others keep nghttp2's 16 KiB. */
static ssize_t read_length_cb(nghttp2_session *s, uint8_t type, int32_t sid, int32_t swin, int32_t stwin,
                              uint32_t remote_max, void *ud)
{
    (void)type; (void)swin; (void)stwin;
    size_t want = 16384;
    if (((h2_conn *)ud)->big_queued == 0) return (ssize_t)(want < remote_max ? want : remote_max); /* no lookup for small messages */
    h2_stream *st = nghttp2_session_get_stream_user_data(s, sid);
    h2_msgbuf *b = st ? st->out_head : NULL;
    if (b && b->msg && b->msg_len - b->msg_sent >= H2_NOCOPY_MIN) {
        want = b->msg_len - b->msg_sent;
        if (want > H2_MAX_SEND_FRAME) want = H2_MAX_SEND_FRAME;
    }
    if (want > remote_max) want = remote_max;
    return (ssize_t)want;
}

nghttp2_data_provider h2_session_data_provider(h2_stream *st)
{
    return (nghttp2_data_provider){.source.ptr = st, .read_callback = data_read_cb};
}

/* ---------------------------------------------------------------- receiving */

static int on_begin_headers(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    h2_conn *c = ud;
    c->hdr_arena_len = 0;
    c->hdr_n = 0;
    c->hdr_count = 0;
    c->hdr_list_size = 0;
    c->hdr_over = false;
    if (f->hd.type != NGHTTP2_HEADERS || c->is_client || f->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
    h2_stream *st = h2_stream_new(c, h2_loop_new_id(c->loop), false);
    if (!st) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* RST this stream only */
    st->sid = f->hd.stream_id;
    int rv = nghttp2_session_set_stream_user_data(s, st->sid, st);
    if (rv != 0) {
        h2_stream_free(st);
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    return 0;
}

/* Header limits. nghttp2 does not enforce our SETTINGS_MAX_HEADER_LIST_SIZE on what it
 * receives, and HPACK lets one byte on the wire (an indexed field) stand for a whole field: a
 * 256 KiB block can carry 250,000 fields. So every field is counted here, by number and by its
 * RFC 7541 size (name + value + 32), copied or not; once the block is over either limit nothing
 * more is copied (memory stays at the limit), and the block is refused when it ends
 * (on_headers_recv → header_limit). nghttp2 goes on decoding the rest of the block (HPACK
 * state must stay in step), calling this for each field: a few instructions each. */
static int on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name, size_t namelen,
                     const uint8_t *value, size_t valuelen, uint8_t flags, void *ud)
{
    (void)s; (void)f; (void)flags;
    h2_conn *c = ud;
    const h2_config *cfg = &c->loop->cfg;
    c->hdr_count++;
    c->hdr_list_size += namelen + valuelen + 32;
    if (c->hdr_over) return 0;
    if (c->hdr_count > cfg->max_header_count || c->hdr_list_size > cfg->max_header_list_size) {
        c->hdr_over = true;
        return 0;
    }
    /* Within the limits the arena holds at most max_header_list_size (≤ H2_MAX_HEADER_BYTES) bytes. */
    size_t need = c->hdr_arena_len + namelen + valuelen;
    if (need > c->hdr_arena_cap) {
        size_t nc = c->hdr_arena_cap ? c->hdr_arena_cap * 2 : 1024;
        while (nc < need) nc *= 2;
        uint8_t *nb = h2_realloc(c->hdr_arena, nc);
        if (!nb) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        c->hdr_arena = nb;
        c->hdr_arena_cap = nc;
    }
    if (c->hdr_n == c->hdr_nv_cap) {
        size_t nc = c->hdr_nv_cap ? c->hdr_nv_cap * 2 : 16;
        h2_nv *nv = h2_realloc(c->hdr_nv, nc * sizeof *nv);
        if (!nv) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        c->hdr_nv = nv;
        c->hdr_nv_cap = nc;
    }
    /* Store offsets: the arena may move while the block grows. */
    h2_nv *e = &c->hdr_nv[c->hdr_n++];
    e->name = (const uint8_t *)(uintptr_t)c->hdr_arena_len;
    e->namelen = namelen;
    memcpy(c->hdr_arena + c->hdr_arena_len, name, namelen);
    c->hdr_arena_len += namelen;
    e->value = (const uint8_t *)(uintptr_t)c->hdr_arena_len;
    e->valuelen = valuelen;
    memcpy(c->hdr_arena + c->hdr_arena_len, value, valuelen);
    c->hdr_arena_len += valuelen;
    return 0;
}

/* Turns the stored offsets of n fields into pointers; valid until the next header block. */
static h2_nv *headers_fix(h2_conn *c, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        c->hdr_nv[i].name = c->hdr_arena + (uintptr_t)c->hdr_nv[i].name;
        c->hdr_nv[i].value = c->hdr_arena + (uintptr_t)c->hdr_nv[i].value;
    }
    return c->hdr_nv;
}

/* A received header block over max_header_count or max_header_list_size. A request is
 * answered at once, Trailers-Only with grpc-status 8 (RESOURCE_EXHAUSTED), as grpc servers
 * answer oversized metadata; the application never sees it. Any other block (request trailers,
 * response headers or trailers) resets its stream; on_close reports H2_CLOSE_HEADERS_TOO_LARGE. */
/* Answers a request at once, Trailers-Only with grpc-status 8 (RESOURCE_EXHAUSTED) and
 * `msg`, without on_request. 0, or 1 if nghttp2 refused the response (non-fatal: the
 * caller resets), or NGHTTP2_ERR_CALLBACK_FAILURE. */
static int answer_exhausted(nghttp2_session *s, h2_stream *st, bool end, const char *msg)
{
    nghttp2_nv nv[] = {
        {(uint8_t *)":status", (uint8_t *)"200", 7, 3, NGHTTP2_NV_FLAG_NONE},
        {(uint8_t *)"content-type", (uint8_t *)"application/grpc", 12, 16, NGHTTP2_NV_FLAG_NONE},
        {(uint8_t *)"grpc-status", (uint8_t *)"8", 11, 1, NGHTTP2_NV_FLAG_NONE},
        {(uint8_t *)"grpc-message", (uint8_t *)msg, 12, strlen(msg), NGHTTP2_NV_FLAG_NONE},
    };
    st->local_end = true;
    if (end) st->in_ended = true; /* no RST(NO_ERROR) after the answer (on_frame_send) */
    int rv = nghttp2_submit_response(s, st->sid, nv, sizeof nv / sizeof nv[0], NULL); /* nghttp2 copies nv */
    if (rv == 0) return 0;
    return nghttp2_is_fatal(rv) ? NGHTTP2_ERR_CALLBACK_FAILURE : 1;
}

static int header_limit(nghttp2_session *s, const nghttp2_frame *f, h2_conn *c, h2_stream *st, bool end)
{
    const h2_config *cfg = &c->loop->cfg;
    int rv;
    st->local_end = true;
    if (!c->is_client && f->headers.cat == NGHTTP2_HCAT_REQUEST) {
        char msg[160];
        if (c->hdr_count > cfg->max_header_count)
            snprintf(msg, sizeof msg, "the request header block has %zu fields; this server accepts at most %u",
                     c->hdr_count, cfg->max_header_count);
        else
            snprintf(msg, sizeof msg,
                     "the request header list is %zu bytes (name + value + 32 per field); this server accepts at most %u",
                     c->hdr_list_size, cfg->max_header_list_size);
        if ((rv = answer_exhausted(s, st, end, msg)) <= 0) return rv;
    }
    st->close_code = H2_CLOSE_HEADERS_TOO_LARGE;
    rv = nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, st->sid, NGHTTP2_INTERNAL_ERROR);
    return (rv != 0 && nghttp2_is_fatal(rv)) ? NGHTTP2_ERR_CALLBACK_FAILURE : 0;
}

/* A new request on `c` is refused: its client leaves more than its share of responses unread
 * (max_unsent_per_conn; H2_UNSENT_BUSY_SHARE once the loop holds max_unsent in all). */
static bool unread_over_limit(const h2_conn *c)
{
    const h2_loop *L = c->loop;
    if (c->unsent > L->cfg.max_unsent_per_conn) return true;
    return c->unsent > H2_UNSENT_BUSY_SHARE &&
           atomic_load_explicit(&L->st.outbound, memory_order_relaxed) > L->cfg.max_unsent;
}

static int on_headers_recv(nghttp2_session *s, const nghttp2_frame *f, h2_conn *c)
{
    h2_loop *L = c->loop;
    h2_stream *st = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
    size_t hn = c->hdr_n;
    c->hdr_n = 0;
    if (!st) return 0;
    bool end = (f->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
    if (c->hdr_over) return header_limit(s, f, c, st, end);
    if (!c->is_client) {
        if (f->headers.cat == NGHTTP2_HCAT_REQUEST) {
            if (unread_over_limit(c)) { /* the peer does not read what it asked for */
                char msg[320];
                snprintf(msg, sizeof msg,
                         "this connection has %zu bytes of responses the client has not read, over the server's limit "
                         "(%zu per connection, less while the server holds %zu in all); read the responses of "
                         "earlier calls first",
                         c->unsent, L->cfg.max_unsent_per_conn, L->cfg.max_unsent);
                int rv = answer_exhausted(s, st, end, msg);
                if (rv <= 0) return rv;
                rv = nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, st->sid, NGHTTP2_INTERNAL_ERROR);
                return (rv != 0 && nghttp2_is_fatal(rv)) ? NGHTTP2_ERR_CALLBACK_FAILURE : 0;
            }
            void *user = NULL;
            if (L->cb.on_request)
                user = L->cb.on_request(L->cb.ctx, c->id, st->id, headers_fix(c, hn), hn, end ? H2_HEADERS_END_STREAM : 0);
            if (!user) {
                int rv = nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, st->sid, NGHTTP2_REFUSED_STREAM);
                if (rv != 0 && nghttp2_is_fatal(rv)) return NGHTTP2_ERR_CALLBACK_FAILURE;
                return 0;
            }
            h2_stream_set_user(st, user);
        }
        /* Request trailers (rare in gRPC) are not reported; only their END_STREAM. */
    } else if (st->user) {
        /* Ignore 1xx informational responses. */
        bool info = !st->got_headers && hn > 0 && c->hdr_nv[0].namelen == 7 && c->hdr_nv[0].valuelen == 3 &&
                    memcmp(c->hdr_arena + (uintptr_t)c->hdr_nv[0].name, ":status", 7) == 0 &&
                    c->hdr_arena[(uintptr_t)c->hdr_nv[0].value] == '1';
        if (!info) {
            int fl = (end ? H2_HEADERS_END_STREAM : 0) | (st->got_headers ? H2_HEADERS_TRAILERS : 0);
            st->got_headers = true;
            if (L->cb.on_headers) L->cb.on_headers(L->cb.ctx, st->user, headers_fix(c, hn), hn, fl);
        }
    }
    if (end) h2_stream_in_end(st);
    return 0;
}

static int on_frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    h2_conn *c = ud;
    h2_loop *L = c->loop;
    switch (f->hd.type) {
    case NGHTTP2_HEADERS: return on_headers_recv(s, f, c);
    case NGHTTP2_DATA:
        if (f->hd.flags & NGHTTP2_FLAG_END_STREAM) {
            h2_stream *st = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
            if (st) h2_stream_in_end(st);
        }
        return 0;
    case NGHTTP2_RST_STREAM:
        if (!c->is_client) {
            /* A reset with NO_ERROR still abandons the call: report CANCEL, so the
             * application cancels the handler (it does on any code but 0). */
            h2_stream *rst = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
            if (rst && f->rst_stream.error_code == NGHTTP2_NO_ERROR && !rst->close_code) rst->close_code = NGHTTP2_CANCEL;
            /* Rapid-reset guard (CVE-2023-44487): every reset counts, whatever the stream's
             * state (a flood whose handlers answer before the reset arrives costs as much, and
             * a peer can always wait for the response headers first). See rst_burst/rst_rate. */
            if (h2_ratelim_hit(&c->rst_guard, h2_ratelim_now_ms())) {
                int rv = nghttp2_session_terminate_session(s, NGHTTP2_ENHANCE_YOUR_CALM);
                if (rv != 0 && nghttp2_is_fatal(rv)) return NGHTTP2_ERR_CALLBACK_FAILURE;
            }
        }
        return 0;
    case NGHTTP2_PING:
        /* nghttp2 answers it; a server counts strikes (h2_keepalive.h). */
        if (!c->is_client && !(f->hd.flags & NGHTTP2_FLAG_ACK) && !c->close_when_flushed &&
            h2_ka_peer_ping(&c->ka, L->local.now, L->cfg.min_ping_interval_ms)) {
            LSTAT_ADD(L, ping_strike_goaways, 1);
            int rv = nghttp2_submit_goaway(s, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(s),
                                           NGHTTP2_ENHANCE_YOUR_CALM, (const uint8_t *)H2_KA_TOO_MANY_PINGS,
                                           sizeof H2_KA_TOO_MANY_PINGS - 1);
            if (rv != 0 && nghttp2_is_fatal(rv)) return NGHTTP2_ERR_CALLBACK_FAILURE;
            c->close_when_flushed = true;
        }
        return 0;
    case NGHTTP2_GOAWAY:
        c->goaway_recv = true;
        if (c->is_client && f->goaway.error_code == NGHTTP2_ENHANCE_YOUR_CALM &&
            f->goaway.opaque_data_len == sizeof H2_KA_TOO_MANY_PINGS - 1 &&
            memcmp(f->goaway.opaque_data, H2_KA_TOO_MANY_PINGS, sizeof H2_KA_TOO_MANY_PINGS - 1) == 0)
            L->local.ka_time_ms = h2_ka_calm_down(L->local.ka_time_ms);
        if (c->is_client && L->cb.on_conn) L->cb.on_conn(L->cb.ctx, c->id, H2_CONN_GOAWAY, (int)f->goaway.last_stream_id);
        return 0;
    default:
        return 0;
    }
}

static int on_data_chunk(nghttp2_session *s, uint8_t flags, int32_t sid, const uint8_t *data, size_t len, void *ud)
{
    (void)flags; (void)ud;
    h2_stream *st = nghttp2_session_get_stream_user_data(s, sid);
    if (!st) {
        int rv = nghttp2_session_consume(s, sid, len);
        return (rv != 0 && nghttp2_is_fatal(rv)) ? NGHTTP2_ERR_CALLBACK_FAILURE : 0;
    }
    int rv = h2_stream_in_data(st, data, len);
    if (rv == NGHTTP2_ERR_NOMEM) {
        /* Cannot buffer: give the bytes back and reset just this stream. */
        rv = h2_stream_release(st, st->received_unreleased);
        st->in_err = true;
        if (rv == 0) rv = nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, sid, NGHTTP2_INTERNAL_ERROR);
    }
    return (rv != 0 && nghttp2_is_fatal(rv)) ? NGHTTP2_ERR_CALLBACK_FAILURE : 0;
}

static int on_stream_close(nghttp2_session *s, int32_t sid, uint32_t code, void *ud)
{
    (void)ud;
    h2_stream *st = nghttp2_session_get_stream_user_data(s, sid);
    if (!st) return 0;
    /* Bytes the app never consumed still hold the connection window. */
    if (st->received_unreleased) {
        int rv = nghttp2_session_consume_connection(s, st->received_unreleased);
        st->received_unreleased = 0;
        if (rv != 0 && nghttp2_is_fatal(rv)) return NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    h2_stream_finish(st, st->close_code ? st->close_code : code);
    return 0;
}

/* A server that has sent its whole response (END_STREAM) while the client is still
 * sending asks it to stop with RST_STREAM(NO_ERROR) (RFC 9113 8.1): the rest of the
 * request would only be discarded, and the stream would stay open until it ended. */
static int on_frame_send(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    h2_conn *c = ud;
    if (f->hd.type == NGHTTP2_HEADERS || f->hd.type == NGHTTP2_DATA) h2_ka_sent_data(&c->ka);
    if (c->is_client || !(f->hd.flags & NGHTTP2_FLAG_END_STREAM)) return 0;
    if (f->hd.type != NGHTTP2_HEADERS && f->hd.type != NGHTTP2_DATA) return 0;
    h2_stream *st = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
    if (!st || st->in_ended) return 0;
    int rv = nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, f->hd.stream_id, NGHTTP2_NO_ERROR);
    return nghttp2_is_fatal(rv) ? NGHTTP2_ERR_CALLBACK_FAILURE : 0;
}

/* Server: response headers or trailers nghttp2 would not send. nghttp2 drops such a frame
 * and leaves the stream open, so the client would wait for its status forever: a block over
 * nghttp2's 64 KiB max_send_header_block_length (FRAME_SIZE_ERROR; say huge metadata from a
 * handler), or any other refusal. Reset the stream so the client learns at once, and the
 * handler is cancelled (on_close with INTERNAL_ERROR). Not for a stream already closing. */
static int response_not_sent(nghttp2_session *s, const nghttp2_frame *f, int err)
{
    h2_stream *st = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
    if (!st || err == NGHTTP2_ERR_STREAM_CLOSED || err == NGHTTP2_ERR_STREAM_CLOSING) return 0;
    st->local_end = true;
    int rv = nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, f->hd.stream_id, NGHTTP2_INTERNAL_ERROR);
    return (rv != 0 && nghttp2_is_fatal(rv)) ? NGHTTP2_ERR_CALLBACK_FAILURE : 0;
}

/* Client: a request HEADERS that never left (GOAWAY, stream ids exhausted, reset before open):
 * nghttp2 opened no stream, so on_stream_close will not come. Rare: a list scan is fine. */
static int on_frame_not_send(nghttp2_session *s, const nghttp2_frame *f, int err, void *ud)
{
    h2_conn *c = ud;
    if (f->hd.type != NGHTTP2_HEADERS) return 0;
    if (!c->is_client) return response_not_sent(s, f, err);
    if (f->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
    if (nghttp2_session_get_stream_user_data(s, f->hd.stream_id)) return 0; /* opened: close cb comes */
    for (h2_stream *st = c->streams; st; st = st->next) {
        if (st->sid == f->hd.stream_id) {
            h2_stream_finish(st, H2_CLOSE_REFUSED);
            break;
        }
    }
    return 0;
}

/* ---------------------------------------------------------------- setup */

int h2_session_callbacks_new(const h2_config *cfg, nghttp2_session_callbacks **scbp, nghttp2_option **optp)
{
    nghttp2_session_callbacks *scb = NULL;
    nghttp2_option *opt = NULL;
    int rv = nghttp2_session_callbacks_new(&scb);
    if (rv != 0) return rv;
    nghttp2_session_callbacks_set_on_begin_headers_callback(scb, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(scb, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(scb, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(scb, on_data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(scb, on_stream_close);
    nghttp2_session_callbacks_set_on_frame_not_send_callback(scb, on_frame_not_send);
    nghttp2_session_callbacks_set_on_frame_send_callback(scb, on_frame_send);
    nghttp2_session_callbacks_set_send_data_callback(scb, send_data_cb);
    nghttp2_session_callbacks_set_data_source_read_length_callback(scb, read_length_cb);
    if ((rv = nghttp2_option_new(&opt)) != 0) {
        nghttp2_session_callbacks_del(scb);
        return rv;
    }
    nghttp2_option_set_no_auto_window_update(opt, 1);
    /* A server session would keep every closed stream (object and place in RFC 7540's
     * priority tree, which gRPC does not use) until up to max_concurrent_streams later
     * ones closed: a busy connection cycled through ~1000 cold stream objects. */
    nghttp2_option_set_no_closed_streams(opt, 1);
    /* Rapid reset (CVE-2023-44487). The shim's guard (on_frame_recv) and nghttp2's own
     * limiter are both token buckets over every RST_STREAM a server connection receives.
     * Ours trips first and answers GOAWAY ENHANCE_YOUR_CALM (RFC 9113's code for a peer
     * that generates excessive load); nghttp2's answers INTERNAL_ERROR, so it stays on at
     * twice our numbers, a backstop should ours ever be bypassed.
     * The defaults, burst 1000 and 100/s: a client may cancel every stream it can have open
     * (max_concurrent_streams, 1000 by default) at once, say when it drops a fan-out, and
     * then keep cancelling 100 calls a second on one connection (deadlines, hedging, clients
     * that stop reading) without being cut off; nghttp2's default, 33/s, is tighter than a
     * busy gRPC client with short deadlines. A flood gets at most 1000 opened-and-cancelled
     * handlers in its first second and 100/s after that per connection, then loses the
     * connection: the cost of the attack is bounded by how many connections it may open. */
    nghttp2_option_set_stream_reset_rate_limit(opt, 2 * (uint64_t)cfg->rst_burst, 2 * (uint64_t)cfg->rst_rate);
    *scbp = scb;
    *optp = opt;
    return 0;
}

/* nghttp2 allocates through the shim's hook too (h2_sessmem.h), so a test build can fail its
 * allocations as well, and an idle connection can give back its frame buffer's pages (nghttp2
 * copies the struct; its user data, c->smem, lives as long as c). */
int h2_session_setup(h2_conn *c)
{
    h2_loop *L = c->loop;
    nghttp2_mem mem;
    h2_sessmem_init(&c->smem, &mem, &L->local.frames);
    int rv = c->is_client ? nghttp2_session_client_new3(&c->sess, L->scb, c, L->opt, &mem)
                          : nghttp2_session_server_new3(&c->sess, L->scb, c, L->opt, &mem);
    h2_sessmem_created(&c->smem);
    if (rv != 0) {
        c->sess = NULL;
        return rv;
    }
    h2_ratelim_init(&c->rst_guard, L->cfg.rst_burst, L->cfg.rst_rate, h2_ratelim_now_ms());
    nghttp2_settings_entry iv[5];
    size_t n = 0;
    if (!c->is_client)
        iv[n++] = (nghttp2_settings_entry){NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, L->cfg.max_concurrent_streams};
    else
        iv[n++] = (nghttp2_settings_entry){NGHTTP2_SETTINGS_ENABLE_PUSH, 0};
    iv[n++] = (nghttp2_settings_entry){NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, L->cfg.initial_window};
    iv[n++] = (nghttp2_settings_entry){NGHTTP2_SETTINGS_MAX_FRAME_SIZE, L->cfg.max_frame_size};
    /* Advisory for the peer (enforced in on_header): 16 KiB by default, grpc's own. */
    iv[n++] = (nghttp2_settings_entry){NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, L->cfg.max_header_list_size};
    if ((rv = nghttp2_submit_settings(c->sess, NGHTTP2_FLAG_NONE, iv, n)) != 0) return rv;
    if (L->cfg.connection_window > NGHTTP2_INITIAL_CONNECTION_WINDOW_SIZE &&
        (rv = nghttp2_session_set_local_window_size(c->sess, NGHTTP2_FLAG_NONE, 0, (int32_t)L->cfg.connection_window)) != 0)
        return rv;
    return 0;
}
