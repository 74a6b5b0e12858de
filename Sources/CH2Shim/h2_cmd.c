/* Posted commands: allocation and header copying. */
#include "h2_cmd.h"
#include "h2_mem.h"

#include <string.h>

#define CTL_EXTRA_OFF ((sizeof(h2_ctl_cmd) + 15) & ~(size_t)15)

h2_ctl_cmd *h2_ctl_new(int kind, h2_id id, size_t extra)
{
    size_t size = extra ? CTL_EXTRA_OFF + extra : sizeof(h2_ctl_cmd);
    h2_ctl_cmd *c = h2_malloc(size);
    if (!c) return NULL;
    memset(c, 0, size);
    c->head.kind = kind;
    c->head.id = id;
    return c;
}

uint8_t *h2_ctl_extra(h2_ctl_cmd *c) { return (uint8_t *)c + CTL_EXTRA_OFF; }

size_t h2_nv_bytes(const h2_nv *nv, size_t n)
{
    size_t b = n * sizeof(nghttp2_nv);
    for (size_t i = 0; i < n; i++) b += nv[i].namelen + nv[i].valuelen;
    return b;
}

uint8_t *h2_nv_copy(nghttp2_nv *out, const h2_nv *in, size_t n, uint8_t *s)
{
    for (size_t i = 0; i < n; i++) {
        out[i].name = s;
        out[i].namelen = in[i].namelen;
        if (in[i].namelen) memcpy(s, in[i].name, in[i].namelen);
        s += in[i].namelen;
        out[i].value = s;
        out[i].valuelen = in[i].valuelen;
        if (in[i].valuelen) memcpy(s, in[i].value, in[i].valuelen);
        s += in[i].valuelen;
        out[i].flags = NGHTTP2_NV_FLAG_NONE;
    }
    return s;
}
