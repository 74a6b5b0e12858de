/*
 * Lingering close (h2_linger.h) over loopback: a server that ends a connection with a GOAWAY
 * while the peer's bytes sit unread in its receive buffer. Without the linger, close() there
 * sends RST and the peer gets "connection reset" instead of the GOAWAY and a clean EOF. Also:
 * the lingering socket keeps its place in the per-address cap until it closes, and a peer that
 * never stops sending is cut off after H2_LINGER_MS (plus a tick).
 */
#define _GNU_SOURCE
#include "h2_linger.h"
#include "h2_timer.h"
#include "h2shim.h"
#include "test.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static const uint8_t PREFACE[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
static const uint8_t SETTINGS[] = {0, 0, 0, 0x4, 0, 0, 0, 0, 0};
/* HEADERS on stream 1, END_HEADERS: :method POST, :scheme http, :path /, :authority a (HPACK
 * indexed and literal fields) */
static const uint8_t HEADERS[] = {0, 0, 6, 0x1, 0x4, 0, 0, 0, 1, 0x83, 0x86, 0x84, 0x41, 0x01, 'a'};
/* DATA on stream 0: a connection error (PROTOCOL_ERROR), answered with GOAWAY */
static const uint8_t BAD[] = {0, 0, 1, 0x0, 0, 0, 0, 0, 0, 'x'};

/* The server's loop is held inside on_request until the test has queued its bytes: then the
 * bad frame and what follows it are certainly in the socket before the server reads them. */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int in_request, go;

static void *on_request(void *ctx, h2_id conn, h2_id stream, const h2_nv *nv, size_t n, int flags)
{
    (void)ctx; (void)conn; (void)stream; (void)nv; (void)n; (void)flags;
    pthread_mutex_lock(&mu);
    in_request = 1;
    pthread_cond_broadcast(&cv);
    while (!go) pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
    return NULL;
}

static void wait_in_request(int fd)
{
    struct timespec end;
    clock_gettime(CLOCK_REALTIME, &end);
    end.tv_sec += 20; /* a loaded machine, valgrind */
    pthread_mutex_lock(&mu);
    while (!in_request && pthread_cond_timedwait(&cv, &mu, &end) == 0) {}
    if (!in_request) { /* say what the server answered instead */
        uint8_t b[256];
        ssize_t k = recv(fd, b, sizeof b, MSG_DONTWAIT);
        fprintf(stderr, "no request after 20 s; the server sent %zd bytes (errno %d):", k, k < 0 ? errno : 0);
        for (ssize_t i = 0; i < k; i++) fprintf(stderr, " %02x", b[i]);
        fprintf(stderr, "\n");
    }
    CHECK(in_request);
    pthread_mutex_unlock(&mu);
}

static void release_server(void)
{
    pthread_mutex_lock(&mu);
    go = 1;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
}

static void send_all(int fd, const uint8_t *p, size_t n)
{
    CHECK(send(fd, p, n, MSG_NOSIGNAL) == (ssize_t)n);
}

/* Opens a connection whose server is held in on_request, then queues the bad frame and as
 * much more as the socket takes (well over what the server reads per event). */
static int doomed_connection(uint16_t port)
{
    in_request = go = 0;
    int fd = test_tcp_to(port);
    send_all(fd, PREFACE, 24);
    send_all(fd, SETTINGS, sizeof SETTINGS);
    send_all(fd, HEADERS, sizeof HEADERS);
    wait_in_request(fd);
    send_all(fd, BAD, sizeof BAD);
    CHECK(fcntl(fd, F_SETFL, O_NONBLOCK) == 0);
    static uint8_t junk[64 * 1024];
    size_t queued = 0;
    for (;;) {
        ssize_t k = send(fd, junk, sizeof junk, MSG_NOSIGNAL);
        if (k < 0) {
            CHECK(errno == EAGAIN || errno == EWOULDBLOCK);
            break;
        }
        queued += (size_t)k;
        if (queued >= (8u << 20)) break;
    }
    CHECK(queued > 4 * 64 * 1024); /* more than the server reads in one event */
    release_server();
    return fd;
}

/* Reads until EOF or an error (within 10 s): returns 0 on EOF, else the errno; *goaway tells
 * whether a GOAWAY frame came before. */
