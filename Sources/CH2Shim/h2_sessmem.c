/* A session's allocator: the shim's hook, the frame buffer in a mapping of its own. */
#define _GNU_SOURCE
#include "h2_sessmem.h"
#include "h2_mem.h"

#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static size_t page_round(size_t n)
{
    long pg = sysconf(_SC_PAGESIZE);
    size_t p = pg > 0 ? (size_t)pg : 4096;
    return (n + p - 1) / p * p;
}

void h2_framecache_empty(h2_framecache *fc)
{
    size_t len = page_round(H2_SESSMEM_FRAMEBUF_LEN);
    while (fc->n) munmap(fc->maps[--fc->n], len); /* fails only for a bad range: these are ours */
}

/* The frame buffer's mapping (a cached one, else a new one), or NULL (then malloc serves it:
 * correct, only not released). A failed mmap (say at vm.max_map_count) is not an allocation
 * failure. */
static void *frame_map(h2_sessmem *m, size_t n)
{
    size_t len = page_round(n);
    void *p = m->cache && m->cache->n ? m->cache->maps[--m->cache->n]
                                      : mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return NULL;
    m->frame = p;
    m->frame_map = len;
    m->used = true;
    return p;
}

static void *sm_malloc(size_t n, void *ud)
{
    h2_sessmem *m = ud;
    if (m->creating && n == H2_SESSMEM_FRAMEBUF_LEN && !m->frame) {
        if (h2_mem_should_fail()) return NULL;
        void *p = frame_map(m, n);
        if (p) return p;
    }
    return h2_malloc(n);
}

static void sm_free(void *p, void *ud)
{
    h2_sessmem *m = ud;
    if (p && p == m->frame) {
        if (m->cache && m->cache->n < H2_FRAMECACHE_MAX)
            m->cache->maps[m->cache->n++] = p;
        else
            munmap(p, m->frame_map); /* fails only for a bad range: this is ours */
        m->frame = NULL;
        m->frame_map = 0;
        return;
    }
    h2_free(p);
}

static void *sm_calloc(size_t k, size_t n, void *ud)
{
    (void)ud;
    return h2_calloc(k, n);
}

/* nghttp2 allocates buffers as realloc(NULL, n) (nghttp2_buf_reserve). It does not resize
 * the frame buffer; should it ever, the block moves to malloc. */
static void *sm_realloc(void *p, size_t n, void *ud)
{
    h2_sessmem *m = ud;
    if (!p) return sm_malloc(n, m);
    if (p != m->frame) return h2_realloc(p, n);
    void *q = h2_malloc(n);
    if (!q) return NULL;
    memcpy(q, p, n < m->frame_map ? n : m->frame_map);
    sm_free(p, m);
    return q;
}

void h2_sessmem_init(h2_sessmem *m, nghttp2_mem *mem, h2_framecache *cache)
{
    *m = (h2_sessmem){.cache = cache, .creating = true};
    *mem = (nghttp2_mem){m, sm_malloc, sm_free, sm_calloc, sm_realloc};
}

void h2_sessmem_created(h2_sessmem *m) { m->creating = false; }

int h2_sessmem_release_idle(h2_sessmem *m)
{
    if (!m->frame || !m->used) return 0;
    if (madvise(m->frame, m->frame_map, MADV_DONTNEED) != 0) return -1;
    m->used = false;
    return 1;
}
