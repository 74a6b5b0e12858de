/*
 * Streams (private): one per HTTP/2 stream with application state. Inbound: gRPC
 * deframing and the flow-control accounting of what the application consumed. Outbound:
 * the queue of message buffers nghttp2's data source reads from. Loop thread only.
 *
 * Inbound flow control (automatic window updates are off). Every received DATA byte is
 * `received_unreleased` until it is given back to nghttp2 (nghttp2_session_consume):
 *  - bytes of a whole message are given back when the application consumed it (the
 *    return value of on_message, or h2_consume later; `delivered_unconsumed` counts the
 *    delivered bytes not yet consumed);
 *  - bytes of a message being assembled are given back as they arrive while
 *    delivered_unconsumed is 0 and the connection and the loop are within their budgets
 *    of partial messages (max_partial_bytes_per_conn, max_partial_bytes) (`partial_released`),
 *    so a message larger than the window can complete; otherwise they are kept
 *    (`partial_withheld`) until the application caught up, so a stream buffers at most its
 *    held messages plus one window, or until the budget has room again (the stream waits
 *    on the loop's list of waiters, resumed at the end of an iteration). One waiter at a
 *    time, the oldest, is `favoured`: it may pass the budget until its message is whole
 *    (at most one message more), so streams that all wait cannot deadlock; a favoured
 *    stream that makes no progress between two ticks goes to the back of the list;
 *  - when the application then consumes a message whose bytes were partly released
 *    early, those bytes are `consume_credit`: subtracted from later h2_consume calls.
 */
#ifndef H2_STREAM_H
#define H2_STREAM_H

#include "h2_framing.h"
#include "h2shim.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct h2_conn h2_conn;
typedef struct h2_loop h2_loop;

typedef struct h2_stream {
    int kind; /* H2_OBJ_STREAM */
    h2_id id;
    h2_conn *conn;
    int32_t sid;
    void *user;
    struct h2_stream *prev, *next; /* conn's live list */
    /* inbound */
    h2_deframer deframer;
    size_t partial_released;     /* bytes of the message being assembled already given back */
    size_t partial_withheld;     /* bytes of it kept back while delivered_unconsumed > 0 */
    size_t delivered_unconsumed; /* bytes of delivered messages the application has not consumed */
    size_t consume_credit;       /* given back early: subtracted from later h2_consume */
    size_t received_unreleased;  /* received and not yet given back to nghttp2 */
    struct h2_stream *wait_prev, *wait_next; /* loop's waiters (over the budget of partial messages) */
    bool waiting;
    /* outbound */
    h2_msgbuf *out_head, *out_tail;
    bool is_client;
    bool in_err;        /* inbound discarded after an error */
    bool in_ended;      /* peer half-closed */
    bool got_headers;   /* client: a response header block arrived */
    bool resp_sent;     /* server: response headers submitted */
    bool local_end;     /* END / trailers queued: later sends are dropped */
    bool data_deferred; /* data provider returned DEFERRED */
    bool nc_pop_next;   /* the NO_COPY frame being sent also ends the stream with the END-only buffer after the head */
    bool counted;       /* counted in stats.streams */
    uint32_t close_code; /* if not 0: the code on_close reports, whatever nghttp2 closes the stream with */
} h2_stream;

h2_stream *h2_stream_new(h2_conn *c, h2_id id, bool is_client);
void h2_stream_set_user(h2_stream *st, void *user);
/* Unlinks and frees; no callback. */
void h2_stream_free(h2_stream *st);
/* Exactly-once on_close, then free. */
void h2_stream_finish(h2_stream *st, uint32_t code);
/* Gives `n` received bytes back to nghttp2 (window updates). 0 or a fatal nghttp2 code. */
int h2_stream_release(h2_stream *st, size_t n);
/* One DATA chunk. 0, NGHTTP2_ERR_NOMEM (reset just this stream) or a fatal nghttp2 code. */
int h2_stream_in_data(h2_stream *st, const uint8_t *d, size_t len);
/* Peer half-closed: reports a truncated message, then on_end (once). */
void h2_stream_in_end(h2_stream *st);
/* The application consumed `bytes` (h2_consume). Returns bytes to give back now. */
size_t h2_stream_consumed(h2_stream *st, size_t bytes);
/* Past this many bytes of partial messages a loop ends the stream whose bytes arrive
 * (H2_STREAM_ERR_BUSY): twice the budget, plus the favoured stream's one message. */
static inline size_t h2_stream_hard_partial_limit(const h2_config *cfg)
{
    return 2 * cfg->max_partial_bytes + cfg->max_recv_message;
}
/* Re-opens the windows of streams that waited for the budget of partial messages, while
 * it has room (end of a loop iteration, when budget_freed). */
void h2_stream_resume_waiters(h2_loop *L);
/* At the loop's tick: a favoured waiter that received nothing since the last tick yields. */
void h2_stream_tick(h2_loop *L);
/* Queues an outbound message buffer (send command). */
void h2_stream_enqueue(h2_stream *st, h2_msgbuf *b);
/* A buffer leaves the stream's queue: freed unless output segments still point into it. */
void h2_stream_out_release(h2_conn *c, h2_msgbuf *b);

#endif
