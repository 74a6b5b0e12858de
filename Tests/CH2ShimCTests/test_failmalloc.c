/*
 * Allocation failures (after nghttp2's tests/failmalloc_test.c): each scenario is run
 * again and again with its 1st, 2nd, 3rd ... allocation failing (h2_mem.h hook), until a
 * run passes without reaching the failing one. Every run must end cleanly: no crash, no
 * hang (every stream still gets its on_close), and no leak — run it under valgrind or
 * LeakSanitizer.
 */
#include "h2_framing.h"
#include "h2_map.h"
#include "h2_outq.h"
#include "h2shim.h"
#include "test.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

extern atomic_long h2_mem_fail_at;
extern atomic_long h2_mem_count;

/* Runs fn with the 1st, 2nd, ... allocation failing; returns the number of runs. */
static int each_failure(void (*fn)(void))
{
    for (long n = 1;; n++) {
        atomic_store(&h2_mem_fail_at, n);
        fn();
        bool reached = atomic_load(&h2_mem_fail_at) <= 0;
        atomic_store(&h2_mem_fail_at, 0);
        if (!reached) return (int)n;
        CHECK(n < 2000);
    }
}

/* ------------------------------------------------------------ units, one thread */

static void units_once(void)
{
    h2_bufpool pool;
    CHECK(h2_bufpool_init(&pool) == 0);
    /* deframer: a pooled-size message and a small one, byte by byte */
    static const size_t sizes[] = {100000, 10};
    static uint8_t s[100000 + 10 + 10];
    uint8_t *p = s;
    for (int m = 0; m < 2; m++) {
        h2_grpc_write_prefix(p, 0, sizes[m]);
        p += H2_GRPC_PREFIX_LEN + sizes[m];
    }
    h2_deframer df = {0};
    for (size_t i = 0; i < sizeof s; i++) {
        const uint8_t *d = s + i;
        size_t len = 1, copied;
        h2_df_msg m;
        int ev = h2_deframer_step(&df, &pool, 1u << 20, &d, &len, &copied, &m);
        if (ev == H2_DF_NOMEM) break;
        if (ev == H2_DF_ASSEMBLED && m.buf) h2_msgbuf_put(&pool, m.buf);
    }
    h2_deframer_reset(&df, &pool);
    /* output queue: many pieces (its arrays grow) */
    h2_outq q;
    h2_outq_init(&q, &pool);
    for (int i = 0; i < 40; i++) {
        static uint8_t frame[20000];
        if (h2_outq_copy(&q, frame, sizeof frame) != 0) break;
        h2_msgbuf *b = h2_msgbuf_get(&pool, 100);
        if (!b) break;
        if (h2_outq_ref(&q, b, h2_msgbuf_data(b), 100) != 0) {
            h2_msgbuf_put(&pool, b);
            break;
        }
    }
    h2_outq_free(&q); /* releases the referenced buffers */
    /* token map: grows */
    h2_map map;
    if (h2_map_init(&map, 16) == 0) {
        for (uint64_t k = 1; k <= 100; k++)
            if (h2_map_put(&map, k, &map) != 0) break;
        h2_map_free(&map);
    }
    h2_bufpool_destroy(&pool);
}

/* ------------------------------------------------------------ a loop never started */

static atomic_int closes, runs_on, runs_off, conn_fails;

static void cnt_on_close(void *ctx, void *user, uint32_t code)
{
    (void)ctx; (void)user; (void)code;
    atomic_fetch_add(&closes, 1);
}
static void cnt_on_conn(void *ctx, h2_id conn, int ev, int detail)
{
    (void)ctx; (void)conn; (void)detail;
    if (ev == H2_CONN_FAILED) atomic_fetch_add(&conn_fails, 1);
}
static void cnt_run(void *ctx, void *arg, int on_loop)
{
    (void)ctx; (void)arg;
    atomic_fetch_add(on_loop ? &runs_on : &runs_off, 1);
}

#define NV(n, v) {(const uint8_t *)(n), sizeof(n) - 1, (const uint8_t *)(v), sizeof(v) - 1}
static const h2_nv REQ[] = {NV(":method", "POST"), NV(":scheme", "http"), NV(":path", "/x.Y/Echo"),
                            NV(":authority", "x"), NV("content-type", "application/grpc"), NV("te", "trailers")};
static const h2_nv RESP[] = {NV(":status", "200"), NV("content-type", "application/grpc")};
static const h2_nv TRL[] = {NV("grpc-status", "0")};

static void unstarted_once(void)
{
    atomic_store(&closes, 0);
    atomic_store(&runs_on, 0);
    atomic_store(&runs_off, 0);
    atomic_store(&conn_fails, 0);
    h2_callbacks cb = {.on_close = cnt_on_close, .on_conn = cnt_on_conn};
    h2_loop *L = h2_loop_create(NULL, &cb);
    if (!L) {
        CHECK(errno != 0);
        return;
    }
    uint16_t port = 0;
    int listened = h2_listen(L, "127.0.0.1", 0, &port);
    CHECK(listened == 0 || listened == -ENOMEM);
    h2_id conn = h2_connect(L, "127.0.0.1", 9);
    h2_id st = h2_open_stream(L, conn, &cb, REQ, 6); /* on_close comes at once (refused) or at destroy */
    (void)st;
    (void)h2_send(L, 7, RESP, 2, 1, (const uint8_t *)"hello", 5, TRL, 1, H2_SEND_END); /* -1 when out of memory */
    uint8_t *b = h2_buf_alloc(L, 100000);
    if (b) (void)h2_send_buf(L, 7, b, 100000, 0);
    uint8_t *b2 = h2_buf_alloc(L, 10);
    h2_buf_free(L, b2);
    h2_reset(L, 7, 8);
    h2_consume(L, 7, 100);
    int ran = h2_loop_run(L, cnt_run, NULL, NULL);
    h2_loop_goaway(L);
    h2_conn_close(L, conn);
    h2_loop_destroy(L);
    CHECK(atomic_load(&closes) == 1);
    CHECK(atomic_load(&runs_on) == 0 && atomic_load(&runs_off) == (ran == 0 ? 1 : 0));
    CHECK(atomic_load(&conn_fails) == (conn ? 1 : 0));
}

