/*
 * Connection limits: the caps (h2_connlim), the timers (h2_timer), both without sockets;
 * then over loopback: the handshake timeout, the per-address and the shared total cap, the
 * idle GOAWAY, and, in a child process with a low RLIMIT_NOFILE, accepting at the fd limit.
 */
#define _GNU_SOURCE
#include "h2_connlim.h"
#include "h2_timer.h"
#include "h2shim.h"
#include "test.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern atomic_long h2_mem_fail_at;

/* ------------------------------------------------------------ addresses */

static struct sockaddr_in v4(const char *a)
{
    struct sockaddr_in s = {.sin_family = AF_INET, .sin_port = htons(1234)};
    CHECK(inet_pton(AF_INET, a, &s.sin_addr) == 1);
    return s;
}

static struct sockaddr_in6 v6(const char *a)
{
    struct sockaddr_in6 s = {.sin6_family = AF_INET6, .sin6_port = htons(1234)};
    CHECK(inet_pton(AF_INET6, a, &s.sin6_addr) == 1);
    return s;
}

#define SA(x) ((struct sockaddr *)&(x)), (socklen_t)sizeof(x)

/* ------------------------------------------------------------ caps, no sockets */

static void test_auto_max(void)
{
    CHECK(h2_connlim_auto_max(0) == H2_CONNLIM_DEFAULT_MAX);           /* unknown */
    CHECK(h2_connlim_auto_max((uint64_t)1 << 50) == H2_CONNLIM_DEFAULT_MAX); /* unlimited */
    CHECK(h2_connlim_auto_max(256) == 192);     /* a quarter stays for files */
    CHECK(h2_connlim_auto_max(1024) == 768);    /* the usual soft limit */
    CHECK(h2_connlim_auto_max(200) == 136);     /* at least 64 stay */
    CHECK(h2_connlim_auto_max(64) == 1);        /* never 0 */
    CHECK(h2_connlim_auto_max(20000) == H2_CONNLIM_DEFAULT_MAX);
    CHECK(h2_connlim_auto_max(1u << 20) == H2_CONNLIM_DEFAULT_MAX);
    struct rlimit rl;
    CHECK(getrlimit(RLIMIT_NOFILE, &rl) == 0);
    CHECK(h2_connlim_auto_max_now() ==
          h2_connlim_auto_max(rl.rlim_cur == RLIM_INFINITY ? 0 : (uint64_t)rl.rlim_cur));
    h2_connlim *l = h2_connlim_new(0, 0);
    CHECK(l && l->max_total == h2_connlim_auto_max_now());
    h2_connlim_unref(l);
}

static void test_total_cap(void)
{
    h2_connlim *l = h2_connlim_new(3, 0); /* no per-address cap: no table */
    CHECK(l);
    struct sockaddr_in a = v4("10.0.0.1");
    h2_peer *p[4];
    for (int i = 0; i < 3; i++) CHECK(h2_connlim_acquire(l, SA(a), &p[i]) == H2_LIM_OK && p[i] == NULL);
    CHECK(h2_connlim_acquire(l, SA(a), &p[3]) == H2_LIM_TOTAL);
    CHECK(h2_connlim_total(l) == 3 && l->buckets == NULL);
    h2_connlim_release(l, p[0]);
    CHECK(h2_connlim_acquire(l, SA(a), &p[3]) == H2_LIM_OK);
    for (int i = 1; i < 4; i++) h2_connlim_release(l, p[i]);
    CHECK(h2_connlim_total(l) == 0);
    h2_connlim_ref(l); /* shared: the last unref frees */
    h2_connlim_unref(l);
    CHECK(h2_connlim_total(l) == 0);
    h2_connlim_unref(l);
}

