/*
 * Keepalive and connection lifetimes (private): the PING clock, the peer's ping strikes and
 * the maximum connection age of one connection. Like h2_timer, nothing here runs per
 * request: the loop's tick calls h2_ka_check for every connection, reads and sent HEADERS
 * or DATA frames only store a time or clear a counter.
 *
 *   keepalive   nothing received for time_ms (and, on a client, calls open): send a PING;
 *               still nothing received timeout_ms later: the connection is dead, close it
 *               (its streams end with H2_CLOSE_CONN_LOST). Any bytes received count as an
 *               answer, not only the PING ACK.
 *   strikes     (server) a PING from the peer less than min_ping_ms after its previous one,
 *               with no HEADERS or DATA sent by us in between, is a strike; the third one
 *               (more than H2_KA_MAX_STRIKES, as grpc) gets GOAWAY ENHANCE_YOUR_CALM with
 *               debug data "too_many_pings". Sending HEADERS or DATA forgives them all.
 *   age         (server) age_ms (±10 % jitter per connection, as grpc) after it was
 *               accepted: GOAWAY(NO_ERROR); grace_ms later it is closed even with calls
 *               still open (0 = calls may take as long as they need).
 */
#ifndef H2_KEEPALIVE_H
#define H2_KEEPALIVE_H

#include <stdbool.h>
#include <stdint.h>

#define H2_KA_MAX_STRIKES 2
#define H2_KA_TOO_MANY_PINGS "too_many_pings"
/* Defaults of h2_config (see h2shim.h). */
#define H2_DEFAULT_KEEPALIVE_TIME_MS 7200000u    /* 2 h: grpc's server default */
#define H2_DEFAULT_KEEPALIVE_TIMEOUT_MS 20000u   /* 20 s: grpc's */
#define H2_DEFAULT_MIN_PING_INTERVAL_MS 300000u  /* 5 min: grpc's */
#define H2_DEFAULT_CONNECT_TIMEOUT_MS 2000u      /* per address */

typedef struct h2_keepalive {
    int64_t last_read;      /* ms: bytes last received (or the connection started) */
    int64_t ping_sent;      /* ms: our unanswered PING went out; 0 = none */
    int64_t last_peer_ping; /* ms: the peer's last PING; 0 = none since we last sent HEADERS/DATA */
    int64_t age_at;         /* ms: GOAWAY for age then; 0 = no age limit */
    int64_t close_at;       /* ms: after the age GOAWAY, closed then; 0 = not set */
    uint32_t strikes;
    bool age_goaway_sent;
} h2_keepalive;

/* What h2_ka_check asks the loop to do. */
enum { H2_KA_KEEP = 0, H2_KA_SEND_PING, H2_KA_CLOSE_DEAD, H2_KA_SEND_AGE_GOAWAY, H2_KA_CLOSE_AGE };

/* A connection starts at `now`; `age_ms` 0 = no age limit, else jittered by `seed` (±10 %). */
void h2_ka_start(h2_keepalive *k, int64_t now, uint32_t age_ms, uint64_t seed);
/* age_ms within ±10 %, chosen by `seed`. */
uint32_t h2_ka_jitter(uint32_t age_ms, uint64_t seed);

/* Bytes arrived: the connection is alive. */
static inline void h2_ka_read(h2_keepalive *k, int64_t now)
{
    k->last_read = now;
    k->ping_sent = 0;
}

/* We sent HEADERS or DATA: the peer's pings are welcome again (grpc resets its strikes). */
static inline void h2_ka_sent_data(h2_keepalive *k)
{
    k->strikes = 0;
    k->last_peer_ping = 0;
}

/* The tick ran `late_ms` after it was due (this thread was not scheduled, or an iteration took
 * that long): that time does not count against the peer's answer to our PING, which could not
 * be read meanwhile (nor, in one process, sent: a peer starved with us). */
static inline void h2_ka_late(h2_keepalive *k, int64_t late_ms)
{
    if (k->ping_sent && late_ms > 0) k->ping_sent += late_ms;
}

/* The peer sent a PING (not an ACK) at `now`. Returns true when that is one strike too
 * many: the caller sends GOAWAY ENHANCE_YOUR_CALM "too_many_pings". min_ping_ms 0 = no limit. */
bool h2_ka_peer_ping(h2_keepalive *k, int64_t now, uint32_t min_ping_ms);

/* The server said "too_many_pings": a client's keepalive time doubles (saturating), as grpc's. */
static inline uint32_t h2_ka_calm_down(uint32_t time_ms)
{
    return time_ms > UINT32_MAX / 2 ? UINT32_MAX : time_ms * 2;
}

/* At a tick. `may_ping`: keepalive applies now (a client with calls open, or any server
 * connection). time_ms 0 = no keepalive; timeout_ms 0 = never dead; grace_ms as above. */
int h2_ka_check(h2_keepalive *k, int64_t now, bool may_ping, uint32_t time_ms, uint32_t timeout_ms, uint32_t grace_ms);

/* The tick period `tick_ms` lowered so these timeouts (0 = off) are seen in time: at most a
 * quarter of the shortest, at least H2_TICK_MIN_MS. */
uint32_t h2_ka_tick_ms(uint32_t tick_ms, uint32_t time_ms, uint32_t timeout_ms, uint32_t age_ms, uint32_t connect_ms);

#endif
