/* Message buffers and their pool. */
#include "h2_msgbuf.h"
#include "h2_mem.h"

#include <string.h>

#define POOL_SUB(P, n) atomic_fetch_sub_explicit(&(P)->pooled, (n), memory_order_relaxed)
#define POOL_ADD(P, n) atomic_fetch_add_explicit(&(P)->pooled, (n), memory_order_relaxed)

int h2_bufpool_init(h2_bufpool *p)
{
    p->free = NULL;
    p->bytes = 0;
    atomic_init(&p->pooled, 0);
    return pthread_mutex_init(&p->lock, NULL) == 0 ? 0 : -1;
}

void h2_bufpool_trim(h2_bufpool *p)
{
    pthread_mutex_lock(&p->lock);
    h2_cmd *list = p->free;
    p->free = NULL;
    POOL_SUB(p, p->bytes);
    p->bytes = 0;
    pthread_mutex_unlock(&p->lock);
    while (list) {
        h2_cmd *b = list;
        list = b->next;
        h2_free(b);
    }
}

void h2_bufpool_destroy(h2_bufpool *p)
{
    h2_bufpool_trim(p);
    pthread_mutex_destroy(&p->lock);
}

bool h2_bufpool_empty(h2_bufpool *p)
{
    pthread_mutex_lock(&p->lock);
    bool empty = p->free == NULL;
    pthread_mutex_unlock(&p->lock);
    return empty;
}

h2_msgbuf *h2_msgbuf_get(h2_bufpool *p, size_t need)
{
    h2_msgbuf *b = NULL;
    size_t cap = need;
    if (need >= H2_POOL_MIN) {
        pthread_mutex_lock(&p->lock);
        for (h2_cmd **pp = &p->free; *pp; pp = &(*pp)->next) {
            size_t c = ((h2_msgbuf *)*pp)->cap;
            if (c >= need && c - need <= need / 2 + H2_POOL_ROUND) {
                b = (h2_msgbuf *)*pp;
                *pp = b->cmd.next;
                p->bytes -= c;
                POOL_SUB(p, c);
                cap = c;
                break;
            }
        }
        pthread_mutex_unlock(&p->lock);
        if (!b) {
            if (need > SIZE_MAX - H2_MSGBUF_BASE - H2_POOL_ROUND) return NULL;
            cap = (need + H2_POOL_ROUND - 1) / H2_POOL_ROUND * H2_POOL_ROUND;
        }
    } else if (need > SIZE_MAX - H2_MSGBUF_BASE) {
        return NULL;
    }
    if (!b && !(b = h2_malloc(H2_MSGBUF_BASE + cap))) return NULL;
    memset(b, 0, sizeof *b);
    b->cmd.kind = H2_CMD_SEND;
    b->cap = cap;
    return b;
}

void h2_msgbuf_put(h2_bufpool *p, h2_msgbuf *b)
{
    if (b->cap >= H2_POOL_MIN) {
        pthread_mutex_lock(&p->lock);
        if (p->bytes + b->cap <= H2_POOL_MAX_BYTES) {
            b->cmd.next = p->free;
            p->free = &b->cmd;
            p->bytes += b->cap;
            POOL_ADD(p, b->cap);
            pthread_mutex_unlock(&p->lock);
            return;
        }
        pthread_mutex_unlock(&p->lock);
    }
    h2_free(b);
}
