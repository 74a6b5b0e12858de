/*
 * The session's own limits, through the public API (a server loop and a client loop over
 * loopback): header count and header-list size of received blocks (both directions),
 * response headers nghttp2 will not send, and a peer reset with NO_ERROR.
 */
#define _GNU_SOURCE
#include "h2shim.h"
#include "test.h"

#include <pthread.h>
#include <string.h>
#include <time.h>

typedef struct lt {
    int server;       /* a server stream (else client) */
    char path[32];    /* server: the request's :path */
    size_t nfields;   /* server: fields on_request saw */
    char grpc_status[8];
    char grpc_message[200];
    int nheaders;     /* client: on_headers calls */
    int closed;
    uint32_t code;
    h2_id id;
} lt;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static lt *server_streams[16];
static int nserver;
static h2_loop *srv;

static int waitf(int (*pred)(void *), void *a)
{
    struct timespec end;
    clock_gettime(CLOCK_REALTIME, &end);
    end.tv_sec += 5;
    pthread_mutex_lock(&mu);
    int ok;
    while (!(ok = pred(a)) && pthread_cond_timedwait(&cv, &mu, &end) == 0) {}
    ok = pred(a);
    pthread_mutex_unlock(&mu);
    return ok;
}
static int p_closed(void *a) { return ((lt *)a)->closed; }
static int p_nserver(void *a) { return nserver >= (int)(intptr_t)a; }

static int field_is(const h2_nv *f, const char *name)
{
    return f->namelen == strlen(name) && memcmp(f->name, name, f->namelen) == 0;
}

static void copy_value(char *dst, size_t cap, const h2_nv *f)
{
    size_t n = f->valuelen < cap - 1 ? f->valuelen : cap - 1;
    memcpy(dst, f->value, n);
    dst[n] = 0;
}

static const h2_nv RESP[] = {{(const uint8_t *)":status", 7, (const uint8_t *)"200", 3},
                             {(const uint8_t *)"content-type", 12, (const uint8_t *)"application/grpc", 16}};

/* A response header block of `n` fields (plus the two above), or one field of `big` bytes. */
static void respond(h2_id stream, size_t n, size_t big)
{
    h2_nv *nv = calloc(n + 3, sizeof *nv);
    uint8_t *v = calloc(big ? big : 1, 1);
    memset(v, 'v', big);
    nv[0] = RESP[0];
    nv[1] = RESP[1];
    size_t k = 2;
    for (size_t i = 0; i < n; i++) nv[k++] = (h2_nv){(const uint8_t *)"x-f", 3, (const uint8_t *)"1", 1};
    if (big) nv[k++] = (h2_nv){(const uint8_t *)"x-big", 5, v, big};
    static const h2_nv OK[] = {{(const uint8_t *)"grpc-status", 11, (const uint8_t *)"0", 1}};
    CHECK(h2_send(srv, stream, nv, k, 1, (const uint8_t *)"m", 1, OK, 1, H2_SEND_END) == 0);
    free(nv);
    free(v);
}

static void *on_request(void *ctx, h2_id conn, h2_id stream, const h2_nv *nv, size_t n, int flags)
{
    (void)ctx; (void)conn; (void)flags;
    lt *t = calloc(1, sizeof *t);
    t->server = 1;
    t->id = stream;
    t->nfields = n;
    for (size_t i = 0; i < n; i++)
        if (field_is(&nv[i], ":path")) copy_value(t->path, sizeof t->path, &nv[i]);
    pthread_mutex_lock(&mu);
    if (nserver < 16) server_streams[nserver++] = t;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
    if (strcmp(t->path, "/l.S/ManyHeaders") == 0) respond(stream, 150, 0);
    else if (strcmp(t->path, "/l.S/BigHeaders") == 0) respond(stream, 0, 70000);
    else if (strcmp(t->path, "/l.S/Ok") == 0) respond(stream, 0, 0);
    /* "/l.S/Hold": no answer */
    return t;
}

