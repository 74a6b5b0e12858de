/* Connections: lifecycle, reading into nghttp2, flushing nghttp2's output, accepting. */
#define _GNU_SOURCE
#include "h2_conn.h"
#include "h2_addrs.h"
#include "h2_connlim.h"
#include "h2_loop.h"
#include "h2_mem.h"
#include "h2_net.h"
#include "h2_session.h"

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
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
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
    if (c->lim_counted) h2_connlim_release(L->lim, c->peer);
    c->lim_counted = false;
    if (c->is_client && !failed && L->cb.on_conn) L->cb.on_conn(L->cb.ctx, c->id, H2_CONN_CLOSED, err);
    c->dead_next = L->local.dead;
    L->local.dead = c;
}

void h2_conn_free(h2_conn *c)
{
    h2_outq_free(&c->out);
    h2_addrs_free(c->addrs);
    h2_free(c->hdr_arena);
    h2_free(c->hdr_nv);
    h2_free(c);
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
    if (c->dead || c->connecting) return;
    for (;;) {
        if (h2_outq_pending(&c->out)) {
            int r = h2_outq_write(&c->out, sock_writev, &c->fd);
            if (r < 0) {
                h2_conn_close_now(c, -r, H2_CLOSE_CONN_LOST, false);
                return;
            }
            if (r == 0) break;
        }
        h2_outq_reset(&c->out);
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
        if (c->close_when_flushed) {
            h2_conn_close_now(c, ECONNRESET, H2_CLOSE_CONN_LOST, false);
            return;
        }
        /* GOAWAY done both ways and nothing in flight: nghttp2 is finished with it. (After
         * an idle GOAWAY the tick closes it after the grace, or the peer does first.) */
        if (c->timer.phase != H2_CT_GOAWAY && !nghttp2_session_want_read(c->sess) &&
            !nghttp2_session_want_write(c->sess))
            h2_conn_close_now(c, 0, H2_CLOSE_CONN_LOST, false);
    }
}

static void conn_read(h2_conn *c)
{
    h2_loop *L = c->loop;
    uint8_t *rbuf = L->local.rbuf;
    for (int i = 0; i < 4 && !c->dead; i++) {
        ssize_t n = recv(c->fd, rbuf, H2_READ_BUF, 0);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) return;
            h2_conn_close_now(c, errno, H2_CLOSE_CONN_LOST, false);
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
            if (k > 0) (void)send(c->fd, p, (size_t)k, MSG_NOSIGNAL | MSG_DONTWAIT);
            h2_conn_close_now(c, EPROTO, H2_CLOSE_CONN_LOST, false);
            return;
        }
        if (c->timer.phase == H2_CT_HANDSHAKE) (void)h2_conntimer_feed(&c->timer, rbuf, (size_t)n, L->local.now);
        h2_ka_read(&c->ka, L->local.now);
        h2_conn_mark(c);
        if ((size_t)n < H2_READ_BUF) return; /* drained for now */
    }
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
    h2_loop *L = c->loop;
    if (L->cb.on_conn) L->cb.on_conn(L->cb.ctx, c->id, H2_CONN_CONNECTED, 0);
    h2_conn_mark(c);
}

void h2_conn_event(h2_conn *c, uint32_t ev)
{
    if (c->dead) return;
    if (c->connecting) {
        if (ev & (EPOLLOUT | EPOLLERR | EPOLLHUP)) h2_conn_connected(c);
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
        if (h2_conn_epoll(c, EPOLL_CTL_ADD, EPOLLIN) != 0) {
            h2_conn_close_now(c, errno, H2_CLOSE_CONN_LOST, false);
            continue;
        }
        h2_conn_mark(c); /* send our SETTINGS */
    }
}

void h2_conns_tick(h2_loop *L)
{
    int64_t now = L->local.now;
    uint32_t hs = L->cfg.handshake_timeout_ms, idle = L->cfg.idle_timeout_ms;
    for (h2_conn *c = L->local.conns, *next; c; c = next) {
        next = c->next; /* closing unlinks c */
        if (c->dead) continue;
        h2_ka_conn_tick(c, now);
        if (c->is_client || c->dead) continue;
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
        case H2_CT_CLOSE_GRACE: h2_conn_close_now(c, 0, H2_CLOSE_CONN_LOST, false); break;
        default: break;
        }
    }
}
