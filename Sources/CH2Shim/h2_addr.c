/* Peer addresses as text, grpc's peer format (see h2_addr.h). */
#include "h2_addr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/un.h>

/* snprintf, but the length returned is what was written (the output cut to fit). */
static size_t put(char *out, size_t cap, int n)
{
    if (cap == 0) return 0;
    if (n < 0) {
        out[0] = 0;
        return 0;
    }
    return (size_t)n < cap ? (size_t)n : cap - 1;
}

size_t h2_addr_format(const struct sockaddr *sa, socklen_t len, char *out, size_t cap)
{
    char host[INET6_ADDRSTRLEN];
    if (sa && sa->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        if (inet_ntop(AF_INET, &in->sin_addr, host, sizeof host))
            return put(out, cap, snprintf(out, cap, "ipv4:%s:%u", host, (unsigned)ntohs(in->sin_port)));
    } else if (sa && sa->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        unsigned port = ntohs(in6->sin6_port);
        if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
            if (inet_ntop(AF_INET, &in6->sin6_addr.s6_addr[12], host, sizeof host))
                return put(out, cap, snprintf(out, cap, "ipv4:%s:%u", host, port));
        } else if (inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host)) {
            return put(out, cap, snprintf(out, cap, "ipv6:[%s]:%u", host, port));
        }
    } else if (sa && sa->sa_family == AF_UNIX && len >= (socklen_t)offsetof(struct sockaddr_un, sun_path)) {
        const struct sockaddr_un *un = (const struct sockaddr_un *)sa;
        size_t max = (size_t)len - offsetof(struct sockaddr_un, sun_path);
        if (max > sizeof un->sun_path) max = sizeof un->sun_path;
        /* An unnamed or abstract socket (leading NUL) has no path to show. */
        size_t n = (max > 0 && un->sun_path[0]) ? strnlen(un->sun_path, max) : 0;
        return put(out, cap, snprintf(out, cap, "unix:%.*s", (int)n, un->sun_path));
    }
    return put(out, cap, snprintf(out, cap, "unknown"));
}
