/*
 * h2shim: epoll loop + nghttp2 sessions + gRPC message framing. See include/h2shim.h.
 *
 * Ownership: everything below the h2_loop struct's "loop thread only" mark is touched
 * by the loop thread alone while it runs (and by h2_loop_stop after joining it). Other
 * threads only allocate a token (atomic counter) and post an h2_op to the queue.
 */
#define _GNU_SOURCE
#include "h2shim.h"
#include "h2_internal.h"

#include <errno.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <nghttp2/nghttp2.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define H2_READ_BUF (64 * 1024)
#define H2_WRITE_BATCH (64 * 1024)         /* stop pulling from nghttp2 once this much is queued */
#define H2_MAX_HEADER_BYTES (256 * 1024)   /* per header block; beyond → stream reset */
#define H2_NOCOPY_MIN (16 * 1024)          /* message bytes left to send from which DATA frames reference the
                                              message (NO_COPY + writev) instead of copying it */
#define H2_MAX_SEND_FRAME (256 * 1024)     /* largest DATA frame we send (if the peer allows it) */
#define H2_POOL_MIN (64 * 1024)            /* message buffers this large are recycled through the loop's pool */
#define H2_POOL_ROUND (64 * 1024)          /* ... with their size rounded up to a multiple of this */
#define H2_POOL_MAX_BYTES (8u << 20)       /* most memory a loop's pool keeps */
#define H2_POOL_IDLE_MS 1000               /* the pool is emptied (and malloc trimmed) after this long without any event */
#define H2_MAX_IOV 64                      /* iovecs per writev */
#define H2_RST_LIMIT 1000                  /* peer RST_STREAMs per second before ENHANCE_YOUR_CALM */
#define H2_MAX_EVENTS 256

enum { K_WAKE = 1, K_LISTEN, K_CONN, K_STREAM };

enum {
    OP_SEND = 1,
    OP_RESET,
    OP_CONSUME,
    OP_OPEN,
    OP_CONNECT,
    OP_CLOSE_CONN,
    OP_GOAWAY,
    OP_LISTEN,
    OP_RUN,
};

/* One posted operation: a single allocation holding the header/trailer arrays, their
 * strings and the framed message. Send ops with a message or trailers are kept on the
 * stream's outbound queue until nghttp2 has taken their bytes (no second copy). */
typedef struct h2_op {
    struct h2_op *next;
    int type;
    int flags;
    h2_id id;  /* stream or connection token */
    h2_id id2; /* OP_OPEN: the connection token */
    void *user;
    uint64_t arg; /* CONSUME bytes, RESET code, LISTEN fd */
    nghttp2_nv *hdrs;
    size_t nhdrs;
    nghttp2_nv *trls;
    size_t ntrls;
    uint8_t *msg; /* framed message (5-byte prefix included), NULL = none */
    size_t msglen;
    size_t msgoff; /* bytes already handed to nghttp2 */
    size_t cap;    /* bytes after OP_BASE (message buffers: pooled when >= H2_POOL_MIN) */
    uint32_t segs; /* output segments (writev) still pointing into msg */
    bool queued;   /* on a stream's outbound queue */
    bool big;      /* queued with a message of at least H2_NOCOPY_MIN bytes (counted in conn->nbig) */
    struct sockaddr_storage addr;
    socklen_t addrlen;
    h2_run_fn run; /* OP_RUN: run(run_ctx, user, on_loop) */
    void *run_ctx;
} h2_op;

typedef struct h2_conn h2_conn;

/* One piece of a connection's output: bytes of wbuf (op == NULL), or message bytes of an
 * op that stays alive (op->segs) until they are written. */
typedef struct h2_seg {
    h2_op *op;
    const uint8_t *p; /* op segments */
    size_t off;       /* wbuf segments: offset into wbuf (which may move) */
    size_t len;
} h2_seg;

typedef struct h2_stream {
    int kind; /* K_STREAM */
    h2_id id;
    h2_conn *conn;
    int32_t sid;
    void *user;
    struct h2_stream *prev, *next; /* conn's live list */
    /* inbound: a message split over DATA chunks is assembled in a message buffer */
    uint8_t pfx[5];    /* its length prefix */
    size_t plen;       /* prefix bytes received (0-5) */
    h2_op *mblk;       /* its buffer (payload at blk_payload), once the prefix is complete */
    size_t mlen;       /* declared length of the message being buffered (valid when plen == 5) */
    size_t mgot;       /* payload bytes received */
    size_t pre;        /* bytes of the buffered message already released to nghttp2 */
    size_t deferred;   /* bytes of the buffered message kept unreleased while `held` > 0 */
    size_t held;       /* bytes of delivered messages the application has not consumed yet */
    size_t advance;    /* released early; subtract from later h2_consume */
    size_t unreleased; /* received and not yet released to nghttp2 */
    /* outbound */
    h2_op *oq_head, *oq_tail;
    bool is_client;
    bool in_err;      /* inbound discarded after an error */
    bool in_ended;    /* peer half-closed */
    bool got_headers; /* client: a response header block arrived */
    bool resp_sent;   /* server: response headers submitted */
    bool local_end;   /* END / trailers queued: later sends are dropped */
    bool data_deferred; /* data provider returned DEFERRED */
    bool nc_pop_next; /* the NO_COPY frame being sent also ends the stream with the END-only op after the head */
    bool counted;     /* counted in stats.streams */
} h2_stream;

struct h2_conn {
    int kind; /* K_CONN */
    h2_id id;
    h2_loop *loop;
    int fd;
    nghttp2_session *sess;
    bool is_client;
    bool connecting;
    bool dead;
    bool dirty;
    bool want_out; /* EPOLLOUT registered */
    bool goaway_recv;
    h2_conn *prev, *next;   /* loop's connection list */
    h2_conn *dirty_next;    /* flush list of this iteration */
    h2_conn *dead_next;     /* freed at the end of the iteration */
    h2_stream *streams;     /* live streams */
    /* output of this flush: frames copied into wbuf, and DATA payloads referenced in place
     * (NO_COPY); written in order with writev */
    uint8_t *wbuf;
    size_t wlen, wcap;
    struct h2_seg *segs;
    size_t nseg, segcap;
    size_t segi, segoff;    /* first segment not fully written, and bytes of it written */
    size_t out_bytes;       /* bytes queued in segs */
    size_t nbig;            /* queued ops with a large message, on any stream */
    /* header block being received: offsets into harena until delivery */
    uint8_t *harena;
    size_t hlen, hcap;
    h2_nv *hnv;
    size_t hn, hncap;
    bool hoverflow;
    /* rapid-reset guard */
    time_t rst_sec;
    uint32_t rst_n;
};

typedef struct h2_listener {
    int kind; /* K_LISTEN */
    int fd;
    struct h2_listener *next;
} h2_listener;

struct h2_loop {
    h2_config cfg;
    h2_callbacks cb;
    int epfd;
    int evfd;
    int wake_kind; /* epoll tag of the eventfd (K_WAKE) */
    pthread_t thread;
    bool started;
    bool stopped; /* under qlock */
    atomic_bool stop_flag;
    /* Stopped or destroyed from one of its own callbacks (its last owner went away on the
     * loop thread): the thread cannot join itself, so it tears the loop down (and frees it)
     * on its way out. `joined`: the thread is gone or detached. */
    bool teardown_on_exit, free_on_exit, joined;
    atomic_uint_fast64_t next_id;

    pthread_mutex_t qlock;
    h2_op *qhead, *qtail;
    bool wake_pending; /* under qlock */

    struct {
        atomic_uint_fast64_t connections, streams, inbound, outbound, streams_total, pooled;
    } st;

    nghttp2_session_callbacks *scb;
    nghttp2_option *opt;

    /* recycled message buffers (any thread) */
    pthread_mutex_t plock;
    h2_op *pool;
    size_t pool_bytes;
    bool active; /* events since the last idle trim */

    /* ---- loop thread only ---- */
    h2_map map;
    h2_conn *conns;
    h2_conn *dirty;
    h2_conn *dead;
    h2_listener *listeners;
    uint8_t rbuf[H2_READ_BUF];
};

#define STAT_ADD(L, f, n) atomic_fetch_add_explicit(&(L)->st.f, (n), memory_order_relaxed)
#define STAT_SUB(L, f, n) atomic_fetch_sub_explicit(&(L)->st.f, (n), memory_order_relaxed)
/* Counters only the loop thread writes (or h2_loop_stop's thread, once it joined the loop):
 * a relaxed load and store, no locked read-modify-write per stream event. (`pooled` is
 * written from any thread: STAT_ADD/STAT_SUB.) */
#define LSTAT_ADD(L, f, n) \
    atomic_store_explicit(&(L)->st.f, atomic_load_explicit(&(L)->st.f, memory_order_relaxed) + (n), memory_order_relaxed)
#define LSTAT_SUB(L, f, n) \
    atomic_store_explicit(&(L)->st.f, atomic_load_explicit(&(L)->st.f, memory_order_relaxed) - (n), memory_order_relaxed)

static void conn_close(h2_conn *c, int err, uint32_t stream_code, bool failed);

/* ===================================================================== ops */

static size_t nv_bytes(const h2_nv *nv, size_t n)
{
    size_t b = n * sizeof(nghttp2_nv);
    for (size_t i = 0; i < n; i++) b += nv[i].namelen + nv[i].valuelen;
    return b;
}

/* Every op is one block: the h2_op, then OP_BASE-aligned data (nv arrays, strings, the
 * framed message). Message buffers (h2_buf_alloc, assembled inbound messages) are such
 * blocks too; large ones are recycled through the loop's pool. */
#define OP_BASE ((sizeof(h2_op) + 15) & ~(size_t)15)

