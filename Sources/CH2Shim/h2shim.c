/*
 * h2shim: the public API of include/h2shim.h, and nothing else. The units behind it
 * (each with its private header next to it):
 *   h2_mem.h       the one allocator hook          h2_msgbuf.c   message buffers + pool
 *   h2_cmd.c       posted commands                 h2_framing.c  gRPC prefix + deframer
 *   h2_stream.c    streams, inbound flow control   h2_session.c  nghttp2 session + callbacks
 *   h2_ratelim.c   rapid-reset limiter             h2_outq.c     a connection's output queue
 *   h2_conn.c      connections                     h2_loop.c     command queue, epoll thread
 *   h2_map.c       token map                       h2_net.c      socket helpers
 *   h2_tls.c       TLS contexts and sessions (OpenSSL)
 *   h2_keepalive.c PINGs, strikes, connection age  h2_addrs.c    address lists, the connect walk
 *
 * Other threads only allocate a token (atomic counter) and post a command to the loop's
 * queue; the loop thread owns every connection, stream and nghttp2 session.
 */
#define _GNU_SOURCE
#include "h2shim.h"
#include "h2_conn.h"
#include "h2_addrs.h"
#include "h2_framing.h"
#include "h2_loop.h"
#include "h2_mem.h"
#include "h2_net.h"
#include "h2_session.h"
#include "h2_tls.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

void h2_config_init(h2_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->max_recv_message = 4u << 20;
    cfg->max_concurrent_streams = 1000;
    cfg->initial_window = 1u << 20;
    cfg->connection_window = 16u << 20;
    cfg->max_frame_size = 16384;
    cfg->max_header_list_size = H2_DEFAULT_MAX_HEADER_LIST;
    cfg->max_header_count = H2_DEFAULT_MAX_HEADER_COUNT;
    cfg->rst_burst = H2_DEFAULT_RST_BURST;
    cfg->rst_rate = H2_DEFAULT_RST_RATE;
    /* connection limits (max_connections 0: derived from RLIMIT_NOFILE at h2_loop_create) */
    cfg->max_connections_per_addr = 1000;
    cfg->handshake_timeout_ms = 10000;
    cfg->idle_timeout_ms = 300000;
    cfg->max_partial_bytes = 64u << 20;
    cfg->max_partial_bytes_per_conn = 8u << 20;
    cfg->max_unsent_per_conn = 16u << 20;
    cfg->max_unsent = 64u << 20;
    /* keepalive and lifetimes */
    cfg->keepalive_time_ms = H2_DEFAULT_KEEPALIVE_TIME_MS;
    cfg->keepalive_timeout_ms = H2_DEFAULT_KEEPALIVE_TIMEOUT_MS;
    cfg->min_ping_interval_ms = H2_DEFAULT_MIN_PING_INTERVAL_MS;
    cfg->connect_timeout_ms = H2_DEFAULT_CONNECT_TIMEOUT_MS;
}

h2_loop *h2_loop_create(const h2_config *cfg, const h2_callbacks *cb)
{
    h2_loop *L = h2_calloc(1, sizeof *L);
    if (!L) {
        errno = ENOMEM;
        return NULL;
    }
    if (cfg)
        L->cfg = *cfg;
    else
        h2_config_init(&L->cfg);
    if (cb) L->cb = *cb;
    /* Clamp to what HTTP/2 allows. */
    if (L->cfg.initial_window > NGHTTP2_MAX_WINDOW_SIZE) L->cfg.initial_window = NGHTTP2_MAX_WINDOW_SIZE;
    if (L->cfg.connection_window > NGHTTP2_MAX_WINDOW_SIZE) L->cfg.connection_window = NGHTTP2_MAX_WINDOW_SIZE;
    if (L->cfg.max_frame_size < 16384) L->cfg.max_frame_size = 16384;
    if (L->cfg.max_frame_size > 16777215) L->cfg.max_frame_size = 16777215;
    if (L->cfg.max_recv_message > UINT32_MAX) L->cfg.max_recv_message = UINT32_MAX;
    /* Stream and header limits: 0 = the default; the header list at most H2_MAX_HEADER_BYTES. */
    if (L->cfg.max_header_list_size == 0) L->cfg.max_header_list_size = H2_DEFAULT_MAX_HEADER_LIST;
    if (L->cfg.max_header_list_size > H2_MAX_HEADER_BYTES) L->cfg.max_header_list_size = H2_MAX_HEADER_BYTES;
    if (L->cfg.max_header_count == 0) L->cfg.max_header_count = H2_DEFAULT_MAX_HEADER_COUNT;
    if (L->cfg.rst_burst == 0) L->cfg.rst_burst = H2_DEFAULT_RST_BURST;
    if (L->cfg.rst_rate == 0) L->cfg.rst_rate = H2_DEFAULT_RST_RATE;
    int e = h2_loop_init(L);
    if (e != 0) {
        h2_free(L);
        errno = e;
        return NULL;
    }
    return L;
}

