/*
 * TLS (h2_tls.c) over loopback, with a throwaway CA and certificates the openssl CLI makes
 * in a temporary directory: context errors name the file; a unary call over TLS; a wrong
 * host name and a wrong CA fail the handshake with the reason logged; mTLS with and without
 * a client certificate; a client without ALPN h2 and a cleartext client on a TLS port are
 * closed with a log line; a reload serves new connections with the new certificate.
 */
#define _GNU_SOURCE
#include "h2shim.h"
#include "test.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdarg.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define NV(n, v) {(const uint8_t *)(n), sizeof(n) - 1, (const uint8_t *)(v), sizeof(v) - 1}

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int connected, failed, closed; /* client connection events */
    int got_msg, stream_closed;    /* client stream */
    uint32_t close_code;
    char log[2048];                /* log lines of both loops, joined */
} T = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

static char DIR_[64];
static char path_buf[8][128];

static const char *P(int slot, const char *name)
{
    snprintf(path_buf[slot], sizeof path_buf[slot], "%s/%s", DIR_, name);
    return path_buf[slot];
}

static void sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void sh(const char *fmt, ...)
{
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    char full[2200];
    snprintf(full, sizeof full, "cd %s && (%s) >/dev/null 2>&1", DIR_, cmd);
    CHECK(system(full) == 0);
}

/* A CA and a leaf it signs for `cn` (SAN localhost + 127.0.0.1), in name.key/name.pem. */
static void make_ca(const char *name)
{
    sh("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=%s "
       "-keyout %s.key -out %s.pem",
       name, name, name);
}

static void make_leaf(const char *name, const char *ca, const char *san)
{
    sh("openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=%s -keyout %s.key -out %s.csr && "
       "printf 'subjectAltName=%s\\n' > %s.ext && "
       "openssl x509 -req -in %s.csr -CA %s.pem -CAkey %s.key -CAcreateserial -days 2 -extfile %s.ext -out %s.pem",
       name, name, name, san, name, name, ca, ca, name, name);
}

static void locked(void (*fn)(void *), void *arg)
{
    pthread_mutex_lock(&T.mu);
    fn(arg);
    pthread_cond_broadcast(&T.cv);
    pthread_mutex_unlock(&T.mu);
}

static void add_log(void *arg)
{
    size_t n = strlen(T.log);
    snprintf(T.log + n, sizeof T.log - n, "%s\n", (const char *)arg);
}

static void on_log(void *ctx, h2_id conn, const char *msg)
{
    (void)ctx, (void)conn;
    locked(add_log, (void *)msg);
}

static int wait_for(int *counter)
{
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 10;
    pthread_mutex_lock(&T.mu);
    while (*counter == 0 && pthread_cond_timedwait(&T.cv, &T.mu, &dl) == 0) {}
    int ok = *counter != 0;
    pthread_mutex_unlock(&T.mu);
    return ok;
}

static int log_has(const char *s)
{
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 10;
    pthread_mutex_lock(&T.mu);
    while (!strstr(T.log, s) && pthread_cond_timedwait(&T.cv, &T.mu, &dl) == 0) {}
    int ok = strstr(T.log, s) != NULL;
    if (!ok) fprintf(stderr, "log has no \"%s\":\n%s", s, T.log);
    pthread_mutex_unlock(&T.mu);
    return ok;
}

static void reset(void *arg)
{
    (void)arg;
    T.connected = T.failed = T.closed = T.got_msg = T.stream_closed = 0;
    T.close_code = 0;
    T.log[0] = 0;
}

/* ------------------------------------------------------------ an echo server, a client */

static int server_user;
static h2_loop *server_loop; /* s_on_request answers through it */

static void *s_on_request(void *ctx, h2_id conn, h2_id stream, const h2_nv *nv, size_t n, int flags)
{
    (void)ctx, (void)conn, (void)nv, (void)n, (void)flags;
    static const h2_nv hdrs[] = {NV(":status", "200"), NV("content-type", "application/grpc")};
    static const h2_nv trls[] = {NV("grpc-status", "0")};
    h2_send(server_loop, stream, hdrs, 2, 1, (const uint8_t *)"pong", 4, trls, 1, H2_SEND_END);
    return &server_user;
}

static size_t any_on_message(void *ctx, void *user, int comp, const uint8_t *d, size_t len)
{
    (void)ctx, (void)comp, (void)d;
    if (user != &server_user) {
        pthread_mutex_lock(&T.mu);
        T.got_msg++;
        pthread_cond_broadcast(&T.cv);
        pthread_mutex_unlock(&T.mu);
    }
    return len + 5;
}