static inline uint8_t *blk_data(h2_op *op) { return (uint8_t *)op + OP_BASE; }

/* A block with `need` data bytes, header zeroed; large ones from the pool when one fits. */
static h2_op *blk_get(h2_loop *L, size_t need)
{
    h2_op *op = NULL;
    size_t cap = need;
    if (need >= H2_POOL_MIN) {
        pthread_mutex_lock(&L->plock);
        for (h2_op **pp = &L->pool; *pp; pp = &(*pp)->next) {
            size_t c = (*pp)->cap;
            if (c >= need && c - need <= need / 2 + H2_POOL_ROUND) {
                op = *pp;
                *pp = op->next;
                L->pool_bytes -= c;
                STAT_SUB(L, pooled, c);
                cap = c;
                break;
            }
        }
        pthread_mutex_unlock(&L->plock);
        if (!op) {
            if (need > SIZE_MAX - OP_BASE - H2_POOL_ROUND) return NULL;
            cap = (need + H2_POOL_ROUND - 1) / H2_POOL_ROUND * H2_POOL_ROUND;
        }
    }
    if (!op && !(op = malloc(OP_BASE + cap))) return NULL;
    memset(op, 0, sizeof *op);
    op->cap = cap;
    return op;
}

/* Frees a block, or keeps a large one in the pool (bounded by H2_POOL_MAX_BYTES). Any thread. */
static void op_free(h2_loop *L, h2_op *op)
{
    if (op->cap >= H2_POOL_MIN) {
        pthread_mutex_lock(&L->plock);
        if (L->pool_bytes + op->cap <= H2_POOL_MAX_BYTES) {
            op->next = L->pool;
            L->pool = op;
            L->pool_bytes += op->cap;
            STAT_ADD(L, pooled, op->cap);
            pthread_mutex_unlock(&L->plock);
            return;
        }
        pthread_mutex_unlock(&L->plock);
    }
    free(op);
}

static bool pool_empty(h2_loop *L)
{
    pthread_mutex_lock(&L->plock);
    bool empty = L->pool == NULL;
    pthread_mutex_unlock(&L->plock);
    return empty;
}

/* Frees the pooled buffers (the loop has been idle, or is destroyed). */
static void pool_trim(h2_loop *L)
{
    pthread_mutex_lock(&L->plock);
    h2_op *list = L->pool;
    L->pool = NULL;
    STAT_SUB(L, pooled, L->pool_bytes);
    L->pool_bytes = 0;
    pthread_mutex_unlock(&L->plock);
    while (list) {
        h2_op *op = list;
        list = op->next;
        free(op);
    }
}

/* An op leaves its stream's queue (on connection c): freed unless output segments still
 * point into it. */
static void op_release(h2_conn *c, h2_op *op);

/* Copies n fields into `out`, their bytes packed from `s`; returns the end of the bytes. */
static uint8_t *nv_copy(nghttp2_nv *out, const h2_nv *in, size_t n, uint8_t *s)
{
    for (size_t i = 0; i < n; i++) {
        out[i].name = s; out[i].namelen = in[i].namelen;
        if (in[i].namelen) memcpy(s, in[i].name, in[i].namelen);
        s += in[i].namelen;
        out[i].value = s; out[i].valuelen = in[i].valuelen;
        if (in[i].valuelen) memcpy(s, in[i].value, in[i].valuelen);
        s += in[i].valuelen;
        out[i].flags = NGHTTP2_NV_FLAG_NONE;
    }
    return s;
}

static h2_op *op_new(h2_loop *L, int type, h2_id id, const h2_nv *h, size_t nh, int has_msg, const uint8_t *msg,
                     size_t msglen, int compressed, const h2_nv *t, size_t nt)
{
    size_t hb = nv_bytes(h, nh), tb = nv_bytes(t, nt);
    size_t mb = has_msg ? msglen + 5 : 0;
    if (has_msg && msglen > UINT32_MAX) {
        errno = EMSGSIZE;
        return NULL;
    }
    /* nv arrays need pointer alignment: place both arrays before any string. */
    h2_op *op = blk_get(L, hb + tb + mb);
    if (!op) return NULL;
    op->type = type;
    op->id = id;
    uint8_t *p = blk_data(op);
    /* arrays first so they stay aligned: copy headers' array, then trailers' array, then strings */
    nghttp2_nv *ha = (nghttp2_nv *)p;
    nghttp2_nv *ta = (nghttp2_nv *)(p + nh * sizeof(nghttp2_nv));
    uint8_t *s = p + (nh + nt) * sizeof(nghttp2_nv);
    s = nv_copy(ha, h, nh, s);
    s = nv_copy(ta, t, nt, s);
    op->hdrs = nh ? ha : NULL;
    op->nhdrs = nh;
    op->trls = nt ? ta : NULL;
    op->ntrls = nt;
    if (has_msg) {
        s[0] = compressed ? 1 : 0;
        s[1] = (uint8_t)(msglen >> 24);
        s[2] = (uint8_t)(msglen >> 16);
        s[3] = (uint8_t)(msglen >> 8);
        s[4] = (uint8_t)msglen;
        if (msglen) memcpy(s + 5, msg, msglen);
        op->msg = s;
        op->msglen = mb;
    }
    return op;
}

/* Queues an op; wakes the loop only on the 0→1 edge of wake_pending. Returns -1 (op
 * untouched, caller frees) if the loop is stopped. */
static int op_post(h2_loop *L, h2_op *op)
{
    bool wake = false;
    op->next = NULL;
    pthread_mutex_lock(&L->qlock);
    if (L->stopped) {
        pthread_mutex_unlock(&L->qlock);
        return -1;
    }
    if (L->qtail)
        L->qtail->next = op;
    else
        L->qhead = op;
    L->qtail = op;
    if (!L->wake_pending) {
        L->wake_pending = true;
        /* The loop drains its queue before it sleeps: posting from the loop thread itself
         * (a handler run inline) needs no eventfd write. */
        wake = !(L->started && pthread_equal(pthread_self(), L->thread));
    }
    pthread_mutex_unlock(&L->qlock);
    if (wake) {
        uint64_t one = 1;
        ssize_t r;
        do r = write(L->evfd, &one, sizeof one);
        while (r < 0 && errno == EINTR);
        /* EAGAIN means the counter is saturated: the loop is awake anyway. */
    }
    return 0;
}

static bool queue_nonempty(h2_loop *L)
{
    pthread_mutex_lock(&L->qlock);
    bool nonempty = L->qhead != NULL;
    pthread_mutex_unlock(&L->qlock);
    return nonempty;
}

static h2_op *op_take_all(h2_loop *L)
{
    pthread_mutex_lock(&L->qlock);
    h2_op *h = L->qhead;
    L->qhead = L->qtail = NULL;
    L->wake_pending = false;
    pthread_mutex_unlock(&L->qlock);
    return h;
}

/* ================================================================ streams */

static void op_release(h2_conn *c, h2_op *op)
{
    op->queued = false;
    if (op->big) {
        op->big = false;
        c->nbig--;
    }
    if (op->segs == 0) op_free(c->loop, op);
}

static h2_stream *stream_new(h2_conn *c, h2_id id, bool is_client)
{
    h2_stream *st = calloc(1, sizeof *st);
    if (!st) return NULL;
    st->kind = K_STREAM;
    st->id = id;
    st->conn = c;
    st->is_client = is_client;
    if (h2_map_put(&c->loop->map, id, st) != 0) {
        free(st);
        return NULL;
    }
    st->next = c->streams;
    if (c->streams) c->streams->prev = st;
    c->streams = st;
    return st;
}

static void stream_set_user(h2_loop *L, h2_stream *st, void *user)
{
    st->user = user;
    st->counted = true;
    LSTAT_ADD(L, streams, 1);
    LSTAT_ADD(L, streams_total, 1);
}

/* Unlinks and frees; no callback. */
static void stream_free(h2_stream *st)
{
    h2_conn *c = st->conn;
    h2_loop *L = c->loop;
    h2_map_del(&L->map, st->id);
    if (st->prev)
        st->prev->next = st->next;
    else
        c->streams = st->next;
    if (st->next) st->next->prev = st->prev;
    if (st->plen) LSTAT_SUB(L, inbound, st->plen + st->mgot);
    if (st->mblk) op_free(L, st->mblk);
    for (h2_op *op = st->oq_head, *n; op; op = n) {
        n = op->next;
        if (op->msg && op->msgoff < op->msglen) LSTAT_SUB(L, outbound, op->msglen - op->msgoff);
        op_release(c, op);
    }
    if (st->counted) LSTAT_SUB(L, streams, 1);
    free(st);
}

/* Exactly-once on_close, then free. */
static void stream_finish(h2_stream *st, uint32_t code)
{
    h2_loop *L = st->conn->loop;
    void *user = st->user;
    st->user = NULL;
    if (user && L->cb.on_close) L->cb.on_close(L->cb.ctx, user, code);
    stream_free(st);
}

/* Gives `n` received bytes of the stream back to nghttp2 (window updates). */
static int stream_release(h2_stream *st, size_t n)
{
    if (n > st->unreleased) n = st->unreleased;
    if (n == 0) return 0;
    st->unreleased -= n;
    int rv = nghttp2_session_consume(st->conn->sess, st->sid, n);
    return (rv != 0 && nghttp2_is_fatal(rv)) ? rv : 0;
}

/* Discard the partial message and all further inbound bytes. */
static int stream_in_error(h2_stream *st, int kind, size_t detail)
{
    h2_loop *L = st->conn->loop;
    st->in_err = true;
    st->pre = st->deferred = 0;
    if (st->plen) {
        LSTAT_SUB(L, inbound, st->plen + st->mgot);
        st->plen = st->mgot = 0;
    }
    if (st->mblk) {
        op_free(L, st->mblk);
        st->mblk = NULL;
    }
    if (st->user && L->cb.on_stream_error) L->cb.on_stream_error(L->cb.ctx, st->user, kind, detail);
    return stream_release(st, st->unreleased);
}

