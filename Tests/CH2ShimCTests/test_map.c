/* Token map: put, get, delete with backward shift, growth. */
#include "h2_map.h"
#include "test.h"

static void test_map_ops(void)
{
    h2_map m;
    CHECK(h2_map_init(&m, 4) == 0 && m.cap == 16);
    static int vals[5000];
    for (uint64_t k = 1; k <= 5000; k++) CHECK(h2_map_put(&m, k, &vals[k - 1]) == 0);
    CHECK(m.len == 5000 && m.cap >= 10000);
    for (uint64_t k = 1; k <= 5000; k++) CHECK(h2_map_get(&m, k) == &vals[k - 1]);
    CHECK(h2_map_get(&m, 5001) == NULL);
    /* delete every third key: the others stay reachable (backward shift keeps probe runs whole) */
    for (uint64_t k = 3; k <= 5000; k += 3) CHECK(h2_map_del(&m, k) == &vals[k - 1]);
    for (uint64_t k = 1; k <= 5000; k++) CHECK(h2_map_get(&m, k) == (k % 3 ? &vals[k - 1] : NULL));
    CHECK(h2_map_del(&m, 3) == NULL);
    CHECK(h2_map_put(&m, 1, &vals[9]) == 0 && h2_map_get(&m, 1) == &vals[9]); /* replace */
    for (uint64_t k = 1; k <= 5000; k++) h2_map_del(&m, k);
    CHECK(m.len == 0);
    h2_map_free(&m);
}

void map_tests(void)
{
    RUN(test_map_ops());
}
