/* Fixed-window rate limiter. */
#include "h2_ratelim.h"

#include <time.h>

void h2_ratelim_init(h2_ratelim *r, uint32_t limit)
{
    r->window = 0;
    r->count = 0;
    r->limit = limit;
}

bool h2_ratelim_hit(h2_ratelim *r, int64_t now_sec)
{
    if (now_sec != r->window) {
        r->window = now_sec;
        r->count = 0;
    }
    if (r->count <= r->limit) r->count++; /* saturates just above the limit */
    return r->count > r->limit;
}

int64_t h2_ratelim_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (int64_t)ts.tv_sec;
}