/* The application took a message of `total` bytes (prefix included) and released `r` of
 * them now, the rest comes with h2_consume; `pre` bytes of it were released early. */
static int deliver_done(h2_stream *st, size_t r, size_t total, size_t pre)
{
    if (r > total) r = total;
    st->held += total - r;
    if (r >= pre) return stream_release(st, r - pre);
    st->advance += pre - r;
    return 0;
}

/* A message whole inside one DATA chunk: delivered from nghttp2's buffer. */
static int deliver(h2_stream *st, const uint8_t *frame, size_t mlen, size_t pre)
{
    h2_loop *L = st->conn->loop;
    size_t total = mlen + 5;
    size_t r = total;
    if (L->cb.on_message) r = L->cb.on_message(L->cb.ctx, st->user, frame[0] & 1, frame + 5, mlen);
    return deliver_done(st, r, total, pre);
}

/* The assembled message: its buffer goes to the application (on_message_buf) or back to the pool. */
static int deliver_assembled(h2_stream *st)
{
    h2_loop *L = st->conn->loop;
    h2_op *b = st->mblk;
    size_t mlen = st->mlen, total = mlen + 5, pre = st->pre, r = total;
    int compressed = st->pfx[0] & 1;
    st->mblk = NULL;
    st->plen = st->mgot = 0;
    st->pre = st->deferred = 0; /* deferred bytes are now the application's to consume */
    LSTAT_SUB(L, inbound, total);
    if (!b) { /* empty message: nothing was allocated */
        if (L->cb.on_message) r = L->cb.on_message(L->cb.ctx, st->user, compressed, st->pfx + 5, 0);
    } else if (L->cb.on_message_buf) {
        r = L->cb.on_message_buf(L->cb.ctx, st->user, compressed, blk_data(b) + 5, mlen);
    } else {
        if (L->cb.on_message) r = L->cb.on_message(L->cb.ctx, st->user, compressed, blk_data(b) + 5, mlen);
        op_free(L, b);
    }
    return deliver_done(st, r, total, pre);
}

static inline size_t be32(const uint8_t *p)
{
    return ((size_t)p[0] << 24) | ((size_t)p[1] << 16) | ((size_t)p[2] << 8) | p[3];
}

/* gRPC framing of one DATA chunk. Whole messages inside the chunk are delivered
 * straight from nghttp2's buffer; a split message is assembled in a message buffer of
 * exactly its size (the one copy), which the application may then keep.
 *
 * Flow control of a split message: its bytes are released as they arrive while the
 * application holds no delivered message unconsumed (so a message larger than the window
 * can complete), and kept unreleased otherwise (so a reader that falls behind stops the
 * sender: held messages + one window of the next one is all a stream buffers). Kept bytes
 * are released once the application consumed what it holds (do_consume). */
static int stream_in_data(h2_stream *st, const uint8_t *d, size_t len)
{
    h2_loop *L = st->conn->loop;
    size_t max = L->cfg.max_recv_message;
    int rv;
    st->unreleased += len;
    if (!st->user || st->in_err || st->in_ended) return stream_release(st, len);
    while (len) {
        if (st->plen == 0 && len >= 5) {
            size_t ml = be32(d + 1);
            if (ml > max) return stream_in_error(st, H2_STREAM_ERR_TOO_LARGE, ml);
            if (len >= ml + 5) {
                if ((rv = deliver(st, d, ml, 0)) != 0) return rv;
                d += ml + 5;
                len -= ml + 5;
                if (st->in_err || !st->user) return stream_release(st, st->unreleased);
                continue;
            }
        }
        bool in_prefix = st->plen < 5;
        size_t take;
        if (in_prefix) {
            take = 5 - st->plen;
            if (take > len) take = len;
            memcpy(st->pfx + st->plen, d, take);
            st->plen += take;
        } else {
            take = st->mlen - st->mgot;
            if (take > len) take = len;
            memcpy(blk_data(st->mblk) + 5 + st->mgot, d, take);
            st->mgot += take;
        }
        d += take;
        len -= take;
        LSTAT_ADD(L, inbound, take);
        if (st->held == 0) {
            st->pre += take;
            if ((rv = stream_release(st, take)) != 0) return rv;
        } else {
            st->deferred += take;
        }
        if (in_prefix && st->plen == 5) {
            st->mlen = be32(st->pfx + 1);
            if (st->mlen > max) return stream_in_error(st, H2_STREAM_ERR_TOO_LARGE, st->mlen);
            if (st->mlen > 0) {
                if (!(st->mblk = blk_get(L, st->mlen + 5))) return NGHTTP2_ERR_NOMEM;
                memcpy(blk_data(st->mblk), st->pfx, 5);
            }
        }
        if (st->plen == 5 && st->mgot == st->mlen) {
            if ((rv = deliver_assembled(st)) != 0) return rv;
            if (st->in_err || !st->user) return stream_release(st, st->unreleased);
        }
    }
    return 0;
}

/* Peer half-closed: report a truncated message, then on_end (once). */
static void stream_in_end(h2_stream *st)
{
    h2_loop *L = st->conn->loop;
    if (!st->user || st->in_ended) return;
    st->in_ended = true;
    if (!st->in_err && st->plen > 0) {
        size_t n = st->plen + st->mgot;
        (void)stream_in_error(st, H2_STREAM_ERR_TRUNCATED, n);
    }
    if (st->user && L->cb.on_end) L->cb.on_end(L->cb.ctx, st->user);
}

/* ============================================================ data source */

static inline bool op_is_last(const h2_op *op) { return op->ntrls || (op->flags & H2_SEND_END); }

/* End of the stream's data: submits the op's trailers (DATA without END_STREAM) or sets EOF. */
static int data_eof(nghttp2_session *s, int32_t sid, h2_op *op, uint32_t *flags)
{
    if (op->ntrls) {
        int rv = nghttp2_submit_trailer(s, sid, op->trls, op->ntrls);
        if (rv != 0) return nghttp2_is_fatal(rv) ? NGHTTP2_ERR_CALLBACK_FAILURE : NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        *flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
    } else {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    }
    return 0;
}

/* A large message at the head of the queue goes out with NO_COPY: the frame references the
 * message and send_data_cb queues it for writev (no copy in user space). Small messages
 * are copied into nghttp2's frame buffer, several per frame. */
static ssize_t data_read_cb(nghttp2_session *s, int32_t sid, uint8_t *buf, size_t len, uint32_t *flags,
                            nghttp2_data_source *src, void *ud)
{
    h2_stream *st = src->ptr;
    h2_conn *c = ud;
    h2_loop *L = c->loop;
    size_t n = 0;
    h2_op *op = st->oq_head;
    st->nc_pop_next = false;
    if (op && op->msg && op->msglen - op->msgoff >= H2_NOCOPY_MIN) {
        size_t r = op->msglen - op->msgoff;
        n = r < len ? r : len;
        if (n == r) {
            h2_op *end = op_is_last(op) ? op : NULL;
            if (!end && op->next && !op->next->msg && op_is_last(op->next)) end = op->next;
            if (end) {
                int rv = data_eof(s, sid, end, flags);
                if (rv != 0) return rv;
                st->nc_pop_next = end != op;
            }
        }
        *flags |= NGHTTP2_DATA_FLAG_NO_COPY;
        return (ssize_t)n;
    }
    while ((op = st->oq_head) != NULL) {
        if (op->msg && op->msgoff < op->msglen) {
            size_t k = op->msglen - op->msgoff;
            if (k > len - n) k = len - n;
            memcpy(buf + n, op->msg + op->msgoff, k);
            n += k;
            op->msgoff += k;
            if (op->msgoff < op->msglen) break; /* frame full */
        }
        bool last = op_is_last(op);
        if (last) {
            int rv = data_eof(s, sid, op, flags);
            if (rv != 0) return rv;
        }
        st->oq_head = op->next;
        if (!st->oq_head) st->oq_tail = NULL;
        op_release(c, op);
        if (last) break;
    }
    if (n) {
        LSTAT_SUB(L, outbound, n);
        if (st->user && L->cb.on_drain) L->cb.on_drain(L->cb.ctx, st->user, n);
    } else if (!(*flags & NGHTTP2_DATA_FLAG_EOF)) {
        st->data_deferred = true;
        return NGHTTP2_ERR_DEFERRED;
    }
    return (ssize_t)n;
}

static int out_copy(h2_conn *c, const uint8_t *p, size_t n);
static int out_ref(h2_conn *c, h2_op *op, const uint8_t *p, size_t n);
static bool out_full(const h2_conn *c);

/* The NO_COPY frame data_read_cb chose: its header is copied, its payload referenced. */
static int send_data_cb(nghttp2_session *s, nghttp2_frame *f, const uint8_t *framehd, size_t length,
                        nghttp2_data_source *src, void *ud)
{
    (void)s;
    h2_conn *c = ud;
    h2_loop *L = c->loop;
    h2_stream *st = src->ptr;
    h2_op *op = st->oq_head;
    if (!op || !op->msg || op->msglen - op->msgoff < length || f->data.padlen != 0) return NGHTTP2_ERR_CALLBACK_FAILURE;
    if (out_copy(c, framehd, 9) != 0 || out_ref(c, op, op->msg + op->msgoff, length) != 0)
        return NGHTTP2_ERR_CALLBACK_FAILURE; /* out of memory: the connection closes */
    op->msgoff += length;
    if (op->msgoff == op->msglen) {
        st->oq_head = op->next;
        if (st->nc_pop_next && st->oq_head) { /* the END-only op whose EOF this frame carries */
            h2_op *e = st->oq_head;
            st->oq_head = e->next;
            op_release(c, e);
        }
        if (!st->oq_head) st->oq_tail = NULL;
        op_release(c, op);
    }
    st->nc_pop_next = false;
    LSTAT_SUB(L, outbound, length);
    if (st->user && L->cb.on_drain) L->cb.on_drain(L->cb.ctx, st->user, length);
    return out_full(c) ? NGHTTP2_ERR_PAUSE : 0;
}

