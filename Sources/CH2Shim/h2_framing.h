/*
 * gRPC message framing (private): the 5-byte prefix (1 flag byte, 4-byte big-endian
 * length) and the deframer that turns DATA chunks into whole messages.
 */
#ifndef H2_FRAMING_H
#define H2_FRAMING_H

#include "h2_msgbuf.h"

#include <stddef.h>
#include <stdint.h>

#define H2_GRPC_PREFIX_LEN 5

/* Writes the prefix of a `len`-byte message at p[0..4]. */
static inline void h2_grpc_write_prefix(uint8_t *p, int compressed, size_t len)
{
    p[0] = compressed ? 1 : 0;
    p[1] = (uint8_t)(len >> 24);
    p[2] = (uint8_t)(len >> 16);
    p[3] = (uint8_t)(len >> 8);
    p[4] = (uint8_t)len;
}

/* The message length a prefix declares. */
static inline size_t h2_grpc_read_len(const uint8_t *p)
{
    return ((size_t)p[1] << 24) | ((size_t)p[2] << 16) | ((size_t)p[3] << 8) | p[4];
}

/* A message split over chunks is assembled in a message buffer of exactly its size
 * (the one copy); messages whole inside a chunk are not copied. */
typedef struct h2_deframer {
    uint8_t prefix[H2_GRPC_PREFIX_LEN];
    size_t prefix_got;  /* prefix bytes received (0-5) */
    size_t msg_len;     /* declared payload length (valid once prefix_got == 5) */
    size_t payload_got; /* payload bytes received */
    h2_msgbuf *buf;     /* the message being assembled (payload at data + 5), once the prefix is complete and msg_len > 0 */
} h2_deframer;

enum {
    H2_DF_MORE = 0,   /* input used up, no message complete */
    H2_DF_WHOLE,      /* a message whole inside the input: out->data points into it */
    H2_DF_ASSEMBLED,  /* an assembled message: out->buf (NULL when empty) now belongs to the caller */
    H2_DF_TOO_LARGE,  /* declared length (out->len) above the limit; the deframer stays as it is */
    H2_DF_NOMEM,      /* no buffer for the message; the deframer stays as it is */
};

typedef struct h2_df_msg {
    int compressed;
    const uint8_t *data; /* payload (H2_DF_WHOLE, H2_DF_ASSEMBLED) */
    size_t len;          /* payload length (or declared length for TOO_LARGE) */
    h2_msgbuf *buf;      /* H2_DF_ASSEMBLED: the buffer holding prefix + payload, or NULL */
} h2_df_msg;

/*
 * One step over the input (*d, *len: advanced past what was used). Returns at the first
 * message or error, or once the input is used up (H2_DF_MORE). *copied = bytes copied
 * into the deframer's state in this step (the caller accounts them as buffered).
 * Messages larger than `max` fail with H2_DF_TOO_LARGE.
 */
int h2_deframer_step(h2_deframer *df, h2_bufpool *pool, size_t max, const uint8_t **d, size_t *len,
                     size_t *copied, h2_df_msg *out);

/* Bytes of the partial message held (prefix + payload). */
static inline size_t h2_deframer_buffered(const h2_deframer *df) { return df->prefix_got + df->payload_got; }

/* Drops the partial message. */
void h2_deframer_reset(h2_deframer *df, h2_bufpool *pool);

#endif
