/*
 * TLS (private): OpenSSL contexts and the per-connection TLS session, beside the cleartext path.
 *
 * An h2_tls_ctx (public type, h2shim.h) owns one SSL_CTX at a time behind a mutex, and is
 * reference counted: listeners and connections hold a reference. A reload swaps the SSL_CTX
 * for new connections; an SSL already made keeps its own SSL_CTX (OpenSSL counts that).
 * TLS 1.2 and 1.3 only; ALPN "h2" is offered (client) and selected (server), and a connection
 * that did not negotiate it is closed by the caller. Socket I/O goes through a BIO of our own
 * (send with MSG_NOSIGNAL: a peer that resets never raises SIGPIPE). Loop thread only, except
 * context creation, reload and the reference count.
 */
#ifndef H2_TLS_H
#define H2_TLS_H

#include "h2shim.h"

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <sys/uio.h>

struct ssl_st;

/* What h2_tls_handshake reports. */
enum { H2_TLS_DONE = 0, H2_TLS_WANT_READ, H2_TLS_WANT_WRITE, H2_TLS_FAILED };

void h2_tls_ref(h2_tls_ctx *t);
/* A new TLS session on `fd` from the context's current SSL_CTX: server (accept) or client
 * (connect, with SNI and host-name verification of `server_name`, which may be an IP literal).
 * NULL on failure, with the reason in err. */
struct ssl_st *h2_tls_session(h2_tls_ctx *t, int fd, const char *server_name, char *err, size_t errlen);
/* One handshake step. On H2_TLS_FAILED err says why (OpenSSL's reason, the certificate
 * verification result). H2_TLS_DONE also means ALPN h2 was agreed; a handshake that completed
 * without it is H2_TLS_FAILED. */
int h2_tls_handshake(struct ssl_st *ssl, char *err, size_t errlen);
/* Reads decrypted bytes: >0 bytes, 0 the peer closed, -EAGAIN nothing now, -EPROTO a TLS error
 * (reason in err), another -errno the socket failed. */
ssize_t h2_tls_read(struct ssl_st *ssl, void *buf, size_t len, char *err, size_t errlen);
/* An h2_outq writer (ctx = the SSL): returns bytes written, or -1 with errno (EAGAIN: retry the
 * same bytes later; EPROTO: a TLS error). */
ssize_t h2_tls_writev(void *ctx, const struct iovec *iov, int n);
/* Sends close_notify (best effort, unless `broken`: after a fatal error) and frees the session. */
void h2_tls_session_free(struct ssl_st *ssl, bool broken);

#endif