/* DATA frames of large messages are as large as the peer allows (up to H2_MAX_SEND_FRAME);
 * others keep nghttp2's 16 KiB. */
static ssize_t read_length_cb(nghttp2_session *s, uint8_t type, int32_t sid, int32_t swin, int32_t stwin,
                              uint32_t remote_max, void *ud)
{
    (void)type; (void)swin; (void)stwin;
    size_t want = 16384;
    if (((h2_conn *)ud)->nbig == 0) return (ssize_t)(want < remote_max ? want : remote_max); /* no lookup for small messages */
    h2_stream *st = nghttp2_session_get_stream_user_data(s, sid);
    h2_op *op = st ? st->oq_head : NULL;
    if (op && op->msg && op->msglen - op->msgoff >= H2_NOCOPY_MIN) {
        want = op->msglen - op->msgoff;
        if (want > H2_MAX_SEND_FRAME) want = H2_MAX_SEND_FRAME;
    }
    if (want > remote_max) want = remote_max;
    return (ssize_t)want;
}

/* ================================================== nghttp2 session callbacks */

static int on_begin_headers(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    h2_conn *c = ud;
    c->hlen = 0;
    c->hn = 0;
    c->hoverflow = false;
    if (f->hd.type != NGHTTP2_HEADERS || c->is_client || f->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
    h2_loop *L = c->loop;
    h2_id id = atomic_fetch_add_explicit(&L->next_id, 1, memory_order_relaxed);
    h2_stream *st = stream_new(c, id, false);
    if (!st) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* RST this stream only */
    st->sid = f->hd.stream_id;
    int rv = nghttp2_session_set_stream_user_data(s, st->sid, st);
    if (rv != 0) {
        stream_free(st);
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    return 0;
}

static int on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name, size_t namelen,
                     const uint8_t *value, size_t valuelen, uint8_t flags, void *ud)
{
    (void)s; (void)f; (void)flags;
    h2_conn *c = ud;
    size_t need = c->hlen + namelen + valuelen;
    if (need > H2_MAX_HEADER_BYTES) {
        c->hoverflow = true;
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* resets the stream */
    }
    if (need > c->hcap) {
        size_t nc = c->hcap ? c->hcap * 2 : 1024;
        while (nc < need) nc *= 2;
        uint8_t *nb = realloc(c->harena, nc);
        if (!nb) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        c->harena = nb;
        c->hcap = nc;
    }
    if (c->hn == c->hncap) {
        size_t nc = c->hncap ? c->hncap * 2 : 16;
        h2_nv *nv = realloc(c->hnv, nc * sizeof *nv);
        if (!nv) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        c->hnv = nv;
        c->hncap = nc;
    }
    /* Store offsets: the arena may move while the block grows. */
    h2_nv *e = &c->hnv[c->hn++];
    e->name = (const uint8_t *)(uintptr_t)c->hlen;
    e->namelen = namelen;
    memcpy(c->harena + c->hlen, name, namelen);
    c->hlen += namelen;
    e->value = (const uint8_t *)(uintptr_t)c->hlen;
    e->valuelen = valuelen;
    memcpy(c->harena + c->hlen, value, valuelen);
    c->hlen += valuelen;
    return 0;
}

/* Turns the stored offsets into pointers; valid until the next header block. */
static h2_nv *headers_fix(h2_conn *c)
{
    for (size_t i = 0; i < c->hn; i++) {
        c->hnv[i].name = c->harena + (uintptr_t)c->hnv[i].name;
        c->hnv[i].value = c->harena + (uintptr_t)c->hnv[i].value;
    }
    return c->hnv;
}

static int on_frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    h2_conn *c = ud;
    h2_loop *L = c->loop;
    switch (f->hd.type) {
    case NGHTTP2_HEADERS: {
        h2_stream *st = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
        size_t hn = c->hn;
        c->hn = 0;
        if (!st) return 0;
        bool end = (f->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
        if (!c->is_client) {
            if (f->headers.cat == NGHTTP2_HCAT_REQUEST) {
                void *user = NULL;
                if (L->cb.on_request) {
                    c->hn = hn;
                    h2_nv *nv = headers_fix(c);
                    c->hn = 0;
                    user = L->cb.on_request(L->cb.ctx, c->id, st->id, nv, hn, end ? H2_HEADERS_END_STREAM : 0);
                }
                if (!user) {
                    int rv = nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, st->sid, NGHTTP2_REFUSED_STREAM);
                    if (rv != 0 && nghttp2_is_fatal(rv)) return NGHTTP2_ERR_CALLBACK_FAILURE;
                    return 0;
                }
                stream_set_user(L, st, user);
            }
            /* Request trailers (rare in gRPC) are not reported; only their END_STREAM. */
        } else if (st->user) {
            /* Ignore 1xx informational responses. */
            bool info = !st->got_headers && hn > 0 && c->hnv[0].namelen == 7 &&
                        c->hnv[0].valuelen == 3 && memcmp(c->harena + (uintptr_t)c->hnv[0].name, ":status", 7) == 0 &&
                        c->harena[(uintptr_t)c->hnv[0].value] == '1';
            if (!info) {
                int fl = (end ? H2_HEADERS_END_STREAM : 0) | (st->got_headers ? H2_HEADERS_TRAILERS : 0);
                st->got_headers = true;
                if (L->cb.on_headers) {
                    c->hn = hn;
                    h2_nv *nv = headers_fix(c);
                    c->hn = 0;
                    L->cb.on_headers(L->cb.ctx, st->user, nv, hn, fl);
                }
            }
        }
        if (end) stream_in_end(st);
        return 0;
    }
    case NGHTTP2_DATA:
        if (f->hd.flags & NGHTTP2_FLAG_END_STREAM) {
            h2_stream *st = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
            if (st) stream_in_end(st);
        }
        return 0;
    case NGHTTP2_RST_STREAM:
        if (!c->is_client) {
            /* Rapid-reset guard (CVE-2023-44487): count only streams cancelled before any
             * response was submitted (the open+cancel flood); a client cancelling calls
             * that are already streaming responses is legitimate and not counted. A fixed
             * one-second window is enough to stop the flood. */
            h2_stream *rst = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
            if (rst == NULL || rst->resp_sent) return 0;
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
            if (ts.tv_sec != c->rst_sec) {
                c->rst_sec = ts.tv_sec;
                c->rst_n = 0;
            }
            if (++c->rst_n > H2_RST_LIMIT) {
                int rv = nghttp2_session_terminate_session(s, NGHTTP2_ENHANCE_YOUR_CALM);
                if (rv != 0 && nghttp2_is_fatal(rv)) return NGHTTP2_ERR_CALLBACK_FAILURE;
            }
        }
        return 0;
    case NGHTTP2_GOAWAY:
        c->goaway_recv = true;
        if (c->is_client && L->cb.on_conn)
            L->cb.on_conn(L->cb.ctx, c->id, H2_CONN_GOAWAY, (int)f->goaway.last_stream_id);
        return 0;
    default:
        return 0;
    }
}

static int on_data_chunk(nghttp2_session *s, uint8_t flags, int32_t sid, const uint8_t *data, size_t len,
                         void *ud)
{
    (void)flags; (void)ud;
    h2_stream *st = nghttp2_session_get_stream_user_data(s, sid);
    if (!st) {
        int rv = nghttp2_session_consume(s, sid, len);
        return (rv != 0 && nghttp2_is_fatal(rv)) ? NGHTTP2_ERR_CALLBACK_FAILURE : 0;
    }
    int rv = stream_in_data(st, data, len);
    if (rv == NGHTTP2_ERR_NOMEM) {
        /* Cannot buffer: give the bytes back and reset just this stream. */
        (void)stream_release(st, st->unreleased);
        st->in_err = true;
        rv = nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, sid, NGHTTP2_INTERNAL_ERROR);
    }
    return (rv != 0 && nghttp2_is_fatal(rv)) ? NGHTTP2_ERR_CALLBACK_FAILURE : 0;
}

static int on_stream_close(nghttp2_session *s, int32_t sid, uint32_t code, void *ud)
{
    (void)ud;
    h2_stream *st = nghttp2_session_get_stream_user_data(s, sid);
    if (!st) return 0;
    /* Bytes the app never consumed still hold the connection window. */
    if (st->unreleased) {
        int rv = nghttp2_session_consume_connection(s, st->unreleased);
        st->unreleased = 0;
        if (rv != 0 && nghttp2_is_fatal(rv)) return NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    stream_finish(st, code);
    return 0;
}

/* A server that has sent its whole response (END_STREAM) while the client is still
 * sending asks it to stop with RST_STREAM(NO_ERROR) (RFC 9113 8.1): the rest of the
 * request would only be discarded, and the stream would stay open until it ended. */
static int on_frame_send(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    h2_conn *c = ud;
    if (c->is_client || !(f->hd.flags & NGHTTP2_FLAG_END_STREAM)) return 0;
    if (f->hd.type != NGHTTP2_HEADERS && f->hd.type != NGHTTP2_DATA) return 0;
    h2_stream *st = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
    if (!st || st->in_ended) return 0;
    int rv = nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, f->hd.stream_id, NGHTTP2_NO_ERROR);
    return nghttp2_is_fatal(rv) ? NGHTTP2_ERR_CALLBACK_FAILURE : 0;
}