/* Posts a control command, or frees it if the loop is stopped. Returns 0 or -1. */
static int post_or_free(h2_loop *L, h2_ctl_cmd *c)
{
    if (h2_loop_post(L, &c->head) == 0) return 0;
    h2_free(c);
    return -1;
}

/* h2_listen, with TLS when `tls` is set (the listener gets a reference). */
static int listen_with(h2_loop *loop, const char *host, uint16_t port, h2_tls_ctx *tls, uint16_t *bound_port)
{
    int fd = h2_net_listen(host, port, (int)loop->cfg.reuse_port, bound_port);
    if (fd < 0) return fd;
    h2_ctl_cmd *c = h2_ctl_new(H2_CMD_LISTEN, 0, 0);
    if (!c) {
        close(fd);
        return -ENOMEM;
    }
    c->u.listen.fd = fd;
    if (tls) h2_tls_ref(tls);
    c->u.listen.tls = tls;
    if (h2_loop_post(loop, &c->head) != 0) {
        h2_cmd_free(loop, &c->head);
        close(fd);
        return -ESHUTDOWN;
    }
    return 0;
}

int h2_listen(h2_loop *loop, const char *host, uint16_t port, uint16_t *bound_port)
{
    return listen_with(loop, host, port, NULL, bound_port);
}

int h2_listen_tls(h2_loop *loop, const char *host, uint16_t port, h2_tls_ctx *tls, uint16_t *bound_port)
{
    if (!tls) return -EINVAL;
    return listen_with(loop, host, port, tls, bound_port);
}

int h2_loop_set_log(h2_loop *loop, h2_log_fn fn, void *ctx)
{
    pthread_mutex_lock(&loop->shared.lock);
    bool started = loop->shared.started;
    pthread_mutex_unlock(&loop->shared.lock);
    if (started) return -EINVAL;
    loop->log_fn = fn;
    loop->log_ctx = ctx;
    return 0;
}

int h2_loop_share_limits(h2_loop *loop, h2_loop *with)
{
    pthread_mutex_lock(&loop->shared.lock);
    bool started = loop->shared.started;
    pthread_mutex_unlock(&loop->shared.lock);
    if (started) return -EINVAL;
    if (loop == with || loop->lim == with->lim) return 0;
    h2_connlim_ref(with->lim);
    h2_connlim_unref(loop->lim);
    loop->lim = with->lim;
    return 0;
}

int h2_loop_start(h2_loop *loop)
{
    pthread_mutex_lock(&loop->shared.lock);
    bool bad = loop->shared.started || loop->shared.stopped;
    loop->shared.started = true;
    pthread_mutex_unlock(&loop->shared.lock);
    if (bad) return -EINVAL;
    int rv = h2_loop_start_thread(loop);
    if (rv != 0) {
        pthread_mutex_lock(&loop->shared.lock);
        loop->shared.started = false;
        pthread_mutex_unlock(&loop->shared.lock);
        return -rv;
    }
    return 0;
}

void h2_loop_goaway(h2_loop *loop)
{
    h2_ctl_cmd *c = h2_ctl_new(H2_CMD_GOAWAY, 0, 0);
    if (c) (void)post_or_free(loop, c);
}

void h2_loop_stop(h2_loop *L)
{
    pthread_mutex_lock(&L->shared.lock);
    bool already = L->shared.stopped, started = L->shared.started;
    L->shared.stopped = true;
    pthread_mutex_unlock(&L->shared.lock);
    if (already) return;
    if (started) {
        atomic_store_explicit(&L->stop_flag, true, memory_order_release);
        /* From a callback: the loop ends after this iteration and tears itself down. */
        if (h2_loop_on_thread(L)) {
            L->local.teardown_on_exit = true;
            return;
        }
        h2_loop_join(L);
    }
    h2_loop_teardown(L);
}

void h2_loop_destroy(h2_loop *L)
{
    if (!L) return;
    h2_loop_stop(L);
    if (h2_loop_on_thread(L)) {
        /* The owner is gone: no callback may reach it again. The thread finishes its
         * iteration, then tears down and frees the loop (see loop_main). */
        memset(&L->cb, 0, sizeof L->cb);
        L->local.free_on_exit = true;
        L->local.joined = true;
        pthread_detach(L->thread);
        return;
    }
    if (L->shared.started) h2_loop_join(L); /* stopped from a callback earlier: let it finish first */
    h2_loop_release(L);
}

