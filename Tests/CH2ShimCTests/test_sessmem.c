/* A session's allocator: the frame buffer in its own mapping, its pages given back when idle,
 * and a call after that works (two nghttp2 sessions in memory); the loop gives them back at
 * its tick and the connection keeps working (two loops over loopback). */
#define _GNU_SOURCE
#include "h2_conn.h"
#include "h2_loop.h"
#include "h2_sessmem.h"
#include "h2shim.h"
#include "test.h"

#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    int responses; /* client: responses received in full */
} peer;

static int on_frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    peer *p = ud;
    if (f->hd.type != NGHTTP2_HEADERS || !(f->hd.flags & NGHTTP2_FLAG_END_STREAM)) return 0;
    if (nghttp2_session_check_server_session(s)) {
        const nghttp2_nv nv[] = {{(uint8_t *)":status", (uint8_t *)"200", 7, 3, NGHTTP2_NV_FLAG_NONE}};
        return nghttp2_submit_response(s, f->hd.stream_id, nv, 1, NULL) == 0 ? 0 : NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    p->responses++;
    return 0;
}

/* Moves every byte each side has to send to the other until both are quiet. */
static void pump(nghttp2_session *a, nghttp2_session *b, h2_sessmem *bm)
{
    for (int moved = 1; moved;) {
        moved = 0;
        nghttp2_session *from[2] = {a, b}, *to[2] = {b, a};
        for (int i = 0; i < 2; i++) {
            if (from[i] == b) bm->used = true; /* as h2_conn_flush does */
            const uint8_t *d;
            ssize_t n;
            while ((n = nghttp2_session_mem_send(from[i], &d)) > 0) {
                CHECK(nghttp2_session_mem_recv(to[i], d, (size_t)n) == n);
                moved = 1;
            }
            CHECK(n == 0);
        }
    }
}

static size_t resident_pages(const h2_sessmem *m)
{
    unsigned char vec[16];
    size_t pages = m->frame_map / (size_t)sysconf(_SC_PAGESIZE), r = 0;
    CHECK(pages <= sizeof vec);
    CHECK(mincore(m->frame, m->frame_map, vec) == 0);
    for (size_t i = 0; i < pages; i++) r += vec[i] & 1;
    return r;
}

static void request(nghttp2_session *cli)
{
    const nghttp2_nv nv[] = {
        {(uint8_t *)":method", (uint8_t *)"POST", 7, 4, NGHTTP2_NV_FLAG_NONE},
        {(uint8_t *)":scheme", (uint8_t *)"http", 7, 4, NGHTTP2_NV_FLAG_NONE},
        {(uint8_t *)":authority", (uint8_t *)"x", 10, 1, NGHTTP2_NV_FLAG_NONE},
        {(uint8_t *)":path", (uint8_t *)"/x.Y/Echo", 5, 9, NGHTTP2_NV_FLAG_NONE},
    };
    CHECK(nghttp2_submit_request(cli, NULL, nv, 4, NULL, NULL) > 0);
}

static void test_idle_release(void)
{
    nghttp2_session_callbacks *cb;
    CHECK(nghttp2_session_callbacks_new(&cb) == 0);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
    peer cp = {0}, sp = {0};
    h2_sessmem m;
    nghttp2_mem mem;
    h2_sessmem_init(&m, &mem, NULL);
    nghttp2_session *srv, *cli;
    CHECK(nghttp2_session_server_new3(&srv, cb, &sp, NULL, &mem) == 0);
    h2_sessmem_created(&m);
    CHECK(nghttp2_session_client_new(&cli, cb, &cp) == 0);
    CHECK(m.frame != NULL && m.frame_map >= H2_SESSMEM_FRAMEBUF_LEN && m.frame_map % (size_t)sysconf(_SC_PAGESIZE) == 0);
    CHECK(nghttp2_submit_settings(srv, NGHTTP2_FLAG_NONE, NULL, 0) == 0);
    CHECK(nghttp2_submit_settings(cli, NGHTTP2_FLAG_NONE, NULL, 0) == 0);

    for (int call = 1; call <= 3; call++) {
        request(cli);
        pump(cli, srv, &m);
        CHECK(cp.responses == call);
        CHECK(!nghttp2_session_want_write(srv));
        CHECK(resident_pages(&m) >= 1);       /* the frames it just packed */
        CHECK(h2_sessmem_release_idle(&m) == 1);
        CHECK(resident_pages(&m) == 0);
        CHECK(h2_sessmem_release_idle(&m) == 0); /* no frame since: nothing to do */
    }
    /* A PING both ways after the release: the session works from zero pages too. */
    CHECK(nghttp2_submit_ping(cli, NGHTTP2_FLAG_NONE, NULL) == 0);
    pump(cli, srv, &m);
    CHECK(!nghttp2_session_want_write(srv) && !nghttp2_session_want_write(cli));
    nghttp2_session_del(cli);
    nghttp2_session_del(srv); /* unmaps the frame buffer (valgrind/ASan: nothing leaks) */
    CHECK(m.frame == NULL);
    nghttp2_session_callbacks_del(cb);
}