/* A request HEADERS that never left (GOAWAY, stream ids exhausted, reset before open):
 * nghttp2 opened no stream, so on_stream_close will not come. Rare: a list scan is fine. */
static int on_frame_not_send(nghttp2_session *s, const nghttp2_frame *f, int err, void *ud)
{
    (void)s; (void)err;
    h2_conn *c = ud;
    if (!c->is_client || f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
    if (nghttp2_session_get_stream_user_data(s, f->hd.stream_id)) return 0; /* opened: close cb comes */
    for (h2_stream *st = c->streams; st; st = st->next) {
        if (st->sid == f->hd.stream_id) {
            stream_finish(st, H2_CLOSE_REFUSED);
            break;
        }
    }
    return 0;
}

/* ============================================================ connections */

static void conn_mark(h2_conn *c)
{
    if (c->dirty || c->dead) return;
    c->dirty = true;
    c->dirty_next = c->loop->dirty;
    c->loop->dirty = c;
}

static int conn_epoll(h2_conn *c, int op, uint32_t ev)
{
    struct epoll_event e = {.events = ev, .data.ptr = c};
    return epoll_ctl(c->loop->epfd, op, c->fd, &e);
}

static int session_setup(h2_conn *c)
{
    h2_loop *L = c->loop;
    int rv = c->is_client ? nghttp2_session_client_new2(&c->sess, L->scb, c, L->opt)
                          : nghttp2_session_server_new2(&c->sess, L->scb, c, L->opt);
    if (rv != 0) {
        c->sess = NULL;
        return rv;
    }
    nghttp2_settings_entry iv[4];
    size_t n = 0;
    if (!c->is_client) iv[n++] = (nghttp2_settings_entry){NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, L->cfg.max_concurrent_streams};
    else iv[n++] = (nghttp2_settings_entry){NGHTTP2_SETTINGS_ENABLE_PUSH, 0};
    iv[n++] = (nghttp2_settings_entry){NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, L->cfg.initial_window};
    iv[n++] = (nghttp2_settings_entry){NGHTTP2_SETTINGS_MAX_FRAME_SIZE, L->cfg.max_frame_size};
    if ((rv = nghttp2_submit_settings(c->sess, NGHTTP2_FLAG_NONE, iv, n)) != 0) return rv;
    if (L->cfg.connection_window > NGHTTP2_INITIAL_CONNECTION_WINDOW_SIZE &&
        (rv = nghttp2_session_set_local_window_size(c->sess, NGHTTP2_FLAG_NONE, 0,
                                                    (int32_t)L->cfg.connection_window)) != 0)
        return rv;
    return 0;
}

static h2_conn *conn_new(h2_loop *L, h2_id id, int fd, bool is_client)
{
    h2_conn *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->kind = K_CONN;
    c->id = id;
    c->loop = L;
    c->fd = fd;
    c->is_client = is_client;
    if (session_setup(c) != 0 || h2_map_put(&L->map, id, c) != 0) {
        if (c->sess) nghttp2_session_del(c->sess);
        free(c);
        return NULL;
    }
    c->next = L->conns;
    if (L->conns) L->conns->prev = c;
    L->conns = c;
    LSTAT_ADD(L, connections, 1);
    return c;
}

/* Closes at once: fd closed, streams finished, session deleted. The struct stays on
 * the dead list until the end of the loop iteration (epoll events / flush list may
 * still point at it). Never called from inside an nghttp2 callback. */
static void conn_close(h2_conn *c, int err, uint32_t stream_code, bool failed)
{
    if (c->dead) return;
    h2_loop *L = c->loop;
    c->dead = true;
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
    while (c->streams) stream_finish(c->streams, stream_code);
    if (c->sess) nghttp2_session_del(c->sess);
    c->sess = NULL;
    h2_map_del(&L->map, c->id);
    if (c->prev)
        c->prev->next = c->next;
    else
        L->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    LSTAT_SUB(L, connections, 1);
    if (c->is_client && L->cb.on_conn)
        L->cb.on_conn(L->cb.ctx, c->id, failed ? H2_CONN_FAILED : H2_CONN_CLOSED, err);
    c->dead_next = L->dead;
    L->dead = c;
}

static void out_drop(h2_conn *c);

static void conn_free(h2_conn *c)
{
    out_drop(c);
    free(c->segs);
    free(c->wbuf);
    free(c->harena);
    free(c->hnv);
    free(c);
}

/* ---- output: copied bytes (wbuf) and referenced message bytes, in order ---- */

static int seg_push(h2_conn *c, h2_seg g)
{
    if (c->nseg == c->segcap) {
        size_t nc = c->segcap ? c->segcap * 2 : 16;
        h2_seg *ns = realloc(c->segs, nc * sizeof *ns);
        if (!ns) return -1;
        c->segs = ns;
        c->segcap = nc;
    }
    c->segs[c->nseg++] = g;
    return 0;
}

/* Appends a copy of n bytes. Returns 0 or -1 (out of memory). */
static int out_copy(h2_conn *c, const uint8_t *p, size_t n)
{
    if (n == 0) return 0;
    if (c->wlen + n > c->wcap) {
        size_t nc = c->wcap ? c->wcap : 16384;
        while (nc < c->wlen + n) nc *= 2;
        uint8_t *nb = realloc(c->wbuf, nc);
        if (!nb) return -1;
        c->wbuf = nb;
        c->wcap = nc;
    }
    h2_seg *last = c->nseg ? &c->segs[c->nseg - 1] : NULL;
    if (last && !last->op && last->off + last->len == c->wlen)
        last->len += n;
    else if (seg_push(c, (h2_seg){.op = NULL, .off = c->wlen, .len = n}) != 0)
        return -1;
    memcpy(c->wbuf + c->wlen, p, n);
    c->wlen += n;
    c->out_bytes += n;
    return 0;
}

/* Appends n message bytes of `op` by reference: the op stays alive until they are written. */
static int out_ref(h2_conn *c, h2_op *op, const uint8_t *p, size_t n)
{
    if (n == 0) return 0;
    if (seg_push(c, (h2_seg){.op = op, .p = p, .len = n}) != 0) return -1;
    op->segs++;
    c->out_bytes += n;
    return 0;
}

/* Enough queued for one write: copies are bounded tighter (they cost memory) than references. */
static bool out_full(const h2_conn *c)
{
    return c->wlen >= H2_WRITE_BATCH || c->out_bytes >= 16 * H2_WRITE_BATCH;
}

static void seg_done(h2_loop *L, h2_op *op)
{
    if (--op->segs == 0 && !op->queued) op_free(L, op);
}

/* Writes queued output. Returns 1 once all of it went out, 0 if the socket is full, -1 if
 * the connection was closed. */
static int out_write(h2_conn *c)
{
    h2_loop *L = c->loop;
    while (c->segi < c->nseg) {
        struct iovec iov[H2_MAX_IOV];
        size_t want = 0;
        int n = 0;
        for (size_t i = c->segi; i < c->nseg && n < H2_MAX_IOV; i++, n++) {
            const h2_seg *g = &c->segs[i];
            size_t skip = i == c->segi ? c->segoff : 0;
            const uint8_t *base = g->op ? g->p : c->wbuf + g->off;
            iov[n].iov_base = (void *)(uintptr_t)(base + skip);
            iov[n].iov_len = g->len - skip;
            want += g->len - skip;
        }
        struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)n};
        ssize_t w = sendmsg(c->fd, &mh, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
            conn_close(c, errno, H2_CLOSE_CONN_LOST, false);
            return -1;
        }
        size_t left = (size_t)w;
        while (left && c->segi < c->nseg) {
            h2_seg *g = &c->segs[c->segi];
            size_t rem = g->len - c->segoff;
            if (left < rem) {
                c->segoff += left;
                break;
            }
            left -= rem;
            c->segoff = 0;
            c->segi++;
            if (g->op) seg_done(L, g->op);
        }
        if ((size_t)w < want) return 0; /* short write: kernel buffer full */
    }
    return 1;
}

static void out_reset(h2_conn *c)
{
    c->nseg = c->segi = c->segoff = 0;
    c->wlen = 0;
    c->out_bytes = 0;
}

/* Drops unwritten output (the connection is gone), releasing the ops it references. */
static void out_drop(h2_conn *c)
{
    h2_loop *L = c->loop;
    for (size_t i = c->segi; i < c->nseg; i++)
        if (c->segs[i].op) seg_done(L, c->segs[i].op);
    out_reset(c);
}

/* One flush per touched connection and iteration: pull frames from nghttp2 (copies into
 * wbuf, large DATA payloads by reference), write them with one sendmsg. A socket that
 * would block keeps the rest and waits for EPOLLOUT; nghttp2 is not asked for more until
 * the output drained (bounded memory). */
