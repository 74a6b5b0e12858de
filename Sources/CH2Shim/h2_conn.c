/* Connections: lifecycle, reading into nghttp2, flushing nghttp2's output, accepting. */
#define _GNU_SOURCE
#include "h2_conn.h"
#include "h2_addrs.h"
#include "h2_connlim.h"
#include "h2_linger.h"
#include "h2_loop.h"
#include "h2_mem.h"
#include "h2_net.h"
#include "h2_session.h"
#include "h2_tls.h"

#include <arpa/inet.h>
#include <stdio.h>

#include <errno.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

void h2_conn_mark(h2_conn *c)
{
    if (c->dirty || c->dead) return;
    h2_loop *L = c->loop;
    c->dirty = true;
    c->dirty_next = L->local.dirty;
    L->local.dirty = c;
}

int h2_conn_epoll(h2_conn *c, int op, uint32_t ev)
{
    struct epoll_event e = {.events = ev, .data.ptr = c};
    return epoll_ctl(c->loop->epfd, op, c->fd, &e);
}

void h2_conn_check(h2_conn *c, int rv)
{
    if (rv != 0 && nghttp2_is_fatal(rv)) h2_conn_close_now(c, EPROTO, H2_CLOSE_CONN_LOST, false);
}

h2_conn *h2_conn_new(h2_loop *L, h2_id id, int fd, bool is_client)
{
    h2_conn *c = h2_calloc(1, sizeof *c);
    if (!c) return NULL;
    c->kind = H2_OBJ_CONN;
    c->id = id;
    c->loop = L;
    c->fd = fd;
    c->is_client = is_client;
    h2_outq_init(&c->out, &L->pool);
    if (h2_session_setup(c) != 0 || h2_map_put(&L->local.map, id, c) != 0) {
        if (c->sess) nghttp2_session_del(c->sess);
        h2_free(c);
        return NULL;
    }
    c->next = L->local.conns;
    if (L->local.conns) L->local.conns->prev = c;
    L->local.conns = c;
    LSTAT_ADD(L, connections, 1);
    h2_ka_start(&c->ka, L->local.now, is_client ? 0 : L->cfg.max_connection_age_ms, id ^ (uint64_t)L->local.now);
    h2_loop_arm_tick(L);
    if (!is_client) {
        h2_conntimer_start(&c->timer, L->local.now);
        L->local.nserver++;
    }
    return c;
}

void h2_conn_close_now(h2_conn *c, int err, uint32_t stream_code, bool failed)
{
    if (c->dead) return;
    h2_loop *L = c->loop;
    c->dead = true;
    if (c->ssl) h2_tls_session_free(c->ssl, c->tls_broken || err != 0);
    c->ssl = NULL;
    h2_tls_release(c->tls);
    c->tls = NULL;
    bool linger = c->linger && c->fd >= 0; /* the socket closes last, or later (h2_linger.h) */
    if (c->fd >= 0 && !linger) close(c->fd);
    if (!linger) c->fd = -1;
    /* A failed connect is reported before its streams close, so the application can tell
     * them why (the errno). */
    if (failed && L->cb.on_conn) L->cb.on_conn(L->cb.ctx, c->id, H2_CONN_FAILED, err);
    while (c->streams) h2_stream_finish(c->streams, stream_code);
    if (c->sess) nghttp2_session_del(c->sess);
    c->sess = NULL;
    h2_map_del(&L->local.map, c->id);
    if (c->prev)
        c->prev->next = c->next;
    else
        L->local.conns = c->next;
    if (c->next) c->next->prev = c->prev;
    LSTAT_SUB(L, connections, 1);
    if (!c->is_client) L->local.nserver--;
    if (linger && !h2_linger_start(c)) {
        close(c->fd);
        c->fd = -1;
        linger = false;
    }
    /* A lingering socket keeps its place in the caps until it closes (h2_linger.c). */
    if (c->lim_counted && !linger) h2_connlim_release(L->lim, c->peer);
    if (!linger) c->lim_counted = false;
    if (c->is_client && !failed && L->cb.on_conn) L->cb.on_conn(L->cb.ctx, c->id, H2_CONN_CLOSED, err);
    if (linger) return; /* freed when the socket closes */
    c->dead_next = L->local.dead;
    L->local.dead = c;
}

void h2_conn_close_lingering(h2_conn *c, int err, uint32_t stream_code, bool failed)
{
    c->linger = true;
    h2_conn_close_now(c, err, stream_code, failed);
}

