/*
 * Keepalive and connection lifetimes (h2_keepalive), and finding the server (h2_addrs):
 * the clock and strike rules without sockets; then over loopback with a raw client: the
 * server's PING on an idle connection and its close when unanswered, GOAWAY
 * ENHANCE_YOUR_CALM "too_many_pings", the max-age GOAWAY; and the client's address walk
 * (a refused and a silent address before a live one, localhost on ::1, a Unix socket).
 */
#define _GNU_SOURCE
#include "h2_keepalive.h"
#include "h2_loop.h"
#include "h2_timer.h"
#include "h2shim.h"
#include "test.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

/* ------------------------------------------------------------ rules, no sockets */

static void test_ka_clock(void)
{
    h2_keepalive k;
    h2_ka_start(&k, 1000, 0, 1);
    CHECK(k.age_at == 0);
    CHECK(h2_ka_check(&k, 1999, true, 1000, 500, 0) == H2_KA_KEEP);
    CHECK(h2_ka_check(&k, 2000, false, 1000, 500, 0) == H2_KA_KEEP); /* a client without calls */
    CHECK(h2_ka_check(&k, 2000, true, 0, 500, 0) == H2_KA_KEEP);     /* off */
    CHECK(h2_ka_check(&k, 2000, true, 1000, 500, 0) == H2_KA_SEND_PING);
    CHECK(h2_ka_check(&k, 2499, true, 1000, 500, 0) == H2_KA_KEEP); /* waiting for the answer */
    CHECK(h2_ka_check(&k, 2500, true, 1000, 500, 0) == H2_KA_CLOSE_DEAD);
    h2_ka_read(&k, 2400); /* anything received answers it */
    CHECK(k.ping_sent == 0);
    CHECK(h2_ka_check(&k, 3399, true, 1000, 500, 0) == H2_KA_KEEP);
    CHECK(h2_ka_check(&k, 3400, true, 1000, 0, 0) == H2_KA_SEND_PING);
    CHECK(h2_ka_check(&k, 999999, true, 1000, 0, 0) == H2_KA_KEEP); /* timeout 0: never dead */
    /* A tick that runs late (the loop thread was not scheduled): that time is the loop's, not
     * the peer's, and does not count against the answer. */
    h2_ka_start(&k, 1000, 0, 1);
    CHECK(h2_ka_check(&k, 2000, true, 1000, 500, 0) == H2_KA_SEND_PING);
    h2_ka_late(&k, 3000); /* the next tick, due at 2100, ran at 5100 */
    CHECK(h2_ka_check(&k, 5100, true, 1000, 500, 0) == H2_KA_KEEP);
    CHECK(h2_ka_check(&k, 5499, true, 1000, 500, 0) == H2_KA_KEEP);
    CHECK(h2_ka_check(&k, 5500, true, 1000, 500, 0) == H2_KA_CLOSE_DEAD);
    h2_ka_start(&k, 1000, 0, 1);
    h2_ka_late(&k, 3000); /* no PING out: nothing to move */
    CHECK(k.ping_sent == 0 && k.last_read == 1000);
}

static void test_ka_strikes(void)
{
    h2_keepalive k;
    h2_ka_start(&k, 1000, 0, 1);
    CHECK(!h2_ka_peer_ping(&k, 1000, 300)); /* the first is free */
    CHECK(!h2_ka_peer_ping(&k, 1300, 300)); /* on time */
    CHECK(!h2_ka_peer_ping(&k, 1301, 300) && k.strikes == 1);
    CHECK(!h2_ka_peer_ping(&k, 1302, 300) && k.strikes == 2);
    h2_ka_sent_data(&k); /* we sent HEADERS or DATA: forgiven */
    CHECK(k.strikes == 0);
    CHECK(!h2_ka_peer_ping(&k, 1303, 300)); /* first since the data */
    CHECK(!h2_ka_peer_ping(&k, 1304, 300) && !h2_ka_peer_ping(&k, 1305, 300));
    CHECK(h2_ka_peer_ping(&k, 1306, 300)); /* the third strike */
    h2_ka_start(&k, 1000, 0, 1);
    for (int i = 0; i < 10; i++) CHECK(!h2_ka_peer_ping(&k, 1000 + i, 0)); /* no limit */
}

