/*
 * Connections (private): one socket, one nghttp2 session, the live streams, the output
 * queue. Loop thread only. Closing is immediate (socket, streams, session); the struct
 * itself is freed at the end of the loop iteration (epoll events or the flush list may
 * still point at it), or, when its socket lingers after our last bytes (h2_linger.h), at
 * the end of the iteration that closes the socket.
 */
#ifndef H2_CONN_H
#define H2_CONN_H

#include "h2_addr.h"
#include "h2_keepalive.h"
#include "h2_outq.h"
#include "h2_ratelim.h"
#include "h2_sessmem.h"
#include "h2_stream.h"
#include "h2_timer.h"

#include <nghttp2/nghttp2.h>
#include <stdbool.h>
#include <stdint.h>

struct h2_conn {
    int kind; /* H2_OBJ_CONN */
    h2_id id;
    h2_loop *loop;
    int fd;
    nghttp2_session *sess;
    h2_sessmem smem;      /* sess's allocator (its frame buffer's pages go back when idle) */
    bool is_client;
    bool connecting;
    bool dead;
    bool dirty;
    bool want_out; /* EPOLLOUT registered */
    bool goaway_recv;
    h2_conn *prev, *next; /* loop's connection list */
    h2_conn *dirty_next;  /* flush list of this iteration */
    h2_conn *dead_next;   /* freed at the end of the iteration */
    h2_stream *streams;   /* live streams */
    h2_outq out;
    size_t big_queued;    /* queued message buffers with a large message, on any stream */
    size_t assembling;    /* bytes of partially received messages, on any stream */
    size_t unsent;        /* bytes of messages queued on its streams, not yet framed (the peer has not read) */
    /* header block being received: offsets into hdr_arena until delivery */
    uint8_t *hdr_arena;
    size_t hdr_arena_len, hdr_arena_cap;
    h2_nv *hdr_nv;
    size_t hdr_n, hdr_nv_cap;
    size_t hdr_count, hdr_list_size; /* the block's fields and RFC 7541 size so far (all of them, copied or not) */
    bool hdr_over;                   /* over max_header_count or max_header_list_size: no more fields copied */
    h2_ratelim rst_guard; /* rapid-reset guard (server connections; set up in h2_session_setup) */
    /* connection limits (server connections) */
    h2_conntimer timer;     /* handshake / idle / grace deadlines, checked at the loop's tick */
    struct h2_peer *peer;   /* its peer address's count in loop->lim (NULL: no per-address cap) */
    bool lim_counted;       /* counted in loop->lim: released on close */
    char peer_name[H2_ADDR_TEXT_MAX]; /* server connections: the peer address (h2_addr_format) */
    /* TLS (h2_tls.h; NULL for cleartext) */
    struct ssl_st *ssl;
    h2_tls_ctx *tls;        /* a reference, released on close */
    bool tls_hs;            /* handshake in progress: nothing is flushed yet */
    bool tls_broken;        /* a fatal TLS error: no close_notify */
    char *tls_name;         /* client via h2_connect_pending_tls: the name to verify, until the session exists */
    /* keepalive and lifetimes (h2_keepalive.h); the client's address walk (h2_addrs.h) */
    h2_keepalive ka;
    bool close_when_flushed;  /* GOAWAY ENHANCE_YOUR_CALM "too_many_pings" queued: close once it is written */
    struct h2_addrs *addrs;   /* client: the addresses to try (owned), NULL for a plain h2_connect */
    size_t addr_next;         /* the next one to try */
    int64_t connect_deadline; /* ms: the current attempt gives up then; 0 = none */
    /* lingering close (h2_linger.h) */
    bool linger;              /* close after our last bytes: the socket lingers */
    bool lingering;           /* closed, its socket lingers (on loop->local.lingering via prev/next) */
    int64_t linger_until;     /* ms: the socket closes then at the latest */
};

typedef struct h2_listener {
    int kind; /* H2_OBJ_LISTENER */
    int fd;
    h2_tls_ctx *tls; /* a reference: a TLS listener; NULL = cleartext */
    struct h2_listener *next;
} h2_listener;

h2_conn *h2_conn_new(h2_loop *L, h2_id id, int fd, bool is_client);
/* Closes at once. Never called from inside an nghttp2 callback. */
void h2_conn_close_now(h2_conn *c, int err, uint32_t stream_code, bool failed);
/* h2_conn_close_now after our last bytes (a GOAWAY, a TLS alert): the connection closes at
 * once, its socket lingers so the peer reads them (h2_linger.h). */
void h2_conn_close_lingering(h2_conn *c, int err, uint32_t stream_code, bool failed);
void h2_conn_free(h2_conn *c);
/* Puts the connection on this iteration's flush list. */
void h2_conn_mark(h2_conn *c);
int h2_conn_epoll(h2_conn *c, int op, uint32_t ev);
/* One flush: pull frames from nghttp2, write them. */
void h2_conn_flush(h2_conn *c);
void h2_conn_event(h2_conn *c, uint32_t ev);
void h2_conn_connected(h2_conn *c);
/* Makes c a TLS connection (server: accepting; client: verifying `server_name`). 0, or -1 (logged). */
int h2_conn_start_tls(h2_conn *c, h2_tls_ctx *tls, const char *server_name);
/* Closes the connection if an nghttp2 return code is fatal. */
void h2_conn_check(h2_conn *c, int rv);
/* Accepts what is pending (a bounded batch): connections over a cap are accepted and closed
 * at once; at the fd limit the reserved fd is spent to do the same, and the listeners pause. */
void h2_accept_all(h2_loop *L, h2_listener *ls);
/* The tick: every connection's deadlines (h2_conntimer_check for server connections,
 * h2_ka_conn_tick for all), at L->local.now; `late_ms`: how late the tick runs. */
void h2_conns_tick(h2_loop *L, int64_t late_ms);
/* Keepalive, age and connect deadlines of one connection at the tick (h2_keepalive.c). */
void h2_ka_conn_tick(h2_conn *c, int64_t now, int64_t late_ms);

#endif