void h2_conn_free(h2_conn *c)
{
    h2_outq_free(&c->out);
    h2_addrs_free(c->addrs);
    h2_free(c->tls_name);
    h2_free(c->hdr_arena);
    h2_free(c->hdr_nv);
    h2_free(c);
}

/* A connection without streams and with its output written keeps no buffers (issue 13: an
 * idle connection's RSS): its next call allocates them again, a few mallocs per burst. The
 * header arena only between header blocks (hdr_n == 0: none is being received). */
static void h2_conn_release_idle(h2_conn *c)
{
    h2_outq_release(&c->out);
    if (c->hdr_n == 0) {
        h2_free(c->hdr_arena);
        h2_free(c->hdr_nv);
        c->hdr_arena = NULL;
        c->hdr_nv = NULL;
        c->hdr_arena_len = c->hdr_arena_cap = c->hdr_nv_cap = 0;
    }
}

static ssize_t sock_writev(void *ctx, const struct iovec *iov, int n)
{
    struct msghdr mh = {.msg_iov = (struct iovec *)(uintptr_t)iov, .msg_iovlen = (size_t)n};
    return sendmsg(*(int *)ctx, &mh, MSG_NOSIGNAL);
}

/* One flush per touched connection and iteration: pull frames from nghttp2 (copies, large
 * DATA payloads by reference), write them with one sendmsg. A socket that would block
 * keeps the rest and waits for EPOLLOUT; nghttp2 is not asked for more until the output
 * drained (bounded memory). */
void h2_conn_flush(h2_conn *c)
{
    if (c->dead || c->connecting || c->tls_hs) return;
    for (;;) {
        if (h2_outq_pending(&c->out)) {
            int r = c->ssl ? h2_outq_write(&c->out, h2_tls_writev, c->ssl) : h2_outq_write(&c->out, sock_writev, &c->fd);
            if (r < 0) {
                if (c->ssl) c->tls_broken = true;
                h2_conn_close_now(c, -r, H2_CLOSE_CONN_LOST, false);
                return;
            }
            if (r == 0) break;
        }
        h2_outq_reset(&c->out);
        c->smem.used = true; /* nghttp2 may pack frames into its frame buffer now */
        while (!h2_outq_full(&c->out)) {
            const uint8_t *p;
            ssize_t n = nghttp2_session_mem_send(c->sess, &p);
            if (n < 0) {
                h2_conn_close_now(c, n == NGHTTP2_ERR_CALLBACK_FAILURE ? ENOMEM : EPROTO, H2_CLOSE_CONN_LOST, false);
                return;
            }
            if (n == 0) break; /* nothing more, or send_data_cb paused with enough queued */
            if (h2_outq_copy(&c->out, p, (size_t)n) != 0) {
                h2_conn_close_now(c, ENOMEM, H2_CLOSE_CONN_LOST, false);
                return;
            }
        }
        if (c->out.queued_bytes == 0) break;
    }
    bool pending = h2_outq_pending(&c->out);
    if (pending != c->want_out) {
        if (h2_conn_epoll(c, EPOLL_CTL_MOD, EPOLLIN | (pending ? EPOLLOUT : 0)) != 0) {
            h2_conn_close_now(c, errno, H2_CLOSE_CONN_LOST, false);
            return;
        }
        c->want_out = pending;
    }
    if (!pending) {
        h2_outq_shrink(&c->out); /* after a burst */
        if (!c->streams) h2_conn_release_idle(c);
        if (c->close_when_flushed) {
            h2_conn_close_lingering(c, ECONNRESET, H2_CLOSE_CONN_LOST, false);
            return;
        }
        /* GOAWAY done both ways and nothing in flight: nghttp2 is finished with it. (After
         * an idle GOAWAY the tick closes it after the grace, or the peer does first.) */
        if (c->timer.phase != H2_CT_GOAWAY && !nghttp2_session_want_read(c->sess) &&
            !nghttp2_session_want_write(c->sess))
            h2_conn_close_lingering(c, 0, H2_CLOSE_CONN_LOST, false); /* after a GOAWAY of ours, maybe */
    }
}

