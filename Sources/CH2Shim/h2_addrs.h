/*
 * Finding the server (private): address lists (h2_addrs, public as an opaque type),
 * name resolution into them, and the client connection's walk through them: each address in
 * order, moving on after a refusal or after connect_timeout_ms, until one connects.
 *
 * A client connection may be created before its addresses are known (h2_connect_pending):
 * it has a session (streams can be opened on it, their frames wait) but no socket yet; the
 * caller resolves the name on a thread of its own and hands the list over
 * (h2_connect_addrs), so no resolver ever blocks the loop.
 */
#ifndef H2_ADDRS_H
#define H2_ADDRS_H

#include "h2_conn.h"
#include "h2shim.h"

#include <stdbool.h>
#include <sys/socket.h>

typedef struct h2_addr {
    struct sockaddr_storage ss;
    socklen_t len;
} h2_addr;

struct h2_addrs {
    size_t n, cap;
    h2_addr *a;
};

/* Loop thread: a pending client connection `id` (no socket; on_conn FAILED if it cannot be made). */
void h2_conn_pending(h2_loop *L, h2_id id, h2_tls_ctx *tls, const char *server_name);
/* Loop thread: `addrs` (taken; NULL = resolution failed with `err`) for pending connection `id`. */
void h2_conn_walk(h2_loop *L, h2_id id, struct h2_addrs *addrs, int err);
/* The current attempt failed with `err` (refused, timed out): tries the next address, or
 * fails the connection (on_conn FAILED, err) when none is left. Returns false if the
 * connection has no address list (a plain h2_connect: the caller fails it). */
bool h2_conn_retry(h2_conn *c, int err);

#endif