/* A closed session's mapping goes to the cache and serves the next session. */
static void test_cache(void)
{
    nghttp2_session_callbacks *cb;
    CHECK(nghttp2_session_callbacks_new(&cb) == 0);
    h2_framecache fc = {0};
    void *first = NULL;
    for (int i = 0; i < 3; i++) {
        h2_sessmem m;
        nghttp2_mem mem;
        h2_sessmem_init(&m, &mem, &fc);
        nghttp2_session *s;
        CHECK(nghttp2_session_server_new3(&s, cb, NULL, NULL, &mem) == 0);
        h2_sessmem_created(&m);
        CHECK(m.frame != NULL && fc.n == 0);
        if (i == 0) first = m.frame;
        CHECK(m.frame == first); /* the same mapping each time */
        nghttp2_session_del(s);
        CHECK(fc.n == 1 && fc.maps[0] == first);
    }
    h2_framecache_empty(&fc);
    CHECK(fc.n == 0);
    nghttp2_session_callbacks_del(cb);
}

/* What the server loop's one connection's frame buffer looks like, read on the loop thread. */
typedef struct {
    atomic_int done;
    int conns;
    bool used;
    size_t resident;
} probe;

static void probe_run(void *ctx, void *arg, int on_loop)
{
    h2_loop *L = ctx;
    probe *p = arg;
    if (on_loop)
        for (h2_conn *c = L->local.conns; c; c = c->next) {
            if (c->dead || c->is_client) continue;
            p->conns++;
            p->used = c->smem.used;
            p->resident = c->smem.frame ? resident_pages(&c->smem) : 99;
        }
    atomic_store(&p->done, 1);
}

static probe look(h2_loop *srv)
{
    probe p = {0};
    CHECK(h2_loop_run(srv, probe_run, srv, &p) == 0);
    while (!atomic_load(&p.done)) usleep(1000);
    return p;
}

/* Polls (5 s at most) until the server's connection's frame buffer is released (want 1:
 * nothing resident, nothing sent since) or written again (want 0). */
static int becomes(h2_loop *srv, int released)
{
    for (int i = 0; i < 500; i++) {
        probe p = look(srv);
        CHECK(p.conns <= 1);
        if (p.conns == 1 && (released ? !p.used && p.resident == 0 : p.used)) return 1;
        usleep(10000);
    }
    return 0;
}

static h2_stats stats_of(h2_loop *l)
{
    h2_stats s;
    h2_loop_stats(l, &s);
    return s;
}

/* The server pings its idle client (keepalive): each PING goes through the frame buffer the
 * tick released, the client answers, and the connection stays up. */
static void test_loop_release(void)
{
    h2_config cfg;
    h2_config_init(&cfg);
    cfg.handshake_timeout_ms = 400; /* a tick of 100 ms */
    cfg.keepalive_time_ms = 300;
    cfg.keepalive_timeout_ms = 2000;
    h2_callbacks none = {0};
    h2_loop *srv = h2_loop_create(&cfg, &none);
    uint16_t port;
    CHECK(srv && h2_listen(srv, "127.0.0.1", 0, &port) == 0 && h2_loop_start(srv) == 0);
    h2_loop *cli = h2_loop_create(NULL, &none);
    CHECK(cli && h2_loop_start(cli) == 0);
    CHECK(h2_connect(cli, "127.0.0.1", port) != 0);
    CHECK(becomes(srv, 1)); /* after the SETTINGS exchange */
    uint64_t pings = stats_of(srv).keepalive_pings;
    CHECK(becomes(srv, 0)); /* a PING written into the released pages */
    CHECK(becomes(srv, 1));
    CHECK(becomes(srv, 0));
    h2_stats st = stats_of(srv);
    CHECK(st.keepalive_pings > pings && st.keepalive_timeouts == 0 && st.connections == 1);
    h2_loop_destroy(cli);
    h2_loop_destroy(srv);
}

void sessmem_tests(void)
{
    RUN(test_idle_release());
    RUN(test_cache());
    RUN(test_loop_release());
}