/* "address:port" of the peer (for log lines). */
static void conn_peer(h2_conn *c, char *buf, size_t len)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    char a[INET6_ADDRSTRLEN] = "";
    unsigned port = 0;
    if (c->fd >= 0 && getpeername(c->fd, (struct sockaddr *)&ss, &sl) == 0) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        if (ss.ss_family == AF_INET6 && IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) { /* a dual-stack listener's IPv4 peer */
            inet_ntop(AF_INET, &s6->sin6_addr.s6_addr[12], a, sizeof a);
            port = ntohs(s6->sin6_port);
        } else if (ss.ss_family == AF_INET6) {
            inet_ntop(AF_INET6, &s6->sin6_addr, a, sizeof a);
            port = ntohs(s6->sin6_port);
            snprintf(buf, len, "[%s]:%u", a, port);
            return;
        }
        if (ss.ss_family == AF_INET) {
            struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
            inet_ntop(AF_INET, &s4->sin_addr, a, sizeof a);
            port = ntohs(s4->sin_port);
        }
    }
    if (a[0])
        snprintf(buf, len, "%s:%u", a, port);
    else /* the socket is gone already (a reset) */
        snprintf(buf, len, "%s", c->is_client ? "the server" : "the client");
}

/* A TLS failure: logged with the peer's address, then the connection closes. */
static void conn_tls_fail(h2_conn *c, const char *what, const char *reason, bool broken)
{
    char peer[INET6_ADDRSTRLEN + 10];
    conn_peer(c, peer, sizeof peer);
    h2_loop_log(c->loop, c->id, "TLS %s %s %s: %s; connection closed", what, c->is_client ? "to" : "from", peer,
                reason);
    c->tls_broken = broken;
    /* A client whose handshake failed never connected: FAILED, as for a refused connect. The
     * socket lingers so the peer reads our alert (h2_linger.h). */
    h2_conn_close_lingering(c, EPROTO, H2_CLOSE_CONN_LOST, c->is_client && c->tls_hs);
}

/* Reads up to len bytes: >0 bytes, 0 the peer closed, -EAGAIN nothing now, other -errno. */
static ssize_t conn_recv(h2_conn *c, uint8_t *buf, size_t len)
{
    if (c->ssl) {
        char err[256] = "";
        ssize_t n = h2_tls_read(c->ssl, buf, len, err, sizeof err);
        if (n == -EPROTO) { /* a TLS error (a socket error closes quietly, as in cleartext) */
            conn_tls_fail(c, "error on the connection", err, true);
            return -EPROTO;
        }
        if (n < 0 && n != -EAGAIN) c->tls_broken = true;
        return n;
    }
    ssize_t n;
    do n = recv(c->fd, buf, len, 0);
    while (n < 0 && errno == EINTR);
    if (n < 0) return (errno == EAGAIN || errno == EWOULDBLOCK) ? -EAGAIN : -errno;
    return n;
}

static void conn_read(h2_conn *c)
{
    h2_loop *L = c->loop;
    uint8_t *rbuf = L->local.rbuf;
    /* Cleartext: a bounded batch (level-triggered epoll brings the rest). TLS: until it would
     * block, since OpenSSL may hold decrypted bytes the socket no longer signals (read-ahead);
     * what a peer can make us read is bounded by the flow-control windows. */
    for (int i = 0; (c->ssl || i < 4) && !c->dead; i++) {
        ssize_t n = conn_recv(c, rbuf, H2_READ_BUF);
        if (n == -EAGAIN || c->dead) return;
        if (n < 0) {
            h2_conn_close_now(c, (int)-n, H2_CLOSE_CONN_LOST, false);
            return;
        }
        if (n == 0) {
            h2_conn_close_now(c, 0, H2_CLOSE_CONN_LOST, false);
            return;
        }
        ssize_t rv = nghttp2_session_mem_recv(c->sess, rbuf, (size_t)n);
        if (rv < 0) {
            /* Malformed input or a flood: nghttp2 may have queued a GOAWAY; try to push
             * it out once, then drop the connection. */
            const uint8_t *p;
            ssize_t k = nghttp2_session_mem_send(c->sess, &p);
            if (k > 0) {
                struct iovec iov = {.iov_base = (void *)(uintptr_t)p, .iov_len = (size_t)k};
                (void)(c->ssl ? h2_tls_writev(c->ssl, &iov, 1) : send(c->fd, p, (size_t)k, MSG_NOSIGNAL | MSG_DONTWAIT));
            }
            h2_conn_close_lingering(c, EPROTO, H2_CLOSE_CONN_LOST, false);
            return;
        }
        if (c->timer.phase == H2_CT_HANDSHAKE) (void)h2_conntimer_feed(&c->timer, rbuf, (size_t)n, L->local.now);
        h2_ka_read(&c->ka, L->local.now);
        h2_conn_mark(c);
        if (!c->ssl && (size_t)n < H2_READ_BUF) return; /* drained for now */
    }
}

/* One TLS handshake step: waits for the socket as OpenSSL asks; once done (with ALPN h2) the
 * connection goes on as HTTP/2 (our SETTINGS are flushed, a client reports CONNECTED). */
