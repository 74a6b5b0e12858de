/* gRPC framing: the prefix, and the deframer fed whole, byte by byte, split at every
 * offset, oversize, truncated, and without memory. */
#include "h2_framing.h"
#include "test.h"

#include <stdatomic.h>
#include <string.h>

extern atomic_long h2_mem_fail_at;

typedef struct got {
    int n;
    int compressed[16];
    size_t len[16];
    uint8_t *data[16];
    int assembled; /* messages that came through a buffer */
} got;

/* Builds the framed stream of messages of the given sizes (payload byte i of message m = m*31+i). */
static uint8_t *build(const size_t *sizes, int n, size_t *total)
{
    size_t t = 0;
    for (int m = 0; m < n; m++) t += H2_GRPC_PREFIX_LEN + sizes[m];
    uint8_t *s = malloc(t ? t : 1), *p = s;
    CHECK(s);
    for (int m = 0; m < n; m++) {
        h2_grpc_write_prefix(p, m & 1, sizes[m]);
        for (size_t i = 0; i < sizes[m]; i++) p[H2_GRPC_PREFIX_LEN + i] = (uint8_t)(m * 31 + i);
        p += H2_GRPC_PREFIX_LEN + sizes[m];
    }
    *total = t;
    return s;
}

/* Feeds one chunk; returns the last event other than MORE (or MORE). */
static int feed(h2_deframer *df, h2_bufpool *pool, size_t max, const uint8_t *d, size_t len, got *g, size_t *buffered)
{
    int last = H2_DF_MORE;
    while (len) {
        size_t copied;
        h2_df_msg m;
        int ev = h2_deframer_step(df, pool, max, &d, &len, &copied, &m);
        *buffered += copied;
        if (ev == H2_DF_MORE) break;
        last = ev;
        if (ev == H2_DF_TOO_LARGE || ev == H2_DF_NOMEM) return ev;
        CHECK(g->n < 16);
        g->compressed[g->n] = m.compressed;
        g->len[g->n] = m.len;
        g->data[g->n] = malloc(m.len ? m.len : 1);
        if (m.len) memcpy(g->data[g->n], m.data, m.len);
        g->n++;
        if (ev == H2_DF_ASSEMBLED) {
            *buffered -= m.len + H2_GRPC_PREFIX_LEN;
            g->assembled++;
            if (m.buf) h2_msgbuf_put(pool, m.buf);
        } else {
            CHECK(copied == 0);
        }
    }
    return last;
}

static void check_got(got *g, const size_t *sizes, int n)
{
    CHECK(g->n == n);
    for (int m = 0; m < n; m++) {
        CHECK(g->len[m] == sizes[m]);
        CHECK(g->compressed[m] == (m & 1));
        for (size_t i = 0; i < sizes[m]; i++) CHECK(g->data[m][i] == (uint8_t)(m * 31 + i));
        free(g->data[m]);
    }
    memset(g, 0, sizeof *g);
}

static void test_prefix(void)
{
    uint8_t p[H2_GRPC_PREFIX_LEN];
    h2_grpc_write_prefix(p, 1, 0x01020304);
    CHECK(p[0] == 1 && p[1] == 1 && p[2] == 2 && p[3] == 3 && p[4] == 4);
    CHECK(h2_grpc_read_len(p) == 0x01020304);
    h2_grpc_write_prefix(p, 0, UINT32_MAX);
    CHECK(p[0] == 0 && h2_grpc_read_len(p) == UINT32_MAX);
}

static const size_t SIZES[] = {0, 1, 4, 5, 6, 300, 0, 2};
#define NSIZES (int)(sizeof SIZES / sizeof SIZES[0])

static void test_whole_chunk(h2_bufpool *pool)
{
    size_t total, buffered = 0;
    uint8_t *s = build(SIZES, NSIZES, &total);
    h2_deframer df = {0};
    got g = {0};
    CHECK(feed(&df, pool, 1000, s, total, &g, &buffered) == H2_DF_WHOLE);
    CHECK(g.assembled == 0 && buffered == 0);
    check_got(&g, SIZES, NSIZES);
    free(s);
}

static void test_byte_by_byte(h2_bufpool *pool)
{
    static const size_t sizes[] = {3, 0, 70000, 17}; /* 70000: a pooled buffer */
    size_t total, buffered = 0;
    uint8_t *s = build(sizes, 4, &total);
    h2_deframer df = {0};
    got g = {0};
    for (size_t i = 0; i < total; i++) {
        feed(&df, pool, 1u << 20, s + i, 1, &g, &buffered);
        CHECK(buffered == h2_deframer_buffered(&df));
    }
    CHECK(g.assembled == 4 && buffered == 0 && df.buf == NULL);
    check_got(&g, sizes, 4);
    free(s);
}