static void any_on_close(void *ctx, void *user, uint32_t code)
{
    (void)ctx;
    if (user == &server_user) return;
    pthread_mutex_lock(&T.mu);
    T.stream_closed++;
    T.close_code = code;
    pthread_cond_broadcast(&T.cv);
    pthread_mutex_unlock(&T.mu);
}

static void c_on_conn(void *ctx, h2_id conn, int ev, int detail)
{
    (void)ctx, (void)conn, (void)detail;
    pthread_mutex_lock(&T.mu);
    if (ev == H2_CONN_CONNECTED) T.connected++;
    if (ev == H2_CONN_FAILED) T.failed++;
    if (ev == H2_CONN_CLOSED) T.closed++;
    pthread_cond_broadcast(&T.cv);
    pthread_mutex_unlock(&T.mu);
}

static h2_loop *loop_new(int server)
{
    h2_callbacks cb = {0};
    cb.on_message = any_on_message;
    cb.on_close = any_on_close;
    if (server) cb.on_request = s_on_request;
    else cb.on_conn = c_on_conn;
    h2_loop *l = h2_loop_create(NULL, &cb);
    CHECK(l);
    CHECK(h2_loop_set_log(l, on_log, NULL) == 0);
    return l;
}

static h2_loop *server_new(h2_tls_ctx *tls, uint16_t *port)
{
    h2_loop *l = loop_new(1);
    server_loop = l;
    CHECK(h2_listen_tls(l, "127.0.0.1", 0, tls, port) == 0);
    CHECK(h2_loop_start(l) == 0);
    return l;
}

/* Connects, makes one call; returns 1 if it got the answer. */
static int call(h2_loop *cli, h2_tls_ctx *tls, uint16_t port, const char *name)
{
    locked(reset, NULL);
    h2_id conn = h2_connect_tls(cli, "127.0.0.1", port, tls, name);
    CHECK(conn != 0);
    static const h2_nv h[] = {NV(":method", "POST"), NV(":scheme", "https"), NV(":path", "/x.Y/Echo"),
                              NV(":authority", "localhost"), NV("content-type", "application/grpc"),
                              NV("te", "trailers")};
    int user;
    h2_id st = h2_open_stream(cli, conn, &user, h, 6);
    CHECK(st != 0);
    CHECK(h2_send(cli, st, NULL, 0, 1, (const uint8_t *)"ping", 4, NULL, 0, H2_SEND_END) == 0);
    CHECK(wait_for(&T.stream_closed));
    pthread_mutex_lock(&T.mu);
    int ok = T.got_msg == 1 && T.close_code == 0;
    pthread_mutex_unlock(&T.mu);
    h2_conn_close(cli, conn);
    return ok;
}

/* A raw TCP connection to the port; `data` sent; returns once the server closed it (1) or after 10 s (0). */
static int raw_closed(uint16_t port, const void *data, size_t len)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct timeval tv = {.tv_sec = 10};
    CHECK(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) == 0);
    CHECK(connect(fd, (struct sockaddr *)&a, sizeof a) == 0);
    CHECK(send(fd, data, len, MSG_NOSIGNAL) == (ssize_t)len);
    char buf[4096];
    ssize_t n;
    while ((n = recv(fd, buf, sizeof buf, 0)) > 0) {}
    int ok = n == 0 || (n < 0 && errno == ECONNRESET);
    close(fd);
    return ok;
}

/* ------------------------------------------------------------ tests */

static void test_ctx_errors(void)
{
    char err[512];
    CHECK(!h2_tls_server_new(P(0, "nope.pem"), P(1, "server.key"), NULL, err, sizeof err));
    CHECK(strstr(err, "nope.pem"));
    CHECK(!h2_tls_server_new(P(0, "server.pem"), P(1, "other.key"), NULL, err, sizeof err));
    CHECK(strstr(err, "other.key") && strstr(err, "mismatch"));
    CHECK(!h2_tls_client_new(P(0, "nope.pem"), NULL, NULL, err, sizeof err));
    CHECK(strstr(err, "nope.pem"));
    CHECK(!h2_tls_client_new(NULL, P(0, "client.pem"), NULL, err, sizeof err));
    h2_tls_ctx *sys = h2_tls_client_new(NULL, NULL, NULL, err, sizeof err); /* the system store */
    CHECK(sys);
    h2_tls_release(sys);
}