/* A connect command (H2_CMD_CONNECT_PENDING) for a new connection token,
 * carrying a reference to `tls` and a copy of `name` when `tls` is set. NULL: errno ENOMEM. */
static h2_ctl_cmd *connect_cmd(h2_loop *loop, int kind, h2_tls_ctx *tls, const char *name)
{
    size_t namelen = tls && name ? strlen(name) + 1 : 0;
    h2_ctl_cmd *c = h2_ctl_new(kind, h2_loop_new_id(loop), namelen);
    if (!c) {
        errno = ENOMEM;
        return NULL;
    }
    if (tls) {
        h2_tls_ref(tls);
        c->u.connect.tls = tls;
        if (namelen) c->u.connect.name = memcpy(h2_ctl_extra(c), name, namelen);
    }
    return c;
}

/* Posts a connect command; its connection token, or 0 (errno ESHUTDOWN) if the loop stopped. */
static h2_id post_connect(h2_loop *loop, h2_ctl_cmd *c)
{
    h2_id id = c->head.id;
    if (h2_loop_post(loop, &c->head) != 0) {
        h2_cmd_free(loop, &c->head);
        errno = ESHUTDOWN;
        return 0;
    }
    return id;
}

/* A pending connection (over TLS when `tls` is set) handed `addrs` at once. Takes `addrs`. */
static h2_id connect_walk(h2_loop *loop, h2_addrs *addrs, h2_tls_ctx *tls, const char *name)
{
    h2_ctl_cmd *c = connect_cmd(loop, H2_CMD_CONNECT_PENDING, tls, name);
    h2_id id = c ? post_connect(loop, c) : 0;
    if (id == 0) {
        int e = errno;
        h2_addrs_free(addrs);
        errno = e;
        return 0;
    }
    h2_connect_addrs(loop, id, addrs, 0);
    return id;
}

/* h2_connect, over TLS when `tls` is set (verifying `name`): resolved here, then the address
 * walk of h2_connect_addrs, like any pending connection. */
static h2_id connect_with(h2_loop *loop, const char *host, uint16_t port, h2_tls_ctx *tls, const char *name)
{
    int err = 0;
    h2_addrs *addrs = h2_resolve(host, port, &err);
    if (!addrs) {
        errno = err;
        return 0;
    }
    return connect_walk(loop, addrs, tls, name);
}

size_t h2_conn_peer(h2_loop *loop, h2_id conn, char *buf, size_t cap)
{
    if (cap == 0) return 0;
    buf[0] = 0;
    int *kind = h2_map_get(&loop->local.map, conn);
    if (!kind || *kind != H2_OBJ_CONN) return 0;
    h2_conn *c = (h2_conn *)kind;
    if (c->is_client || c->dead) return 0;
    size_t n = strnlen(c->peer_name, sizeof c->peer_name);
    if (n >= cap) n = cap - 1;
    memcpy(buf, c->peer_name, n);
    buf[n] = 0;
    return n;
}

h2_id h2_connect(h2_loop *loop, const char *host, uint16_t port) { return connect_with(loop, host, port, NULL, NULL); }

h2_id h2_connect_tls(h2_loop *loop, const char *host, uint16_t port, h2_tls_ctx *tls, const char *server_name)
{
    if (!tls) {
        errno = EINVAL;
        return 0;
    }
    return connect_with(loop, host, port, tls, server_name ? server_name : host);
}

h2_id h2_connect_pending(h2_loop *loop) { return h2_connect_pending_tls(loop, NULL, NULL); }

h2_id h2_connect_pending_tls(h2_loop *loop, h2_tls_ctx *tls, const char *server_name)
{
    h2_ctl_cmd *c = connect_cmd(loop, H2_CMD_CONNECT_PENDING, tls, server_name);
    return c ? post_connect(loop, c) : 0;
}

void h2_connect_addrs(h2_loop *loop, h2_id conn, h2_addrs *addrs, int err)
{
    h2_ctl_cmd *c = h2_ctl_new(H2_CMD_CONNECT_ADDRS, conn, 0);
    if (!c) {
        h2_addrs_free(addrs);
        h2_conn_close(loop, conn); /* out of memory: fail it rather than leave it pending */
        return;
    }
    c->u.addrs.addrs = addrs;
    c->u.addrs.err = err;
    if (post_or_free(loop, c) != 0) h2_addrs_free(addrs);
}

