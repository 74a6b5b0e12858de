/*
 * libFuzzer target: raw bytes from a client into one server connection of the shim, the
 * whole inbound path (connection preface, frames, HPACK, flow control, gRPC deframing) and
 * what the application's answers make the shim send back.
 *
 * One execution, no threads and no timers:
 *   - a loop is created (h2_loop_create) but its thread is never started; this file runs
 *     the loop's iterations itself (pump(): loop_main's handle_events and finish_iteration
 *     from h2_loop.c, with a zero epoll timeout), so it includes h2_loop.c to reach them;
 *   - a server connection (h2_conn_new, as h2_accept_all makes one) is given one end of a
 *     socketpair; the input is written into the other end in pieces of varying size, the
 *     loop is pumped after each, and whatever the server writes back is read and dropped;
 *   - then the client end shuts its write side (EOF) and the loop is destroyed, which
 *     closes every stream and frees everything (LeakSanitizer checks that nothing is left).
 *
 * The application behind it answers like the real servers do, chosen per call from a hash
 * of :path: refuse, Trailers-Only, unary, echo every message, hold messages unconsumed and
 * release them later (flow control), large responses through h2_buf_alloc (NO_COPY writes),
 * reset after the first message.
 *
 * Production code is compiled unchanged, with -DH2_TEST_HOOKS (h2_mem.h's allocation
 * counters, defined here, never armed).
 */
#define _GNU_SOURCE
#include "h2_loop.c" /* static handle_events & co; the other shim units are linked as they are */

#include <stdio.h>
#include <sys/socket.h>

atomic_long h2_mem_fail_at;
atomic_long h2_mem_count;

/* ---------------------------------------------------------------- the application */

enum mode { M_TRAILERS_ONLY, M_UNARY, M_ECHO, M_SLOW, M_BIG, M_RESET, M_NMODES };

typedef struct call {
    h2_id id;
    int mode;
    int nmsgs;
    bool headers_sent;
    bool done;          /* END sent (or reset): nothing more to send */
    size_t unconsumed;  /* M_SLOW: bytes delivered and not consumed yet */
    uint8_t *kept;      /* M_SLOW: a message buffer handed over by on_message_buf, kept until close */
    uint8_t last[64];   /* start of the last message (unary answer) */
    size_t lastlen;
} call;

typedef struct app {
    h2_loop *L;
    int big_sends; /* bounded per execution */
    int live;      /* calls not yet closed */
} app;

static const h2_nv RESP_HDRS[] = {
    {(const uint8_t *)":status", 7, (const uint8_t *)"200", 3},
    {(const uint8_t *)"content-type", 12, (const uint8_t *)"application/grpc", 16},
};
static const h2_nv TRL_OK[] = {{(const uint8_t *)"grpc-status", 11, (const uint8_t *)"0", 1}};
static const h2_nv TRL_ERR[] = {
    {(const uint8_t *)"grpc-status", 11, (const uint8_t *)"8", 1},
    {(const uint8_t *)"grpc-message", 12, (const uint8_t *)"too large", 9},
};
static const h2_nv TO_UNIMPL[] = {
    {(const uint8_t *)":status", 7, (const uint8_t *)"200", 3},
    {(const uint8_t *)"content-type", 12, (const uint8_t *)"application/grpc", 16},
    {(const uint8_t *)"grpc-status", 11, (const uint8_t *)"12", 2},
};

static uint32_t fnv1a(const uint8_t *p, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 16777619u;
    return h;
}