/* ------------------------------------------------------------ two running loops, real calls */

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static h2_loop *srv;

typedef struct call {
    h2_id id;
    uint8_t *msg;
    size_t len;
    int closed;
} call;

static void *s_on_request(void *ctx, h2_id conn, h2_id stream, const h2_nv *nv, size_t n, int flags)
{
    (void)ctx; (void)conn; (void)nv; (void)n; (void)flags;
    call *c = calloc(1, sizeof *c);
    CHECK(c);
    c->id = stream;
    return c;
}

static size_t s_on_message(void *ctx, void *user, int comp, const uint8_t *d, size_t len)
{
    (void)ctx; (void)comp;
    call *c = user;
    free(c->msg);
    c->msg = malloc(len ? len : 1);
    CHECK(c->msg);
    memcpy(c->msg, d, len);
    c->len = len;
    h2_consume(srv, c->id, len + 5); /* consumed later (a command from the loop thread) */
    return 0;
}

static void s_on_end(void *ctx, void *user)
{
    (void)ctx;
    call *c = user;
    /* No reset on failure here: a send that fails resets its stream itself, so the client's
     * on_close still comes (wait_closed fails on a hang). */
    if (c->len >= 1000) {
        uint8_t *b = h2_buf_alloc(srv, c->len);
        if (!b) { /* as the Swift transport does: the call ends with a status */
            (void)h2_send(srv, c->id, RESP, 2, 0, NULL, 0, TRL, 1, H2_SEND_END);
            return;
        }
        if (h2_send(srv, c->id, RESP, 2, 0, NULL, 0, NULL, 0, 0) != 0) {
            h2_buf_free(srv, b);
            return;
        }
        memcpy(b, c->msg, c->len);
        if (h2_send_buf(srv, c->id, b, c->len, 0) != 0) return;
        (void)h2_send(srv, c->id, NULL, 0, 0, NULL, 0, TRL, 1, H2_SEND_END);
    } else {
        (void)h2_send(srv, c->id, RESP, 2, 1, c->msg, c->len, TRL, 1, H2_SEND_END);
    }
}

static void s_on_close(void *ctx, void *user, uint32_t code)
{
    (void)ctx; (void)code;
    call *c = user;
    free(c->msg);
    free(c);
}

static size_t c_on_message(void *ctx, void *user, int comp, const uint8_t *d, size_t len)
{
    (void)ctx; (void)user; (void)comp; (void)d;
    return len + 5;
}

static void c_on_close(void *ctx, void *user, uint32_t code)
{
    (void)ctx; (void)code;
    pthread_mutex_lock(&mu);
    ((call *)user)->closed++;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
}

/* Waits for the call's on_close (bounded only as a safety net: a hang is a failure). */
static void wait_closed(call *c)
{
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 20;
    pthread_mutex_lock(&mu);
    while (!c->closed) CHECK(pthread_cond_timedwait(&cv, &mu, &dl) != ETIMEDOUT);
    CHECK(c->closed == 1);
    pthread_mutex_unlock(&mu);
}

static void one_call(h2_loop *cli, h2_id conn, size_t len)
{
    call c = {0};
    uint8_t *msg = malloc(len);
    CHECK(msg);
    memset(msg, 0x5a, len);
    c.id = h2_open_stream(cli, conn, &c, REQ, 6);
    if (c.id) (void)h2_send(cli, c.id, NULL, 0, 1, msg, len, NULL, 0, H2_SEND_END); /* resets itself on failure */
    wait_closed(&c);
    free(msg);
}

static void running_once(void)
{
    h2_callbacks scb = {.on_request = s_on_request, .on_message = s_on_message, .on_end = s_on_end,
                        .on_close = s_on_close};
    h2_callbacks ccb = {.on_message = c_on_message, .on_close = c_on_close};
    srv = h2_loop_create(NULL, &scb);
    if (!srv) return;
    h2_loop *cli = h2_loop_create(NULL, &ccb);
    uint16_t port = 0;
    if (cli && h2_loop_start(srv) == 0 && h2_loop_start(cli) == 0 && h2_listen(srv, "127.0.0.1", 0, &port) == 0) {
        h2_id conn = h2_connect(cli, "127.0.0.1", port);
        one_call(cli, conn, 10);
        one_call(cli, conn, 100000); /* split on the way in (assembled), NO_COPY on the way out */
    }
    if (cli) h2_loop_destroy(cli);
    h2_loop_destroy(srv);
    srv = NULL;
}

static void test_units(void) { fprintf(stderr, "     %d runs\n", each_failure(units_once)); }
static void test_unstarted_loop(void) { fprintf(stderr, "     %d runs\n", each_failure(unstarted_once)); }
static void test_running_loops(void) { fprintf(stderr, "     %d runs\n", each_failure(running_once)); }

void failmalloc_tests(void)
{
    RUN(test_units());
    RUN(test_unstarted_loop());
    RUN(test_running_loops());
}
