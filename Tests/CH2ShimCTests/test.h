/* Shared by the CH2Shim C tests: one binary, one file per unit (test_<unit>.c), a small main. */
#ifndef H2_TEST_H
#define H2_TEST_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define CHECK(c)                                                                    \
    do {                                                                            \
        if (!(c)) {                                                                 \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #c);   \
            exit(1);                                                                \
        }                                                                           \
    } while (0)

#define RUN(x)                                  \
    do {                                        \
        x;                                      \
        fprintf(stderr, "ok   %s\n", #x);       \
    } while (0)

/* test_main.c: a blocking TCP connection to 127.0.0.1:port (CHECKs that it connects) */
int test_tcp_to(uint16_t port);

/* test_framing.c: gRPC prefix and deframer */
void framing_tests(void);
/* test_msgbuf.c: message buffers and pool */
void msgbuf_tests(void);
/* test_outq.c: output queue */
void outq_tests(void);
/* test_map.c: token map */
void map_tests(void);
/* test_sessmem.c: a session's allocator, its frame buffer's pages released when idle */
void sessmem_tests(void);
/* test_addr.c: peer addresses as text */
void addr_tests(void);
/* test_ratelim.c: rate limiter */
void ratelim_tests(void);
/* test_limits.c: the session's header and stream limits, loops over loopback */
void limits_tests(void);
/* test_partial.c: the budget of partially received messages */
void partial_tests(void);
/* test_conns.c: connection caps, timers, the fd limit */
void conns_tests(void);
/* test_tls.c: TLS over loopback with certificates made by the openssl CLI */
void tls_tests(void);
/* test_keepalive.c: keepalive, connection lifetimes, the client's address walk */
void keepalive_tests(void);
/* test_linger.c: the lingering close after a GOAWAY over loopback */
void linger_tests(void);
/* test_failmalloc.c: every allocation failed in turn */
void failmalloc_tests(void);
/* test_e2e.c: loops over loopback through the public API; grpcio interop modes */
void e2e_tests(void);
int e2e_serve(void);
int e2e_client(uint16_t port);

#endif