static void conn_tls_handshake(h2_conn *c)
{
    char err[320] = "";
    int r = h2_tls_handshake(c->ssl, err, sizeof err);
    if (r == H2_TLS_FAILED) {
        conn_tls_fail(c, "handshake", err, true);
        return;
    }
    bool out = r == H2_TLS_WANT_WRITE;
    if (r == H2_TLS_DONE) {
        c->tls_hs = false;
        out = false;
    }
    if (out != c->want_out) {
        if (h2_conn_epoll(c, EPOLL_CTL_MOD, EPOLLIN | (out ? EPOLLOUT : 0)) != 0) {
            h2_conn_close_now(c, errno, H2_CLOSE_CONN_LOST, c->is_client);
            return;
        }
        c->want_out = out;
    }
    if (r != H2_TLS_DONE) return;
    h2_loop *L = c->loop;
    if (c->is_client && L->cb.on_conn) L->cb.on_conn(L->cb.ctx, c->id, H2_CONN_CONNECTED, 0);
    if (c->dead) return;
    h2_conn_mark(c);
    conn_read(c); /* application data may have come with the last handshake flight */
}

int h2_conn_start_tls(h2_conn *c, h2_tls_ctx *tls, const char *server_name)
{
    char err[320] = "";
    c->ssl = h2_tls_session(tls, c->fd, server_name, err, sizeof err);
    if (!c->ssl) {
        h2_loop_log(c->loop, c->id, "TLS setup failed: %s", err);
        return -1;
    }
    h2_tls_ref(tls);
    c->tls = tls;
    c->tls_hs = true;
    return 0;
}

void h2_conn_connected(h2_conn *c)
{
    int err = 0;
    socklen_t sl = sizeof err;
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &sl) != 0) err = errno;
    if (err) {
        if (!h2_conn_retry(c, err)) h2_conn_close_now(c, err, H2_CLOSE_CONN_LOST, true);
        return;
    }
    c->connecting = false;
    c->connect_deadline = 0;
    h2_ka_read(&c->ka, c->loop->local.now); /* the keepalive clock starts now */
    if (h2_conn_epoll(c, EPOLL_CTL_MOD, EPOLLIN) != 0) {
        h2_conn_close_now(c, errno, H2_CLOSE_CONN_LOST, true);
        return;
    }
    c->want_out = false;
    if (c->tls && !c->ssl) { /* h2_connect_pending_tls: the session goes on the socket that connected */
        char err[320] = "";
        c->ssl = h2_tls_session(c->tls, c->fd, c->tls_name, err, sizeof err);
        if (!c->ssl) {
            h2_loop_log(c->loop, c->id, "TLS setup failed: %s", err);
            h2_conn_close_now(c, ENOMEM, H2_CLOSE_CONN_LOST, true);
            return;
        }
        c->tls_hs = true;
    }
    if (c->ssl) {
        conn_tls_handshake(c); /* CONNECTED once it is done */
        return;
    }
    h2_loop *L = c->loop;
    if (L->cb.on_conn) L->cb.on_conn(L->cb.ctx, c->id, H2_CONN_CONNECTED, 0);
    h2_conn_mark(c);
}

void h2_conn_event(h2_conn *c, uint32_t ev)
{
    if (c->lingering) {
        h2_linger_event(c);
        return;
    }
    if (c->dead) return;
    if (c->connecting) {
        if (ev & (EPOLLOUT | EPOLLERR | EPOLLHUP)) h2_conn_connected(c);
        return;
    }
    if (c->tls_hs) {
        conn_tls_handshake(c);
        return;
    }
    if (ev & (EPOLLIN | EPOLLERR | EPOLLHUP)) conn_read(c);
    if (!c->dead && (ev & EPOLLOUT)) h2_conn_mark(c);
}

#define H2_ACCEPT_BATCH 128 /* accepts per listener event; level-triggered epoll brings the rest */

/* accept failed with `err`. At the fd limit (EMFILE, ENFILE) the reserved fd is closed so
 * that what waits in the listen queue can be accepted and closed at once (the peers see a
 * reset instead of hanging in the queue), then taken again. Either way the listeners pause
 * for H2_ACCEPT_BACKOFF_MS: a listener whose queue is not empty stays readable, and polling
 * it would spin the loop. */