static void test_per_address(void)
{
    h2_connlim *l = h2_connlim_new(100, 2);
    CHECK(l);
    struct sockaddr_in a = v4("192.0.2.7"), b = v4("192.0.2.8");
    struct sockaddr_in6 a_mapped = v6("::ffff:192.0.2.7");
    struct sockaddr_in6 n1 = v6("2001:db8:1:2::1"), n2 = v6("2001:db8:1:2:ffff::9"), other = v6("2001:db8:1:3::1");
    struct sockaddr_in6 lo6 = v6("::1");
    h2_peer *p[16];
    int k = 0;
    CHECK(h2_connlim_acquire(l, SA(a), &p[k++]) == H2_LIM_OK);
    CHECK(h2_connlim_acquire(l, SA(a_mapped), &p[k++]) == H2_LIM_OK); /* the same IPv4 peer */
    CHECK(p[0] == p[1]);
    h2_peer *x;
    CHECK(h2_connlim_acquire(l, SA(a), &x) == H2_LIM_ADDR);
    CHECK(h2_connlim_acquire(l, SA(a_mapped), &x) == H2_LIM_ADDR);
    CHECK(h2_connlim_acquire(l, SA(b), &p[k++]) == H2_LIM_OK); /* another address */
    CHECK(h2_connlim_acquire(l, SA(n1), &p[k++]) == H2_LIM_OK);
    CHECK(h2_connlim_acquire(l, SA(n2), &p[k++]) == H2_LIM_OK); /* same /64 */
    CHECK(h2_connlim_acquire(l, SA(n1), &x) == H2_LIM_ADDR);
    CHECK(h2_connlim_acquire(l, SA(other), &p[k++]) == H2_LIM_OK); /* next /64 */
    CHECK(h2_connlim_acquire(l, SA(lo6), &p[k++]) == H2_LIM_OK);   /* ::1 is not an IPv4 peer */
    CHECK(h2_connlim_count(l, SA(a)) == 2 && h2_connlim_count(l, SA(n2)) == 2 && h2_connlim_count(l, SA(lo6)) == 1);
    struct sockaddr_in v4zero = v4("0.0.0.0");
    CHECK(h2_connlim_count(l, SA(v4zero)) == 0);
    /* another family: one shared key */
    struct sockaddr un = {.sa_family = AF_UNIX};
    CHECK(h2_connlim_acquire(l, &un, sizeof un, &p[k++]) == H2_LIM_OK);
    CHECK(h2_connlim_total(l) == (uint32_t)k && l->npeers == 6);
    h2_connlim_release(l, p[0]); /* the address frees a slot */
    CHECK(h2_connlim_acquire(l, SA(a), &p[0]) == H2_LIM_OK);
    for (int i = 0; i < k; i++) h2_connlim_release(l, p[i]);
    CHECK(h2_connlim_total(l) == 0 && l->npeers == 0);
    h2_connlim_unref(l);
}

/* Many peers: the table grows; every count stays exact. */
static void test_many_peers(void)
{
    enum { N = 5000 };
    h2_connlim *l = h2_connlim_new(2 * N, 3);
    CHECK(l);
    static h2_peer *p[2 * N];
    for (int i = 0; i < 2 * N; i++) {
        struct sockaddr_in s = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x0a000000u + (uint32_t)(i % N))};
        CHECK(h2_connlim_acquire(l, SA(s), &p[i]) == H2_LIM_OK);
    }
    CHECK(l->npeers == N && l->nbuckets >= N && h2_connlim_total(l) == 2 * N);
    struct sockaddr_in s0 = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x0a000000u)};
    CHECK(h2_connlim_count(l, SA(s0)) == 2);
    for (int i = 0; i < 2 * N; i += 2) h2_connlim_release(l, p[i]);
    CHECK(l->npeers == N / 2);
    for (int i = 1; i < 2 * N; i += 2) h2_connlim_release(l, p[i]);
    CHECK(l->npeers == 0 && h2_connlim_total(l) == 0);
    h2_connlim_unref(l);
}

/* Every allocation failing in turn: acquire says NOMEM and counts nothing; no leak. */
static void test_connlim_nomem(void)
{
    for (long n = 1;; n++) {
        atomic_store(&h2_mem_fail_at, n);
        h2_connlim *l = h2_connlim_new(1000, 5);
        if (l) {
            h2_peer *p[140];
            int got = 0;
            for (int i = 0; i < 140; i++) { /* the table grows twice */
                struct sockaddr_in s = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x0b000000u + (uint32_t)i)};
                int r = h2_connlim_acquire(l, SA(s), &p[got]);
                CHECK(r == H2_LIM_OK || r == H2_LIM_NOMEM);
                if (r == H2_LIM_OK) got++;
            }
            CHECK(h2_connlim_total(l) == (uint32_t)got);
            for (int i = 0; i < got; i++) h2_connlim_release(l, p[i]);
            CHECK(l->npeers == 0);
            h2_connlim_unref(l);
        }
        bool reached = atomic_load(&h2_mem_fail_at) <= 0;
        atomic_store(&h2_mem_fail_at, 0);
        if (!reached) break;
        CHECK(n < 300);
    }
}

