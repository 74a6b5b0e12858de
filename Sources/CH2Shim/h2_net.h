/* Socket helpers (private). */
#ifndef H2_NET_H
#define H2_NET_H

#include <stdint.h>
#include <sys/socket.h>

/* Creates a bound, listening, non-blocking socket. Returns fd or -errno; *port = bound port. */
int h2_net_listen(const char *host, uint16_t port, int reuse_port, uint16_t *bound_port);
/* Creates a listening, non-blocking Unix domain socket at path (replacing a stale socket file). fd or -errno. */
int h2_net_listen_unix(const char *path);
/* getaddrinfo for TCP on numeric port `port` with `flags`; 0 (freeaddrinfo *res) or -errno: -ENOENT when
 * the name has no (such) address, -ENOMEM, the system error, else -EHOSTUNREACH. */
struct addrinfo;
int h2_net_lookup(const char *host, uint16_t port, int flags, struct addrinfo **res);
/* Non-blocking connect. Returns fd (connect in progress or done) or -errno. *done = 1 if connected at once. */
int h2_net_connect(const struct sockaddr *sa, socklen_t salen, int *done);
/* TCP_NODELAY (and nothing else that could fail the connection). */
void h2_net_tune(int fd);
/* Closes a connection we refuse with a reset (SO_LINGER 0): no TIME_WAIT kept for it. */
void h2_net_reject(int fd);
/* An fd held in reserve (an eventfd: no file system needed), or -1. */
int h2_net_reserve_fd(void);

#endif
