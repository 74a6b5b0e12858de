/* The loop: command queue, command handlers, the epoll thread, teardown. */
#define _GNU_SOURCE
#include "h2_loop.h"
#include "h2_addrs.h"
#include "h2_linger.h"
#include "h2_mem.h"
#include "h2_net.h"
#include "h2_session.h"
#include "h2_timer.h"
#include "h2_tls.h"

#include <stdarg.h>
#include <stdio.h>

#include <errno.h>
#include <limits.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

/* ---------------------------------------------------------------- commands */

void h2_cmd_free(h2_loop *L, h2_cmd *c)
{
    if (c->kind == H2_CMD_SEND) {
        h2_msgbuf_put(&L->pool, (h2_msgbuf *)c);
        return;
    }
    h2_ctl_cmd *ctl = (h2_ctl_cmd *)c;
    if (c->kind == H2_CMD_CONNECT_PENDING) h2_tls_release(ctl->u.connect.tls);
    if (c->kind == H2_CMD_LISTEN) h2_tls_release(ctl->u.listen.tls);
    h2_free(c);
}

void h2_loop_log(h2_loop *L, h2_id conn, const char *fmt, ...)
{
    if (!L->log_fn) return;
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    L->log_fn(L->log_ctx, conn, line);
}

bool h2_loop_on_thread(const h2_loop *L)
{
    return L->shared.started && pthread_equal(pthread_self(), L->thread);
}

/* Under shared.lock, after queueing work: whether the caller must write the eventfd (on the
 * 0->1 edge of wake_pending only). The loop drains its queue before it sleeps: posting from
 * the loop thread itself (a handler run inline) needs no eventfd write. */
static bool needs_wake_locked(h2_loop *L)
{
    if (L->shared.wake_pending) return false;
    L->shared.wake_pending = true;
    return !h2_loop_on_thread(L);
}

static void wake(h2_loop *L)
{
    uint64_t one = 1;
    ssize_t r;
    do r = write(L->evfd, &one, sizeof one);
    while (r < 0 && errno == EINTR);
    /* EAGAIN means the counter is saturated: the loop is awake anyway. */
}

int h2_loop_post(h2_loop *L, h2_cmd *c)
{
    pthread_mutex_lock(&L->shared.lock);
    if (L->shared.stopped) {
        pthread_mutex_unlock(&L->shared.lock);
        return -1;
    }
    h2_cmdq_push(&L->shared.cmds, c);
    bool w = needs_wake_locked(L);
    pthread_mutex_unlock(&L->shared.lock);
    if (w) wake(L);
    return 0;
}

void h2_loop_doom_stream(h2_loop *L, h2_id stream)
{
    bool w = false;
    pthread_mutex_lock(&L->shared.lock);
    if (!L->shared.stopped) { /* once stopped, on_close comes for every stream anyway */
        if (L->shared.ndoomed < H2_DOOMED_MAX)
            L->shared.doomed[L->shared.ndoomed++] = stream;
        else
            L->shared.doomed_overflow = true;
        w = needs_wake_locked(L);
    }
    pthread_mutex_unlock(&L->shared.lock);
    if (w) wake(L);
}

static bool queue_nonempty(h2_loop *L)
{
    pthread_mutex_lock(&L->shared.lock);
    bool nonempty = L->shared.cmds.head != NULL || L->shared.ndoomed || L->shared.doomed_overflow;
    pthread_mutex_unlock(&L->shared.lock);
    return nonempty;
}

static h2_cmd *take_all(h2_loop *L)
{
    pthread_mutex_lock(&L->shared.lock);
    h2_cmd *h = h2_cmdq_take_all(&L->shared.cmds);
    L->shared.wake_pending = false;
    pthread_mutex_unlock(&L->shared.lock);
    return h;
}

static void *lookup(h2_loop *L, h2_id id, int kind)
{
    int *k = h2_map_get(&L->local.map, id);
    return (k && *k == kind) ? (void *)k : NULL;
}

