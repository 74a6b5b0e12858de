/* Connection caps: a total and a per-peer-address count, shared by the loops of one server. */
#define _GNU_SOURCE
#include "h2_connlim.h"
#include "h2_mem.h"

#include <netinet/in.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <time.h>

struct h2_peer {
    h2_peer *next;
    uint64_t hi, lo; /* the address key, see peer_key */
    uint32_t count;
};

#define H2_CONNLIM_BUCKETS0 64

uint32_t h2_connlim_auto_max(uint64_t nofile)
{
    if (nofile == 0 || nofile >= (uint64_t)1 << 40) return H2_CONNLIM_DEFAULT_MAX; /* unknown or unlimited */
    uint64_t reserve = nofile / 4;
    if (reserve < H2_CONNLIM_FD_RESERVE_MIN) reserve = H2_CONNLIM_FD_RESERVE_MIN;
    uint64_t n = nofile > reserve ? nofile - reserve : 1;
    return n < H2_CONNLIM_DEFAULT_MAX ? (uint32_t)n : H2_CONNLIM_DEFAULT_MAX;
}

uint32_t h2_connlim_auto_max_now(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return h2_connlim_auto_max(0);
    return h2_connlim_auto_max(rl.rlim_cur == RLIM_INFINITY ? 0 : (uint64_t)rl.rlim_cur);
}

h2_connlim *h2_connlim_new(uint32_t max_total, uint32_t max_per_addr)
{
    h2_connlim *l = h2_calloc(1, sizeof *l);
    if (!l) return NULL;
    if (pthread_mutex_init(&l->lock, NULL) != 0) {
        h2_free(l);
        return NULL;
    }
    atomic_init(&l->refs, 1);
    l->max_total = max_total ? max_total : h2_connlim_auto_max_now();
    l->max_per_addr = max_per_addr;
    if (getrandom(&l->seed, sizeof l->seed, GRND_NONBLOCK) != (ssize_t)sizeof l->seed) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        l->seed = (uint64_t)(uintptr_t)l ^ ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec;
    }
    return l;
}

void h2_connlim_ref(h2_connlim *l) { atomic_fetch_add_explicit(&l->refs, 1, memory_order_relaxed); }

void h2_connlim_unref(h2_connlim *l)
{
    if (!l || atomic_fetch_sub_explicit(&l->refs, 1, memory_order_acq_rel) != 1) return;
    for (size_t i = 0; i < l->nbuckets; i++) {
        for (h2_peer *p = l->buckets[i], *n; p; p = n) {
            n = p->next;
            h2_free(p);
        }
    }
    h2_free(l->buckets);
    pthread_mutex_destroy(&l->lock);
    h2_free(l);
}

/* IPv4 (also IPv4-mapped IPv6): hi = 0, lo = 0xffff'00000000 | address; IPv6: hi = the /64
 * prefix, lo = 0; anything else: one shared key (0, 1). The three never collide. */
