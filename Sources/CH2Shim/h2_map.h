/* Token map (private): open-addressing hash map uint64 token -> pointer, loop thread only. */
#ifndef H2_MAP_H
#define H2_MAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct h2_map_ent {
    uint64_t key; /* 0 = empty slot (tokens are never 0) */
    void *val;
} h2_map_ent;

typedef struct h2_map {
    h2_map_ent *ents;
    size_t cap; /* power of two */
    size_t len;
} h2_map;

int h2_map_init(h2_map *m, size_t cap);
void h2_map_free(h2_map *m);
void *h2_map_get(const h2_map *m, uint64_t key);
int h2_map_put(h2_map *m, uint64_t key, void *val); /* 0, or -1 (ENOMEM) */
void *h2_map_del(h2_map *m, uint64_t key);          /* returns the removed value or NULL */

/* Objects found through the map or an epoll event start with one of these tags (int). */
enum h2_obj_kind { H2_OBJ_WAKE = 1, H2_OBJ_LISTENER, H2_OBJ_CONN, H2_OBJ_STREAM };

#endif