static int read_to_end(int fd, int *goaway)
{
    static uint8_t buf[1 << 16];
    size_t have = 0, pos = 0; /* frames parsed up to pos */
    *goaway = 0;
    int64_t end = h2_now_ms() + 10000;
    while (h2_now_ms() < end) {
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        if (poll(&pf, 1, 100) != 1) continue;
        ssize_t k = recv(fd, buf + have, sizeof buf - have, MSG_DONTWAIT);
        if (k == 0) return 0;
        if (k < 0) {
            if (errno == EAGAIN || errno == EINTR) continue;
            return errno;
        }
        have += (size_t)k;
        while (have - pos >= 9) {
            size_t len = (size_t)buf[pos] << 16 | (size_t)buf[pos + 1] << 8 | buf[pos + 2];
            if (have - pos < 9 + len) break;
            if (buf[pos + 3] == 0x7) *goaway = 1;
            pos += 9 + len;
        }
        CHECK(have < sizeof buf); /* a few small frames */
    }
    return ETIMEDOUT;
}

static h2_stats stats(h2_loop *l)
{
    h2_stats s;
    h2_loop_stats(l, &s);
    return s;
}

/* Milliseconds until the server's end of fd is gone: what we send then fails (the linger
 * ended, the socket closed). -1 if still there after max_ms. */
static int ms_until_gone(int fd, int max_ms)
{
    int64_t t0 = h2_now_ms();
    uint8_t b[1024] = {0};
    while (h2_now_ms() - t0 < max_ms) {
        ssize_t k = send(fd, b, sizeof b, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (k < 0 && errno != EAGAIN && errno != EINTR) return (int)(h2_now_ms() - t0);
        usleep(20000);
    }
    return -1;
}

/* A started server loop on 127.0.0.1 (per_addr: its per-address connection cap, 0 = none). */
static h2_loop *start_server(uint32_t per_addr, uint16_t *port)
{
    h2_config cfg;
    h2_config_init(&cfg);
    if (per_addr) cfg.max_connections_per_addr = per_addr;
    h2_callbacks cb = {.on_request = on_request};
    h2_loop *l = h2_loop_create(&cfg, &cb);
    CHECK(l);
    CHECK(h2_listen(l, "127.0.0.1", 0, port) == 0);
    CHECK(h2_loop_start(l) == 0);
    return l;
}

static void test_goaway_read_not_reset(void)
{
    uint16_t port;
    h2_loop *l = start_server(1, &port);

    /* 1. The peer reads the GOAWAY and a clean EOF, not a reset. */
    int fd = doomed_connection(port);
    int goaway = 0;
    CHECK(read_to_end(fd, &goaway) == 0);
    CHECK(goaway);
    /* 2. While it lingers it keeps its place under the per-address cap of 1. */
    int other = test_tcp_to(port);
    int got_other = 0;
    CHECK(read_to_end(other, &got_other) != ETIMEDOUT && !got_other); /* closed at once */
    CHECK(stats(l).conns_rejected == 1);
    close(other);
    /* The peer closes: the linger ends (EOF) and the place is free again. */
    close(fd);
    int64_t t0 = h2_now_ms();
    int fresh = -1;
    while (h2_now_ms() - t0 < 10000) { /* the server reads our EOF on its own time */
        fresh = test_tcp_to(port);
        /* Still over the cap, the server closes it at once, maybe before these sends (a reset). */
        bool sent = send(fresh, PREFACE, 24, MSG_NOSIGNAL) == 24 &&
                    send(fresh, SETTINGS, sizeof SETTINGS, MSG_NOSIGNAL) == (ssize_t)sizeof SETTINGS;
        struct pollfd pf = {.fd = fresh, .events = POLLIN};
        uint8_t b[64];
        if (sent && poll(&pf, 1, 5000) == 1 && recv(fresh, b, sizeof b, 0) > 0) break; /* its SETTINGS: accepted */
        close(fresh);
        fresh = -1;
        usleep(20000);
    }
    CHECK(fresh >= 0);
    close(fresh);
    /* The server reads its EOF and gives the place back (else the next one is over the cap). */
    for (int i = 0; i < 1000 && stats(l).connections != 0; i++) usleep(10000);
    CHECK(stats(l).connections == 0);

    /* 3. A peer that keeps sending and never closes is cut off after the linger time. */
    fd = doomed_connection(port);
    CHECK(read_to_end(fd, &goaway) == 0 && goaway);
    int gone = ms_until_gone(fd, 10000);
    CHECK(gone >= 0 && gone <= H2_LINGER_MS + H2_TICK_MAX_MS + 3000); /* + scheduling (valgrind) */
    close(fd);
    CHECK(stats(l).connections == 0);
    h2_loop_destroy(l);
}

/* A loop destroyed while a socket lingers frees it (valgrind and ASan check). */
static void test_teardown_while_lingering(void)
{
    uint16_t port;
    h2_loop *l = start_server(0, &port);
    int fd = doomed_connection(port);
    int goaway = 0;
    CHECK(read_to_end(fd, &goaway) == 0 && goaway);
    h2_loop_destroy(l);
    close(fd);
}

void linger_tests(void)
{
    RUN(test_goaway_read_not_reset());
    RUN(test_teardown_while_lingering());
}