static void *on_request(void *ctx, h2_id conn, h2_id stream, const h2_nv *nv, size_t n, int flags)
{
    (void)conn;
    app *A = ctx;
    const h2_nv *path = NULL;
    for (size_t i = 0; i < n; i++) {
        /* every field is readable (ASan checks the shim's header arena) */
        volatile uint32_t touch = fnv1a(nv[i].name, nv[i].namelen) ^ fnv1a(nv[i].value, nv[i].valuelen);
        (void)touch;
        if (nv[i].namelen == 5 && memcmp(nv[i].name, ":path", 5) == 0) path = &nv[i];
    }
    if (!path) return NULL; /* refused: REFUSED_STREAM */
    uint32_t h = fnv1a(path->value, path->valuelen);
    if (h % 8 == 7) return NULL;
    call *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->id = stream;
    c->mode = (int)(h % 8 % M_NMODES);
    A->live++;
    switch (c->mode) {
    case M_TRAILERS_ONLY:
        h2_send(A->L, stream, TO_UNIMPL, 3, 0, NULL, 0, NULL, 0, H2_SEND_END);
        c->done = c->headers_sent = true;
        break;
    case M_ECHO:
    case M_BIG:
        h2_send(A->L, stream, RESP_HDRS, 2, 0, NULL, 0, NULL, 0, 0);
        c->headers_sent = true;
        break;
    default: break;
    }
    if ((flags & H2_HEADERS_END_STREAM) && c->mode == M_RESET) {
        h2_reset(A->L, stream, 0x8);
        c->done = true;
    }
    return c;
}

/* Sends a response message of `len` bytes made from `seed` (large ones through a message buffer). */
static void send_msg(app *A, call *c, const uint8_t *seed, size_t seedlen, size_t len, int flags)
{
    uint8_t *b = h2_buf_alloc(A->L, len);
    if (!b) return;
    for (size_t i = 0; i < len; i++) b[i] = seedlen ? seed[i % seedlen] : (uint8_t)i;
    h2_send_buf(A->L, c->id, b, len, flags);
}

static size_t on_message(void *ctx, void *user, int compressed, const uint8_t *data, size_t len)
{
    app *A = ctx;
    call *c = user;
    volatile uint32_t touch = fnv1a(data, len); /* the whole message is readable */
    (void)touch;
    c->nmsgs++;
    c->lastlen = len < sizeof c->last ? len : sizeof c->last;
    memcpy(c->last, data, c->lastlen);
    if (c->done) return len + 5;
    switch (c->mode) {
    case M_ECHO:
        h2_send(A->L, c->id, NULL, 0, 1, data, len, NULL, 0, compressed ? H2_SEND_COMPRESSED : 0);
        return len + 5;
    case M_BIG:
        if (A->big_sends < 16) {
            A->big_sends++;
            send_msg(A, c, data, len, 20000 + (len % 50000), 0); /* >= H2_NOCOPY_MIN */
        }
        return len + 5;
    case M_SLOW:
        c->unconsumed += len + 5;
        if (c->nmsgs % 3 == 0) { /* catch up now and then */
            h2_consume(A->L, c->id, c->unconsumed);
            c->unconsumed = 0;
        }
        return 0;
    case M_RESET:
        h2_reset(A->L, c->id, 0x8);
        c->done = true;
        return len + 5;
    default: return len + 5;
    }
}

static size_t on_message_buf(void *ctx, void *user, int compressed, uint8_t *buf, size_t len)
{
    app *A = ctx;
    call *c = user;
    size_t r = on_message(ctx, user, compressed, buf, len);
    if (c->mode == M_SLOW && !c->kept) {
        c->kept = buf; /* the application may hold it: released at close */
    } else {
        h2_buf_free(A->L, buf);
    }
    return r;
}

static void on_end(void *ctx, void *user)
{
    app *A = ctx;
    call *c = user;
    if (c->done) return;
    c->done = true;
    switch (c->mode) {
    case M_UNARY:
    case M_SLOW:
        if (c->unconsumed) h2_consume(A->L, c->id, c->unconsumed);
        c->unconsumed = 0;
        h2_send(A->L, c->id, RESP_HDRS, 2, 1, c->last, c->lastlen, TRL_OK, 1, H2_SEND_END);
        break;
    case M_RESET: h2_reset(A->L, c->id, 0x8); break;
    default: h2_send(A->L, c->id, NULL, 0, 0, NULL, 0, TRL_OK, 1, H2_SEND_END); break;
    }
}