static void test_calls(void)
{
    char err[512];
    h2_tls_ctx *srv = h2_tls_server_new(P(0, "server.pem"), P(1, "server.key"), NULL, err, sizeof err);
    CHECK(srv);
    uint16_t port = 0;
    h2_loop *s = server_new(srv, &port);
    h2_loop *cli = loop_new(0);
    CHECK(h2_loop_start(cli) == 0);
    h2_tls_ctx *good = h2_tls_client_new(P(0, "ca.pem"), NULL, NULL, err, sizeof err);
    h2_tls_ctx *wrong = h2_tls_client_new(P(0, "other.pem"), NULL, NULL, err, sizeof err);
    CHECK(good && wrong);

    CHECK(call(cli, good, port, "localhost"));
    CHECK(call(cli, good, port, NULL)); /* "127.0.0.1": the IP SAN */

    CHECK(!call(cli, good, port, "elsewhere.example"));
    CHECK(T.close_code == H2_CLOSE_CONN_LOST);
    CHECK(wait_for(&T.failed)); /* after the stream's close */
    CHECK(log_has("certificate verify failed: hostname mismatch"));

    CHECK(!call(cli, wrong, port, "localhost"));
    CHECK(wait_for(&T.failed));
    CHECK(log_has("certificate verify failed: unable to get local issuer certificate"));

    /* cleartext HTTP/2 on the TLS port; a TLS client without ALPN */
    locked(reset, NULL);
    CHECK(raw_closed(port, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 24));
    CHECK(log_has("TLS handshake from 127.0.0.1:"));
    locked(reset, NULL);
    {
        SSL_CTX *x = SSL_CTX_new(TLS_client_method());
        CHECK(x);
        SSL *ssl = SSL_new(x);
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        CHECK(connect(fd, (struct sockaddr *)&a, sizeof a) == 0);
        SSL_set_fd(ssl, fd);
        CHECK(SSL_connect(ssl) == 1); /* the handshake completes: ALPN is checked after it */
        char b[16];
        CHECK(SSL_read(ssl, b, sizeof b) <= 0); /* closed */
        SSL_free(ssl);
        SSL_CTX_free(x);
        close(fd);
    }
    CHECK(log_has("did not negotiate ALPN h2 (no protocol agreed); connection closed"));

    /* reload: a new certificate from another CA for new connections */
    CHECK(h2_tls_server_reload(srv, P(0, "nope.pem"), P(1, "server.key"), NULL, err, sizeof err) == -1);
    CHECK(strstr(err, "nope.pem"));
    CHECK(call(cli, good, port, "localhost")); /* the old one stays */
    CHECK(h2_tls_server_reload(srv, P(0, "server2.pem"), P(1, "server2.key"), NULL, err, sizeof err) == 0);
    CHECK(!call(cli, good, port, "localhost"));
    CHECK(call(cli, wrong, port, "localhost"));

    h2_tls_release(good);
    h2_tls_release(wrong);
    h2_tls_release(srv);
    h2_loop_destroy(cli);
    h2_loop_destroy(s);
}

static void test_mtls(void)
{
    char err[512];
    h2_tls_ctx *srv = h2_tls_server_new(P(0, "server.pem"), P(1, "server.key"), P(2, "ca.pem"), err, sizeof err);
    CHECK(srv);
    uint16_t port = 0;
    h2_loop *s = server_new(srv, &port);
    h2_tls_release(srv); /* the listener holds it */
    h2_loop *cli = loop_new(0);
    CHECK(h2_loop_start(cli) == 0);
    h2_tls_ctx *with = h2_tls_client_new(P(0, "ca.pem"), P(1, "client.pem"), P(2, "client.key"), err, sizeof err);
    h2_tls_ctx *without = h2_tls_client_new(P(0, "ca.pem"), NULL, NULL, err, sizeof err);
    CHECK(with && without);
    CHECK(call(cli, with, port, "localhost"));
    CHECK(!call(cli, without, port, "localhost"));
    CHECK(log_has("peer did not return a certificate"));
    h2_tls_release(with);
    h2_tls_release(without);
    h2_loop_destroy(cli);
    h2_loop_destroy(s);
}

void tls_tests(void)
{
    snprintf(DIR_, sizeof DIR_, "/tmp/h2shim-tls-XXXXXX");
    CHECK(mkdtemp(DIR_));
    make_ca("ca");
    make_ca("other");
    make_leaf("server", "ca", "DNS:localhost,IP:127.0.0.1");
    make_leaf("server2", "other", "DNS:localhost,IP:127.0.0.1");
    make_leaf("client", "ca", "DNS:client");
    RUN(test_ctx_errors());
    RUN(test_calls());
    RUN(test_mtls());
    sh("rm -rf %s", DIR_);
}
