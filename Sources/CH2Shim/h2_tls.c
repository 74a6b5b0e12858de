/* TLS: contexts (PEM files, reload, reference count), sessions, handshake, read and write. */
#define _GNU_SOURCE
#include "h2_tls.h"
#include "h2_mem.h"

#include <arpa/inet.h>
#include <errno.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

static const unsigned char ALPN_H2[] = {2, 'h', '2'};

struct h2_tls_ctx {
    pthread_mutex_t lock; /* guards ctx (reload swaps it) */
    SSL_CTX *ctx;
    BIO_METHOD *bio;      /* our socket BIO (per context: no global state) */
    atomic_int refs;
    bool server;
};

/* ---------------------------------------------------------------- errors */

/* err = prefix + ": " + the first reason in OpenSSL's error queue (which is then emptied). */
static void set_err(char *err, size_t len, const char *fmt, ...)
{
    if (!err || !len) return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(err, len, fmt, ap);
    va_end(ap);
    unsigned long e = ERR_get_error();
    if (e && n >= 0 && (size_t)n < len) {
        const char *reason = ERR_reason_error_string(e);
        char buf[256];
        if (!reason) {
            ERR_error_string_n(e, buf, sizeof buf);
            reason = buf;
        }
        snprintf(err + n, len - (size_t)n, ": %s", reason);
    }
    ERR_clear_error();
}

/* ---------------------------------------------------------------- the socket BIO */

static int bio_write(BIO *b, const char *p, int n)
{
    int fd = (int)(intptr_t)BIO_get_data(b);
    BIO_clear_retry_flags(b);
    ssize_t w;
    do w = send(fd, p, (size_t)n, MSG_NOSIGNAL);
    while (w < 0 && errno == EINTR);
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) BIO_set_retry_write(b);
    return (int)w;
}

static int bio_read(BIO *b, char *p, int n)
{
    int fd = (int)(intptr_t)BIO_get_data(b);
    BIO_clear_retry_flags(b);
    ssize_t r;
    do r = recv(fd, p, (size_t)n, 0);
    while (r < 0 && errno == EINTR);
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) BIO_set_retry_read(b);
    return (int)r;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)b, (void)num, (void)ptr;
    return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

static int bio_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

static BIO_METHOD *bio_method_new(void)
{
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "h2shim socket");
    if (!m) return NULL;
    if (!BIO_meth_set_write(m, bio_write) || !BIO_meth_set_read(m, bio_read) || !BIO_meth_set_ctrl(m, bio_ctrl) ||
        !BIO_meth_set_create(m, bio_create)) {
        BIO_meth_free(m);
        return NULL;
    }
    return m;
}

/* ---------------------------------------------------------------- contexts */

