/*
 * A session's allocator (private): the nghttp2_mem one nghttp2 session allocates through
 * (issue 13: an idle connection's RSS). Everything goes to the shim's hook (h2_mem.h), except
 * the session's outbound frame buffer: nghttp2 1.52 allocates one chunk of
 * NGHTTP2_FRAMEBUF_CHUNKLEN (9 + 1 + 16384 bytes) when the session is created and keeps it
 * for the session's life, though it holds no live bytes between frames (each frame is packed
 * into it afresh; nghttp2_session_mem_send's pointer is valid only until the next call). That
 * chunk gets a mapping of its own, so an idle connection can give its touched pages back
 * (madvise MADV_DONTNEED: a private anonymous mapping reads back as zero pages) and costs no
 * RSS for it until it sends again. One per session; loop thread only. The loop keeps the
 * mappings of closed sessions for the next ones (h2_framecache): a connection that opens and
 * closes maps and unmaps nothing (a threaded process's munmap flushes the other CPUs' TLBs:
 * mmap + munmap cost 9-23 us here, against ~0 for malloc + free).
 */
#ifndef H2_SESSMEM_H
#define H2_SESSMEM_H

#include <nghttp2/nghttp2.h>
#include <stdbool.h>
#include <stddef.h>

/* nghttp2's NGHTTP2_FRAMEBUF_CHUNKLEN (lib/nghttp2_session.h): frame header, pad length, payload. */
#define H2_SESSMEM_FRAMEBUF_LEN (9 + 1 + 16384)

/* Frame buffer mappings of closed sessions, for the next ones (one per loop, loop thread).
 * Their touched pages stay resident until the loop's idle trim empties it. */
#define H2_FRAMECACHE_MAX 8
typedef struct h2_framecache {
    void *maps[H2_FRAMECACHE_MAX];
    size_t n;
} h2_framecache;

/* Unmaps the cached mappings. */
void h2_framecache_empty(h2_framecache *fc);

typedef struct h2_sessmem {
    h2_framecache *cache; /* the loop's (NULL: none) */
    void *frame;      /* the frame buffer's own mapping (NULL: none, or it came from malloc) */
    size_t frame_map; /* its mapping's length (whole pages) */
    bool creating;    /* the session is being created: its frame buffer is allocated now */
    bool used;        /* frames may have been written into it since the last release */
} h2_sessmem;

/* Fills `mem` (for nghttp2_session_*_new3) with m's functions and m as their user data.
 * m and cache (may be NULL) must outlive the session. Call h2_sessmem_created once the
 * _new3 call returned. */
void h2_sessmem_init(h2_sessmem *m, nghttp2_mem *mem, h2_framecache *cache);
void h2_sessmem_created(h2_sessmem *m);
/* The frame buffer's pages are given back if frames were written since the last release.
 * Only when nghttp2 holds no frame in it: the session has no frame in progress
 * (nghttp2_session_want_write is 0 after nghttp2_session_mem_send returned 0) and what it
 * returned was copied out. 1 released, 0 nothing to do, -1 madvise failed (errno; nothing lost). */
int h2_sessmem_release_idle(h2_sessmem *m);

#endif