static void peer_key(const struct sockaddr *sa, socklen_t salen, uint64_t *hi, uint64_t *lo)
{
    *hi = 0;
    *lo = 1;
    if (sa && sa->sa_family == AF_INET && salen >= (socklen_t)sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)(const void *)sa;
        *lo = 0xffff00000000ull | ntohl(s4->sin_addr.s_addr);
    } else if (sa && sa->sa_family == AF_INET6 && salen >= (socklen_t)sizeof(struct sockaddr_in6)) {
        const uint8_t *b = ((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr.s6_addr;
        static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (memcmp(b, mapped, sizeof mapped) == 0) {
            *lo = 0xffff00000000ull | ((uint64_t)b[12] << 24 | (uint64_t)b[13] << 16 | (uint64_t)b[14] << 8 | b[15]);
        } else {
            uint64_t h = 0;
            for (int i = 0; i < 8; i++) h = h << 8 | b[i];
            *hi = h;
            *lo = 0;
        }
    }
}

static uint64_t mix(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    x ^= x >> 31;
    return x;
}

static size_t bucket_of(const h2_connlim *l, uint64_t hi, uint64_t lo)
{
    return (size_t)(mix(mix(hi ^ l->seed) ^ lo) & (l->nbuckets - 1));
}

static h2_peer *find(const h2_connlim *l, uint64_t hi, uint64_t lo)
{
    if (!l->buckets) return NULL;
    for (h2_peer *p = l->buckets[bucket_of(l, hi, lo)]; p; p = p->next)
        if (p->hi == hi && p->lo == lo) return p;
    return NULL;
}

/* Doubles the table when it holds more peers than buckets; a failed allocation keeps the old one. */
static void maybe_grow(h2_connlim *l)
{
    if (l->npeers < l->nbuckets) return;
    size_t n = l->nbuckets * 2;
    h2_peer **nb = h2_calloc(n, sizeof *nb);
    if (!nb) return;
    h2_peer **old = l->buckets;
    size_t oldn = l->nbuckets;
    l->buckets = nb;
    l->nbuckets = n;
    for (size_t i = 0; i < oldn; i++) {
        for (h2_peer *p = old[i], *next; p; p = next) {
            next = p->next;
            size_t b = bucket_of(l, p->hi, p->lo);
            p->next = nb[b];
            nb[b] = p;
        }
    }
    h2_free(old);
}

int h2_connlim_acquire(h2_connlim *l, const struct sockaddr *sa, socklen_t salen, h2_peer **peer)
{
    *peer = NULL;
    int rv = H2_LIM_OK;
    pthread_mutex_lock(&l->lock);
    if (l->total >= l->max_total) {
        rv = H2_LIM_TOTAL;
        goto out;
    }
    if (l->max_per_addr) {
        uint64_t hi, lo;
        peer_key(sa, salen, &hi, &lo);
        if (!l->buckets) {
            l->buckets = h2_calloc(H2_CONNLIM_BUCKETS0, sizeof *l->buckets);
            if (!l->buckets) {
                rv = H2_LIM_NOMEM;
                goto out;
            }
            l->nbuckets = H2_CONNLIM_BUCKETS0;
        }
        h2_peer *p = find(l, hi, lo);
        if (p && p->count >= l->max_per_addr) {
            rv = H2_LIM_ADDR;
            goto out;
        }
        if (!p) {
            p = h2_calloc(1, sizeof *p);
            if (!p) {
                rv = H2_LIM_NOMEM;
                goto out;
            }
            p->hi = hi;
            p->lo = lo;
            size_t b = bucket_of(l, hi, lo);
            p->next = l->buckets[b];
            l->buckets[b] = p;
            l->npeers++;
            maybe_grow(l);
        }
        p->count++;
        *peer = p;
    }
    l->total++;
out:
    pthread_mutex_unlock(&l->lock);
    return rv;
}

void h2_connlim_release(h2_connlim *l, h2_peer *peer)
{
    pthread_mutex_lock(&l->lock);
    l->total--;
    if (peer && --peer->count == 0) {
        h2_peer **pp = &l->buckets[bucket_of(l, peer->hi, peer->lo)];
        while (*pp != peer) pp = &(*pp)->next;
        *pp = peer->next;
        l->npeers--;
        h2_free(peer);
    }
    pthread_mutex_unlock(&l->lock);
}

uint32_t h2_connlim_total(h2_connlim *l)
{
    pthread_mutex_lock(&l->lock);
    uint32_t n = l->total;
    pthread_mutex_unlock(&l->lock);
    return n;
}

uint32_t h2_connlim_count(h2_connlim *l, const struct sockaddr *sa, socklen_t salen)
{
    uint64_t hi, lo;
    peer_key(sa, salen, &hi, &lo);
    pthread_mutex_lock(&l->lock);
    h2_peer *p = find(l, hi, lo);
    uint32_t n = p ? p->count : 0;
    pthread_mutex_unlock(&l->lock);
    return n;
}