static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
                       unsigned int inlen, void *arg)
{
    (void)ssl, (void)arg;
    unsigned char *o = NULL;
    if (SSL_select_next_proto(&o, outlen, ALPN_H2, sizeof ALPN_H2, in, inlen) != OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK; /* the handshake completes without ALPN; the caller closes it */
    *out = o;
    return SSL_TLSEXT_ERR_OK;
}

/* A configured SSL_CTX, or NULL with the reason in err. */
static SSL_CTX *ctx_build(bool server, const char *cert, const char *key, const char *ca, char *err, size_t len)
{
    ERR_clear_error();
    SSL_CTX *x = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
    if (!x) {
        set_err(err, len, "could not create a TLS context");
        return NULL;
    }
    if (!SSL_CTX_set_min_proto_version(x, TLS1_2_VERSION) || !SSL_CTX_set_max_proto_version(x, TLS1_3_VERSION)) {
        set_err(err, len, "could not limit TLS to versions 1.2 and 1.3");
        goto fail;
    }
    SSL_CTX_set_options(x, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION | SSL_OP_IGNORE_UNEXPECTED_EOF |
                               (server ? SSL_OP_CIPHER_SERVER_PREFERENCE : 0));
    SSL_CTX_set_mode(x, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
    if (cert && SSL_CTX_use_certificate_chain_file(x, cert) != 1) {
        set_err(err, len, "could not load the certificate chain %s", cert);
        goto fail;
    }
    if (key && SSL_CTX_use_PrivateKey_file(x, key, SSL_FILETYPE_PEM) != 1) {
        set_err(err, len, "could not load the private key %s", key);
        goto fail;
    }
    if (cert && key && SSL_CTX_check_private_key(x) != 1) {
        set_err(err, len, "the private key %s does not match the certificate %s", key, cert);
        goto fail;
    }
    if (server) {
        SSL_CTX_set_alpn_select_cb(x, alpn_select, NULL);
        static const unsigned char sid_ctx[] = "h2shim";
        if (SSL_CTX_set_session_id_context(x, sid_ctx, sizeof sid_ctx - 1) != 1) {
            set_err(err, len, "could not set the TLS session id context");
            goto fail;
        }
        if (ca) { /* mTLS: every client shows a certificate the CA signed */
            STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(ca);
            if (!names || SSL_CTX_load_verify_locations(x, ca, NULL) != 1) {
                if (names) sk_X509_NAME_pop_free(names, X509_NAME_free);
                set_err(err, len, "could not load the client CA file %s", ca);
                goto fail;
            }
            SSL_CTX_set_client_CA_list(x, names);
            SSL_CTX_set_verify(x, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
        }
    } else {
        if (ca ? SSL_CTX_load_verify_locations(x, ca, NULL) != 1 : SSL_CTX_set_default_verify_paths(x) != 1) {
            set_err(err, len, ca ? "could not load the CA file %s" : "could not load the system's trusted certificates%s",
                    ca ? ca : "");
            goto fail;
        }
        SSL_CTX_set_verify(x, SSL_VERIFY_PEER, NULL);
        if (SSL_CTX_set_alpn_protos(x, ALPN_H2, sizeof ALPN_H2) != 0) {
            set_err(err, len, "could not set ALPN");
            goto fail;
        }
    }
    return x;
fail:
    SSL_CTX_free(x);
    return NULL;
}

static h2_tls_ctx *tls_new(bool server, const char *cert, const char *key, const char *ca, char *err, size_t len)
{
    if (err && len) err[0] = 0;
    h2_tls_ctx *t = h2_calloc(1, sizeof *t);
    if (!t) {
        set_err(err, len, "out of memory");
        return NULL;
    }
    t->server = server;
    atomic_init(&t->refs, 1);
    if (pthread_mutex_init(&t->lock, NULL) != 0) {
        h2_free(t);
        set_err(err, len, "out of memory");
        return NULL;
    }
    if (!(t->bio = bio_method_new())) {
        set_err(err, len, "could not create the socket BIO");
        goto fail;
    }
    if (!(t->ctx = ctx_build(server, cert, key, ca, err, len))) goto fail;
    return t;
fail:
    if (t->bio) BIO_meth_free(t->bio);
    pthread_mutex_destroy(&t->lock);
    h2_free(t);
    return NULL;
}

h2_tls_ctx *h2_tls_server_new(const char *cert_file, const char *key_file, const char *client_ca_file, char *err,
                              size_t errlen)
{
    if (!cert_file || !key_file) {
        set_err(err, errlen, "a TLS server needs a certificate chain and a private key");
        return NULL;
    }
    return tls_new(true, cert_file, key_file, client_ca_file, err, errlen);
}

h2_tls_ctx *h2_tls_client_new(const char *ca_file, const char *cert_file, const char *key_file, char *err,
                              size_t errlen)
{
    if (!cert_file != !key_file) {
        set_err(err, errlen, "a client certificate needs its private key and the other way round");
        return NULL;
    }
    return tls_new(false, cert_file, key_file, ca_file, err, errlen);
}

int h2_tls_server_reload(h2_tls_ctx *t, const char *cert_file, const char *key_file, const char *client_ca_file,
                         char *err, size_t errlen)
{
    if (err && errlen) err[0] = 0;
    if (!t->server || !cert_file || !key_file) {
        set_err(err, errlen, "reload needs a server context, a certificate chain and a private key");
        return -1;
    }
    SSL_CTX *x = ctx_build(true, cert_file, key_file, client_ca_file, err, errlen);
    if (!x) return -1; /* the old certificates stay */
    pthread_mutex_lock(&t->lock);
    SSL_CTX *old = t->ctx;
    t->ctx = x;
    pthread_mutex_unlock(&t->lock);
    SSL_CTX_free(old); /* sessions made from it hold their own reference */
    return 0;
}

void h2_tls_ref(h2_tls_ctx *t) { atomic_fetch_add_explicit(&t->refs, 1, memory_order_relaxed); }

void h2_tls_release(h2_tls_ctx *t)
{
    if (!t || atomic_fetch_sub_explicit(&t->refs, 1, memory_order_acq_rel) != 1) return;
    SSL_CTX_free(t->ctx);
    BIO_meth_free(t->bio);
    pthread_mutex_destroy(&t->lock);
    h2_free(t);
}

/* ---------------------------------------------------------------- sessions */

SSL *h2_tls_session(h2_tls_ctx *t, int fd, const char *server_name, char *err, size_t len)
{
    ERR_clear_error();
    pthread_mutex_lock(&t->lock);
    SSL *ssl = SSL_new(t->ctx);
    pthread_mutex_unlock(&t->lock);
    BIO *b = ssl ? BIO_new(t->bio) : NULL;
    if (!b) {
        set_err(err, len, "could not create a TLS session");
        SSL_free(ssl);
        return NULL;
    }
    BIO_set_data(b, (void *)(intptr_t)fd);
    SSL_set_bio(ssl, b, b);
    if (t->server) {
        SSL_set_accept_state(ssl);
        return ssl;
    }
    SSL_set_connect_state(ssl);
    if (server_name && *server_name) {
        unsigned char ip[16];
        bool literal = inet_pton(AF_INET, server_name, ip) == 1 || inet_pton(AF_INET6, server_name, ip) == 1;
        /* SNI names a host, never an address (RFC 6066 3); SSL_set1_host checks either. */
        if ((!literal && SSL_set_tlsext_host_name(ssl, server_name) != 1) || SSL_set1_host(ssl, server_name) != 1) {
            set_err(err, len, "could not set the server name %s", server_name);
            SSL_free(ssl);
            return NULL;
        }
    }
    return ssl;
}

/* err = the first reason in OpenSSL's error queue (which is then emptied), or `fallback`. */
static void reason(char *err, size_t len, const char *fallback)
{
    unsigned long code = ERR_get_error();
    const char *r = code ? ERR_reason_error_string(code) : NULL;
    snprintf(err, len, "%s", r ? r : fallback);
    ERR_clear_error();
}

/* err = what failed: the certificate check's result when that was it, else OpenSSL's reason. */
static void handshake_err(SSL *ssl, int rc, char *err, size_t len)
{
    long v = SSL_get_verify_result(ssl);
    int e = SSL_get_error(ssl, rc);
    if (v != X509_V_OK) {
        ERR_clear_error();
        set_err(err, len, "certificate verify failed: %s", X509_verify_cert_error_string(v));
    } else if (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) {
        set_err(err, len, "%s", errno ? strerror(errno) : "the peer closed the connection during the handshake");
    } else {
        reason(err, len, "the handshake failed");
    }
}

int h2_tls_handshake(SSL *ssl, char *err, size_t len)
{
    ERR_clear_error();
    errno = 0;
    int rc = SSL_do_handshake(ssl);
    if (rc != 1) {
        int e = SSL_get_error(ssl, rc);
        if (e == SSL_ERROR_WANT_READ) return H2_TLS_WANT_READ;
        if (e == SSL_ERROR_WANT_WRITE) return H2_TLS_WANT_WRITE;
        handshake_err(ssl, rc, err, len);
        return H2_TLS_FAILED;
    }
    const unsigned char *p = NULL;
    unsigned int n = 0;
    SSL_get0_alpn_selected(ssl, &p, &n);
    if (n != 2 || memcmp(p, "h2", 2) != 0) {
        snprintf(err, len, "the peer did not negotiate ALPN h2 (%s%.*s)", n ? "it chose " : "no protocol agreed",
                 (int)n, n ? (const char *)p : "");
        return H2_TLS_FAILED;
    }
    return H2_TLS_DONE;
}

ssize_t h2_tls_read(SSL *ssl, void *buf, size_t len, char *err, size_t errlen)
{
    ERR_clear_error();
    errno = 0;
    int n = SSL_read(ssl, buf, len > INT32_MAX ? INT32_MAX : (int)len);
    if (n > 0) return n;
    switch (SSL_get_error(ssl, n)) {
    case SSL_ERROR_ZERO_RETURN: return 0;
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE: return -EAGAIN;
    case SSL_ERROR_SYSCALL:
        if (ERR_peek_error() == 0) { /* the socket failed under it (or closed: IGNORE_UNEXPECTED_EOF) */
            int e = errno;
            return e == 0 ? 0 : e == EPROTO ? -EIO : -e; /* -EPROTO means a TLS error */
        }
        /* fallthrough */
    default: reason(err, errlen, "a TLS error"); return -EPROTO;
    }
}

ssize_t h2_tls_writev(void *ctx, const struct iovec *iov, int n)
{
    SSL *ssl = ctx;
    ssize_t total = 0;
    for (int i = 0; i < n; i++) {
        if (iov[i].iov_len == 0) continue;
        ERR_clear_error();
        size_t len = iov[i].iov_len > INT32_MAX ? INT32_MAX : iov[i].iov_len;
        int w = SSL_write(ssl, iov[i].iov_base, (int)len);
        if (w <= 0) {
            int e = SSL_get_error(ssl, w);
            if (total > 0) return total; /* the rest is tried again from here, as OpenSSL requires */
            errno = (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) ? EAGAIN
                    : (e == SSL_ERROR_SYSCALL && errno)                     ? errno
                                                                            : EPROTO;
            ERR_clear_error();
            return -1;
        }
        total += w;
        if ((size_t)w < len) return total;
    }
    return total;
}

void h2_tls_session_free(SSL *ssl, bool broken)
{
    if (!ssl) return;
    if (!broken && SSL_is_init_finished(ssl)) {
        ERR_clear_error();
        (void)SSL_shutdown(ssl); /* one close_notify, no wait for the peer's */
    }
    ERR_clear_error();
    SSL_free(ssl);
}
