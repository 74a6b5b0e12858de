/*
 * Rate limiter (private): a token bucket of `burst` tokens, refilled at `rate` tokens per
 * second; each event takes one, and an event that finds the bucket empty is over the
 * limit. Used as the rapid-reset guard (CVE-2023-44487): a server connection spends one
 * token on every RST_STREAM the peer sends (see h2_session.c).
 */
#ifndef H2_RATELIM_H
#define H2_RATELIM_H

#include <stdbool.h>
#include <stdint.h>

typedef struct h2_ratelim {
    uint64_t milli;     /* tokens held, in thousandths (a refill of rate/s adds `rate` per ms) */
    uint64_t cap_milli; /* burst * 1000 */
    uint32_t rate;      /* tokens per second */
    int64_t last_ms;    /* time of the last refill */
} h2_ratelim;

/* A full bucket at `now_ms`. */
void h2_ratelim_init(h2_ratelim *r, uint32_t burst, uint32_t rate, int64_t now_ms);
/* Counts one event at `now_ms`; true if it is over the limit (the bucket was empty). */
bool h2_ratelim_hit(h2_ratelim *r, int64_t now_ms);
/* Milliseconds of CLOCK_MONOTONIC_COARSE (no syscall through the vDSO; ~4 ms resolution). */
int64_t h2_ratelim_now_ms(void);

#endif