static void conn_flush(h2_conn *c)
{
    if (c->dead || c->connecting) return;
    for (;;) {
        if (c->segi < c->nseg) {
            int r = out_write(c);
            if (r < 0) return;
            if (r == 0) break;
        }
        out_reset(c);
        while (!out_full(c)) {
            const uint8_t *p;
            ssize_t n = nghttp2_session_mem_send(c->sess, &p);
            if (n < 0) {
                conn_close(c, n == NGHTTP2_ERR_CALLBACK_FAILURE ? ENOMEM : EPROTO, H2_CLOSE_CONN_LOST, false);
                return;
            }
            if (n == 0) break; /* nothing more, or send_data_cb paused with enough queued */
            if (out_copy(c, p, (size_t)n) != 0) {
                conn_close(c, ENOMEM, H2_CLOSE_CONN_LOST, false);
                return;
            }
        }
        if (c->out_bytes == 0) break;
    }
    bool pending = c->segi < c->nseg;
    if (pending != c->want_out) {
        if (conn_epoll(c, EPOLL_CTL_MOD, EPOLLIN | (pending ? EPOLLOUT : 0)) != 0) {
            conn_close(c, errno, H2_CLOSE_CONN_LOST, false);
            return;
        }
        c->want_out = pending;
    }
    if (!pending) {
        if (c->wcap > 4 * H2_WRITE_BATCH) { /* shrink after a burst */
            free(c->wbuf);
            c->wbuf = NULL;
            c->wcap = 0;
        }
        if (c->segcap > 256) {
            free(c->segs);
            c->segs = NULL;
            c->segcap = 0;
        }
        /* GOAWAY done both ways and nothing in flight: nghttp2 is finished with it. */
        if (!nghttp2_session_want_read(c->sess) && !nghttp2_session_want_write(c->sess))
            conn_close(c, 0, H2_CLOSE_CONN_LOST, false);
    }
}

static void conn_read(h2_conn *c)
{
    h2_loop *L = c->loop;
    for (int i = 0; i < 4 && !c->dead; i++) {
        ssize_t n = recv(c->fd, L->rbuf, sizeof L->rbuf, 0);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) return;
            conn_close(c, errno, H2_CLOSE_CONN_LOST, false);
            return;
        }
        if (n == 0) {
            conn_close(c, 0, H2_CLOSE_CONN_LOST, false);
            return;
        }
        ssize_t rv = nghttp2_session_mem_recv(c->sess, L->rbuf, (size_t)n);
        if (rv < 0) {
            /* Malformed input or a flood: nghttp2 may have queued a GOAWAY; try to push
             * it out once, then drop the connection. */
            const uint8_t *p;
            ssize_t k = nghttp2_session_mem_send(c->sess, &p);
            if (k > 0) (void)send(c->fd, p, (size_t)k, MSG_NOSIGNAL | MSG_DONTWAIT);
            conn_close(c, EPROTO, H2_CLOSE_CONN_LOST, false);
            return;
        }
        conn_mark(c);
        if ((size_t)n < sizeof L->rbuf) return; /* drained for now */
    }
}

static void conn_connected(h2_conn *c)
{
    int err = 0;
    socklen_t sl = sizeof err;
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &sl) != 0) err = errno;
    if (err) {
        conn_close(c, err, H2_CLOSE_CONN_LOST, true);
        return;
    }
    c->connecting = false;
    if (conn_epoll(c, EPOLL_CTL_MOD, EPOLLIN) != 0) {
        conn_close(c, errno, H2_CLOSE_CONN_LOST, true);
        return;
    }
    c->want_out = false;
    h2_loop *L = c->loop;
    if (L->cb.on_conn) L->cb.on_conn(L->cb.ctx, c->id, H2_CONN_CONNECTED, 0);
    conn_mark(c);
}

static void conn_event(h2_conn *c, uint32_t ev)
{
    if (c->dead) return;
    if (c->connecting) {
        if (ev & (EPOLLOUT | EPOLLERR | EPOLLHUP)) conn_connected(c);
        return;
    }
    if (ev & (EPOLLIN | EPOLLERR | EPOLLHUP)) conn_read(c);
    if (!c->dead && (ev & EPOLLOUT)) conn_mark(c);
}

static void accept_all(h2_loop *L, h2_listener *ls)
{
    for (;;) {
        int fd = accept4(ls->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            return; /* EAGAIN, or EMFILE & co: level-triggered epoll retries later */
        }
        h2_net_tune(fd);
        h2_id id = atomic_fetch_add_explicit(&L->next_id, 1, memory_order_relaxed);
        h2_conn *c = conn_new(L, id, fd, false);
        if (!c) {
            close(fd);
            continue;
        }
        if (conn_epoll(c, EPOLL_CTL_ADD, EPOLLIN) != 0) {
            conn_close(c, errno, H2_CLOSE_CONN_LOST, false);
            continue;
        }
        conn_mark(c); /* send our SETTINGS */
    }
}

static void listeners_close(h2_loop *L)
{
    while (L->listeners) {
        h2_listener *ls = L->listeners;
        L->listeners = ls->next;
        close(ls->fd);
        free(ls);
    }
}

/* ==================================================================== op handlers */

static void *lookup(h2_loop *L, h2_id id, int kind)
{
    int *k = h2_map_get(&L->map, id);
    return (k && *k == kind) ? (void *)k : NULL;
}

static void conn_fatal_check(h2_conn *c, int rv)
{
    if (rv != 0 && nghttp2_is_fatal(rv)) conn_close(c, EPROTO, H2_CLOSE_CONN_LOST, false);
}

static void do_open(h2_loop *L, h2_op *op)
{
    h2_conn *c = lookup(L, op->id2, K_CONN);
    if (!c || !c->is_client || c->goaway_recv) {
        if (L->cb.on_close) L->cb.on_close(L->cb.ctx, op->user, H2_CLOSE_REFUSED);
        return;
    }
    h2_stream *st = stream_new(c, op->id, true);
    if (!st) {
        if (L->cb.on_close) L->cb.on_close(L->cb.ctx, op->user, H2_CLOSE_REFUSED);
        return;
    }
    stream_set_user(L, st, op->user);
    nghttp2_data_provider prd = {.source.ptr = st, .read_callback = data_read_cb};
    int32_t sid = nghttp2_submit_request(c->sess, NULL, op->hdrs, op->nhdrs, &prd, st);
    if (sid < 0) {
        stream_finish(st, H2_CLOSE_REFUSED);
        conn_fatal_check(c, sid);
        return;
    }
    st->sid = sid;
    conn_mark(c);
}

/* Returns true if the op was kept (queued on the stream). */
static bool do_send(h2_loop *L, h2_op *op)
{
    h2_stream *st = lookup(L, op->id, K_STREAM);
    if (!st || st->local_end) return false;
    h2_conn *c = st->conn;
    bool end = (op->flags & H2_SEND_END) || op->ntrls;
    if (!st->is_client && !st->resp_sent) {
        const nghttp2_nv *h = op->hdrs;
        size_t nh = op->nhdrs;
        bool tonly = false;
        if (nh && (op->flags & H2_SEND_END) && !op->msg && !op->ntrls) {
            tonly = true;
        } else if (!nh && !op->msg && op->ntrls) {
            h = op->trls; /* trailers with nothing before them: Trailers-Only */
            nh = op->ntrls;
            tonly = true;
        } else if (!nh) {
            /* A message before any response headers: an application bug. */
            st->local_end = true;
            conn_fatal_check(c, nghttp2_submit_rst_stream(c->sess, NGHTTP2_FLAG_NONE, st->sid, NGHTTP2_INTERNAL_ERROR));
            conn_mark(c);
            return false;
        }
        nghttp2_data_provider prd = {.source.ptr = st, .read_callback = data_read_cb};
        int rv = nghttp2_submit_response(c->sess, st->sid, h, nh, tonly ? NULL : &prd);
        if (rv != 0) {
            st->local_end = true;
            if (nghttp2_is_fatal(rv))
                conn_fatal_check(c, rv);
            else
                conn_fatal_check(c, nghttp2_submit_rst_stream(c->sess, NGHTTP2_FLAG_NONE, st->sid, NGHTTP2_INTERNAL_ERROR));
            conn_mark(c);
            return false;
        }
        st->resp_sent = true;
        conn_mark(c);
        if (tonly) {
            st->local_end = true;
            return false;
        }
    }
    if (!op->msg && !end) return false; /* headers only (or repeated headers: ignored) */
    op->next = NULL;
    op->queued = true;
    if (op->msg && op->msglen >= H2_NOCOPY_MIN) {
        op->big = true;
        c->nbig++;
    }
    if (st->oq_tail)
        st->oq_tail->next = op;
    else
        st->oq_head = op;
    st->oq_tail = op;
    if (op->msg) LSTAT_ADD(L, outbound, op->msglen);
    if (end) st->local_end = true;
    if (st->data_deferred) {
        st->data_deferred = false;
        int rv = nghttp2_session_resume_data(c->sess, st->sid);
        conn_fatal_check(c, rv);
    }
    conn_mark(c);
    return true;
}

static void do_consume(h2_loop *L, h2_op *op)
{
    h2_stream *st = lookup(L, op->id, K_STREAM);
    if (!st) return;
    size_t n = (size_t)op->arg;
    st->held -= n < st->held ? n : st->held;
    size_t d = n < st->advance ? n : st->advance;
    st->advance -= d;
    n -= d;
    if (st->held == 0 && st->deferred) { /* caught up: the message being assembled may continue */
        st->pre += st->deferred;
        n += st->deferred;
        st->deferred = 0;
    }
    if (n == 0) return;
    h2_conn *c = st->conn;
    int rv = stream_release(st, n);
    conn_fatal_check(c, rv);
    conn_mark(c);
}

static void do_connect(h2_loop *L, h2_op *op)
{
    int done = 0;
    int fd = h2_net_connect((struct sockaddr *)&op->addr, op->addrlen, &done);
    if (fd < 0) {
        if (L->cb.on_conn) L->cb.on_conn(L->cb.ctx, op->id, H2_CONN_FAILED, -fd);
        return;
    }
    h2_conn *c = conn_new(L, op->id, fd, true);
    if (!c) {
        close(fd);
        if (L->cb.on_conn) L->cb.on_conn(L->cb.ctx, op->id, H2_CONN_FAILED, ENOMEM);
        return;
    }
    c->connecting = true;
    if (conn_epoll(c, EPOLL_CTL_ADD, EPOLLOUT) != 0) {
        conn_close(c, errno, H2_CLOSE_CONN_LOST, true);
        return;
    }
    c->want_out = true;
    if (done) conn_connected(c);
}

