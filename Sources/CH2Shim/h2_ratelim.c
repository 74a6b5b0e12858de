/* Token-bucket rate limiter. */
#include "h2_ratelim.h"

#include <time.h>

void h2_ratelim_init(h2_ratelim *r, uint32_t burst, uint32_t rate, int64_t now_ms)
{
    r->cap_milli = (uint64_t)burst * 1000;
    r->milli = r->cap_milli;
    r->rate = rate;
    r->last_ms = now_ms;
}

bool h2_ratelim_hit(h2_ratelim *r, int64_t now_ms)
{
    if (now_ms > r->last_ms) {
        uint64_t d = (uint64_t)(now_ms - r->last_ms);
        if (r->rate && d > r->cap_milli / r->rate) {
            r->milli = r->cap_milli; /* long enough to refill it all (and d * rate could overflow) */
        } else {
            uint64_t add = d * r->rate; /* rate per second = rate thousandths per ms */
            r->milli = add >= r->cap_milli - r->milli ? r->cap_milli : r->milli + add;
        }
        r->last_ms = now_ms;
    }
    if (r->milli < 1000) return true;
    r->milli -= 1000;
    return false;
}

int64_t h2_ratelim_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