static void on_stream_error(void *ctx, void *user, int kind, size_t detail)
{
    (void)kind; (void)detail;
    app *A = ctx;
    call *c = user;
    if (c->done) return;
    c->done = true;
    if (c->headers_sent)
        h2_send(A->L, c->id, NULL, 0, 0, NULL, 0, TRL_ERR, 2, H2_SEND_END);
    else
        h2_send(A->L, c->id, RESP_HDRS, 2, 0, NULL, 0, TRL_ERR, 2, H2_SEND_END);
}

static void on_drain(void *ctx, void *user, size_t bytes) { (void)ctx; (void)user; (void)bytes; }

static void on_close(void *ctx, void *user, uint32_t code)
{
    (void)code;
    app *A = ctx;
    call *c = user;
    if (c->kept) h2_buf_free(A->L, c->kept);
    A->live--;
    free(c);
}

/* ---------------------------------------------------------------- driving the loop */

static void drain(int fd)
{
    static uint8_t sink[64 * 1024];
    while (recv(fd, sink, sizeof sink, MSG_DONTWAIT) > 0) {
    }
}

/* Iterations of loop_main (h2_loop.c: the same handle_events and finish_iteration, without
 * timers or waiting): until no event, command or flush is left. */
static void pump(h2_loop *L, int peer)
{
    struct epoll_event evs[16];
    for (int iter = 0; iter < 256; iter++) {
        int n = epoll_wait(L->epfd, evs, 16, 0);
        if (n < 0) n = 0;
        handle_events(L, evs, n);
        finish_iteration(L);
        drain(peer);
        if (n == 0 && !queue_nonempty(L)) break;
    }
}

/* Writes all of p[0..n) to the client end, draining the server's output (and pumping) when
 * the socket is full. false once the server side is gone. */
static bool feed(h2_loop *L, int peer, const uint8_t *p, size_t n)
{
    while (n) {
        ssize_t w = send(peer, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0) {
            if (errno == EINTR) continue;
            if (errno != EAGAIN) return false;
            pump(L, peer);
            if (!L->local.conns) return false;
            continue;
        }
        p += w;
        n -= (size_t)w;
    }
    return true;
}

/* Piece sizes, cycled: split frames and headers at odd places, sometimes whole at once. */
static const size_t PIECES[] = {4096, 9, 1, 777, 16384, 24, 2, 1500, 5, 65536};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    app A = {0};
    h2_callbacks cb = {
        .ctx = &A,
        .on_request = on_request,
        .on_message = on_message,
        .on_message_buf = on_message_buf,
        .on_end = on_end,
        .on_stream_error = on_stream_error,
        .on_drain = on_drain,
        .on_close = on_close,
    };
    h2_config cfg;
    h2_config_init(&cfg);
    cfg.max_recv_message = 64 * 1024; /* reachable TOO_LARGE besides huge declared lengths */
    cfg.initial_window = 65535;       /* small windows: flow control and WINDOW_UPDATE paths */
    cfg.max_concurrent_streams = 100;
    h2_loop *L = h2_loop_create(&cfg, &cb);
    if (!L) abort();
    A.L = L;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0) abort();
    h2_conn *c = h2_conn_new(L, h2_loop_new_id(L), sv[0], false);
    if (!c) abort();
    if (h2_conn_epoll(c, EPOLL_CTL_ADD, EPOLLIN) != 0) abort();
    h2_conn_mark(c); /* our SETTINGS */
    pump(L, sv[1]);
    size_t off = 0;
    for (unsigned k = 0; off < size && L->local.conns; k++) {
        size_t piece = PIECES[k % (sizeof PIECES / sizeof PIECES[0])];
        if (piece > size - off) piece = size - off;
        if (!feed(L, sv[1], data + off, piece)) break;
        off += piece;
        pump(L, sv[1]);
    }
    shutdown(sv[1], SHUT_WR); /* the client is done: EOF closes the connection */
    pump(L, sv[1]);
    h2_loop_destroy(L); /* closes what is left: on_close for every call */
    close(sv[1]);
    if (A.live != 0) {
        fprintf(stderr, "fuzz_h2_server: %d calls never got on_close\n", A.live);
        abort();
    }
    return 0;
}
