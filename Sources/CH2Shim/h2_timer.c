/* Timers: the coarse clock and a server connection's handshake, idle and grace deadlines. */
#include "h2_timer.h"

#include <time.h>

int64_t h2_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

uint32_t h2_tick_ms(uint32_t handshake_ms, uint32_t idle_ms)
{
    uint32_t shortest = handshake_ms;
    if (idle_ms && (!shortest || idle_ms < shortest)) shortest = idle_ms;
    if (!shortest) return H2_TICK_MAX_MS;
    uint32_t t = shortest / 4;
    if (t < H2_TICK_MIN_MS) t = H2_TICK_MIN_MS;
    if (t > H2_TICK_MAX_MS) t = H2_TICK_MAX_MS;
    return t;
}

void h2_conntimer_start(h2_conntimer *t, int64_t now)
{
    *t = (h2_conntimer){.since = now, .phase = H2_CT_HANDSHAKE};
}

bool h2_conntimer_feed(h2_conntimer *t, const uint8_t *p, size_t n, int64_t now)
{
    if (t->phase != H2_CT_HANDSHAKE) return false;
    enum { LEN_AT = H2_PREFACE_LEN, TYPE_AT = H2_PREFACE_LEN + 3, HDR_END = H2_PREFACE_LEN + H2_FRAME_HDR_LEN };
    size_t i = 0;
    for (; i < n && t->hs_seen <= TYPE_AT; i++, t->hs_seen++) {
        if (t->hs_seen >= LEN_AT && t->hs_seen < TYPE_AT)
            t->hs_len = t->hs_len << 8 | p[i];
        else if (t->hs_seen == TYPE_AT)
            t->hs_type = p[i];
    }
    size_t rest = n - i;
    t->hs_seen = rest > UINT32_MAX - t->hs_seen ? UINT32_MAX : t->hs_seen + (uint32_t)rest;
    if (t->hs_seen <= TYPE_AT || t->hs_type != 0x4 /* SETTINGS */) return false;
    if ((uint64_t)t->hs_seen < (uint64_t)HDR_END + t->hs_len) return false;
    t->phase = H2_CT_OPEN;
    t->since = now;
    t->last_sid = 0;
    return true;
}

int h2_conntimer_check(h2_conntimer *t, int64_t now, bool busy, int32_t sid, uint32_t handshake_ms, uint32_t idle_ms)
{
    switch (t->phase) {
    case H2_CT_HANDSHAKE:
        return handshake_ms && now - t->since >= handshake_ms ? H2_CT_CLOSE_HANDSHAKE : H2_CT_KEEP;
    case H2_CT_OPEN:
        if (busy || sid != t->last_sid) {
            t->last_sid = sid;
            t->since = now;
            return H2_CT_KEEP;
        }
        if (!idle_ms || now - t->since < idle_ms) return H2_CT_KEEP;
        t->phase = H2_CT_GOAWAY;
        t->since = now;
        return H2_CT_SEND_GOAWAY;
    case H2_CT_GOAWAY:
        if (busy) { /* a stream the GOAWAY let through: the grace starts after it */
            t->since = now;
            return H2_CT_KEEP;
        }
        return now - t->since >= H2_IDLE_GRACE_MS ? H2_CT_CLOSE_GRACE : H2_CT_KEEP;
    default: return H2_CT_KEEP;
    }
}
