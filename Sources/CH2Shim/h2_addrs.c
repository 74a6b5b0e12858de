/* Finding the server: address lists, resolution, and the walk of a client connection through them. */
#define _GNU_SOURCE
#include "h2_addrs.h"
#include "h2_loop.h"
#include "h2_mem.h"
#include "h2_net.h"
#include "h2_tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/un.h>
#include <unistd.h>

/* ---------------------------------------------------------------- lists (public) */

int h2_addrs_add(h2_addrs **list, const void *sa, size_t salen)
{
    if (!sa || salen == 0 || salen > sizeof(struct sockaddr_storage)) return -EINVAL;
    h2_addrs *l = *list;
    if (!l) {
        if (!(l = h2_calloc(1, sizeof *l))) return -ENOMEM;
        *list = l;
    }
    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 4;
        h2_addr *na = h2_realloc(l->a, nc * sizeof *na);
        if (!na) return -ENOMEM;
        l->a = na;
        l->cap = nc;
    }
    memset(&l->a[l->n], 0, sizeof l->a[l->n]);
    memcpy(&l->a[l->n].ss, sa, salen);
    l->a[l->n].len = (socklen_t)salen;
    l->n++;
    return 0;
}

size_t h2_addrs_count(const h2_addrs *a) { return a ? a->n : 0; }

void h2_addrs_free(h2_addrs *a)
{
    if (!a) return;
    h2_free(a->a);
    h2_free(a);
}

static bool has_family(const h2_addrs *l, int family)
{
    for (size_t i = 0; l && i < l->n; i++)
        if (l->a[i].ss.ss_family == family) return true;
    return false;
}

/* "localhost" and names under ".localhost" are the loopback (RFC 6761), whatever the hosts
 * file lists: both families, so a server on ::1 or on 127.0.0.1 is found either way. */
static bool is_localhost(const char *host)
{
    size_t n = strlen(host);
    if (n && host[n - 1] == '.') n--;
    if (n == 9 && strncasecmp(host, "localhost", 9) == 0) return true;
    return n > 10 && strncasecmp(host + n - 10, ".localhost", 10) == 0;
}

static int add_loopback(h2_addrs **l, uint16_t port)
{
    int rv = 0;
    if (!has_family(*l, AF_INET6)) {
        struct sockaddr_in6 s6 = {.sin6_family = AF_INET6, .sin6_port = htons(port), .sin6_addr = IN6ADDR_LOOPBACK_INIT};
        rv = h2_addrs_add(l, &s6, sizeof s6);
    }
    if (rv == 0 && !has_family(*l, AF_INET)) {
        struct sockaddr_in s4 = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        rv = h2_addrs_add(l, &s4, sizeof s4);
    }
    return rv;
}

h2_addrs *h2_resolve(const char *host, uint16_t port, int *err)
{
    struct addrinfo *res = NULL;
    bool local = is_localhost(host);
    int rc = h2_net_lookup(host, port, AI_ADDRCONFIG, &res);
    /* AI_ADDRCONFIG hides every address on a host with loopback only: ask without it. */
    if (rc == -ENOENT) rc = h2_net_lookup(host, port, 0, &res);
    int e = rc != 0 && !local ? -rc : 0;
    h2_addrs *l = NULL;
    for (struct addrinfo *ai = rc == 0 ? res : NULL; ai && !e; ai = ai->ai_next) {
        if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6) continue;
        int r = h2_addrs_add(&l, ai->ai_addr, ai->ai_addrlen);
        if (r < 0) e = -r;
    }
    if (res) freeaddrinfo(res);
    if (!e && local) {
        int r = add_loopback(&l, port);
        if (r < 0) e = -r;
    }
    if (!e && !l) e = ENOENT;
    if (e) {
        h2_addrs_free(l);
        if (err) *err = e;
        return NULL;
    }
    return l;
}

h2_addrs *h2_addrs_unix(const char *path, int *err)
{
    struct sockaddr_un su = {.sun_family = AF_UNIX};
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof su.sun_path) {
        if (err) *err = n ? ENAMETOOLONG : EINVAL;
        return NULL;
    }
    memcpy(su.sun_path, path, n);
    h2_addrs *l = NULL;
    int r = h2_addrs_add(&l, &su, offsetof(struct sockaddr_un, sun_path) + n + 1);
    if (r < 0) {
        h2_addrs_free(l); /* created, then its array could not be */
        if (err) *err = -r;
        return NULL;
    }
    return l;
}

/* ---------------------------------------------------------------- the walk (loop thread) */

static h2_conn *find_conn(h2_loop *L, h2_id id)
{
    int *k = h2_map_get(&L->local.map, id);
    return (k && *k == H2_OBJ_CONN) ? (h2_conn *)(void *)k : NULL;
}

void h2_conn_pending(h2_loop *L, h2_id id, h2_tls_ctx *tls, const char *server_name)
{
    h2_conn *c = h2_conn_new(L, id, -1, true);
    if (!c) {
        if (L->cb.on_conn) L->cb.on_conn(L->cb.ctx, id, H2_CONN_FAILED, ENOMEM);
        return;
    }
    c->connecting = true;
    if (tls) { /* the session is made once an address accepts (h2_conn_connected), on that socket */
        size_t n = server_name ? strlen(server_name) + 1 : 0;
        c->tls_name = n ? h2_malloc(n) : NULL;
        if (n && !c->tls_name) {
            h2_conn_close_now(c, ENOMEM, H2_CLOSE_CONN_LOST, true);
            return;
        }
        if (n) memcpy(c->tls_name, server_name, n);
        h2_tls_ref(tls);
        c->tls = tls;
    }
}

/* Starts attempts from c->addr_next until one is under way; false when none is left. */
static bool attempt(h2_conn *c, int *err)
{
    h2_loop *L = c->loop;
    while (c->addr_next < c->addrs->n) {
        h2_addr *a = &c->addrs->a[c->addr_next++];
        int done = 0;
        int fd = h2_net_connect((struct sockaddr *)&a->ss, a->len, &done);
        if (fd < 0) {
            *err = -fd;
            continue;
        }
        c->fd = fd;
        if (h2_conn_epoll(c, EPOLL_CTL_ADD, EPOLLOUT) != 0) {
            *err = errno;
            close(fd);
            c->fd = -1;
            continue;
        }
        c->want_out = true;
        uint32_t t = L->cfg.connect_timeout_ms;
        c->connect_deadline = t ? L->local.now + t : 0;
        if (done) h2_conn_connected(c);
        return true;
    }
    return false;
}

bool h2_conn_retry(h2_conn *c, int err)
{
    if (!c->addrs) return false;
    if (c->fd >= 0) close(c->fd); /* leaves the epoll set with it */
    c->fd = -1;
    c->want_out = false;
    c->connect_deadline = 0;
    if (!attempt(c, &err)) h2_conn_close_now(c, err, H2_CLOSE_CONN_LOST, true);
    return true;
}

void h2_conn_walk(h2_loop *L, h2_id id, h2_addrs *addrs, int err)
{
    h2_conn *c = find_conn(L, id);
    if (!c || !c->is_client || !c->connecting || c->addrs || c->fd >= 0) {
        h2_addrs_free(addrs); /* closed meanwhile (or not a pending connection) */
        return;
    }
    if (!addrs) {
        h2_conn_close_now(c, err ? err : ENOENT, H2_CLOSE_CONN_LOST, true);
        return;
    }
    c->addrs = addrs;
    c->addr_next = 0;
    int e = ENOENT;
    if (!attempt(c, &e)) h2_conn_close_now(c, e, H2_CLOSE_CONN_LOST, true);
}
