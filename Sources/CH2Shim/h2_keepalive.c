/* Keepalive and connection lifetimes: the PING clock, ping strikes, maximum connection age. */
#include "h2_keepalive.h"
#include "h2_timer.h"

static uint64_t mix(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    x ^= x >> 31;
    return x;
}

uint32_t h2_ka_jitter(uint32_t age_ms, uint64_t seed)
{
    uint64_t span = (uint64_t)age_ms / 5; /* ±10 % */
    if (span == 0) return age_ms;
    uint64_t v = (uint64_t)age_ms - span / 2 + mix(seed) % (span + 1);
    return v > UINT32_MAX ? UINT32_MAX : v == 0 ? 1 : (uint32_t)v;
}

void h2_ka_start(h2_keepalive *k, int64_t now, uint32_t age_ms, uint64_t seed)
{
    *k = (h2_keepalive){.last_read = now};
    if (age_ms) k->age_at = now + h2_ka_jitter(age_ms, seed);
}

bool h2_ka_peer_ping(h2_keepalive *k, int64_t now, uint32_t min_ping_ms)
{
    bool early = k->last_peer_ping != 0 && min_ping_ms && now - k->last_peer_ping < min_ping_ms;
    k->last_peer_ping = now ? now : 1;
    if (!early) return false;
    return ++k->strikes > H2_KA_MAX_STRIKES;
}

int h2_ka_check(h2_keepalive *k, int64_t now, bool may_ping, uint32_t time_ms, uint32_t timeout_ms, uint32_t grace_ms)
{
    if (k->close_at && now >= k->close_at) return H2_KA_CLOSE_AGE;
    if (k->age_at && !k->age_goaway_sent && now >= k->age_at) {
        k->age_goaway_sent = true;
        if (grace_ms) k->close_at = now + grace_ms;
        return H2_KA_SEND_AGE_GOAWAY;
    }
    if (k->ping_sent) return timeout_ms && now - k->ping_sent >= timeout_ms ? H2_KA_CLOSE_DEAD : H2_KA_KEEP;
    if (!time_ms || !may_ping || now - k->last_read < time_ms) return H2_KA_KEEP;
    k->ping_sent = now ? now : 1;
    return H2_KA_SEND_PING;
}

uint32_t h2_ka_tick_ms(uint32_t tick_ms, uint32_t time_ms, uint32_t timeout_ms, uint32_t age_ms, uint32_t connect_ms)
{
    uint32_t v[] = {time_ms, timeout_ms, age_ms, connect_ms};
    for (unsigned i = 0; i < sizeof v / sizeof v[0]; i++) {
        if (!v[i]) continue;
        uint32_t t = v[i] / 4;
        if (t < H2_TICK_MIN_MS) t = H2_TICK_MIN_MS;
        if (t < tick_ms) tick_ms = t;
    }
    return tick_ms;
}

/* ---------------------------------------------------------------- a connection at the tick */

#include "h2_addrs.h"
#include "h2_loop.h"

#include <errno.h>
#include <sys/ioctl.h>

void h2_ka_conn_tick(h2_conn *c, int64_t now, int64_t late_ms)
{
    h2_loop *L = c->loop;
    const h2_config *cfg = &L->cfg;
    if (c->connecting) {
        if (c->fd >= 0 && c->connect_deadline && now >= c->connect_deadline && !h2_conn_retry(c, ETIMEDOUT))
            h2_conn_close_now(c, ETIMEDOUT, H2_CLOSE_CONN_LOST, true);
        return;
    }
    /* A client pings only while it has calls (grpc's permit_without_calls = false). */
    bool may_ping = !c->is_client || c->streams != NULL;
    h2_ka_late(&c->ka, late_ms);
    switch (h2_ka_check(&c->ka, now, may_ping, c->is_client ? L->local.ka_time_ms : cfg->keepalive_time_ms,
                        cfg->keepalive_timeout_ms,
                        cfg->max_connection_age_grace_ms)) {
    case H2_KA_SEND_PING: {
        static const uint8_t opaque[8] = {'k', 'e', 'e', 'p', 'a', 'l', 'i', 'v'};
        LSTAT_ADD(L, keepalive_pings, 1);
        h2_conn_check(c, nghttp2_submit_ping(c->sess, NGHTTP2_FLAG_NONE, opaque));
        h2_conn_mark(c);
        break;
    }
    case H2_KA_CLOSE_DEAD: {
        /* Bytes that arrived after this iteration's epoll_wait (while this thread waited for a
         * core, say) are an answer too: they are read in the next iteration. */
        int unread = 0;
        if (ioctl(c->fd, FIONREAD, &unread) == 0 && unread > 0) {
            h2_ka_read(&c->ka, now);
            break;
        }
        LSTAT_ADD(L, keepalive_timeouts, 1);
        h2_conn_close_now(c, ETIMEDOUT, H2_CLOSE_CONN_LOST, false);
        break;
    }
    case H2_KA_SEND_AGE_GOAWAY:
        LSTAT_ADD(L, age_goaways, 1);
        h2_conn_check(c, nghttp2_submit_goaway(c->sess, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(c->sess),
                                               NGHTTP2_NO_ERROR, NULL, 0));
        /* Then as after an idle GOAWAY: closed a grace after its last stream (or by the peer). */
        c->timer.phase = H2_CT_GOAWAY;
        c->timer.since = now;
        h2_conn_mark(c);
        break;
    case H2_KA_CLOSE_AGE: h2_conn_close_lingering(c, 0, H2_CLOSE_CONN_LOST, false); break; /* after GOAWAY */
    default: break;
    }
}
