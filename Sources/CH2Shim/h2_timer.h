/*
 * Timers (private): the loop's coarse clock, and the deadlines of one server connection.
 *
 * The loop has no timer per connection: it ticks (a quarter of the shortest timeout, within
 * H2_TICK_MIN_MS..H2_TICK_MAX_MS; h2_ka_tick_ms lowers it for the keepalive and connect
 * timeouts) while it has connections, and each tick walks them once: h2_conntimer_check for
 * server connections, h2_ka_conn_tick (h2_keepalive.h) for all. Nothing here runs per request: a connection's activity is read
 * at the tick (its open streams, nghttp2's last processed stream id), and the handshake
 * tracker only looks at the first bytes a connection receives.
 *
 * A server connection goes through three phases:
 *   HANDSHAKE  until the client preface (24 bytes) and its first frame, SETTINGS, have been
 *              received in full; closed if that takes handshake_ms;
 *   OPEN       idle (no open stream, and no new stream since the last tick) for idle_ms:
 *              GOAWAY(NO_ERROR) is sent;
 *   GOAWAY     closed H2_IDLE_GRACE_MS later (sooner if the peer closes first).
 * Client connections have no timers (phase NONE).
 */
#ifndef H2_TIMER_H
#define H2_TIMER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define H2_TICK_MIN_MS 50
#define H2_TICK_MAX_MS 1000
#define H2_IDLE_GRACE_MS 1000     /* after an idle GOAWAY, before closing */
#define H2_ACCEPT_BACKOFF_MS 100  /* accept failed (fd limit, no memory): listeners paused this long */
#define H2_PREFACE_LEN 24         /* "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" */
#define H2_FRAME_HDR_LEN 9

/* CLOCK_MONOTONIC in milliseconds (vDSO: no system call). */
int64_t h2_now_ms(void);

/* The tick period for these timeouts (0 = off): a quarter of the shortest, clamped to
 * [H2_TICK_MIN_MS, H2_TICK_MAX_MS]; H2_TICK_MAX_MS when both are off. */
uint32_t h2_tick_ms(uint32_t handshake_ms, uint32_t idle_ms);

enum { H2_CT_NONE = 0, H2_CT_HANDSHAKE, H2_CT_OPEN, H2_CT_GOAWAY };
/* What h2_conntimer_check asks the loop to do. */
enum { H2_CT_KEEP = 0, H2_CT_CLOSE_HANDSHAKE, H2_CT_SEND_GOAWAY, H2_CT_CLOSE_GRACE };

typedef struct h2_conntimer {
    int64_t since;     /* ms: accepted (HANDSHAKE), last seen busy (OPEN), GOAWAY sent (GOAWAY) */
    int32_t last_sid;  /* nghttp2's last processed stream id at the previous tick */
    uint32_t hs_seen;  /* bytes received of preface + first frame (saturating) */
    uint32_t hs_len;   /* the first frame's payload length, once its header is in */
    uint8_t hs_type;   /* the first frame's type */
    uint8_t phase;     /* H2_CT_* */
} h2_conntimer;

/* A new server connection: HANDSHAKE from `now`. */
void h2_conntimer_start(h2_conntimer *t, int64_t now);
/* `n` more bytes the connection received (and nghttp2 accepted). Returns true when they
 * complete the handshake (the phase is then OPEN, idle from `now`). A first frame that is
 * not SETTINGS never completes it (nghttp2 rejects such a connection anyway). */
bool h2_conntimer_feed(h2_conntimer *t, const uint8_t *p, size_t n, int64_t now);
/* At a tick: `busy` = the connection has open streams, `sid` = nghttp2's last processed
 * stream id; 0 turns a timeout off. Returns H2_CT_* (KEEP, or what to do now) and moves
 * the phase on. */
int h2_conntimer_check(h2_conntimer *t, int64_t now, bool busy, int32_t sid, uint32_t handshake_ms, uint32_t idle_ms);

#endif