static void do_open(h2_loop *L, h2_ctl_cmd *cmd)
{
    void *user = cmd->u.open.user;
    h2_conn *c = lookup(L, cmd->u.open.conn, H2_OBJ_CONN);
    h2_stream *st = (c && c->is_client && !c->goaway_recv) ? h2_stream_new(c, cmd->head.id, true) : NULL;
    if (!st) {
        if (L->cb.on_close) L->cb.on_close(L->cb.ctx, user, H2_CLOSE_REFUSED);
        return;
    }
    h2_stream_set_user(st, user);
    nghttp2_data_provider prd = h2_session_data_provider(st);
    int32_t sid = nghttp2_submit_request(c->sess, NULL, cmd->u.open.hdrs, cmd->u.open.nhdrs, &prd, st);
    if (sid < 0) {
        h2_stream_finish(st, H2_CLOSE_REFUSED);
        h2_conn_check(c, sid);
        return;
    }
    st->sid = sid;
    h2_conn_mark(c);
}

/* A stream that cannot send what it was given ends: reset (or close on a fatal error). */
static void send_failed(h2_stream *st, int rv)
{
    h2_conn *c = st->conn;
    st->local_end = true;
    if (rv != 0 && nghttp2_is_fatal(rv))
        h2_conn_check(c, rv);
    else
        h2_conn_check(c, nghttp2_submit_rst_stream(c->sess, NGHTTP2_FLAG_NONE, st->sid, NGHTTP2_INTERNAL_ERROR));
    h2_conn_mark(c);
}

/* Returns true if the buffer was kept (queued on the stream). */
static bool do_send(h2_loop *L, h2_msgbuf *b)
{
    h2_stream *st = lookup(L, b->cmd.id, H2_OBJ_STREAM);
    if (!st || st->local_end) return false;
    h2_conn *c = st->conn;
    bool end = (b->flags & H2_SEND_END) || b->ntrls;
    if (!st->is_client && !st->resp_sent) {
        const nghttp2_nv *h = b->hdrs;
        size_t nh = b->nhdrs;
        bool trailers_only = false;
        if (nh && (b->flags & H2_SEND_END) && !b->msg && !b->ntrls) {
            trailers_only = true;
        } else if (!nh && !b->msg && b->ntrls) {
            h = b->trls; /* trailers with nothing before them: Trailers-Only */
            nh = b->ntrls;
            trailers_only = true;
        } else if (!nh) {
            send_failed(st, 0); /* a message before any response headers: an application bug */
            return false;
        }
        nghttp2_data_provider prd = h2_session_data_provider(st);
        int rv = nghttp2_submit_response(c->sess, st->sid, h, nh, trailers_only ? NULL : &prd);
        if (rv != 0) {
            send_failed(st, rv);
            return false;
        }
        st->resp_sent = true;
        h2_conn_mark(c);
        if (trailers_only) {
            st->local_end = true;
            return false;
        }
    }
    if (!b->msg && !end) return false; /* headers only (or repeated headers: ignored) */
    if (b->msg && b->msg_len >= H2_NOCOPY_MIN) {
        b->big = true;
        c->big_queued++;
    }
    h2_stream_enqueue(st, b);
    if (b->msg) {
        LSTAT_ADD(L, outbound, b->msg_len);
        c->unsent += b->msg_len;
    }
    if (end) st->local_end = true;
    if (st->data_deferred) {
        st->data_deferred = false;
        h2_conn_check(c, nghttp2_session_resume_data(c->sess, st->sid));
    }
    h2_conn_mark(c);
    return true;
}

static void reset_stream(h2_stream *st, uint32_t code)
{
    if (st->sid <= 0) return;
    st->local_end = true;
    h2_conn_check(st->conn, nghttp2_submit_rst_stream(st->conn->sess, NGHTTP2_FLAG_NONE, st->sid, code));
    h2_conn_mark(st->conn);
}

static void do_reset(h2_loop *L, h2_ctl_cmd *cmd)
{
    h2_stream *st = lookup(L, cmd->head.id, H2_OBJ_STREAM);
    if (st) reset_stream(st, cmd->u.reset.code);
}

