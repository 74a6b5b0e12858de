/* Message buffers and their pool. */
#include "h2_msgbuf.h"
#include "test.h"

#include <string.h>

static void test_small_not_pooled(void)
{
    h2_bufpool p;
    CHECK(h2_bufpool_init(&p) == 0);
    h2_msgbuf *b = h2_msgbuf_get(&p, 100);
    CHECK(b && b->cap == 100 && b->cmd.kind == H2_CMD_SEND && b->out_refs == 0 && !b->queued);
    CHECK(((uintptr_t)h2_msgbuf_data(b) & 15) == 0);
    CHECK(h2_msgbuf_from_data(h2_msgbuf_data(b)) == b);
    memset(h2_msgbuf_data(b), 0xab, 100);
    h2_msgbuf_put(&p, b);
    CHECK(h2_bufpool_empty(&p) && atomic_load(&p.pooled) == 0);
    h2_bufpool_destroy(&p);
}

static void test_pool_reuse(void)
{
    h2_bufpool p;
    CHECK(h2_bufpool_init(&p) == 0);
    h2_msgbuf *b = h2_msgbuf_get(&p, 100000);
    CHECK(b && b->cap % H2_POOL_ROUND == 0 && b->cap >= 100000);
    size_t cap = b->cap;
    b->msg_len = 7; /* dirty header: a reused buffer comes back zeroed */
    h2_msgbuf_put(&p, b);
    CHECK(!h2_bufpool_empty(&p) && atomic_load(&p.pooled) == cap);
    h2_msgbuf *c = h2_msgbuf_get(&p, 90000); /* fits: reused */
    CHECK(c == b && c->cap == cap && c->msg_len == 0 && atomic_load(&p.pooled) == 0);
    h2_msgbuf_put(&p, c);
    h2_msgbuf *d = h2_msgbuf_get(&p, 10 * cap); /* far larger: not reused */
    CHECK(d && d != b);
    h2_msgbuf_put(&p, d);
    h2_bufpool_trim(&p);
    CHECK(h2_bufpool_empty(&p) && atomic_load(&p.pooled) == 0);
    h2_bufpool_destroy(&p);
}

static void test_pool_bound(void)
{
    h2_bufpool p;
    CHECK(h2_bufpool_init(&p) == 0);
    enum { N = 20 };
    h2_msgbuf *bs[N];
    for (int i = 0; i < N; i++) CHECK((bs[i] = h2_msgbuf_get(&p, 1u << 20)));
    for (int i = 0; i < N; i++) h2_msgbuf_put(&p, bs[i]);
    CHECK(atomic_load(&p.pooled) <= H2_POOL_MAX_BYTES && atomic_load(&p.pooled) > 0);
    h2_bufpool_destroy(&p);
}

static void test_unref(void)
{
    h2_bufpool p;
    CHECK(h2_bufpool_init(&p) == 0);
    h2_msgbuf *b = h2_msgbuf_get(&p, 10);
    b->out_refs = 2;
    b->queued = true;
    h2_msgbuf_unref(&p, b);
    h2_msgbuf_unref(&p, b); /* still queued: kept */
    CHECK(b->out_refs == 0);
    b->queued = false;
    b->out_refs = 1;
    h2_msgbuf_unref(&p, b); /* freed (valgrind / ASan check) */
    h2_bufpool_destroy(&p);
}

void msgbuf_tests(void)
{
    RUN(test_small_not_pooled());
    RUN(test_pool_reuse());
    RUN(test_pool_bound());
    RUN(test_unref());
}