static void accept_failed(h2_loop *L, h2_listener *ls, int err)
{
    h2_loop_local *lo = &L->local;
    if ((err == EMFILE || err == ENFILE) && lo->reserve_fd >= 0) {
        close(lo->reserve_fd);
        lo->reserve_fd = -1;
        for (int i = 0; i < H2_ACCEPT_BATCH; i++) {
            int fd = accept4(ls->fd, NULL, NULL, SOCK_CLOEXEC);
            if (fd < 0) {
                if (errno == EINTR || errno == ECONNABORTED) continue;
                break;
            }
            LSTAT_ADD(L, conns_shed, 1); /* counted first: the peer may look as soon as it is closed */
            h2_net_reject(fd);
        }
        lo->reserve_fd = h2_net_reserve_fd(); /* -1 if another thread took the fd: retried on resume */
    }
    LSTAT_ADD(L, accept_pauses, 1);
    h2_loop_pause_accept(L);
}

void h2_accept_all(h2_loop *L, h2_listener *ls)
{
    for (int i = 0; i < H2_ACCEPT_BATCH; i++) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        int fd = accept4(ls->fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK) accept_failed(L, ls, errno);
            return;
        }
        h2_peer *peer = NULL;
        if (h2_connlim_acquire(L->lim, (struct sockaddr *)&ss, sl, &peer) != H2_LIM_OK) {
            /* Over a cap: closed at once, so the listen queue does not fill with them. */
            LSTAT_ADD(L, conns_rejected, 1);
            h2_net_reject(fd);
            continue;
        }
        h2_net_tune(fd);
        h2_conn *c = h2_conn_new(L, h2_loop_new_id(L), fd, false);
        if (!c) {
            h2_connlim_release(L->lim, peer);
            close(fd);
            continue;
        }
        c->lim_counted = true;
        c->peer = peer;
        (void)h2_addr_format((struct sockaddr *)&ss, sl, c->peer_name, sizeof c->peer_name);
        if (ls->tls && h2_conn_start_tls(c, ls->tls, NULL) != 0) {
            h2_conn_close_now(c, ENOMEM, H2_CLOSE_CONN_LOST, false);
            continue;
        }
        if (h2_conn_epoll(c, EPOLL_CTL_ADD, EPOLLIN) != 0) {
            h2_conn_close_now(c, errno, H2_CLOSE_CONN_LOST, false);
            continue;
        }
        if (!c->ssl) h2_conn_mark(c); /* send our SETTINGS (TLS: once the handshake is done) */
    }
}

/* At the tick, an idle connection (no streams, its output written, nothing for nghttp2 to
 * send: no frame half-packed in the frame buffer) gives back the frame buffer's pages (issue
 * 13). At the tick, not at each idle flush: at most one madvise per connection and tick, none
 * on a connection that made no call since, and a connection that makes one call after another
 * does not fault the page in again per call. */
static void conn_release_pages(h2_conn *c)
{
    if (c->streams || c->connecting || c->tls_hs || h2_outq_pending(&c->out) || nghttp2_session_want_write(c->sess))
        return;
    /* -1 (madvise failed) loses nothing: the pages stay, and it is tried again next tick. */
    (void)h2_sessmem_release_idle(&c->smem);
}

void h2_conns_tick(h2_loop *L, int64_t late_ms)
{
    int64_t now = L->local.now;
    uint32_t hs = L->cfg.handshake_timeout_ms, idle = L->cfg.idle_timeout_ms;
    for (h2_conn *c = L->local.conns, *next; c; c = next) {
        next = c->next; /* closing unlinks c */
        if (c->dead) continue;
        h2_ka_conn_tick(c, now, late_ms);
        if (c->dead) continue;
        conn_release_pages(c);
        if (c->is_client) continue;
        int32_t sid = nghttp2_session_get_last_proc_stream_id(c->sess);
        switch (h2_conntimer_check(&c->timer, now, c->streams != NULL, sid, hs, idle)) {
        case H2_CT_CLOSE_HANDSHAKE:
            LSTAT_ADD(L, handshake_timeouts, 1);
            h2_conn_close_now(c, ETIMEDOUT, H2_CLOSE_CONN_LOST, false);
            break;
        case H2_CT_SEND_GOAWAY:
            LSTAT_ADD(L, idle_goaways, 1);
            h2_conn_check(c, nghttp2_submit_goaway(c->sess, NGHTTP2_FLAG_NONE, sid, NGHTTP2_NO_ERROR, NULL, 0));
            h2_conn_mark(c);
            break;
        case H2_CT_CLOSE_GRACE: h2_conn_close_lingering(c, 0, H2_CLOSE_CONN_LOST, false); break; /* after GOAWAY */
        default: break;
        }
    }
}