static void test_split_everywhere(h2_bufpool *pool)
{
    size_t total;
    uint8_t *s = build(SIZES, NSIZES, &total);
    for (size_t cut = 0; cut <= total; cut++) {
        h2_deframer df = {0};
        got g = {0};
        size_t buffered = 0;
        feed(&df, pool, 1000, s, cut, &g, &buffered);
        CHECK(buffered == h2_deframer_buffered(&df));
        feed(&df, pool, 1000, s + cut, total - cut, &g, &buffered);
        CHECK(buffered == 0 && h2_deframer_buffered(&df) == 0 && df.buf == NULL);
        check_got(&g, SIZES, NSIZES);
    }
    /* three pieces: every pair of cuts */
    for (size_t a = 0; a <= total; a += 3)
        for (size_t b = a; b <= total; b += 7) {
            h2_deframer df = {0};
            got g = {0};
            size_t buffered = 0;
            feed(&df, pool, 1000, s, a, &g, &buffered);
            feed(&df, pool, 1000, s + a, b - a, &g, &buffered);
            feed(&df, pool, 1000, s + b, total - b, &g, &buffered);
            CHECK(buffered == 0);
            check_got(&g, SIZES, NSIZES);
        }
    free(s);
}

static void test_oversize(h2_bufpool *pool)
{
    static const size_t sizes[] = {10, 11};
    size_t total;
    uint8_t *s = build(sizes, 2, &total);
    /* whole in one chunk: the first message passes, the second fails before any copy */
    {
        h2_deframer df = {0};
        got g = {0};
        size_t buffered = 0;
        const uint8_t *d = s;
        size_t len = total, copied;
        h2_df_msg m;
        CHECK(h2_deframer_step(&df, pool, 10, &d, &len, &copied, &m) == H2_DF_WHOLE && m.len == 10);
        CHECK(h2_deframer_step(&df, pool, 10, &d, &len, &copied, &m) == H2_DF_TOO_LARGE && m.len == 11);
        CHECK(copied == 0 && len == 16);
        (void)g; (void)buffered;
    }
    /* byte by byte: fails once the prefix is complete, nothing allocated */
    {
        h2_deframer df = {0};
        got g = {0};
        size_t buffered = 0;
        int ev = H2_DF_MORE;
        size_t i;
        for (i = 0; i < total && ev != H2_DF_TOO_LARGE; i++) ev = feed(&df, pool, 10, s + i, 1, &g, &buffered);
        CHECK(ev == H2_DF_TOO_LARGE && i == 15 + 5 && df.buf == NULL);
        CHECK(g.n == 1 && g.len[0] == 10);
        free(g.data[0]);
        h2_deframer_reset(&df, pool);
        CHECK(h2_deframer_buffered(&df) == 0);
    }
    free(s);
}

static void test_truncated(h2_bufpool *pool)
{
    static const size_t sizes[] = {100};
    size_t total;
    uint8_t *s = build(sizes, 1, &total);
    for (size_t cut = 1; cut < total; cut++) {
        h2_deframer df = {0};
        got g = {0};
        size_t buffered = 0;
        CHECK(feed(&df, pool, 1000, s, cut, &g, &buffered) == H2_DF_MORE);
        CHECK(g.n == 0 && h2_deframer_buffered(&df) == cut && buffered == cut);
        CHECK((df.buf != NULL) == (cut >= H2_GRPC_PREFIX_LEN));
        h2_deframer_reset(&df, pool); /* END_STREAM here: the partial message is dropped */
        CHECK(h2_deframer_buffered(&df) == 0 && df.buf == NULL);
    }
    free(s);
}

static void test_nomem(h2_bufpool *pool)
{
    static const size_t sizes[] = {100};
    size_t total;
    uint8_t *s = build(sizes, 1, &total);
    h2_deframer df = {0};
    got g = {0};
    size_t buffered = 0;
    atomic_store(&h2_mem_fail_at, 1);
    CHECK(feed(&df, pool, 1000, s, 50, &g, &buffered) == H2_DF_NOMEM);
    atomic_store(&h2_mem_fail_at, 0);
    CHECK(df.buf == NULL && buffered == H2_GRPC_PREFIX_LEN && h2_deframer_buffered(&df) == H2_GRPC_PREFIX_LEN);
    h2_deframer_reset(&df, pool);
    free(s);
}

void framing_tests(void)
{
    h2_bufpool pool;
    CHECK(h2_bufpool_init(&pool) == 0);
    RUN(test_prefix());
    RUN(test_whole_chunk(&pool));
    RUN(test_byte_by_byte(&pool));
    RUN(test_split_everywhere(&pool));
    RUN(test_oversize(&pool));
    RUN(test_truncated(&pool));
    RUN(test_nomem(&pool));
    h2_bufpool_destroy(&pool);
}