/* Resets the streams h2_loop_doom_stream noted (every stream after an overflow). */
static void reset_doomed(h2_loop *L)
{
    h2_id doomed[H2_DOOMED_MAX];
    pthread_mutex_lock(&L->shared.lock);
    uint32_t n = L->shared.ndoomed;
    bool overflow = L->shared.doomed_overflow;
    memcpy(doomed, L->shared.doomed, n * sizeof doomed[0]);
    L->shared.ndoomed = 0;
    L->shared.doomed_overflow = false;
    pthread_mutex_unlock(&L->shared.lock);
    for (uint32_t i = 0; i < n; i++) {
        h2_stream *st = lookup(L, doomed[i], H2_OBJ_STREAM);
        if (st) reset_stream(st, NGHTTP2_INTERNAL_ERROR);
    }
    if (overflow) /* which streams is not known: every stream ends rather than one hanging */
        for (h2_conn *c = L->local.conns; c; c = c->next)
            for (h2_stream *st = c->streams; st; st = st->next) reset_stream(st, NGHTTP2_INTERNAL_ERROR);
}

static void do_consume(h2_loop *L, h2_ctl_cmd *cmd)
{
    h2_stream *st = lookup(L, cmd->head.id, H2_OBJ_STREAM);
    if (!st) return;
    size_t n = h2_stream_consumed(st, cmd->u.consume.bytes);
    if (n == 0) return;
    h2_conn_check(st->conn, h2_stream_release(st, n));
    h2_conn_mark(st->conn);
}

void h2_listeners_close(h2_loop *L)
{
    while (L->local.listeners) {
        h2_listener *ls = L->local.listeners;
        L->local.listeners = ls->next;
        close(ls->fd);
        h2_tls_release(ls->tls);
        h2_free(ls);
    }
}

static void do_goaway(h2_loop *L)
{
    h2_listeners_close(L);
    for (h2_conn *c = L->local.conns, *next; c; c = next) {
        next = c->next; /* closing unlinks c */
        if (c->is_client) continue;
        h2_conn_check(c, nghttp2_submit_goaway(c->sess, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(c->sess),
                                               NGHTTP2_NO_ERROR, NULL, 0));
        h2_conn_mark(c);
    }
}

/* Takes the command's fd and TLS reference (cleared in the command). */
static void do_listen(h2_loop *L, h2_ctl_cmd *cmd)
{
    int fd = cmd->u.listen.fd;
    h2_tls_ctx *tls = cmd->u.listen.tls;
    cmd->u.listen.tls = NULL;
    h2_listener *ls = h2_calloc(1, sizeof *ls);
    if (!ls) {
        close(fd);
        h2_tls_release(tls);
        return;
    }
    ls->kind = H2_OBJ_LISTENER;
    ls->fd = fd;
    ls->tls = tls;
    struct epoll_event e = {.events = L->local.accept_paused ? 0 : EPOLLIN, .data.ptr = ls};
    if (epoll_ctl(L->epfd, EPOLL_CTL_ADD, fd, &e) != 0) {
        close(fd);
        h2_tls_release(tls);
        h2_free(ls);
        return;
    }
    ls->next = L->local.listeners;
    L->local.listeners = ls;
}