static void test_ka_age(void)
{
    for (uint64_t seed = 0; seed < 1000; seed++) {
        uint32_t j = h2_ka_jitter(10000, seed);
        CHECK(j >= 9000 && j <= 11000);
    }
    CHECK(h2_ka_jitter(1, 5) == 1);
    h2_keepalive k;
    h2_ka_start(&k, 0, 10000, 42);
    int64_t at = k.age_at;
    CHECK(at >= 9000 && at <= 11000);
    CHECK(h2_ka_check(&k, at - 1, true, 0, 0, 500) == H2_KA_KEEP);
    CHECK(h2_ka_check(&k, at, true, 0, 0, 500) == H2_KA_SEND_AGE_GOAWAY);
    CHECK(h2_ka_check(&k, at + 499, true, 0, 0, 500) == H2_KA_KEEP);
    CHECK(h2_ka_check(&k, at + 500, true, 0, 0, 500) == H2_KA_CLOSE_AGE);
    h2_ka_start(&k, 0, 10000, 42);
    CHECK(h2_ka_check(&k, at, true, 0, 0, 0) == H2_KA_SEND_AGE_GOAWAY);
    CHECK(h2_ka_check(&k, at + 100000000, true, 0, 0, 0) == H2_KA_KEEP); /* grace 0: the calls decide */
    CHECK(h2_ka_tick_ms(1000, 0, 0, 0, 0) == 1000);
    CHECK(h2_ka_tick_ms(1000, 7200000, 20000, 0, 2000) == 500);
    CHECK(h2_ka_tick_ms(1000, 100, 0, 0, 0) == H2_TICK_MIN_MS);
}

/* ------------------------------------------------------------ the server, a raw client */