static void do_goaway(h2_loop *L)
{
    listeners_close(L);
    for (h2_conn *c = L->conns, *next; c; c = next) {
        next = c->next; /* conn_close unlinks c */
        if (c->is_client) continue;
        int rv = nghttp2_submit_goaway(c->sess, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(c->sess),
                                       NGHTTP2_NO_ERROR, NULL, 0);
        conn_fatal_check(c, rv);
        conn_mark(c);
    }
}

static void do_listen(h2_loop *L, h2_op *op)
{
    int fd = (int)op->arg;
    h2_listener *ls = calloc(1, sizeof *ls);
    if (!ls) {
        close(fd);
        return;
    }
    ls->kind = K_LISTEN;
    ls->fd = fd;
    struct epoll_event e = {.events = EPOLLIN, .data.ptr = ls};
    if (epoll_ctl(L->epfd, EPOLL_CTL_ADD, fd, &e) != 0) {
        close(fd);
        free(ls);
        return;
    }
    ls->next = L->listeners;
    L->listeners = ls;
}

static void run_ops(h2_loop *L)
{
    h2_op *op = op_take_all(L);
    while (op) {
        h2_op *next = op->next;
        bool kept = false;
        switch (op->type) {
        case OP_SEND: kept = do_send(L, op); break;
        case OP_RESET: {
            h2_stream *st = lookup(L, op->id, K_STREAM);
            if (st && st->sid > 0) {
                st->local_end = true;
                conn_fatal_check(st->conn, nghttp2_submit_rst_stream(st->conn->sess, NGHTTP2_FLAG_NONE, st->sid,
                                                                     (uint32_t)op->arg));
                conn_mark(st->conn);
            }
            break;
        }
        case OP_CONSUME: do_consume(L, op); break;
        case OP_OPEN: do_open(L, op); break;
        case OP_CONNECT: do_connect(L, op); break;
        case OP_CLOSE_CONN: {
            h2_conn *c = lookup(L, op->id, K_CONN);
            if (c) conn_close(c, 0, H2_CLOSE_CONN_LOST, false);
            break;
        }
        case OP_GOAWAY: do_goaway(L); break;
        case OP_LISTEN: do_listen(L, op); break;
        case OP_RUN: op->run(op->run_ctx, op->user, 1); break;
        }
        if (!kept) op_free(L, op);
        op = next;
    }
}

/* Ops still queued when the loop stopped: honour the on_close / on_conn promises. */
static void drop_ops(h2_loop *L, h2_op *op)
{
    while (op) {
        h2_op *next = op->next;
        if (op->type == OP_OPEN && L->cb.on_close) L->cb.on_close(L->cb.ctx, op->user, H2_CLOSE_SHUTDOWN);
        if (op->type == OP_CONNECT && L->cb.on_conn) L->cb.on_conn(L->cb.ctx, op->id, H2_CONN_FAILED, ECANCELED);
        if (op->type == OP_LISTEN) close((int)op->arg);
        if (op->type == OP_RUN) op->run(op->run_ctx, op->user, 0);
        op_free(L, op);
        op = next;
    }
}

/* ==================================================================== the loop */

static void loop_teardown(h2_loop *L);
static void loop_release(h2_loop *L);
static void loop_join(h2_loop *L);

static void *loop_main(void *arg)
{
    h2_loop *L = arg;
    struct epoll_event evs[H2_MAX_EVENTS];
    int timeout = -1;
    while (!atomic_load_explicit(&L->stop_flag, memory_order_acquire)) {
        int n = epoll_wait(L->epfd, evs, H2_MAX_EVENTS, timeout);
        if (n < 0) {
            if (errno == EINTR) continue;
            break;
        }
        if (n == 0 && timeout > 0) { /* idle for H2_POOL_IDLE_MS: give memory back */
            pool_trim(L);
#ifdef __GLIBC__
            /* After a burst (e.g. thousands of cancelled streams) the freed blocks stay in
             * malloc's arenas and keep the RSS up; return them to the system once idle. */
            malloc_trim(0);
#endif
            L->active = false;
            timeout = queue_nonempty(L) ? 0 : -1;
            continue;
        }
        L->active = true;
        for (int i = 0; i < n; i++) {
            int kind = *(int *)evs[i].data.ptr;
            if (kind == K_WAKE) {
                uint64_t v;
                /* Read the eventfd before taking the queue so no wake-up is lost. */
                ssize_t r = read(L->evfd, &v, sizeof v);
                (void)r;
                run_ops(L);
            } else if (kind == K_LISTEN) {
                accept_all(L, evs[i].data.ptr);
            } else {
                conn_event(evs[i].data.ptr, evs[i].events);
            }
        }
        /* Ops posted from this thread (inline handlers answering, jobs scheduling
         * jobs) run now, so one flush carries them; bounded so sockets are not starved. */
        for (int round = 0; round < 8 && queue_nonempty(L); round++) run_ops(L);
        while (L->dirty) {
            h2_conn *c = L->dirty;
            L->dirty = c->dirty_next;
            c->dirty = false;
            conn_flush(c);
        }
        while (L->dead) {
            h2_conn *c = L->dead;
            L->dead = c->dead_next;
            conn_free(c);
        }
        /* Checked last: flushing runs callbacks (on_drain) that may post from this thread,
         * and such posts do not write the eventfd. After activity, wake once idle to trim. */
        timeout = queue_nonempty(L) ? 0 : (L->active || !pool_empty(L)) ? H2_POOL_IDLE_MS : -1;
    }
    if (L->teardown_on_exit) loop_teardown(L);
    if (L->free_on_exit) loop_release(L);
    return NULL;
}

/* ==================================================================== public API */

void h2_config_init(h2_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->max_recv_message = 4u << 20;
    cfg->max_concurrent_streams = 1000;
    cfg->initial_window = 1u << 20;
    cfg->connection_window = 16u << 20;
    cfg->max_frame_size = 16384;
}