static void run_cmds(h2_loop *L)
{
    h2_cmd *cmd = take_all(L);
    while (cmd) {
        h2_cmd *next = cmd->next;
        h2_ctl_cmd *ctl = (h2_ctl_cmd *)cmd;
        bool kept = false;
        switch (cmd->kind) {
        case H2_CMD_SEND: kept = do_send(L, (h2_msgbuf *)cmd); break;
        case H2_CMD_RESET: do_reset(L, ctl); break;
        case H2_CMD_CONSUME: do_consume(L, ctl); break;
        case H2_CMD_OPEN: do_open(L, ctl); break;
        case H2_CMD_CLOSE_CONN: {
            h2_conn *c = lookup(L, cmd->id, H2_OBJ_CONN);
            if (c) h2_conn_close_now(c, 0, H2_CLOSE_CONN_LOST, false);
            break;
        }
        case H2_CMD_GOAWAY: do_goaway(L); break;
        case H2_CMD_LISTEN: do_listen(L, ctl); break;
        case H2_CMD_RUN: ctl->u.run.fn(ctl->u.run.ctx, ctl->u.run.arg, 1); break;
        case H2_CMD_CONNECT_PENDING: h2_conn_pending(L, cmd->id, ctl->u.connect.tls, ctl->u.connect.name); break;
        case H2_CMD_CONNECT_ADDRS: h2_conn_walk(L, cmd->id, ctl->u.addrs.addrs, ctl->u.addrs.err); break;
        }
        if (!kept) h2_cmd_free(L, cmd);
        cmd = next;
    }
    reset_doomed(L);
}

/* Commands still queued when the loop stopped: honour the on_close / on_conn promises. */
static void drop_cmds(h2_loop *L, h2_cmd *cmd)
{
    while (cmd) {
        h2_cmd *next = cmd->next;
        h2_ctl_cmd *ctl = (h2_ctl_cmd *)cmd;
        switch (cmd->kind) {
        case H2_CMD_OPEN:
            if (L->cb.on_close) L->cb.on_close(L->cb.ctx, ctl->u.open.user, H2_CLOSE_SHUTDOWN);
            break;
        case H2_CMD_LISTEN: close(ctl->u.listen.fd); break;
        case H2_CMD_RUN: ctl->u.run.fn(ctl->u.run.ctx, ctl->u.run.arg, 0); break;
        case H2_CMD_CONNECT_PENDING:
            if (L->cb.on_conn) L->cb.on_conn(L->cb.ctx, cmd->id, H2_CONN_FAILED, ECANCELED);
            break;
        case H2_CMD_CONNECT_ADDRS: h2_addrs_free(ctl->u.addrs.addrs); break;
        default: break;
        }
        h2_cmd_free(L, cmd);
        cmd = next;
    }
}

/* ---------------------------------------------------------------- timers */

static void listeners_poll(h2_loop *L, uint32_t events)
{
    for (h2_listener *ls = L->local.listeners; ls; ls = ls->next) {
        struct epoll_event e = {.events = events, .data.ptr = ls};
        (void)epoll_ctl(L->epfd, EPOLL_CTL_MOD, ls->fd, &e); /* cannot fail for a registered fd but ENOMEM */
    }
}

void h2_loop_pause_accept(h2_loop *L)
{
    h2_loop_local *lo = &L->local;
    lo->accept_resume = lo->now + H2_ACCEPT_BACKOFF_MS;
    if (lo->accept_paused) return;
    lo->accept_paused = true;
    listeners_poll(L, 0);
}

static void resume_accept(h2_loop *L)
{
    h2_loop_local *lo = &L->local;
    lo->accept_paused = false;
    if (lo->reserve_fd < 0) lo->reserve_fd = h2_net_reserve_fd();
    listeners_poll(L, EPOLLIN);
}

void h2_loop_arm_tick(h2_loop *L)
{
    h2_loop_local *lo = &L->local;
    if (!lo->next_tick) lo->next_tick = lo->now + lo->tick_ms; /* keepalive and connect deadlines need it too */
}

/* The earliest timer, INT64_MAX if none. */
static int64_t timers_due(const h2_loop_local *lo)
{
    int64_t due = lo->next_tick ? lo->next_tick : INT64_MAX;
    if (lo->accept_paused && lo->accept_resume < due) due = lo->accept_resume;
    return due;
}

static void run_timers(h2_loop *L)
{
    h2_loop_local *lo = &L->local;
    if (lo->accept_paused && lo->now >= lo->accept_resume) resume_accept(L);
    if (lo->next_tick && lo->now >= lo->next_tick) {
        h2_conns_tick(L, lo->now - lo->next_tick);
        h2_stream_tick(L);
        h2_linger_tick(L, lo->now);
        lo->next_tick = lo->conns || lo->lingering ? lo->now + lo->tick_ms : 0; /* no connection: no tick */
    }
}

