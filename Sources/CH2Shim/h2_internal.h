/* Internal declarations shared by the CH2Shim C files. Not part of the public API. */
#ifndef H2_INTERNAL_H
#define H2_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* ---- h2_map.c: open-addressing hash map uint64 token -> pointer (loop thread only) ---- */
typedef struct h2_map_ent {
    uint64_t key; /* 0 = empty slot (tokens are never 0) */
    void *val;
} h2_map_ent;

typedef struct h2_map {
    h2_map_ent *ents;
    size_t cap; /* power of two */
    size_t len;
} h2_map;

int h2_map_init(h2_map *m, size_t cap);
void h2_map_free(h2_map *m);
void *h2_map_get(const h2_map *m, uint64_t key);
int h2_map_put(h2_map *m, uint64_t key, void *val); /* 0, or -1 (ENOMEM) */
void *h2_map_del(h2_map *m, uint64_t key);          /* returns the removed value or NULL */

/* ---- h2_net.c: socket helpers ---- */
/* Creates a bound, listening, non-blocking socket. Returns fd or -errno; *port = bound port. */
int h2_net_listen(const char *host, uint16_t port, int reuse_port, uint16_t *bound_port);
/* Resolves host:port (first result). Returns 0 or -errno (EAI errors map to -EHOSTUNREACH/-ENOENT). */
int h2_net_resolve(const char *host, uint16_t port, struct sockaddr_storage *out, socklen_t *outlen);
/* Non-blocking connect. Returns fd (connect in progress or done) or -errno. *done = 1 if connected at once. */
int h2_net_connect(const struct sockaddr *sa, socklen_t salen, int *done);
/* TCP_NODELAY (and nothing else that could fail the connection). */
void h2_net_tune(int fd);

#endif
