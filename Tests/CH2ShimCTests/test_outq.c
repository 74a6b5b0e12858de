/* Output queue: copies and references written in order through short writes, would-block,
 * errors, more pieces than one writev takes, and dropping unwritten output. */
#include "h2_outq.h"
#include "test.h"

#include <errno.h>
#include <string.h>

typedef struct sink {
    uint8_t data[1 << 20];
    size_t len;
    size_t max_per_call; /* short writes */
    int calls;
    int block_every;     /* every Nth call would block (0 = never) */
    int fail_errno;      /* fail every call with this errno */
} sink;

static ssize_t sink_writev(void *ctx, const struct iovec *iov, int n)
{
    sink *s = ctx;
    s->calls++;
    if (s->fail_errno) {
        errno = s->fail_errno;
        return -1;
    }
    if (s->block_every && s->calls % s->block_every == 0) {
        errno = EAGAIN;
        return -1;
    }
    CHECK(n > 0 && n <= H2_OUTQ_MAX_IOV);
    size_t w = 0;
    for (int i = 0; i < n && w < s->max_per_call; i++) {
        size_t k = iov[i].iov_len;
        if (k > s->max_per_call - w) k = s->max_per_call - w;
        memcpy(s->data + s->len, iov[i].iov_base, k);
        s->len += k;
        w += k;
    }
    return (ssize_t)w;
}

/* Writes until done; returns the number of calls that returned 0 (blocked or short). */
static int drain(h2_outq *q, sink *s)
{
    int waits = 0, r;
    while ((r = h2_outq_write(q, sink_writev, s)) == 0) waits++;
    CHECK(r == 1);
    return waits;
}

static h2_msgbuf *filled(h2_bufpool *p, size_t n, uint8_t seed)
{
    h2_msgbuf *b = h2_msgbuf_get(p, n);
    CHECK(b);
    for (size_t i = 0; i < n; i++) h2_msgbuf_data(b)[i] = (uint8_t)(seed + i);
    b->queued = true; /* as if still on its stream: the test releases it */
    return b;
}

/* Queues copy, ref, copy, copy (merged), ref... and the expected bytes. */
static size_t fill(h2_outq *q, h2_bufpool *p, h2_msgbuf **bufs, int nbufs, uint8_t *expect)
{
    size_t n = 0;
    for (int i = 0; i < nbufs; i++) {
        uint8_t hdr[9];
        for (int k = 0; k < 9; k++) hdr[k] = (uint8_t)(i * 9 + k);
        CHECK(h2_outq_copy(q, hdr, 4) == 0);
        CHECK(h2_outq_copy(q, hdr + 4, 5) == 0); /* merges with the piece before */
        memcpy(expect + n, hdr, 9);
        n += 9;
        size_t len = 1000 + (size_t)i * 13;
        bufs[i] = filled(p, len, (uint8_t)i);
        CHECK(h2_outq_ref(q, bufs[i], h2_msgbuf_data(bufs[i]), len) == 0);
        memcpy(expect + n, h2_msgbuf_data(bufs[i]), len);
        n += len;
    }
    return n;
}

static void release(h2_bufpool *p, h2_msgbuf **bufs, int n)
{
    for (int i = 0; i < n; i++) {
        CHECK(bufs[i]->out_refs == 0);
        h2_msgbuf_put(p, bufs[i]);
    }
}

static void run_case(size_t max_per_call, int block_every, int nbufs)
{
    static sink s;
    static uint8_t expect[1 << 20];
    h2_bufpool p;
    CHECK(h2_bufpool_init(&p) == 0);
    h2_outq q;
    h2_outq_init(&q, &p);
    h2_msgbuf *bufs[100];
    memset(&s, 0, sizeof s);
    s.max_per_call = max_per_call;
    s.block_every = block_every;
    size_t n = fill(&q, &p, bufs, nbufs, expect);
    CHECK(q.queued_bytes == n && q.nsegs == (size_t)nbufs * 2);
    int waits = drain(&q, &s);
    CHECK(s.len == n && memcmp(s.data, expect, n) == 0);
    CHECK(!h2_outq_pending(&q));
    if (max_per_call < n) CHECK(waits > 0);
    release(&p, bufs, nbufs);
    h2_outq_reset(&q);
    CHECK(q.queued_bytes == 0 && q.nsegs == 0);
    h2_outq_free(&q);
    h2_bufpool_destroy(&p);
}