/* ---------------------------------------------------------------- the thread */

/* One batch of epoll events. (The fuzz harness drives the loop through this function and
 * finish_iteration, without the thread.) */
static void handle_events(h2_loop *L, struct epoll_event *evs, int n)
{
    for (int i = 0; i < n; i++) {
        int kind = *(int *)evs[i].data.ptr;
        if (kind == H2_OBJ_WAKE) {
            uint64_t v;
            /* Read the eventfd before taking the queue so no wake-up is lost. */
            ssize_t r = read(L->evfd, &v, sizeof v);
            (void)r;
            run_cmds(L);
        } else if (kind == H2_OBJ_LISTENER) {
            h2_accept_all(L, evs[i].data.ptr);
        } else {
            h2_conn_event(evs[i].data.ptr, evs[i].events);
        }
    }
}

/* What every iteration ends with: commands posted from this thread, streams waiting for the
 * budget of partial messages, one flush per connection, then the frees. */
static void finish_iteration(h2_loop *L)
{
    h2_loop_local *lo = &L->local;
    /* Commands posted from this thread (inline handlers answering, jobs scheduling jobs)
     * run now, so one flush carries them; bounded so sockets are not starved. */
    for (int round = 0; round < 8 && queue_nonempty(L); round++) run_cmds(L);
    if (lo->budget_freed) h2_stream_resume_waiters(L);
    while (lo->dirty) {
        h2_conn *c = lo->dirty;
        lo->dirty = c->dirty_next;
        c->dirty = false;
        h2_conn_flush(c);
    }
    while (lo->dead) {
        h2_conn *c = lo->dead;
        lo->dead = c->dead_next;
        h2_conn_free(c);
    }
}

static void *loop_main(void *arg)
{
    h2_loop *L = arg;
    h2_loop_local *lo = &L->local;
    struct epoll_event evs[H2_MAX_EVENTS];
    int64_t trim_at = 0; /* no work until then: give memory back (0 = nothing to give back) */
    bool queued = false; /* commands posted from this thread wait: do not sleep */
    lo->now = h2_now_ms();
    while (!atomic_load_explicit(&L->stop_flag, memory_order_acquire)) {
        int64_t due = timers_due(lo);
        if (trim_at && trim_at < due) due = trim_at;
        int timeout = -1;
        if (queued) {
            timeout = 0;
        } else if (due != INT64_MAX) {
            int64_t now = h2_now_ms();
            timeout = due <= now ? 0 : due - now > INT_MAX ? INT_MAX : (int)(due - now);
        }
        int n = epoll_wait(L->epfd, evs, H2_MAX_EVENTS, timeout);
        if (n < 0) {
            if (errno == EINTR) continue;
            break;
        }
        lo->now = h2_now_ms();
        handle_events(L, evs, n);
        run_timers(L);
        finish_iteration(L);
        if (n > 0 || queued) {
            trim_at = lo->now + H2_POOL_IDLE_MS; /* after activity, trim once idle */
        } else if (trim_at && lo->now >= trim_at) { /* idle for H2_POOL_IDLE_MS: give memory back */
            h2_bufpool_trim(&L->pool);
            h2_framecache_empty(&lo->frames);
#if defined(__GLIBC__) && !defined(__SANITIZE_ADDRESS__)
            /* After a burst (e.g. thousands of cancelled streams) the freed blocks stay in
             * malloc's arenas and keep the RSS up; return them to the system once idle.
             * Not under ASan: its allocator is not glibc's, and malloc_trim there crashes now
             * and then (seen in the C tests' ASan run). */
            malloc_trim(0);
#endif
            trim_at = 0;
        } else if (!trim_at && !h2_bufpool_empty(&L->pool)) {
            trim_at = lo->now + H2_POOL_IDLE_MS; /* buffers other threads gave back */
        }
        /* Checked last: flushing runs callbacks (on_drain) that may post from this thread,
         * and such posts do not write the eventfd. */
        queued = queue_nonempty(L);
    }
    if (lo->teardown_on_exit) h2_loop_teardown(L);
    if (lo->free_on_exit) h2_loop_release(L);
    return NULL;
}