h2_id h2_connect_unix(h2_loop *loop, const char *path)
{
    int err = 0;
    h2_addrs *a = h2_addrs_unix(path, &err);
    if (!a) {
        errno = err;
        return 0;
    }
    return connect_walk(loop, a, NULL, NULL);
}

int h2_listen_unix(h2_loop *loop, const char *path)
{
    int fd = h2_net_listen_unix(path);
    if (fd < 0) return fd;
    h2_ctl_cmd *c = h2_ctl_new(H2_CMD_LISTEN, 0, 0);
    if (!c) {
        close(fd);
        return -ENOMEM;
    }
    c->u.listen.fd = fd;
    if (post_or_free(loop, c) != 0) {
        close(fd);
        return -ESHUTDOWN;
    }
    return 0;
}

void h2_conn_close(h2_loop *loop, h2_id conn)
{
    h2_ctl_cmd *c = h2_ctl_new(H2_CMD_CLOSE_CONN, conn, 0);
    if (c) (void)post_or_free(loop, c);
}

h2_id h2_open_stream(h2_loop *loop, h2_id conn, void *user, const h2_nv *headers, size_t nheaders)
{
    h2_id id = h2_loop_new_id(loop);
    h2_ctl_cmd *c = h2_ctl_new(H2_CMD_OPEN, id, h2_nv_bytes(headers, nheaders));
    if (c) {
        nghttp2_nv *nv = (nghttp2_nv *)(void *)h2_ctl_extra(c);
        h2_nv_copy(nv, headers, nheaders, (uint8_t *)(nv + nheaders));
        c->u.open.conn = conn;
        c->u.open.user = user;
        c->u.open.hdrs = nheaders ? nv : NULL;
        c->u.open.nhdrs = nheaders;
        if (post_or_free(loop, c) == 0) return id;
    }
    /* on_close is guaranteed: report the refusal right here (the caller's thread). */
    if (loop->cb.on_close) loop->cb.on_close(loop->cb.ctx, user, H2_CLOSE_REFUSED);
    return 0;
}

/* Posts a send command, or frees it if the loop is stopped. Returns 0 or -1. */
static int post_send(h2_loop *L, h2_msgbuf *b)
{
    if (h2_loop_post(L, &b->cmd) == 0) return 0;
    h2_msgbuf_put(&L->pool, b);
    return -1;
}

int h2_send(h2_loop *loop, h2_id stream, const h2_nv *headers, size_t nheaders, int has_msg, const uint8_t *msg,
            size_t msglen, const h2_nv *trailers, size_t ntrailers, int flags)
{
    if (has_msg && msglen > UINT32_MAX) {
        h2_loop_doom_stream(loop, stream);
        errno = EMSGSIZE;
        return -1;
    }
    /* One block: both nv arrays first (pointer alignment), their strings, the framed message. */
    size_t hb = h2_nv_bytes(headers, nheaders), tb = h2_nv_bytes(trailers, ntrailers);
    size_t mb = has_msg ? msglen + H2_GRPC_PREFIX_LEN : 0;
    h2_msgbuf *b = h2_msgbuf_get(&loop->pool, hb + tb + mb);
    if (!b) { /* the call must not wait for what was never sent */
        h2_loop_doom_stream(loop, stream);
        errno = ENOMEM;
        return -1;
    }
    b->cmd.id = stream;
    b->flags = flags;
    uint8_t *p = h2_msgbuf_data(b);
    nghttp2_nv *ha = (nghttp2_nv *)(void *)p;
    nghttp2_nv *ta = ha + nheaders;
    uint8_t *s = (uint8_t *)(ta + ntrailers);
    s = h2_nv_copy(ha, headers, nheaders, s);
    s = h2_nv_copy(ta, trailers, ntrailers, s);
    b->hdrs = nheaders ? ha : NULL;
    b->nhdrs = nheaders;
    b->trls = ntrailers ? ta : NULL;
    b->ntrls = ntrailers;
    if (has_msg) {
        h2_grpc_write_prefix(s, flags & H2_SEND_COMPRESSED, msglen);
        if (msglen) memcpy(s + H2_GRPC_PREFIX_LEN, msg, msglen);
        b->msg = s;
        b->msg_len = mb;
    }
    return post_send(loop, b);
}