h2_loop *h2_loop_create(const h2_config *cfg, const h2_callbacks *cb)
{
    h2_loop *L = calloc(1, sizeof *L);
    if (!L) return NULL;
    if (cfg)
        L->cfg = *cfg;
    else
        h2_config_init(&L->cfg);
    if (cb) L->cb = *cb;
    /* Clamp to what HTTP/2 allows. */
    if (L->cfg.initial_window > NGHTTP2_MAX_WINDOW_SIZE) L->cfg.initial_window = NGHTTP2_MAX_WINDOW_SIZE;
    if (L->cfg.connection_window > NGHTTP2_MAX_WINDOW_SIZE) L->cfg.connection_window = NGHTTP2_MAX_WINDOW_SIZE;
    if (L->cfg.max_frame_size < 16384) L->cfg.max_frame_size = 16384;
    if (L->cfg.max_frame_size > 16777215) L->cfg.max_frame_size = 16777215;
    if (L->cfg.max_recv_message > UINT32_MAX) L->cfg.max_recv_message = UINT32_MAX;
    atomic_init(&L->next_id, 1);
    atomic_init(&L->stop_flag, false);
    L->wake_kind = K_WAKE;
    L->epfd = L->evfd = -1;
    int e = 0;
    if (pthread_mutex_init(&L->qlock, NULL) != 0) {
        free(L);
        errno = ENOMEM;
        return NULL;
    }
    if (pthread_mutex_init(&L->plock, NULL) != 0) {
        pthread_mutex_destroy(&L->qlock);
        free(L);
        errno = ENOMEM;
        return NULL;
    }
    if (h2_map_init(&L->map, 1024) != 0) { e = ENOMEM; goto fail; }
    if ((L->epfd = epoll_create1(EPOLL_CLOEXEC)) < 0) { e = errno; goto fail; }
    if ((L->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0) { e = errno; goto fail; }
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &L->wake_kind};
    if (epoll_ctl(L->epfd, EPOLL_CTL_ADD, L->evfd, &ev) != 0) { e = errno; goto fail; }
    if (nghttp2_session_callbacks_new(&L->scb) != 0) { e = ENOMEM; goto fail; }
    nghttp2_session_callbacks_set_on_begin_headers_callback(L->scb, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(L->scb, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(L->scb, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(L->scb, on_data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(L->scb, on_stream_close);
    nghttp2_session_callbacks_set_on_frame_not_send_callback(L->scb, on_frame_not_send);
    nghttp2_session_callbacks_set_on_frame_send_callback(L->scb, on_frame_send);
    nghttp2_session_callbacks_set_send_data_callback(L->scb, send_data_cb);
    nghttp2_session_callbacks_set_data_source_read_length_callback(L->scb, read_length_cb);
    if (nghttp2_option_new(&L->opt) != 0) { e = ENOMEM; goto fail; }
    nghttp2_option_set_no_auto_window_update(L->opt, 1);
    /* A server session would keep every closed stream (object and place in RFC 7540's
     * priority tree, which gRPC does not use) until up to max_concurrent_streams later
     * ones closed: a busy connection cycled through ~1000 cold stream objects. */
    nghttp2_option_set_no_closed_streams(L->opt, 1);
    /* nghttp2's own reset limiter (burst 1000, then 33/s) counts every RST_STREAM, so a
     * client cancelling calls that are already streaming trips it. The shim's guard (see
     * on_frame_recv) counts only streams reset before any response; keep nghttp2's as a
     * loose backstop. */
    nghttp2_option_set_stream_reset_rate_limit(L->opt, 100000, 100000);
    return L;
fail:
    if (L->scb) nghttp2_session_callbacks_del(L->scb);
    if (L->evfd >= 0) close(L->evfd);
    if (L->epfd >= 0) close(L->epfd);
    h2_map_free(&L->map);
    pthread_mutex_destroy(&L->qlock);
    pthread_mutex_destroy(&L->plock);
    free(L);
    errno = e;
    return NULL;
}

int h2_listen(h2_loop *loop, const char *host, uint16_t port, uint16_t *bound_port)
{
    int fd = h2_net_listen(host, port, (int)loop->cfg.reuse_port, bound_port);
    if (fd < 0) return fd;
    h2_op *op = op_new(loop, OP_LISTEN, 0, NULL, 0, 0, NULL, 0, 0, NULL, 0);
    if (!op) {
        close(fd);
        return -ENOMEM;
    }
    op->arg = (uint64_t)fd;
    if (op_post(loop, op) != 0) {
        close(fd);
        op_free(loop, op);
        return -ESHUTDOWN;
    }
    return 0;
}

int h2_loop_start(h2_loop *loop)
{
    pthread_mutex_lock(&loop->qlock);
    bool bad = loop->started || loop->stopped;
    loop->started = true;
    pthread_mutex_unlock(&loop->qlock);
    if (bad) return -EINVAL;
    int rv = pthread_create(&loop->thread, NULL, loop_main, loop);
    if (rv != 0) {
        pthread_mutex_lock(&loop->qlock);
        loop->started = false;
        pthread_mutex_unlock(&loop->qlock);
        return -rv;
    }
    return 0;
}

void h2_loop_goaway(h2_loop *loop)
{
    h2_op *op = op_new(loop, OP_GOAWAY, 0, NULL, 0, 0, NULL, 0, 0, NULL, 0);
    if (op && op_post(loop, op) != 0) op_free(loop, op);
}

/* Whether the caller runs on the loop's own thread (inside one of its callbacks). */
static bool on_loop_thread(const h2_loop *L)
{
    return L->started && pthread_equal(pthread_self(), L->thread);
}

void h2_loop_stop(h2_loop *L)
{
    pthread_mutex_lock(&L->qlock);
    bool already = L->stopped, started = L->started;
    L->stopped = true;
    pthread_mutex_unlock(&L->qlock);
    if (already) return;
    if (started) {
        atomic_store_explicit(&L->stop_flag, true, memory_order_release);
        /* From a callback: the loop ends after this iteration and tears itself down. */
        if (on_loop_thread(L)) {
            L->teardown_on_exit = true;
            return;
        }
        loop_join(L);
    }
    loop_teardown(L);
}

/* Wakes the stopping loop and waits for its thread to end (once). */
static void loop_join(h2_loop *L)
{
    if (L->joined) return;
    uint64_t one = 1;
    ssize_t r = write(L->evfd, &one, sizeof one);
    (void)r;
    pthread_join(L->thread, NULL);
    L->joined = true;
}

/* After the loop thread is gone (or on it, as it exits): everything left is closed. */
static void loop_teardown(h2_loop *L)
{
    drop_ops(L, op_take_all(L));
    listeners_close(L);
    while (L->conns) conn_close(L->conns, 0, H2_CLOSE_SHUTDOWN, false);
    L->dirty = NULL;
    while (L->dead) {
        h2_conn *c = L->dead;
        L->dead = c->dead_next;
        conn_free(c);
    }
}

static void loop_release(h2_loop *L)
{
    nghttp2_session_callbacks_del(L->scb);
    nghttp2_option_del(L->opt);
    close(L->evfd);
    close(L->epfd);
    h2_map_free(&L->map);
    pthread_mutex_destroy(&L->qlock);
    pool_trim(L);
    pthread_mutex_destroy(&L->plock);
    free(L);
}

void h2_loop_destroy(h2_loop *L)
{
    if (!L) return;
    h2_loop_stop(L);
    if (on_loop_thread(L)) {
        /* The owner is gone: no callback may reach it again. The thread finishes its
         * iteration, then tears down and frees the loop (see loop_main). */
        memset(&L->cb, 0, sizeof L->cb);
        L->free_on_exit = true;
        L->joined = true;
        pthread_detach(L->thread);
        return;
    }
    if (L->started) loop_join(L); /* stopped from a callback earlier: let it finish first */
    loop_release(L);
}

h2_id h2_connect(h2_loop *loop, const char *host, uint16_t port)
{
    struct sockaddr_storage ss;
    socklen_t sl = 0;
    int rv = h2_net_resolve(host, port, &ss, &sl);
    if (rv < 0) {
        errno = -rv;
        return 0;
    }
    h2_id id = atomic_fetch_add_explicit(&loop->next_id, 1, memory_order_relaxed);
    h2_op *op = op_new(loop, OP_CONNECT, id, NULL, 0, 0, NULL, 0, 0, NULL, 0);
    if (!op) return 0;
    memcpy(&op->addr, &ss, sl);
    op->addrlen = sl;
    if (op_post(loop, op) != 0) {
        op_free(loop, op);
        errno = ESHUTDOWN;
        return 0;
    }
    return id;
}

void h2_conn_close(h2_loop *loop, h2_id conn)
{
    h2_op *op = op_new(loop, OP_CLOSE_CONN, conn, NULL, 0, 0, NULL, 0, 0, NULL, 0);
    if (op && op_post(loop, op) != 0) op_free(loop, op);
}

h2_id h2_open_stream(h2_loop *loop, h2_id conn, void *user, const h2_nv *headers, size_t nheaders)
{
    h2_id id = atomic_fetch_add_explicit(&loop->next_id, 1, memory_order_relaxed);
    h2_op *op = op_new(loop, OP_OPEN, id, headers, nheaders, 0, NULL, 0, 0, NULL, 0);
    if (op) {
        op->id2 = conn;
        op->user = user;
        if (op_post(loop, op) == 0) return id;
        op_free(loop, op);
    }
    /* on_close is guaranteed: report the refusal right here (the caller's thread). */
    if (loop->cb.on_close) loop->cb.on_close(loop->cb.ctx, user, H2_CLOSE_REFUSED);
    return 0;
}

int h2_send(h2_loop *loop, h2_id stream, const h2_nv *headers, size_t nheaders, int has_msg, const uint8_t *msg,
            size_t msglen, const h2_nv *trailers, size_t ntrailers, int flags)
{
    h2_op *op = op_new(loop, OP_SEND, stream, headers, nheaders, has_msg, msg, msglen, flags & H2_SEND_COMPRESSED,
                       trailers, ntrailers);
    if (!op) return -1;
    op->flags = flags;
    if (op_post(loop, op) != 0) {
        op_free(loop, op);
        return -1;
    }
    return 0;
}

static inline h2_op *buf_op(uint8_t *buf) { return (h2_op *)(buf - 5 - OP_BASE); }

uint8_t *h2_buf_alloc(h2_loop *loop, size_t len)
{
    if (len > UINT32_MAX) {
        errno = EMSGSIZE;
        return NULL;
    }
    h2_op *op = blk_get(loop, len + 5);
    if (!op) {
        errno = ENOMEM;
        return NULL;
    }
    op->type = OP_SEND;
    op->msg = blk_data(op);
    return op->msg + 5;
}

int h2_send_buf(h2_loop *loop, h2_id stream, uint8_t *buf, size_t len, int flags)
{
    if (!buf) return -1;
    h2_op *op = buf_op(buf);
    if (len > op->cap - 5) {
        op_free(loop, op);
        return -1;
    }
    uint8_t *s = op->msg;
    s[0] = (flags & H2_SEND_COMPRESSED) ? 1 : 0;
    s[1] = (uint8_t)(len >> 24);
    s[2] = (uint8_t)(len >> 16);
    s[3] = (uint8_t)(len >> 8);
    s[4] = (uint8_t)len;
    op->msglen = len + 5;
    op->id = stream;
    op->flags = flags;
    if (op_post(loop, op) != 0) {
        op_free(loop, op);
        return -1;
    }
    return 0;
}

void h2_buf_free(h2_loop *loop, uint8_t *buf)
{
    if (buf) op_free(loop, buf_op(buf));
}

void h2_reset(h2_loop *loop, h2_id stream, uint32_t error_code)
{
    h2_op *op = op_new(loop, OP_RESET, stream, NULL, 0, 0, NULL, 0, 0, NULL, 0);
    if (!op) return;
    op->arg = error_code;
    if (op_post(loop, op) != 0) op_free(loop, op);
}

void h2_consume(h2_loop *loop, h2_id stream, size_t bytes)
{
    if (bytes == 0) return;
    h2_op *op = op_new(loop, OP_CONSUME, stream, NULL, 0, 0, NULL, 0, 0, NULL, 0);
    if (!op) return;
    op->arg = bytes;
    if (op_post(loop, op) != 0) op_free(loop, op);
}

void h2_loop_stats(h2_loop *L, h2_stats *out)
{
    out->connections = atomic_load_explicit(&L->st.connections, memory_order_relaxed);
    out->streams = atomic_load_explicit(&L->st.streams, memory_order_relaxed);
    out->inbound_buffered = atomic_load_explicit(&L->st.inbound, memory_order_relaxed);
    out->outbound_buffered = atomic_load_explicit(&L->st.outbound, memory_order_relaxed);
    out->streams_total = atomic_load_explicit(&L->st.streams_total, memory_order_relaxed);
    out->pooled = atomic_load_explicit(&L->st.pooled, memory_order_relaxed);
}

int h2_loop_run(h2_loop *loop, h2_run_fn fn, void *ctx, void *arg)
{
    h2_op *op = calloc(1, sizeof *op);
    if (!op) return -1;
    op->type = OP_RUN;
    op->run = fn;
    op->run_ctx = ctx;
    op->user = arg;
    if (op_post(loop, op) != 0) {
        op_free(loop, op);
        return -1;
    }
    return 0;
}

int h2_loop_is_current(h2_loop *loop)
{
    return loop->started && pthread_equal(pthread_self(), loop->thread);
}
