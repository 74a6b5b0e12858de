/* Rate limiter: a fixed one-second window. */
#include "h2_ratelim.h"
#include "test.h"

static void test_window(void)
{
    h2_ratelim r;
    h2_ratelim_init(&r, 3);
    for (int i = 0; i < 3; i++) CHECK(!h2_ratelim_hit(&r, 10));
    CHECK(h2_ratelim_hit(&r, 10));
    CHECK(h2_ratelim_hit(&r, 10)); /* stays over the limit within the second */
    for (int i = 0; i < 3; i++) CHECK(!h2_ratelim_hit(&r, 11)); /* a new second starts afresh */
    CHECK(h2_ratelim_hit(&r, 11));
    CHECK(!h2_ratelim_hit(&r, 13));
    for (int i = 0; i < 100000; i++) (void)h2_ratelim_hit(&r, 14); /* the count saturates */
    CHECK(h2_ratelim_hit(&r, 14) && r.count == 4);
}

static void test_zero_limit(void)
{
    h2_ratelim r;
    h2_ratelim_init(&r, 0);
    CHECK(h2_ratelim_hit(&r, 1));
    CHECK(h2_ratelim_now() >= 0);
}

void ratelim_tests(void)
{
    RUN(test_window());
    RUN(test_zero_limit());
}
