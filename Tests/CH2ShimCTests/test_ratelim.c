/* Rate limiter: a token bucket (burst, rate per second), in milliseconds. */
#include "h2_ratelim.h"
#include "test.h"

static void test_burst_then_rate(void)
{
    h2_ratelim r;
    h2_ratelim_init(&r, 3, 10, 1000);
    for (int i = 0; i < 3; i++) CHECK(!h2_ratelim_hit(&r, 1000)); /* the burst */
    CHECK(h2_ratelim_hit(&r, 1000));
    CHECK(h2_ratelim_hit(&r, 1099)); /* 10/s: the next token comes after 100 ms */
    CHECK(!h2_ratelim_hit(&r, 1100));
    CHECK(h2_ratelim_hit(&r, 1100));
    CHECK(!h2_ratelim_hit(&r, 1350)); /* 250 ms: 2.5 tokens (the half carries over) */
    CHECK(!h2_ratelim_hit(&r, 1350));
    CHECK(h2_ratelim_hit(&r, 1350));
    CHECK(!h2_ratelim_hit(&r, 1400)); /* 0.5 + 0.5 */
    CHECK(h2_ratelim_hit(&r, 1400));
}

static void test_refill_is_capped(void)
{
    h2_ratelim r;
    h2_ratelim_init(&r, 5, 1000, 0);
    for (int i = 0; i < 5; i++) CHECK(!h2_ratelim_hit(&r, 0));
    CHECK(h2_ratelim_hit(&r, 0));
    /* An hour idle refills to the burst, not beyond. */
    for (int i = 0; i < 5; i++) CHECK(!h2_ratelim_hit(&r, 3600 * 1000));
    CHECK(h2_ratelim_hit(&r, 3600 * 1000));
    /* Years idle with the largest numbers: no overflow. */
    h2_ratelim_init(&r, UINT32_MAX, UINT32_MAX, 0);
    CHECK(!h2_ratelim_hit(&r, INT64_MAX / 2));
    CHECK(r.milli == r.cap_milli - 1000);
    /* A clock that does not move (or a stale time) refills nothing. */
    h2_ratelim_init(&r, 1, 1, 5000);
    CHECK(!h2_ratelim_hit(&r, 5000));
    CHECK(h2_ratelim_hit(&r, 4000));
    CHECK(h2_ratelim_hit(&r, 5999));
    CHECK(!h2_ratelim_hit(&r, 6000));
}

/* A flood at 900/s against burst 1000, rate 100: over the limit after about 1.25 s. */
static void test_sustained_flood_trips(void)
{
    h2_ratelim r;
    h2_ratelim_init(&r, 1000, 100, 0);
    int64_t t = 0;
    int n = 0;
    while (!h2_ratelim_hit(&r, t)) {
        n++;
        if (n % 9 == 0) t += 10; /* 9 per 10 ms */
    }
    CHECK(n >= 1100 && n <= 1160);
    /* while a peer under the rate never trips: 100/s for a minute after spending the burst */
    h2_ratelim_init(&r, 1000, 100, 0);
    for (int i = 0; i < 1000; i++) CHECK(!h2_ratelim_hit(&r, 0));
    for (int i = 1; i <= 6000; i++) CHECK(!h2_ratelim_hit(&r, (int64_t)i * 10));
}

static void test_zero(void)
{
    h2_ratelim r;
    h2_ratelim_init(&r, 0, 100, 0);
    CHECK(h2_ratelim_hit(&r, 0));
    h2_ratelim_init(&r, 2, 0, 0); /* no refill */
    CHECK(!h2_ratelim_hit(&r, 0) && !h2_ratelim_hit(&r, 1000000));
    CHECK(h2_ratelim_hit(&r, 2000000));
    int64_t a = h2_ratelim_now_ms(), b = h2_ratelim_now_ms();
    CHECK(a > 0 && b >= a);
}

void ratelim_tests(void)
{
    RUN(test_burst_then_rate());
    RUN(test_refill_is_capped());
    RUN(test_sustained_flood_trips());
    RUN(test_zero());
}
