/* gRPC deframer: whole messages straight from the input, split ones assembled. */
#include "h2_framing.h"

#include <string.h>

int h2_deframer_step(h2_deframer *df, h2_bufpool *pool, size_t max, const uint8_t **d, size_t *len,
                     size_t *copied, h2_df_msg *out)
{
    *copied = 0;
    while (*len) {
        const uint8_t *p = *d;
        if (df->prefix_got == 0 && *len >= H2_GRPC_PREFIX_LEN) {
            size_t ml = h2_grpc_read_len(p);
            if (ml > max) {
                out->len = ml;
                return H2_DF_TOO_LARGE;
            }
            if (*len - H2_GRPC_PREFIX_LEN >= ml) {
                out->compressed = p[0] & 1;
                out->data = p + H2_GRPC_PREFIX_LEN;
                out->len = ml;
                out->buf = NULL;
                *d += ml + H2_GRPC_PREFIX_LEN;
                *len -= ml + H2_GRPC_PREFIX_LEN;
                return H2_DF_WHOLE;
            }
        }
        bool in_prefix = df->prefix_got < H2_GRPC_PREFIX_LEN;
        size_t take;
        if (in_prefix) {
            take = H2_GRPC_PREFIX_LEN - df->prefix_got;
            if (take > *len) take = *len;
            memcpy(df->prefix + df->prefix_got, p, take);
            df->prefix_got += take;
        } else {
            take = df->msg_len - df->payload_got;
            if (take > *len) take = *len;
            memcpy(h2_msgbuf_data(df->buf) + H2_GRPC_PREFIX_LEN + df->payload_got, p, take);
            df->payload_got += take;
        }
        *d += take;
        *len -= take;
        *copied += take;
        if (in_prefix && df->prefix_got == H2_GRPC_PREFIX_LEN) {
            df->msg_len = h2_grpc_read_len(df->prefix);
            if (df->msg_len > max) {
                out->len = df->msg_len;
                return H2_DF_TOO_LARGE;
            }
            if (df->msg_len > 0) {
                if (!(df->buf = h2_msgbuf_get(pool, df->msg_len + H2_GRPC_PREFIX_LEN))) return H2_DF_NOMEM;
                memcpy(h2_msgbuf_data(df->buf), df->prefix, H2_GRPC_PREFIX_LEN);
            }
        }
        if (df->prefix_got == H2_GRPC_PREFIX_LEN && df->payload_got == df->msg_len) {
            out->compressed = df->prefix[0] & 1;
            out->buf = df->buf;
            out->data = df->buf ? h2_msgbuf_data(df->buf) + H2_GRPC_PREFIX_LEN : df->prefix + H2_GRPC_PREFIX_LEN;
            out->len = df->msg_len;
            df->buf = NULL;
            df->prefix_got = df->payload_got = 0;
            return H2_DF_ASSEMBLED;
        }
    }
    return H2_DF_MORE;
}

void h2_deframer_reset(h2_deframer *df, h2_bufpool *pool)
{
    if (df->buf) h2_msgbuf_put(pool, df->buf);
    df->buf = NULL;
    df->prefix_got = df->payload_got = 0;
}
