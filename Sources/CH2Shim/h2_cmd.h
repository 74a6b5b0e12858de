/*
 * Posted commands (private): what other threads hand to the loop thread through the
 * loop's locked queue (h2_loop_post). Every command starts with an h2_cmd head whose
 * `kind` tags the rest:
 *   H2_CMD_SEND    the head of an h2_msgbuf (h2_msgbuf.h): a message buffer is a send
 *                  command, so h2_send_buf posts it without another allocation;
 *   anything else  an h2_ctl_cmd: the head plus a union with one member per kind.
 */
#ifndef H2_CMD_H
#define H2_CMD_H

#include "h2shim.h"

#include <nghttp2/nghttp2.h>
#include <sys/socket.h>

enum h2_cmd_kind {
    H2_CMD_SEND = 1,
    H2_CMD_RESET,
    H2_CMD_CONSUME,
    H2_CMD_OPEN,
    H2_CMD_CLOSE_CONN,
    H2_CMD_GOAWAY,
    H2_CMD_LISTEN,
    H2_CMD_RUN,
    H2_CMD_CONNECT_PENDING, /* a client connection whose addresses come later (h2_addrs.h) */
    H2_CMD_CONNECT_ADDRS,   /* ... and its addresses */
};

typedef struct h2_cmd {
    struct h2_cmd *next; /* the loop's command queue (and a message buffer pool's free list) */
    h2_id id;            /* stream or connection token (0 for loop-wide commands) */
    int kind;            /* enum h2_cmd_kind */
} h2_cmd;

/* Every kind but H2_CMD_SEND (OPEN carries its header block after the command). */
typedef struct h2_ctl_cmd {
    h2_cmd head;
    union {
        struct { uint32_t code; } reset;
        struct { size_t bytes; } consume;
        struct { h2_id conn; void *user; nghttp2_nv *hdrs; size_t nhdrs; } open; /* hdrs follow the command */
        struct { h2_tls_ctx *tls; const char *name; } connect; /* tls: a reference; name follows the command */
        struct { int fd; h2_tls_ctx *tls; } listen; /* tls: a reference, or NULL */
        struct { h2_run_fn fn; void *ctx; void *arg; } run;
        struct { struct h2_addrs *addrs; int err; } addrs;
    } u;
} h2_ctl_cmd;

/* A control command of `kind` for token `id`, zeroed, with `extra` bytes after it
 * (16-byte aligned, at h2_ctl_extra). NULL when out of memory. */
h2_ctl_cmd *h2_ctl_new(int kind, h2_id id, size_t extra);
uint8_t *h2_ctl_extra(h2_ctl_cmd *c);

/* Bytes needed to copy n header fields (nghttp2_nv array and strings). */
size_t h2_nv_bytes(const h2_nv *nv, size_t n);
/* Copies n fields into `out`, their bytes packed from `s`; returns the end of the bytes. */
uint8_t *h2_nv_copy(nghttp2_nv *out, const h2_nv *in, size_t n, uint8_t *s);

/* A FIFO of commands (not locked: the loop guards it). */
typedef struct h2_cmdq {
    h2_cmd *head, *tail;
} h2_cmdq;

static inline void h2_cmdq_push(h2_cmdq *q, h2_cmd *c)
{
    c->next = NULL;
    if (q->tail)
        q->tail->next = c;
    else
        q->head = c;
    q->tail = c;
}

static inline h2_cmd *h2_cmdq_take_all(h2_cmdq *q)
{
    h2_cmd *h = q->head;
    q->head = q->tail = NULL;
    return h;
}

#endif
