/*
 * Rate limiter (private): at most `limit` events per one-second window (a fixed window,
 * enough to stop a flood). Used as the rapid-reset guard (CVE-2023-44487): a server
 * connection counts streams the peer reset before any response was submitted.
 */
#ifndef H2_RATELIM_H
#define H2_RATELIM_H

#include <stdbool.h>
#include <stdint.h>

typedef struct h2_ratelim {
    int64_t window;   /* second the count belongs to */
    uint32_t count;   /* events in that second */
    uint32_t limit;
} h2_ratelim;

void h2_ratelim_init(h2_ratelim *r, uint32_t limit);
/* Counts one event at `now_sec`; true if it is over the limit. */
bool h2_ratelim_hit(h2_ratelim *r, int64_t now_sec);
/* The current second of CLOCK_MONOTONIC_COARSE (no syscall through the vDSO). */
int64_t h2_ratelim_now(void);

#endif
