/* Unit tests of h2_addr.c: peer addresses in grpc's format. */
#include "h2_addr.h"
#include "test.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/un.h>

static void v4(void)
{
    struct sockaddr_in in = {.sin_family = AF_INET, .sin_port = htons(5555)};
    CHECK(inet_pton(AF_INET, "127.0.0.1", &in.sin_addr) == 1);
    char out[H2_ADDR_TEXT_MAX];
    CHECK(h2_addr_format((struct sockaddr *)&in, sizeof in, out, sizeof out) == strlen("ipv4:127.0.0.1:5555"));
    CHECK(strcmp(out, "ipv4:127.0.0.1:5555") == 0);
    /* Cut to fit, always terminated. */
    char small[8];
    CHECK(h2_addr_format((struct sockaddr *)&in, sizeof in, small, sizeof small) == 7);
    CHECK(strcmp(small, "ipv4:12") == 0);
    CHECK(h2_addr_format((struct sockaddr *)&in, sizeof in, small, 0) == 0);
    /* A short length is not an address. */
    CHECK(h2_addr_format((struct sockaddr *)&in, 4, out, sizeof out) == 7 && strcmp(out, "unknown") == 0);
}

static void v6(void)
{
    struct sockaddr_in6 in6 = {.sin6_family = AF_INET6, .sin6_port = htons(443)};
    CHECK(inet_pton(AF_INET6, "2001:db8::1", &in6.sin6_addr) == 1);
    char out[H2_ADDR_TEXT_MAX];
    h2_addr_format((struct sockaddr *)&in6, sizeof in6, out, sizeof out);
    CHECK(strcmp(out, "ipv6:[2001:db8::1]:443") == 0);
    /* Dual-stack listener: an IPv4 client arrives IPv4-mapped and is shown as IPv4. */
    CHECK(inet_pton(AF_INET6, "::ffff:10.1.2.3", &in6.sin6_addr) == 1);
    h2_addr_format((struct sockaddr *)&in6, sizeof in6, out, sizeof out);
    CHECK(strcmp(out, "ipv4:10.1.2.3:443") == 0);
}

static void unix_and_unknown(void)
{
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    strcpy(un.sun_path, "/run/lg.sock");
    char out[H2_ADDR_TEXT_MAX];
    socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(un.sun_path) + 1);
    h2_addr_format((struct sockaddr *)&un, len, out, sizeof out);
    CHECK(strcmp(out, "unix:/run/lg.sock") == 0);
    /* An unnamed socket (accept gives only the family). */
    h2_addr_format((struct sockaddr *)&un, (socklen_t)sizeof(sa_family_t), out, sizeof out);
    CHECK(strcmp(out, "unix:") == 0);
    /* A path filling sun_path without a NUL stays inside it. */
    memset(un.sun_path, 'a', sizeof un.sun_path);
    size_t n = h2_addr_format((struct sockaddr *)&un, sizeof un, out, sizeof out);
    CHECK(n == 5 + sizeof un.sun_path && n < sizeof out);
    struct sockaddr other = {.sa_family = AF_PACKET};
    h2_addr_format(&other, sizeof other, out, sizeof out);
    CHECK(strcmp(out, "unknown") == 0);
    h2_addr_format(NULL, 0, out, sizeof out);
    CHECK(strcmp(out, "unknown") == 0);
}

void addr_tests(void)
{
    RUN(v4());
    RUN(v6());
    RUN(unix_and_unknown());
}
