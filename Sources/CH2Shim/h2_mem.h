/*
 * The shim's one allocator hook (private). Every allocation of the shim goes through
 * h2_malloc / h2_calloc / h2_realloc and is released with h2_free, so that a test build
 * can fail the Nth allocation (tests/failmalloc in nghttp2 does the same through
 * nghttp2_mem). In the library build these are plain inline calls of the C allocator:
 * no state, no cost.
 *
 * Test builds (-DH2_TEST_HOOKS) define the two counters in the test program:
 *   h2_mem_fail_at  > 0: the allocation that brings it down to 0 fails (then none);
 *   h2_mem_count    counts allocation attempts.
 */
#ifndef H2_MEM_H
#define H2_MEM_H

#include <stddef.h>
#include <stdlib.h>

#ifdef H2_TEST_HOOKS
#include <stdatomic.h>
extern atomic_long h2_mem_fail_at;
extern atomic_long h2_mem_count;
static inline int h2_mem_should_fail(void)
{
    atomic_fetch_add_explicit(&h2_mem_count, 1, memory_order_relaxed);
    return atomic_load_explicit(&h2_mem_fail_at, memory_order_relaxed) > 0 &&
           atomic_fetch_sub_explicit(&h2_mem_fail_at, 1, memory_order_relaxed) == 1;
}
#else
static inline int h2_mem_should_fail(void) { return 0; }
#endif

static inline void *h2_malloc(size_t n) { return h2_mem_should_fail() ? NULL : malloc(n); }
static inline void *h2_calloc(size_t k, size_t n) { return h2_mem_should_fail() ? NULL : calloc(k, n); }
/* On failure returns NULL and leaves `p` allocated, like realloc. */
static inline void *h2_realloc(void *p, size_t n) { return h2_mem_should_fail() ? NULL : realloc(p, n); }
static inline void h2_free(void *p) { free(p); }

#endif