int h2_loop_start_thread(h2_loop *L)
{
    return pthread_create(&L->thread, NULL, loop_main, L);
}

/* ---------------------------------------------------------------- life cycle */

int h2_loop_init(h2_loop *L)
{
    atomic_init(&L->next_id, 1);
    atomic_init(&L->stop_flag, false);
    L->wake_kind = H2_OBJ_WAKE;
    L->epfd = L->evfd = -1;
    L->local.reserve_fd = -1;
    L->local.ka_time_ms = L->cfg.keepalive_time_ms;
    L->local.tick_ms = h2_ka_tick_ms(h2_tick_ms(L->cfg.handshake_timeout_ms, L->cfg.idle_timeout_ms), L->cfg.keepalive_time_ms,
                                     L->cfg.keepalive_timeout_ms, L->cfg.max_connection_age_ms, L->cfg.connect_timeout_ms);
    int e = 0;
    if (pthread_mutex_init(&L->shared.lock, NULL) != 0) return ENOMEM;
    if (h2_bufpool_init(&L->pool) != 0) {
        pthread_mutex_destroy(&L->shared.lock);
        return ENOMEM;
    }
    if (h2_map_init(&L->local.map, 1024) != 0) { e = ENOMEM; goto fail; }
    if ((L->epfd = epoll_create1(EPOLL_CLOEXEC)) < 0) { e = errno; goto fail; }
    if ((L->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0) { e = errno; goto fail; }
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &L->wake_kind};
    if (epoll_ctl(L->epfd, EPOLL_CTL_ADD, L->evfd, &ev) != 0) { e = errno; goto fail; }
    if (h2_session_callbacks_new(&L->cfg, &L->scb, &L->opt) != 0) { e = ENOMEM; goto fail; }
    if (!(L->lim = h2_connlim_new(L->cfg.max_connections, L->cfg.max_connections_per_addr))) { e = ENOMEM; goto fail; }
    /* Best effort: without it the loop still backs off at the fd limit, it only cannot shed. */
    L->local.reserve_fd = h2_net_reserve_fd();
    return 0;
fail:
    if (L->scb) nghttp2_session_callbacks_del(L->scb);
    if (L->opt) nghttp2_option_del(L->opt);
    if (L->evfd >= 0) close(L->evfd);
    if (L->epfd >= 0) close(L->epfd);
    h2_map_free(&L->local.map);
    h2_bufpool_destroy(&L->pool);
    pthread_mutex_destroy(&L->shared.lock);
    return e;
}

void h2_loop_join(h2_loop *L)
{
    if (L->local.joined) return;
    uint64_t one = 1;
    ssize_t r = write(L->evfd, &one, sizeof one);
    (void)r;
    pthread_join(L->thread, NULL);
    L->local.joined = true;
}

void h2_loop_teardown(h2_loop *L)
{
    drop_cmds(L, take_all(L));
    h2_listeners_close(L);
    while (L->local.conns) h2_conn_close_now(L->local.conns, 0, H2_CLOSE_SHUTDOWN, false);
    h2_linger_end_all(L);
    L->local.dirty = NULL;
    while (L->local.dead) {
        h2_conn *c = L->local.dead;
        L->local.dead = c->dead_next;
        h2_conn_free(c);
    }
}

void h2_loop_release(h2_loop *L)
{
    h2_connlim_unref(L->lim);
    if (L->local.reserve_fd >= 0) close(L->local.reserve_fd);
    nghttp2_session_callbacks_del(L->scb);
    nghttp2_option_del(L->opt);
    close(L->evfd);
    close(L->epfd);
    h2_map_free(&L->local.map);
    h2_framecache_empty(&L->local.frames);
    pthread_mutex_destroy(&L->shared.lock);
    h2_bufpool_destroy(&L->pool);
    h2_free(L);
}