static void on_headers(void *ctx, void *user, const h2_nv *nv, size_t n, int flags)
{
    (void)ctx; (void)flags;
    lt *t = user;
    pthread_mutex_lock(&mu);
    t->nheaders++;
    for (size_t i = 0; i < n; i++) {
        if (field_is(&nv[i], "grpc-status")) copy_value(t->grpc_status, sizeof t->grpc_status, &nv[i]);
        if (field_is(&nv[i], "grpc-message")) copy_value(t->grpc_message, sizeof t->grpc_message, &nv[i]);
    }
    pthread_mutex_unlock(&mu);
}

static size_t on_message(void *ctx, void *user, int compressed, const uint8_t *d, size_t len)
{
    (void)ctx; (void)user; (void)compressed; (void)d;
    return len + 5;
}

static void on_close(void *ctx, void *user, uint32_t code)
{
    (void)ctx;
    lt *t = user;
    pthread_mutex_lock(&mu);
    t->code = code;
    t->closed = 1;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
}

static int conn_up;
static void on_conn(void *ctx, h2_id conn, int ev, int detail)
{
    (void)ctx; (void)conn; (void)detail;
    pthread_mutex_lock(&mu);
    if (ev == H2_CONN_CONNECTED) conn_up = 1;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
}

/* A client stream with the standard request fields, `extra` one-byte fields and (if
 * `pad`) one field of `pad` bytes, sending one message and END. */
static lt *call(h2_loop *cli, h2_id conn, const char *path, size_t extra, size_t pad)
{
    lt *t = calloc(1, sizeof *t);
    h2_nv *nv = calloc(extra + 8, sizeof *nv);
    uint8_t *p = calloc(pad ? pad : 1, 1);
    memset(p, 'p', pad);
    size_t k = 0;
    nv[k++] = (h2_nv){(const uint8_t *)":method", 7, (const uint8_t *)"POST", 4};
    nv[k++] = (h2_nv){(const uint8_t *)":scheme", 7, (const uint8_t *)"http", 4};
    nv[k++] = (h2_nv){(const uint8_t *)":path", 5, (const uint8_t *)path, strlen(path)};
    nv[k++] = (h2_nv){(const uint8_t *)":authority", 10, (const uint8_t *)"l", 1};
    nv[k++] = (h2_nv){(const uint8_t *)"content-type", 12, (const uint8_t *)"application/grpc", 16};
    nv[k++] = (h2_nv){(const uint8_t *)"te", 2, (const uint8_t *)"trailers", 8};
    for (size_t i = 0; i < extra; i++) nv[k++] = (h2_nv){(const uint8_t *)"x-e", 3, (const uint8_t *)"1", 1};
    if (pad) nv[k++] = (h2_nv){(const uint8_t *)"x-pad", 5, p, pad};
    t->id = h2_open_stream(cli, conn, t, nv, k);
    CHECK(t->id != 0);
    CHECK(h2_send(cli, t->id, NULL, 0, 1, (const uint8_t *)"q", 1, NULL, 0, H2_SEND_END) == 0);
    free(nv);
    free(p);
    return t;
}