static void test_whole(void) { run_case(SIZE_MAX, 0, 3); }
static void test_short_1(void) { run_case(1, 0, 2); }
static void test_short_7(void) { run_case(7, 0, 5); }
static void test_short_4096_blocking(void) { run_case(4096, 3, 20); }
static void test_many_pieces(void) { run_case(SIZE_MAX, 0, 100); } /* 200 pieces > H2_OUTQ_MAX_IOV */

static void test_error(void)
{
    h2_bufpool p;
    CHECK(h2_bufpool_init(&p) == 0);
    h2_outq q;
    h2_outq_init(&q, &p);
    static sink s;
    memset(&s, 0, sizeof s);
    s.fail_errno = EPIPE;
    CHECK(h2_outq_copy(&q, (const uint8_t *)"abc", 3) == 0);
    CHECK(h2_outq_write(&q, sink_writev, &s) == -EPIPE);
    h2_outq_free(&q);
    h2_bufpool_destroy(&p);
}

/* The connection dies with output queued: referenced buffers are released (freed here,
 * since no stream holds them any more). */
static void test_drop_pending(void)
{
    h2_bufpool p;
    CHECK(h2_bufpool_init(&p) == 0);
    h2_outq q;
    h2_outq_init(&q, &p);
    static sink s;
    memset(&s, 0, sizeof s);
    s.max_per_call = 100;
    h2_msgbuf *a = filled(&p, 5000, 1), *b = filled(&p, 5000, 2);
    CHECK(h2_outq_ref(&q, a, h2_msgbuf_data(a), 5000) == 0);
    CHECK(h2_outq_ref(&q, b, h2_msgbuf_data(b), 5000) == 0);
    CHECK(h2_outq_write(&q, sink_writev, &s) == 0 && s.len == 100);
    a->queued = b->queued = false; /* their streams are gone */
    h2_outq_free(&q);              /* frees both (leak / double free checked by valgrind, ASan) */
    h2_bufpool_destroy(&p);
}

static void test_shrink(void)
{
    h2_bufpool p;
    CHECK(h2_bufpool_init(&p) == 0);
    h2_outq q;
    h2_outq_init(&q, &p);
    static uint8_t big[1 << 19];
    static sink s;
    memset(&s, 0, sizeof s);
    s.max_per_call = SIZE_MAX;
    CHECK(h2_outq_copy(&q, big, sizeof big) == 0);
    CHECK(h2_outq_full(&q));
    drain(&q, &s);
    h2_outq_reset(&q);
    h2_outq_shrink(&q);
    CHECK(q.copy == NULL && q.copy_cap == 0);
    h2_outq_free(&q);
    h2_bufpool_destroy(&p);
}

/* An idle connection keeps no output memory; the queue works again after the release. */
static void test_release(void)
{
    h2_bufpool p;
    CHECK(h2_bufpool_init(&p) == 0);
    h2_outq q;
    h2_outq_init(&q, &p);
    static sink s;
    memset(&s, 0, sizeof s);
    s.max_per_call = SIZE_MAX;
    const uint8_t small[64] = {1};
    CHECK(h2_outq_copy(&q, small, sizeof small) == 0);
    drain(&q, &s);
    h2_outq_release(&q);
    CHECK(q.copy == NULL && q.copy_cap == 0 && q.segs == NULL && q.segs_cap == 0);
    CHECK(!h2_outq_pending(&q));
    CHECK(h2_outq_copy(&q, small, sizeof small) == 0);
    CHECK(h2_outq_pending(&q));
    drain(&q, &s);
    CHECK(!h2_outq_pending(&q));
    h2_outq_free(&q);
    h2_bufpool_destroy(&p);
}

void outq_tests(void)
{
    RUN(test_whole());
    RUN(test_short_1());
    RUN(test_short_7());
    RUN(test_short_4096_blocking());
    RUN(test_many_pieces());
    RUN(test_error());
    RUN(test_drop_pending());
    RUN(test_shrink());
    RUN(test_release());
}
