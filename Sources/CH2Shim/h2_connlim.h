/*
 * Connection caps (private): how many server connections are open, in all and per peer
 * address, against max_connections and max_connections_per_addr. One h2_connlim may be
 * shared by several loops serving one port (h2_loop_share_limits), so it is the one piece
 * of loop state touched by more than one loop thread: a mutex guards it. It is taken once
 * when a connection is accepted and once when it closes, never per request.
 *
 * A peer address is an IPv4 address, or the /64 prefix of an IPv6 address (one subscriber
 * usually gets a whole /64, so counting each /128 would let one host open any number of
 * connections); an IPv4-mapped IPv6 address (dual-stack listener) counts as its IPv4 address.
 */
#ifndef H2_CONNLIM_H
#define H2_CONNLIM_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define H2_CONNLIM_DEFAULT_MAX 10000u     /* max_connections = 0 resolves to at most this */
#define H2_CONNLIM_FD_RESERVE_MIN 64u     /* fds always left to files when derived from RLIMIT_NOFILE */

/* Results of h2_connlim_acquire. */
enum { H2_LIM_OK = 0, H2_LIM_TOTAL, H2_LIM_ADDR, H2_LIM_NOMEM };

typedef struct h2_peer h2_peer;

typedef struct h2_connlim {
    atomic_uint refs;
    pthread_mutex_t lock;
    uint32_t max_total;     /* resolved: never 0 */
    uint32_t max_per_addr;  /* 0 = no per-address cap */
    /* under lock */
    uint32_t total;
    h2_peer **buckets;      /* chained hash table of peers with open connections; NULL until needed */
    size_t nbuckets, npeers;
    uint64_t seed;          /* hash seed (per table), so bucket collisions cannot be planned */
} h2_connlim;

/* The default cap when max_connections is 0, for a soft RLIMIT_NOFILE of `nofile`
 * (0 or RLIM_INFINITY-sized: unknown / unlimited): min(H2_CONNLIM_DEFAULT_MAX, nofile -
 * reserve) with reserve = max(H2_CONNLIM_FD_RESERVE_MIN, nofile / 4), at least 1. */
uint32_t h2_connlim_auto_max(uint64_t nofile);
/* The same for this process's soft RLIMIT_NOFILE now. */
uint32_t h2_connlim_auto_max_now(void);

/* max_total 0 = automatic (h2_connlim_auto_max_now). NULL if out of memory. refs = 1. */
h2_connlim *h2_connlim_new(uint32_t max_total, uint32_t max_per_addr);
void h2_connlim_ref(h2_connlim *l);
void h2_connlim_unref(h2_connlim *l);

/* Counts one more connection from `sa` if both caps allow it. H2_LIM_OK sets *peer (pass
 * it to h2_connlim_release when the connection closes); otherwise nothing is counted. */
int h2_connlim_acquire(h2_connlim *l, const struct sockaddr *sa, socklen_t salen, h2_peer **peer);
void h2_connlim_release(h2_connlim *l, h2_peer *peer);
/* Open connections counted now, in all / from the address of `sa` (tests). */
uint32_t h2_connlim_total(h2_connlim *l);
uint32_t h2_connlim_count(h2_connlim *l, const struct sockaddr *sa, socklen_t salen);

#endif
