/* Socket helpers: listen (IPv4/IPv6/dual stack), resolve, non-blocking connect. */
#define _GNU_SOURCE
#include "h2_net.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <stddef.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

void h2_net_tune(int fd)
{
    int one = 1;
    /* Best effort: a socket that refuses TCP_NODELAY (e.g. not TCP) still works. */
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

void h2_net_reject(int fd)
{
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    (void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(fd);
}

int h2_net_reserve_fd(void) { return eventfd(0, EFD_CLOEXEC); }

static int gai_to_errno(int rc)
{
    if (rc == EAI_SYSTEM) return errno ? errno : EIO;
    if (rc == EAI_MEMORY) return ENOMEM;
    if (rc == EAI_NONAME || rc == EAI_NODATA || rc == EAI_ADDRFAMILY) return ENOENT;
    return EHOSTUNREACH;
}

static int listen_one(const struct addrinfo *ai, int dual, int reuse_port, uint16_t *bound_port)
{
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    int one = 1, zero = 0;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0) goto fail;
    /* Several loops of one server listen on the same port; the kernel spreads connections. */
    if (reuse_port && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) goto fail;
    if (ai->ai_family == AF_INET6 && dual &&
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero) != 0)
        goto fail;
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0) goto fail;
    if (listen(fd, 4096) != 0) goto fail;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0) goto fail;
    if (bound_port)
        *bound_port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                     : ((struct sockaddr_in *)&ss)->sin_port);
    return fd;
fail:;
    int e = errno;
    close(fd);
    return -e;
}

int h2_net_lookup(const char *host, uint16_t port, int flags, struct addrinfo **res)
{
    char ps[8];
    snprintf(ps, sizeof ps, "%u", (unsigned)port);
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = flags | AI_NUMERICSERV;
    int rc = getaddrinfo(host, ps, &hints, res);
    return rc == 0 ? 0 : -gai_to_errno(rc);
}

int h2_net_listen(const char *host, uint16_t port, int reuse_port, uint16_t *bound_port)
{
    int dual = (host == NULL || strcmp(host, "::") == 0);
    struct addrinfo *res = NULL;
    int rc = h2_net_lookup(host ? host : "::", port, AI_PASSIVE, &res);
    if (rc != 0) return rc;
    int fd = -EADDRNOTAVAIL;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        fd = listen_one(ai, dual, reuse_port, bound_port);
        if (fd >= 0) break;
    }
    freeaddrinfo(res);
    if (fd < 0 && host == NULL && (fd == -EAFNOSUPPORT || fd == -EADDRNOTAVAIL))
        return h2_net_listen("0.0.0.0", port, reuse_port, bound_port); /* host without IPv6 */
    return fd;
}

int h2_net_connect(const struct sockaddr *sa, socklen_t salen, int *done)
{
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    h2_net_tune(fd);
    *done = 0;
    if (connect(fd, sa, salen) == 0) {
        *done = 1;
        return fd;
    }
    if (errno == EINPROGRESS) return fd;
    int e = errno;
    close(fd);
    return -e;
}

int h2_net_listen_unix(const char *path)
{
    struct sockaddr_un su = {.sun_family = AF_UNIX};
    size_t n = strlen(path);
    if (n == 0) return -EINVAL;
    if (n >= sizeof su.sun_path) return -ENAMETOOLONG;
    memcpy(su.sun_path, path, n);
    socklen_t sl = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
    struct stat st;
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) return -EEXIST; /* never remove a file that is not a socket */
        int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (probe < 0) return -errno;
        int live = connect(probe, (struct sockaddr *)&su, sl) == 0 || errno == EAGAIN;
        close(probe);
        if (live) return -EADDRINUSE;         /* a server is running there: never steal its socket */
        if (unlink(path) != 0) return -errno; /* a socket left by an earlier server */
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    if (bind(fd, (struct sockaddr *)&su, sl) != 0 ||
        listen(fd, 4096) != 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}
