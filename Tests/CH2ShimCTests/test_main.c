/*
 * CH2Shim C tests (built with -DH2_TEST_HOOKS, see run_tests.sh):
 *   h2shim_test                 unit tests, then the end-to-end tests
 *   h2shim_test failmalloc      every allocation of each scenario failed in turn
 *   h2shim_test conns           the connection-limit tests alone
 *   h2shim_test tls             the TLS tests alone
 *   h2shim_test keepalive       the keepalive, lifetime and address-walk tests alone
 *   h2shim_test linger          the lingering-close tests alone
 *   h2shim_test serve           print the port, serve /x.Y/Echo until stdin closes (grpcio client)
 *   h2shim_test client PORT     one unary call to a grpcio server (method /x.Y/Echo)
 */
#include "test.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/socket.h>

/* The allocator hook's counters (h2_mem.h). */
atomic_long h2_mem_fail_at;
atomic_long h2_mem_count;

int test_tcp_to(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    CHECK(connect(fd, (struct sockaddr *)&a, sizeof a) == 0);
    return fd;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "serve") == 0) return e2e_serve();
    if (argc > 2 && strcmp(argv[1], "client") == 0) return e2e_client((uint16_t)atoi(argv[2]));
    if (argc > 1 && strcmp(argv[1], "conns") == 0) {
        conns_tests();
        return 0;
    }
    if (argc > 1 && strcmp(argv[1], "tls") == 0) {
        tls_tests();
        return 0;
    }
    if (argc > 1 && strcmp(argv[1], "keepalive") == 0) {
        keepalive_tests();
        return 0;
    }
    if (argc > 1 && strcmp(argv[1], "linger") == 0) {
        linger_tests();
        return 0;
    }
    if (argc > 1 && strcmp(argv[1], "failmalloc") == 0) {
        failmalloc_tests();
        fprintf(stderr, "failmalloc tests passed\n");
        return 0;
    }
    framing_tests();
    msgbuf_tests();
    outq_tests();
    ratelim_tests();
    addr_tests();
    map_tests();
    sessmem_tests();
    e2e_tests();
    RUN(limits_tests());
    RUN(partial_tests());
    conns_tests();
    tls_tests();
    keepalive_tests();
    linger_tests();
    fprintf(stderr, "all tests passed\n");
    return 0;
}