void limits_tests(void)
{
    h2_callbacks cb = {0};
    cb.on_request = on_request;
    cb.on_headers = on_headers;
    cb.on_message = on_message;
    cb.on_close = on_close;
    cb.on_conn = on_conn;
    h2_config cfg;
    h2_config_init(&cfg);
    CHECK(cfg.max_header_list_size == 16384 && cfg.max_header_count == 100);
    CHECK(cfg.rst_burst == 1000 && cfg.rst_rate == 100);
    cfg.max_header_count = 20;
    cfg.max_header_list_size = 1000;
    srv = h2_loop_create(&cfg, &cb);
    h2_config ccfg;
    h2_config_init(&ccfg);
    ccfg.max_header_count = 100;
    ccfg.max_header_list_size = 0; /* 0 = the default, 16 KiB */
    h2_loop *cli = h2_loop_create(&ccfg, &cb);
    CHECK(srv && cli);
    uint16_t port = 0;
    CHECK(h2_listen(srv, "127.0.0.1", 0, &port) == 0);
    CHECK(h2_loop_start(srv) == 0 && h2_loop_start(cli) == 0);
    h2_id conn = h2_connect(cli, "127.0.0.1", port);
    CHECK(conn != 0);

    /* Request blocks: at the limits served; over either answered grpc-status 8 without any
     * on_request, and the connection goes on. 6 standard fields + 14 = 20. */
    lt *a = call(cli, conn, "/l.S/Ok", 14, 0);
    CHECK(waitf(p_closed, a) && a->code == 0 && strcmp(a->grpc_status, "0") == 0);
    CHECK(waitf(p_nserver, (void *)1) && server_streams[0]->nfields == 20);
    lt *b = call(cli, conn, "/l.S/Ok", 15, 0);
    CHECK(waitf(p_closed, b) && b->code == 0 && strcmp(b->grpc_status, "8") == 0 && b->nheaders == 1);
    CHECK(strstr(b->grpc_message, "has 21 fields") != NULL);
    /* list size: standard fields are 7+4+32 + 7+4+32 + 5+7+32 + 10+1+32 + 12+16+32 + 2+8+32 = 275 */
    lt *c = call(cli, conn, "/l.S/Ok", 0, 1000 - 275 - 37);
    CHECK(waitf(p_closed, c) && strcmp(c->grpc_status, "0") == 0);
    lt *d = call(cli, conn, "/l.S/Ok", 0, 1000 - 275 - 37 + 1);
    CHECK(waitf(p_closed, d) && strcmp(d->grpc_status, "8") == 0);
    CHECK(strstr(d->grpc_message, "is 1001 bytes") != NULL);
    /* 3000 fields (the client's nghttp2 sends each after the first as one indexed byte) */
    lt *e = call(cli, conn, "/l.S/Ok", 3000, 0);
    CHECK(waitf(p_closed, e) && strcmp(e->grpc_status, "8") == 0);
    pthread_mutex_lock(&mu);
    CHECK(nserver == 2);
    pthread_mutex_unlock(&mu);

    /* Response blocks over the client's limit (150 fields > 100): the client resets. */
    lt *f = call(cli, conn, "/l.S/ManyHeaders", 0, 0);
    CHECK(waitf(p_closed, f) && f->code == H2_CLOSE_HEADERS_TOO_LARGE && f->nheaders == 0);
    CHECK(waitf(p_nserver, (void *)3) && waitf(p_closed, server_streams[2]));

    /* A 70 KB response header: over nghttp2's 64 KiB send limit, so the frame is never sent;
     * the server resets the stream (INTERNAL_ERROR) and both sides learn at once. */
    lt *g = call(cli, conn, "/l.S/BigHeaders", 0, 0);
    CHECK(waitf(p_closed, g) && g->code == 2 && g->nheaders == 0);
    CHECK(waitf(p_nserver, (void *)4) && waitf(p_closed, server_streams[3]) && server_streams[3]->code == 2);

    /* A peer reset with NO_ERROR cancels the server stream (reported as CANCEL). */
    lt *h = call(cli, conn, "/l.S/Hold", 0, 0);
    CHECK(waitf(p_nserver, (void *)5));
    h2_reset(cli, h->id, 0);
    CHECK(waitf(p_closed, server_streams[4]) && server_streams[4]->code == 8);
    CHECK(waitf(p_closed, h));

    /* The connection still serves. */
    lt *i = call(cli, conn, "/l.S/Ok", 0, 0);
    CHECK(waitf(p_closed, i) && strcmp(i->grpc_status, "0") == 0);

    h2_loop_destroy(cli);
    h2_loop_destroy(srv);
    lt *mine[] = {a, b, c, d, e, f, g, h, i};
    for (size_t k = 0; k < sizeof mine / sizeof mine[0]; k++) free(mine[k]);
    for (int k = 0; k < nserver; k++) free(server_streams[k]);
    nserver = 0;
}
