/*
 * The budget of partially received messages (h2_config.max_partial_bytes(_per_conn)): six
 * 1 MiB messages at once on one connection, through 64 KiB stream windows, against budgets of
 * 256 KiB (loop) and 128 KiB (connection). The windows stop re-opening early past the budget
 * (streams wait), yet every message completes (one waiter at a time may pass the budget), and
 * the loop never holds more than the budget, the windows and one message.
 */
#define _GNU_SOURCE
#include "h2shim.h"
#include "test.h"

#include <pthread.h>
#include <string.h>
#include <time.h>

#define NCALLS 6
#define MSG (1u << 20)

typedef struct pcall {
    int closed;
    uint32_t code;
    size_t got; /* server: payload bytes of the message received */
    char grpc_status[8];
} pcall;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static h2_loop *srv;
static pcall server_calls[NCALLS];
static int nserver;

static void *p_on_request(void *ctx, h2_id conn, h2_id stream, const h2_nv *nv, size_t n, int flags)
{
    (void)ctx; (void)conn; (void)nv; (void)n; (void)flags;
    pthread_mutex_lock(&mu);
    CHECK(nserver < NCALLS);
    pcall *c = &server_calls[nserver++];
    pthread_mutex_unlock(&mu);
    c->code = (uint32_t)stream; /* the stream token, until on_close */
    return c;
}

static size_t p_on_message(void *ctx, void *user, int compressed, const uint8_t *d, size_t len)
{
    (void)ctx; (void)compressed;
    pcall *c = user;
    for (size_t i = 0; i < len; i += 4096) CHECK(d[i] == (uint8_t)(i / 4096));
    c->got = len;
    return len + 5;
}

static const h2_nv RESP[] = {{(const uint8_t *)":status", 7, (const uint8_t *)"200", 3},
                             {(const uint8_t *)"content-type", 12, (const uint8_t *)"application/grpc", 16}};
static const h2_nv OK[] = {{(const uint8_t *)"grpc-status", 11, (const uint8_t *)"0", 1}};

static void p_on_end(void *ctx, void *user)
{
    (void)ctx;
    pcall *c = user;
    CHECK(h2_send(srv, (h2_id)c->code, RESP, 2, 0, NULL, 0, OK, 1, H2_SEND_END) == 0);
}

static void p_on_headers(void *ctx, void *user, const h2_nv *nv, size_t n, int flags)
{
    (void)ctx; (void)flags;
    pcall *c = user;
    for (size_t i = 0; i < n; i++)
        if (nv[i].namelen == 11 && memcmp(nv[i].name, "grpc-status", 11) == 0 && nv[i].valuelen < sizeof c->grpc_status)
            memcpy(c->grpc_status, nv[i].value, nv[i].valuelen);
}

static void p_on_close(void *ctx, void *user, uint32_t code)
{
    (void)ctx;
    pcall *c = user;
    pthread_mutex_lock(&mu);
    c->code = code;
    c->closed = 1;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
}

static int all_closed(pcall *calls)
{
    for (int i = 0; i < NCALLS; i++)
        if (!calls[i].closed) return 0;
    return 1;
}

void partial_tests(void)
{
    h2_callbacks scb = {.on_request = p_on_request, .on_message = p_on_message, .on_end = p_on_end,
                        .on_close = p_on_close};
    h2_callbacks ccb = {.on_headers = p_on_headers, .on_close = p_on_close};
    h2_config cfg;
    h2_config_init(&cfg);
    CHECK(cfg.max_partial_bytes == 64u << 20 && cfg.max_partial_bytes_per_conn == 8u << 20);
    cfg.initial_window = 64 * 1024;
    cfg.max_recv_message = 2 * MSG;
    cfg.max_partial_bytes = 256 * 1024;
    cfg.max_partial_bytes_per_conn = 128 * 1024;
    srv = h2_loop_create(&cfg, &scb);
    h2_loop *cli = h2_loop_create(NULL, &ccb);
    CHECK(srv && cli);
    uint16_t port = 0;
    CHECK(h2_listen(srv, "127.0.0.1", 0, &port) == 0);
    CHECK(h2_loop_start(srv) == 0 && h2_loop_start(cli) == 0);
    h2_id conn = h2_connect(cli, "127.0.0.1", port);
    CHECK(conn != 0);

    static uint8_t msg[MSG];
    for (size_t i = 0; i < MSG; i += 4096) memset(msg + i, (int)(i / 4096), 4096);
    static const h2_nv REQ[] = {
        {(const uint8_t *)":method", 7, (const uint8_t *)"POST", 4},
        {(const uint8_t *)":scheme", 7, (const uint8_t *)"http", 4},
        {(const uint8_t *)":path", 5, (const uint8_t *)"/p.S/Big", 8},
        {(const uint8_t *)":authority", 10, (const uint8_t *)"p", 1},
        {(const uint8_t *)"content-type", 12, (const uint8_t *)"application/grpc", 16},
        {(const uint8_t *)"te", 2, (const uint8_t *)"trailers", 8}};
    pcall calls[NCALLS] = {0};
    for (int i = 0; i < NCALLS; i++) {
        h2_id id = h2_open_stream(cli, conn, &calls[i], REQ, 6);
        CHECK(id != 0);
        CHECK(h2_send(cli, id, NULL, 0, 1, msg, MSG, NULL, 0, H2_SEND_END) == 0);
    }

    /* Sample the server's partial bytes until every call closed (bounded only as a safety net). */
    uint64_t peak = 0;
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        h2_stats s;
        h2_loop_stats(srv, &s);
        if (s.inbound_buffered > peak) peak = s.inbound_buffered;
        pthread_mutex_lock(&mu);
        int done = all_closed(calls);
        pthread_mutex_unlock(&mu);
        if (done) break;
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        CHECK(now.tv_sec - t0.tv_sec < 60);
        struct timespec pause = {0, 200 * 1000};
        nanosleep(&pause, NULL);
    }
    for (int i = 0; i < NCALLS; i++) CHECK(calls[i].code == 0 && strcmp(calls[i].grpc_status, "0") == 0);
    pthread_mutex_lock(&mu);
    CHECK(nserver == NCALLS);
    for (int i = 0; i < NCALLS; i++) CHECK(server_calls[i].got == MSG);
    pthread_mutex_unlock(&mu);
    h2_stats s;
    h2_loop_stats(srv, &s);
    fprintf(stderr, "     peak %llu bytes of partial messages, %llu waits, %llu busy\n", (unsigned long long)peak,
            (unsigned long long)s.assembling_waits, (unsigned long long)s.assembling_busy);
    CHECK(s.assembling_waits > 0); /* the budget was reached */
    CHECK(s.assembling_busy == 0);
    CHECK(s.inbound_buffered == 0);
    /* the connection's budget, every stream's window, and the one favoured message */
    CHECK(peak <= 128 * 1024 + NCALLS * (64 * 1024 + 5) + MSG + 5);
    h2_loop_destroy(cli);
    h2_loop_destroy(srv);
    memset(server_calls, 0, sizeof server_calls);
    nserver = 0;
}