/* ------------------------------------------------------------ timers, no sockets */

static const uint8_t PREFACE[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/* preface + SETTINGS(2 entries) + a PING */
static size_t client_start(uint8_t *b)
{
    memcpy(b, PREFACE, 24);
    static const uint8_t settings[] = {0, 0, 12, 0x4, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 100, 0, 4, 0, 1, 0, 0};
    memcpy(b + 24, settings, sizeof settings);
    static const uint8_t ping[] = {0, 0, 8, 0x6, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8};
    memcpy(b + 24 + sizeof settings, ping, sizeof ping);
    return 24 + sizeof settings + sizeof ping;
}

static void test_tick(void)
{
    CHECK(h2_tick_ms(0, 0) == H2_TICK_MAX_MS);
    CHECK(h2_tick_ms(10000, 300000) == 1000);
    CHECK(h2_tick_ms(2000, 300000) == 500);
    CHECK(h2_tick_ms(0, 400) == 100);
    CHECK(h2_tick_ms(100, 0) == H2_TICK_MIN_MS);
    int64_t a = h2_now_ms();
    CHECK(a > 0 && h2_now_ms() >= a);
}

static void test_handshake_feed(void)
{
    uint8_t b[64];
    size_t n = client_start(b);
    size_t done_at = 24 + 9 + 12; /* preface + SETTINGS header + 12 bytes of payload */
    /* whole, then split at every byte */
    for (size_t split = 0; split <= n; split++) {
        h2_conntimer t;
        h2_conntimer_start(&t, 5);
        CHECK(t.phase == H2_CT_HANDSHAKE && t.since == 5);
        bool d1 = h2_conntimer_feed(&t, b, split, 7);
        bool d2 = h2_conntimer_feed(&t, b + split, n - split, 9);
        CHECK(d1 == (split >= done_at) && d2 == (split < done_at));
        CHECK(t.phase == H2_CT_OPEN && t.since == (split >= done_at ? 7 : 9));
        CHECK(!h2_conntimer_feed(&t, b, n, 11)); /* done once */
    }
    /* byte by byte: completes on the last byte of SETTINGS */
    h2_conntimer t;
    h2_conntimer_start(&t, 0);
    for (size_t i = 0; i < n; i++) CHECK(h2_conntimer_feed(&t, b + i, 1, 1) == (i + 1 == done_at));
    /* a first frame that is not SETTINGS never completes it */
    h2_conntimer_start(&t, 0);
    uint8_t bad[64];
    memcpy(bad, b, n);
    bad[24 + 3] = 0x6;
    CHECK(!h2_conntimer_feed(&t, bad, n, 1) && t.phase == H2_CT_HANDSHAKE);
    /* an empty SETTINGS */
    static const uint8_t empty[] = {0, 0, 0, 0x4, 0, 0, 0, 0, 0};
    h2_conntimer_start(&t, 0);
    CHECK(!h2_conntimer_feed(&t, PREFACE, 24, 1));
    CHECK(h2_conntimer_feed(&t, empty, sizeof empty, 1));
    /* a huge declared length: waits for all of it, no overflow */
    static const uint8_t huge[] = {0xff, 0xff, 0xff, 0x4, 0, 0, 0, 0, 0};
    h2_conntimer_start(&t, 0);
    CHECK(!h2_conntimer_feed(&t, PREFACE, 24, 1) && !h2_conntimer_feed(&t, huge, 9, 1));
    static uint8_t zeros[1 << 16];
    for (int i = 0; i < 255; i++) CHECK(!h2_conntimer_feed(&t, zeros, sizeof zeros, 1));
    CHECK(h2_conntimer_feed(&t, zeros, (1 << 16) - 1, 1));
    /* client connections have no timers */
    h2_conntimer none = {0};
    CHECK(!h2_conntimer_feed(&none, b, n, 1) && h2_conntimer_check(&none, 1 << 30, false, 0, 1, 1) == H2_CT_KEEP);
}

static void test_deadlines(void)
{
    h2_conntimer t;
    /* handshake */
    h2_conntimer_start(&t, 1000);
    CHECK(h2_conntimer_check(&t, 1999, false, 0, 1000, 5000) == H2_CT_KEEP);
    CHECK(h2_conntimer_check(&t, 2000, false, 0, 1000, 5000) == H2_CT_CLOSE_HANDSHAKE);
    CHECK(h2_conntimer_check(&t, 1 << 30, false, 0, 0, 5000) == H2_CT_KEEP); /* off */
    /* idle: measured from the end of the handshake; streams and new stream ids are activity */
    uint8_t b[64];
    size_t n = client_start(b);
    h2_conntimer_start(&t, 0);
    CHECK(h2_conntimer_feed(&t, b, n, 1500));
    CHECK(h2_conntimer_check(&t, 6000, false, 0, 1000, 5000) == H2_CT_KEEP);
    CHECK(h2_conntimer_check(&t, 6000, true, 1, 1000, 5000) == H2_CT_KEEP);   /* a stream */
    CHECK(h2_conntimer_check(&t, 10999, false, 1, 1000, 5000) == H2_CT_KEEP);
    CHECK(h2_conntimer_check(&t, 10999, false, 3, 1000, 5000) == H2_CT_KEEP); /* a stream opened and closed between ticks */
    CHECK(h2_conntimer_check(&t, 15998, false, 3, 1000, 5000) == H2_CT_KEEP);
    CHECK(h2_conntimer_check(&t, 15999, false, 3, 1000, 0) == H2_CT_KEEP);    /* off */
    CHECK(h2_conntimer_check(&t, 15999, false, 3, 1000, 5000) == H2_CT_SEND_GOAWAY);
    CHECK(t.phase == H2_CT_GOAWAY);
    /* grace */
    CHECK(h2_conntimer_check(&t, 15999 + H2_IDLE_GRACE_MS - 1, false, 3, 1000, 5000) == H2_CT_KEEP);
    CHECK(h2_conntimer_check(&t, 15999 + H2_IDLE_GRACE_MS - 1, true, 3, 1000, 5000) == H2_CT_KEEP); /* restarts */
    CHECK(h2_conntimer_check(&t, 15999 + 2 * H2_IDLE_GRACE_MS - 2, false, 3, 1000, 5000) == H2_CT_KEEP);
    CHECK(h2_conntimer_check(&t, 15999 + 2 * H2_IDLE_GRACE_MS - 1, false, 3, 1000, 5000) == H2_CT_CLOSE_GRACE);
}

/* ------------------------------------------------------------ over loopback */

/* Milliseconds until the server closes fd (EOF or reset; what it sends first is read and
 * dropped), or -1 if it is still open after max_ms. */
static int ms_until_closed(int fd, int max_ms)
{
    int64_t t0 = h2_now_ms();
    for (;;) {
        int64_t left = t0 + max_ms - h2_now_ms();
        if (left <= 0) return -1;
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        if (poll(&pf, 1, (int)left) != 1) continue;
        uint8_t buf[512];
        ssize_t k = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
        if (k == 0 || (k < 0 && errno != EAGAIN && errno != EINTR)) return (int)(h2_now_ms() - t0);
    }
}

static h2_loop *server(const h2_config *cfg, uint16_t *port)
{
    h2_callbacks cb = {0};
    h2_loop *l = h2_loop_create(cfg, &cb);
    CHECK(l);
    CHECK(h2_listen(l, "127.0.0.1", 0, port) == 0);
    return l;
}

static h2_stats stats(h2_loop *l)
{
    h2_stats s;
    h2_loop_stats(l, &s);
    return s;
}

/* Waits up to 5 s for the loop to have `n` open connections. */
static int conns_become(h2_loop *l, uint64_t n)
{
    for (int i = 0; i < 500; i++) {
        if (stats(l).connections == n) return 1;
        usleep(10000);
    }
    return 0;
}

static void test_handshake_timeout(void)
{
    h2_config cfg;
    h2_config_init(&cfg);
    cfg.handshake_timeout_ms = 300;
    uint16_t port;
    h2_loop *l = server(&cfg, &port);
    CHECK(h2_loop_start(l) == 0);
    int silent = test_tcp_to(port), preface_only = test_tcp_to(port), ok = test_tcp_to(port);
    CHECK(send(preface_only, PREFACE, 24, MSG_NOSIGNAL) == 24);
    uint8_t b[64];
    size_t n = client_start(b);
    CHECK(send(ok, b, n, MSG_NOSIGNAL) == (ssize_t)n);
    int a = ms_until_closed(silent, 3000), p = ms_until_closed(preface_only, 3000);
    CHECK(a >= 0 && p >= 0);
    /* within the timeout plus a tick (75 ms here) plus scheduling (a loaded machine, valgrind) */
    CHECK(a >= 100 && a <= 300 + 75 + 1500 && p <= 300 + 75 + 1500);
    CHECK(ms_until_closed(ok, 200) == -1); /* the one that said hello stays */
    CHECK(stats(l).handshake_timeouts == 2 && conns_become(l, 1));
    close(silent);
    close(preface_only);
    close(ok);
    h2_loop_destroy(l);
}

static void test_per_address_cap(void)
{
    h2_config cfg;
    h2_config_init(&cfg);
    cfg.max_connections_per_addr = 2;
    uint16_t port;
    h2_loop *l = server(&cfg, &port);
    CHECK(h2_loop_start(l) == 0);
    int a = test_tcp_to(port), b = test_tcp_to(port), c = test_tcp_to(port);
    CHECK(ms_until_closed(c, 2000) >= 0); /* the third from 127.0.0.1: accepted and closed */
    CHECK(stats(l).conns_rejected == 1);
    CHECK(ms_until_closed(a, 100) == -1 && ms_until_closed(b, 100) == -1);
    close(a);
    CHECK(conns_become(l, 1));
    int d = test_tcp_to(port); /* a slot is free again */
    CHECK(ms_until_closed(d, 200) == -1);
    CHECK(stats(l).conns_rejected == 1);
    close(b);
    close(c);
    close(d);
    h2_loop_destroy(l);
}

/* Two loops (two ports here, so the test knows which loop gets what) share one total cap. */
static void test_shared_total_cap(void)
{
    h2_config cfg;
    h2_config_init(&cfg);
    cfg.max_connections = 3;
    uint16_t pa, pb;
    h2_loop *la = server(&cfg, &pa);
    cfg.max_connections = 1000; /* ignored once shared: the caps are la's */
    h2_loop *lb = server(&cfg, &pb);
    CHECK(h2_loop_share_limits(lb, la) == 0);
    CHECK(h2_loop_share_limits(lb, la) == 0); /* again: no change */
    CHECK(h2_loop_start(la) == 0 && h2_loop_start(lb) == 0);
    CHECK(h2_loop_share_limits(lb, la) == -EINVAL); /* started */
    int a1 = test_tcp_to(pa), a2 = test_tcp_to(pa), b1 = test_tcp_to(pb);
    CHECK(ms_until_closed(a1, 100) == -1 && ms_until_closed(a2, 100) == -1 && ms_until_closed(b1, 100) == -1);
    int b2 = test_tcp_to(pb), a3 = test_tcp_to(pa);
    CHECK(ms_until_closed(b2, 2000) >= 0 && ms_until_closed(a3, 2000) >= 0);
    CHECK(stats(lb).conns_rejected == 1 && stats(la).conns_rejected == 1);
    close(a1);
    close(a2);
    close(b1);
    close(b2);
    close(a3);
    h2_loop_destroy(la); /* lb keeps the shared caps alive; la's connections are gone */
    CHECK(conns_become(lb, 0));
    int b3 = test_tcp_to(pb);
    CHECK(ms_until_closed(b3, 100) == -1);
    close(b3);
    h2_loop_destroy(lb);
}

typedef struct cli_events {
    pthread_mutex_t mu;
    int goaway, closed;
} cli_events;

static void on_conn(void *ctx, h2_id conn, int ev, int detail)
{
    (void)conn;
    (void)detail;
    cli_events *e = ctx;
    pthread_mutex_lock(&e->mu);
    if (ev == H2_CONN_GOAWAY) e->goaway++;
    if (ev == H2_CONN_CLOSED || ev == H2_CONN_FAILED) e->closed++;
    pthread_mutex_unlock(&e->mu);
}

static void test_idle_goaway(void)
{
    h2_config cfg;
    h2_config_init(&cfg);
    cfg.idle_timeout_ms = 300;
    uint16_t port;
    h2_loop *srv = server(&cfg, &port);
    CHECK(h2_loop_start(srv) == 0);
    cli_events ev = {.mu = PTHREAD_MUTEX_INITIALIZER};
    h2_callbacks cb = {.ctx = &ev, .on_conn = on_conn};
    h2_loop *cli = h2_loop_create(NULL, &cb);
    CHECK(cli && h2_loop_start(cli) == 0);
    int64_t t0 = h2_now_ms();
    CHECK(h2_connect(cli, "127.0.0.1", port) != 0);
    int goaway = 0, closed = 0;
    while (h2_now_ms() - t0 < 4000) {
        pthread_mutex_lock(&ev.mu);
        goaway = ev.goaway;
        closed = ev.closed;
        pthread_mutex_unlock(&ev.mu);
        if (closed) break;
        usleep(10000);
    }
    int64_t took = h2_now_ms() - t0;
    CHECK(goaway == 1 && closed == 1);
    /* idle 300 ms (ticks of 75), then closed by the peer on GOAWAY or by the grace */
    CHECK(took >= 300 && took <= 300 + 75 + H2_IDLE_GRACE_MS + 1500);
    CHECK(stats(srv).idle_goaways == 1 && stats(srv).handshake_timeouts == 0);
    CHECK(conns_become(srv, 0));
    h2_loop_destroy(cli);
    h2_loop_destroy(srv);
}

/* A child process with RLIMIT_NOFILE 64 serves with no connection cap of its own: accept
 * hits EMFILE. It must shed with the reserved fd, pause instead of spinning, and close
 * every silent connection within the handshake timeout; the parent checks all of it. */
static int emfile_child(int report)
{
    struct rlimit rl;
    CHECK(getrlimit(RLIMIT_NOFILE, &rl) == 0);
    rl.rlim_cur = 64;
    CHECK(setrlimit(RLIMIT_NOFILE, &rl) == 0);
    h2_config cfg;
    h2_config_init(&cfg);
    cfg.max_connections = 100000;
    cfg.max_connections_per_addr = 0;
    cfg.handshake_timeout_ms = 400;
    uint16_t port;
    h2_loop *l = server(&cfg, &port);
    CHECK(h2_loop_start(l) == 0);
    CHECK(write(report, &port, sizeof port) == sizeof port);
    char go;
    CHECK(read(report, &go, 1) == 1); /* the parent is done */
    h2_stats s = stats(l);
    h2_loop_destroy(l);
    CHECK(write(report, &s, sizeof s) == sizeof s);
    return 0;
}

static void test_fd_limit(void)
{
    int sp[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) == 0);
    fflush(NULL);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        close(sp[0]);
        int rc = emfile_child(sp[1]);
        close(sp[1]);
        _exit(rc);
    }
    close(sp[1]);
    uint16_t port;
    CHECK(read(sp[0], &port, sizeof port) == sizeof port);
    enum { N = 150 };
    int fds[N];
    int64_t t0 = h2_now_ms();
    for (int i = 0; i < N; i++) fds[i] = test_tcp_to(port); /* the listen queue holds what is not accepted */
    int worst = 0;
    for (int i = 0; i < N; i++) {
        int ms = ms_until_closed(fds[i], 5000);
        CHECK(ms >= 0);
        int since_open = (int)(h2_now_ms() - t0);
        if (since_open > worst) worst = since_open;
        close(fds[i]);
    }
    /* every one closed within the handshake timeout, a tick and the back-off, plus slack */
    CHECK(worst <= 400 + 100 + 100 + 2500);
    CHECK(write(sp[0], "x", 1) == 1);
    h2_stats s;
    CHECK(read(sp[0], &s, sizeof s) == sizeof s);
    int status;
    CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    close(sp[0]);
    fprintf(stderr, "     %d connections: %llu shed at the fd limit, %llu timed out, %llu accept pauses, %llu open, last closed after %d ms\n", N,
            (unsigned long long)s.conns_shed, (unsigned long long)s.handshake_timeouts, (unsigned long long)s.accept_pauses,
            (unsigned long long)s.connections, worst);
    CHECK(s.accept_pauses >= 1 && s.conns_shed >= 1 && s.handshake_timeouts >= 1);
    /* Each one was shed or timed out. (Under valgrind, which emulates the lowered limit, the
     * accept that fails with EMFILE has taken a connection and closed it: one per pause.) */
    CHECK(s.conns_shed + s.handshake_timeouts <= N && s.conns_shed + s.handshake_timeouts + s.accept_pauses >= N);
    CHECK(s.accept_pauses < 200); /* paused 100 ms at a time, not spinning */
}

void conns_tests(void)
{
    RUN(test_auto_max());
    RUN(test_total_cap());
    RUN(test_per_address());
    RUN(test_many_peers());
    RUN(test_connlim_nomem());
    RUN(test_tick());
    RUN(test_handshake_feed());
    RUN(test_deadlines());
    RUN(test_handshake_timeout());
    RUN(test_per_address_cap());
    RUN(test_shared_total_cap());
    RUN(test_idle_goaway());
    RUN(test_fd_limit());
}
