/* Token map: linear probing with backward-shift deletion (no tombstones, so lookups
 * stay short however many tokens come and go). Owned by the loop thread. */
#include "h2_map.h"
#include "h2_mem.h"

#include <errno.h>
#include <stdlib.h>

static inline size_t h2_hash(uint64_t k, size_t mask)
{
    /* Tokens are sequential: Fibonacci hashing spreads them over the table. */
    return (size_t)((k * 0x9E3779B97F4A7C15ull) >> 17) & mask;
}

int h2_map_init(h2_map *m, size_t cap)
{
    size_t c = 16;
    while (c < cap) c <<= 1;
    m->ents = h2_calloc(c, sizeof(h2_map_ent));
    if (!m->ents) return -1;
    m->cap = c;
    m->len = 0;
    return 0;
}

void h2_map_free(h2_map *m)
{
    h2_free(m->ents);
    m->ents = NULL;
    m->cap = m->len = 0;
}

void *h2_map_get(const h2_map *m, uint64_t key)
{
    size_t mask = m->cap - 1;
    for (size_t i = h2_hash(key, mask);; i = (i + 1) & mask) {
        const h2_map_ent *e = &m->ents[i];
        if (e->key == key) return e->val;
        if (e->key == 0) return NULL;
    }
}

static int h2_map_grow(h2_map *m)
{
    size_t ncap = m->cap * 2;
    h2_map_ent *n = h2_calloc(ncap, sizeof(h2_map_ent));
    if (!n) return -1;
    size_t mask = ncap - 1;
    for (size_t j = 0; j < m->cap; j++) {
        h2_map_ent *e = &m->ents[j];
        if (!e->key) continue;
        size_t i = h2_hash(e->key, mask);
        while (n[i].key) i = (i + 1) & mask;
        n[i] = *e;
    }
    h2_free(m->ents);
    m->ents = n;
    m->cap = ncap;
    return 0;
}

int h2_map_put(h2_map *m, uint64_t key, void *val)
{
    if ((m->len + 1) * 2 > m->cap && h2_map_grow(m) != 0) {
        errno = ENOMEM;
        return -1;
    }
    size_t mask = m->cap - 1;
    size_t i = h2_hash(key, mask);
    while (m->ents[i].key && m->ents[i].key != key) i = (i + 1) & mask;
    if (!m->ents[i].key) m->len++;
    m->ents[i].key = key;
    m->ents[i].val = val;
    return 0;
}

void *h2_map_del(h2_map *m, uint64_t key)
{
    size_t mask = m->cap - 1;
    size_t i = h2_hash(key, mask);
    while (m->ents[i].key != key) {
        if (!m->ents[i].key) return NULL;
        i = (i + 1) & mask;
    }
    void *val = m->ents[i].val;
    /* Backward shift: move later entries of the probe run into the hole. */
    size_t j = i;
    for (;;) {
        j = (j + 1) & mask;
        if (!m->ents[j].key) break;
        size_t home = h2_hash(m->ents[j].key, mask);
        /* Entry j may move to i only if its home is not in (i, j] (cyclically). */
        if ((j > i && (home <= i || home > j)) || (j < i && (home <= i && home > j))) {
            m->ents[i] = m->ents[j];
            i = j;
        }
    }
    m->ents[i].key = 0;
    m->ents[i].val = NULL;
    m->len--;
    return val;
}