static const uint8_t PREFACE[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
static const uint8_t SETTINGS0[] = {0, 0, 0, 0x4, 0, 0, 0, 0, 0};
static const uint8_t PING[] = {0, 0, 8, 0x6, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8};

static h2_loop *server(const h2_config *cfg, uint16_t *port)
{
    h2_callbacks cb = {0};
    h2_loop *l = h2_loop_create(cfg, &cb);
    CHECK(l);
    CHECK(h2_listen(l, "127.0.0.1", 0, port) == 0);
    CHECK(h2_loop_start(l) == 0);
    return l;
}

static h2_stats stats(h2_loop *l)
{
    h2_stats s;
    h2_loop_stats(l, &s);
    return s;
}

/* A raw client: preface and an empty SETTINGS sent, nothing else. */
static int raw_client(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    CHECK(connect(fd, (struct sockaddr *)&a, sizeof a) == 0);
    CHECK(send(fd, PREFACE, 24, 0) == 24);
    CHECK(send(fd, SETTINGS0, sizeof SETTINGS0, 0) == (ssize_t)sizeof SETTINGS0);
    return fd;
}

typedef struct seen {
    int pings, goaways, closed_ms; /* closed_ms: -1 = still open */
    uint32_t goaway_code;
    char debug[32];
} seen;

/* Reads frames for up to max_ms or until the server closes; stops early at a GOAWAY when asked. */
static seen read_frames(int fd, int max_ms, int stop_at_goaway)
{
    seen s = {.closed_ms = -1};
    uint8_t buf[4096];
    size_t have = 0;
    int64_t t0 = h2_now_ms();
    for (;;) {
        int64_t left = t0 + max_ms - h2_now_ms();
        if (left <= 0) return s;
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        if (poll(&pf, 1, (int)left) != 1) continue;
        ssize_t k = recv(fd, buf + have, sizeof buf - have, 0);
        if (k <= 0) {
            s.closed_ms = (int)(h2_now_ms() - t0);
            return s;
        }
        have += (size_t)k;
        while (have >= 9) {
            size_t len = (size_t)buf[0] << 16 | (size_t)buf[1] << 8 | buf[2];
            if (have < 9 + len) break;
            uint8_t type = buf[3], flags = buf[4];
            if (type == 0x6 && !(flags & 1)) s.pings++;
            if (type == 0x7 && len >= 8) {
                s.goaways++;
                s.goaway_code = (uint32_t)buf[13] << 24 | (uint32_t)buf[14] << 16 | (uint32_t)buf[15] << 8 | buf[16];
                size_t dl = len - 8 < sizeof s.debug - 1 ? len - 8 : sizeof s.debug - 1;
                memcpy(s.debug, buf + 17, dl);
                s.debug[dl] = 0;
            }
            memmove(buf, buf + 9 + len, have - 9 - len);
            have -= 9 + len;
            if (stop_at_goaway && s.goaways) return s;
        }
    }
}

/* An idle connection gets a PING after keepalive_time; unanswered, it is closed after the timeout. */
static void test_server_ping_and_dead(void)
{
    h2_config cfg;
    h2_config_init(&cfg);
    cfg.keepalive_time_ms = 200;
    cfg.keepalive_timeout_ms = 300;
    uint16_t port;
    h2_loop *srv = server(&cfg, &port);
    int fd = raw_client(port);
    seen s = read_frames(fd, 5000, 0);
    CHECK(s.pings == 1 && s.closed_ms >= 500 && s.closed_ms < 5000);
    CHECK(stats(srv).keepalive_pings == 1 && stats(srv).keepalive_timeouts == 1);
    close(fd);
    h2_loop_destroy(srv);
}

/* Pings faster than min_ping_interval: the third strike gets GOAWAY ENHANCE_YOUR_CALM. */
static void test_too_many_pings(void)
{
    h2_config cfg;
    h2_config_init(&cfg);
    uint16_t port;
    h2_loop *srv = server(&cfg, &port); /* min_ping_interval 5 min */
    int fd = raw_client(port);
    for (int i = 0; i < 3; i++) CHECK(send(fd, PING, sizeof PING, 0) == (ssize_t)sizeof PING);
    seen s = read_frames(fd, 300, 0);
    CHECK(s.goaways == 0 && s.closed_ms < 0); /* two strikes are allowed */
    CHECK(send(fd, PING, sizeof PING, 0) == (ssize_t)sizeof PING);
    s = read_frames(fd, 5000, 0);
    CHECK(s.goaways == 1 && s.goaway_code == 0xb && strcmp(s.debug, "too_many_pings") == 0 && s.closed_ms >= 0);
    CHECK(stats(srv).ping_strike_goaways == 1);
    close(fd);
    h2_loop_destroy(srv);
}

/* max_connection_age: GOAWAY(NO_ERROR) at the age (±10 %), then closed. */
static void test_max_age(void)
{
    h2_config cfg;
    h2_config_init(&cfg);
    cfg.max_connection_age_ms = 400;
    cfg.max_connection_age_grace_ms = 200;
    uint16_t port;
    h2_loop *srv = server(&cfg, &port);
    int64_t t0 = h2_now_ms();
    int fd = raw_client(port);
    seen s = read_frames(fd, 5000, 1);
    int64_t at = h2_now_ms() - t0;
    CHECK(s.goaways == 1 && s.goaway_code == 0 && at >= 360 && at < 3000);
    s = read_frames(fd, 5000, 0);
    CHECK(s.closed_ms >= 0); /* no calls: closed within the grace */
    CHECK(stats(srv).age_goaways == 1);
    close(fd);
    h2_loop_destroy(srv);
}

/* ------------------------------------------------------------ the client's address walk */

typedef struct cli {
    pthread_mutex_t mu;
    int connected, failed, detail, goaway;
} cli;

static void on_conn(void *ctx, h2_id conn, int ev, int detail)
{
    (void)conn;
    cli *c = ctx;
    pthread_mutex_lock(&c->mu);
    if (ev == H2_CONN_CONNECTED) c->connected++;
    if (ev == H2_CONN_GOAWAY) c->goaway++;
    if (ev == H2_CONN_FAILED) {
        c->failed++;
        c->detail = detail;
    }
    pthread_mutex_unlock(&c->mu);
}

/* Waits up to 10 s for CONNECTED or FAILED; returns 1 connected, 0 failed, -1 neither. */
static int outcome(cli *c)
{
    for (int i = 0; i < 1000; i++) {
        pthread_mutex_lock(&c->mu);
        int ok = c->connected, bad = c->failed;
        pthread_mutex_unlock(&c->mu);
        if (ok) return 1;
        if (bad) return 0;
        usleep(10000);
    }
    return -1;
}

static h2_loop *client(cli *c, uint32_t connect_timeout_ms)
{
    h2_config cfg;
    h2_config_init(&cfg);
    cfg.connect_timeout_ms = connect_timeout_ms;
    h2_callbacks cb = {.ctx = c, .on_conn = on_conn};
    h2_loop *l = h2_loop_create(&cfg, &cb);
    CHECK(l && h2_loop_start(l) == 0);
    return l;
}

static struct sockaddr_in lo4(uint16_t port)
{
    return (struct sockaddr_in){.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
}

/* A refused address, then one that never answers (a full listen queue), then the live one. */
static void test_walk(void)
{
    uint16_t port;
    h2_config scfg;
    h2_config_init(&scfg);
    h2_loop *srv = server(&scfg, &port);
    /* refused: a port bound but not listening */
    int closed = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = lo4(0);
    CHECK(bind(closed, (struct sockaddr *)&a, sizeof a) == 0);
    socklen_t sl = sizeof a;
    CHECK(getsockname(closed, (struct sockaddr *)&a, &sl) == 0);
    /* silent: listen(0), never accepted, its queue filled */
    int silent = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in b = lo4(0);
    CHECK(bind(silent, (struct sockaddr *)&b, sizeof b) == 0 && listen(silent, 0) == 0);
    sl = sizeof b;
    CHECK(getsockname(silent, (struct sockaddr *)&b, &sl) == 0);
    int fill[3];
    for (int i = 0; i < 3; i++) {
        fill[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        (void)connect(fill[i], (struct sockaddr *)&b, sizeof b);
    }
    usleep(100000);
    struct sockaddr_in live = lo4(port);
    h2_addrs *l = NULL;
    CHECK(h2_addrs_add(&l, &a, sizeof a) == 0 && h2_addrs_add(&l, &b, sizeof b) == 0 &&
          h2_addrs_add(&l, &live, sizeof live) == 0);
    CHECK(h2_addrs_count(l) == 3 && h2_addrs_add(&l, &a, 0) == -EINVAL);
    cli c = {.mu = PTHREAD_MUTEX_INITIALIZER};
    h2_loop *cl = client(&c, 300);
    int64_t t0 = h2_now_ms();
    h2_id id = h2_connect_pending(cl);
    CHECK(id != 0);
    h2_connect_addrs(cl, id, l, 0);
    CHECK(outcome(&c) == 1);
    int64_t took = h2_now_ms() - t0;
    CHECK(took >= 300 && took < 5000); /* waited out the silent one */
    h2_loop_destroy(cl);
    /* every address dead: FAILED with the last one's error */
    cli d = {.mu = PTHREAD_MUTEX_INITIALIZER};
    cl = client(&d, 200);
    l = NULL;
    CHECK(h2_addrs_add(&l, &a, sizeof a) == 0 && h2_addrs_add(&l, &b, sizeof b) == 0);
    id = h2_connect_pending(cl);
    h2_connect_addrs(cl, id, l, 0);
    CHECK(outcome(&d) == 0 && d.detail == ETIMEDOUT);
    /* resolution failed: FAILED with its error */
    cli e = {.mu = PTHREAD_MUTEX_INITIALIZER};
    h2_loop_destroy(cl);
    cl = client(&e, 200);
    id = h2_connect_pending(cl);
    h2_connect_addrs(cl, id, NULL, ENOENT);
    CHECK(outcome(&e) == 0 && e.detail == ENOENT);
    h2_loop_destroy(cl);
    for (int i = 0; i < 3; i++) close(fill[i]);
    close(silent);
    close(closed);
    h2_loop_destroy(srv);
}

static int have_ipv6_loopback(void)
{
    int fd = socket(AF_INET6, SOCK_STREAM, 0);
    if (fd < 0) return 0;
    struct sockaddr_in6 s6 = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    int ok = bind(fd, (struct sockaddr *)&s6, sizeof s6) == 0;
    close(fd);
    return ok;
}

/* "localhost" finds a server on 127.0.0.1 and one on ::1. */
static void test_localhost(void)
{
    const char *hosts[] = {"127.0.0.1", "::1"};
    for (int i = 0; i < 2; i++) {
        if (i == 1 && !have_ipv6_loopback()) {
            fprintf(stderr, "skip localhost on ::1: this machine has no IPv6 loopback\n");
            continue;
        }
        h2_callbacks scb = {0};
        h2_loop *srv = h2_loop_create(NULL, &scb);
        uint16_t port;
        CHECK(srv && h2_listen(srv, hosts[i], 0, &port) == 0 && h2_loop_start(srv) == 0);
        int err = 0;
        h2_addrs *l = h2_resolve("localhost", port, &err);
        CHECK(l && h2_addrs_count(l) >= 2);
        cli c = {.mu = PTHREAD_MUTEX_INITIALIZER};
        h2_loop *cl = client(&c, 2000);
        h2_id id = h2_connect_pending(cl);
        h2_connect_addrs(cl, id, l, 0);
        CHECK(outcome(&c) == 1);
        h2_loop_destroy(cl);
        h2_loop_destroy(srv);
    }
    int err = 0;
    CHECK(h2_resolve("no-such-host.invalid", 1, &err) == NULL && err != 0);
}

static void test_unix(void)
{
    char path[64];
    snprintf(path, sizeof path, "/tmp/h2shim-test-%d.sock", (int)getpid());
    h2_callbacks scb = {0};
    h2_loop *srv = h2_loop_create(NULL, &scb);
    CHECK(srv && h2_listen_unix(srv, path) == 0 && h2_loop_start(srv) == 0);
    cli c = {.mu = PTHREAD_MUTEX_INITIALIZER};
    h2_loop *cl = client(&c, 2000);
    CHECK(h2_connect_unix(cl, path) != 0);
    CHECK(outcome(&c) == 1);
    h2_loop *second = h2_loop_create(NULL, &scb); /* a live server's socket is never taken over */
    CHECK(second && h2_listen_unix(second, path) == -EADDRINUSE);
    h2_loop_destroy(second);
    h2_loop_destroy(cl);
    h2_loop_destroy(srv);
    /* a stale socket file is replaced; any other file is refused */
    srv = h2_loop_create(NULL, &scb);
    CHECK(srv && h2_listen_unix(srv, path) == 0);
    h2_loop_destroy(srv);
    unlink(path);
    FILE *f = fopen(path, "w");
    CHECK(f);
    fclose(f);
    srv = h2_loop_create(NULL, &scb);
    CHECK(srv && h2_listen_unix(srv, path) == -EEXIST);
    h2_loop_destroy(srv);
    unlink(path);
    int err = 0;
    char longp[200];
    memset(longp, 'x', sizeof longp - 1);
    longp[sizeof longp - 1] = 0;
    CHECK(h2_addrs_unix(longp, &err) == NULL && err == ENAMETOOLONG);
}

/* A client pinging a quiet call every 100 ms: the server's GOAWAY "too_many_pings" doubles the
 * client's keepalive time (grpc's client does the same). */
static void *accept_and_hold(void *ctx, h2_id conn, h2_id stream, const h2_nv *nv, size_t n, int flags)
{
    (void)conn; (void)stream; (void)nv; (void)n; (void)flags;
    return ctx; /* never answered */
}

static void ignore_close(void *ctx, void *user, uint32_t code) { (void)ctx; (void)user; (void)code; }

static void test_client_calms_down(void)
{
    static int token;
    h2_callbacks scb = {.ctx = &token, .on_request = accept_and_hold, .on_close = ignore_close};
    h2_loop *srv = h2_loop_create(NULL, &scb);
    uint16_t port;
    CHECK(srv && h2_listen(srv, "127.0.0.1", 0, &port) == 0 && h2_loop_start(srv) == 0);
    h2_config cfg;
    h2_config_init(&cfg);
    cfg.keepalive_time_ms = 100;
    cli c = {.mu = PTHREAD_MUTEX_INITIALIZER};
    h2_callbacks ccb = {.ctx = &c, .on_conn = on_conn, .on_close = ignore_close};
    h2_loop *cl = h2_loop_create(&cfg, &ccb);
    CHECK(cl && h2_loop_start(cl) == 0);
    h2_id conn = h2_connect(cl, "127.0.0.1", port);
    CHECK(conn != 0);
    static const char *hv[][2] = {{":method", "POST"}, {":scheme", "http"}, {":path", "/x.Y/Hold"},
                                  {":authority", "localhost"}, {"content-type", "application/grpc"}};
    h2_nv nv[5];
    for (int i = 0; i < 5; i++)
        nv[i] = (h2_nv){(const uint8_t *)hv[i][0], strlen(hv[i][0]), (const uint8_t *)hv[i][1], strlen(hv[i][1])};
    CHECK(h2_open_stream(cl, conn, &token, nv, 5) != 0);
    int got = 0;
    for (int i = 0; i < 1000 && !got; i++) {
        usleep(10000);
        pthread_mutex_lock(&c.mu);
        got = c.goaway;
        pthread_mutex_unlock(&c.mu);
    }
    CHECK(got == 1 && stats(srv).ping_strike_goaways == 1);
    h2_loop_stop(cl); /* joined: its loop-thread state may be read */
    CHECK(cl->local.ka_time_ms >= 200);
    h2_loop_destroy(cl);
    h2_loop_destroy(srv);
}

extern atomic_long h2_mem_fail_at;

/* Every allocation of building an address list failed in turn: NULL with ENOMEM, no leak. */
static void test_addrs_nomem(void)
{
    for (long n = 1;; n++) {
        atomic_store(&h2_mem_fail_at, n);
        int err = 0;
        h2_addrs *l = h2_resolve("localhost", 80, &err);
        CHECK(l ? h2_addrs_count(l) >= 2 : err == ENOMEM);
        h2_addrs_free(l);
        h2_addrs *u = h2_addrs_unix("/tmp/x.sock", &err);
        CHECK(u ? h2_addrs_count(u) == 1 : err == ENOMEM);
        h2_addrs_free(u);
        bool reached = atomic_load(&h2_mem_fail_at) <= 0;
        atomic_store(&h2_mem_fail_at, 0);
        if (!reached) break;
        CHECK(n < 50);
    }
}

void keepalive_tests(void)
{
    RUN(test_addrs_nomem());
    RUN(test_client_calms_down());
    RUN(test_ka_clock());
    RUN(test_ka_strikes());
    RUN(test_ka_age());
    RUN(test_server_ping_and_dead());
    RUN(test_too_many_pings());
    RUN(test_max_age());
    RUN(test_walk());
    RUN(test_localhost());
    RUN(test_unix());
}