uint8_t *h2_buf_alloc(h2_loop *loop, size_t len)
{
    if (len > UINT32_MAX) {
        errno = EMSGSIZE;
        return NULL;
    }
    h2_msgbuf *b = h2_msgbuf_get(&loop->pool, len + H2_GRPC_PREFIX_LEN);
    if (!b) {
        errno = ENOMEM;
        return NULL;
    }
    return h2_msgbuf_data(b) + H2_GRPC_PREFIX_LEN;
}

static inline h2_msgbuf *buf_of(uint8_t *payload) { return h2_msgbuf_from_data(payload - H2_GRPC_PREFIX_LEN); }

int h2_send_buf(h2_loop *loop, h2_id stream, uint8_t *buf, size_t len, int flags)
{
    if (!buf) {
        h2_loop_doom_stream(loop, stream);
        return -1;
    }
    h2_msgbuf *b = buf_of(buf);
    if (len > b->cap - H2_GRPC_PREFIX_LEN) {
        h2_msgbuf_put(&loop->pool, b);
        h2_loop_doom_stream(loop, stream);
        errno = EMSGSIZE;
        return -1;
    }
    b->msg = h2_msgbuf_data(b);
    h2_grpc_write_prefix(b->msg, flags & H2_SEND_COMPRESSED, len);
    b->msg_len = len + H2_GRPC_PREFIX_LEN;
    b->cmd.id = stream;
    b->flags = flags;
    return post_send(loop, b);
}

void h2_buf_free(h2_loop *loop, uint8_t *buf)
{
    if (buf) h2_msgbuf_put(&loop->pool, buf_of(buf));
}

void h2_reset(h2_loop *loop, h2_id stream, uint32_t error_code)
{
    h2_ctl_cmd *c = h2_ctl_new(H2_CMD_RESET, stream, 0);
    if (!c) {
        h2_loop_doom_stream(loop, stream); /* reset all the same, as INTERNAL_ERROR */
        return;
    }
    c->u.reset.code = error_code;
    (void)post_or_free(loop, c);
}

void h2_consume(h2_loop *loop, h2_id stream, size_t bytes)
{
    if (bytes == 0) return;
    h2_ctl_cmd *c = h2_ctl_new(H2_CMD_CONSUME, stream, 0);
    if (!c) { /* the window would stay closed for good: end the stream instead */
        h2_loop_doom_stream(loop, stream);
        return;
    }
    c->u.consume.bytes = bytes;
    (void)post_or_free(loop, c);
}

int h2_loop_run(h2_loop *loop, h2_run_fn fn, void *ctx, void *arg)
{
    h2_ctl_cmd *c = h2_ctl_new(H2_CMD_RUN, 0, 0);
    if (!c) return -1;
    c->u.run.fn = fn;
    c->u.run.ctx = ctx;
    c->u.run.arg = arg;
    return post_or_free(loop, c);
}

void h2_loop_stats(h2_loop *L, h2_stats *out)
{
    out->connections = atomic_load_explicit(&L->st.connections, memory_order_relaxed);
    out->streams = atomic_load_explicit(&L->st.streams, memory_order_relaxed);
    out->inbound_buffered = atomic_load_explicit(&L->st.inbound, memory_order_relaxed);
    out->outbound_buffered = atomic_load_explicit(&L->st.outbound, memory_order_relaxed);
    out->streams_total = atomic_load_explicit(&L->st.streams_total, memory_order_relaxed);
    out->pooled = atomic_load_explicit(&L->pool.pooled, memory_order_relaxed);
    out->conns_rejected = atomic_load_explicit(&L->st.conns_rejected, memory_order_relaxed);
    out->conns_shed = atomic_load_explicit(&L->st.conns_shed, memory_order_relaxed);
    out->handshake_timeouts = atomic_load_explicit(&L->st.handshake_timeouts, memory_order_relaxed);
    out->idle_goaways = atomic_load_explicit(&L->st.idle_goaways, memory_order_relaxed);
    out->accept_pauses = atomic_load_explicit(&L->st.accept_pauses, memory_order_relaxed);
    out->assembling_waits = atomic_load_explicit(&L->st.assembling_waits, memory_order_relaxed);
    out->assembling_busy = atomic_load_explicit(&L->st.assembling_busy, memory_order_relaxed);
    out->keepalive_pings = atomic_load_explicit(&L->st.keepalive_pings, memory_order_relaxed);
    out->keepalive_timeouts = atomic_load_explicit(&L->st.keepalive_timeouts, memory_order_relaxed);
    out->ping_strike_goaways = atomic_load_explicit(&L->st.ping_strike_goaways, memory_order_relaxed);
    out->age_goaways = atomic_load_explicit(&L->st.age_goaways, memory_order_relaxed);
}
