/*
 * The loop (private): one epoll thread owning its connections. Its state is split by who
 * may touch it:
 *   h2_loop_shared  any thread, under shared.lock: the posted-command queue and the
 *                   started/stopped/wake flags;
 *   h2_loop_local   the loop thread only (and h2_loop_stop's thread once it joined the
 *                   loop thread): the token map, connections, flush and dead lists,
 *                   listeners, the read buffer.
 * The rest of h2_loop is set before the thread starts and then only read, or is atomic
 * (counters, token counter, stop flag), or has its own lock (the buffer pool).
 */
#ifndef H2_LOOP_H
#define H2_LOOP_H

#include "h2_cmd.h"
#include "h2_conn.h"
#include "h2_connlim.h"
#include "h2_map.h"
#include "h2_msgbuf.h"
#include "h2shim.h"

#include <nghttp2/nghttp2.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#define H2_READ_BUF (64 * 1024)
#define H2_POOL_IDLE_MS 1000 /* the pool is emptied (and malloc trimmed) after this long without any event */
#define H2_MAX_EVENTS 256
/* Streams whose send, reset or window update could not be allocated, waiting for the loop
 * to reset them (INTERNAL_ERROR): a call whose command was lost ends instead of hanging. */
#define H2_DOOMED_MAX 256

typedef struct h2_loop_shared {
    pthread_mutex_t lock;
    h2_cmdq cmds;      /* posted commands, in order */
    bool wake_pending; /* the eventfd was written (or the loop thread posted) since the queue was taken */
    bool started;      /* h2_loop_start ran. Also read unlocked by h2_loop_on_thread: on the loop
                        * thread it is certainly set (before the thread was created), and any
                        * other thread gets `false` from the thread comparison either way. */
    bool stopped;      /* h2_loop_stop ran: posting fails */
    uint32_t ndoomed;  /* streams in `doomed` */
    bool doomed_overflow; /* a stream could not be noted: every stream of the loop is reset */
    h2_id doomed[H2_DOOMED_MAX];
} h2_loop_shared;

typedef struct h2_loop_local {
    h2_map map;        /* token -> h2_conn / h2_stream */
    h2_conn *conns;
    h2_conn *dirty;    /* to flush at the end of this iteration */
    h2_conn *dead;     /* to free at the end of this iteration */
    h2_conn *lingering; /* closed, their sockets linger (h2_linger.h) */
    h2_listener *listeners;
    /* connection limits and timers (h2_timer.h) */
    int64_t now;           /* h2_now_ms() after this iteration's epoll_wait */
    int64_t next_tick;     /* when server connections' deadlines are checked next; 0 = not armed */
    int64_t accept_resume; /* listeners paused (accept failed) until then */
    uint32_t tick_ms;      /* h2_tick_ms of the configured timeouts */
    uint32_t nserver;      /* open server connections of this loop */
    bool accept_paused;
    /* partially received messages (h2_stream.h) */
    size_t assembling;                          /* bytes in the streams' deframers */
    struct h2_stream *waiters_head, *waiters_tail; /* streams whose window waits for the budget */
    bool budget_freed;                          /* assembling went down while streams wait */
    /* The one waiter allowed past the budget until its message is whole, so partial messages
     * never deadlock each other; it loses the favour at a tick without progress. */
    struct h2_stream *favoured;
    bool favoured_progressed;
    uint32_t ka_time_ms;   /* client connections' keepalive time: keepalive_time_ms, doubled after each
                            * GOAWAY "too_many_pings" from the server (grpc's client does the same) */
    h2_framecache frames;  /* closed sessions' frame buffer mappings, for the next ones (h2_sessmem.h) */
    int reserve_fd;        /* held so that at the fd limit one can be freed to accept-and-close; -1 = none */
    /* Stopped or destroyed from one of its own callbacks (the last owner went away on the
     * loop thread): the thread cannot join itself, so it tears the loop down (and frees
     * it) on its way out. `joined`: the thread is gone or detached. */
    bool teardown_on_exit, free_on_exit, joined;
    uint8_t rbuf[H2_READ_BUF];
} h2_loop_local;

struct h2_loop {
    /* set before the thread starts, then read-only (cb is cleared by h2_loop_destroy
     * called from a callback, on the loop thread) */
    h2_config cfg;
    h2_callbacks cb;
    h2_log_fn log_fn; /* h2_loop_set_log */
    void *log_ctx;
    int epfd;
    int evfd;
    int wake_kind; /* epoll tag of the eventfd (H2_OBJ_WAKE) */
    h2_connlim *lim; /* connection caps, maybe shared with other loops (own lock) */
    pthread_t thread;
    nghttp2_session_callbacks *scb;
    nghttp2_option *opt;
    /* atomic */
    atomic_bool stop_flag;
    atomic_uint_fast64_t next_id;
    struct {
        atomic_uint_fast64_t connections, streams, inbound, outbound, streams_total;
        /* connection limits */
        atomic_uint_fast64_t conns_rejected, conns_shed, handshake_timeouts, idle_goaways, accept_pauses;
        /* partial messages */
        atomic_uint_fast64_t assembling_waits, assembling_busy;
        /* keepalive and lifetimes */
        atomic_uint_fast64_t keepalive_pings, keepalive_timeouts, ping_strike_goaways, age_goaways;
    } st;
    h2_bufpool pool; /* own lock */
    h2_loop_shared shared;
    h2_loop_local local;
};

/* Counters only the loop thread writes (or h2_loop_stop's thread, once it joined the
 * loop): a relaxed load and store, no locked read-modify-write per stream event. */
#define LSTAT_ADD(L, f, n) \
    atomic_store_explicit(&(L)->st.f, atomic_load_explicit(&(L)->st.f, memory_order_relaxed) + (n), memory_order_relaxed)
#define LSTAT_SUB(L, f, n) \
    atomic_store_explicit(&(L)->st.f, atomic_load_explicit(&(L)->st.f, memory_order_relaxed) - (n), memory_order_relaxed)

static inline h2_id h2_loop_new_id(h2_loop *L)
{
    return atomic_fetch_add_explicit(&L->next_id, 1, memory_order_relaxed);
}

/* Frees a command of any kind (message buffers go back to the pool). */
void h2_cmd_free(h2_loop *L, h2_cmd *c);
/* Queues a command; wakes the loop only on the 0→1 edge of wake_pending. Returns -1
 * (command untouched, caller frees) if the loop is stopped. Any thread. */
int h2_loop_post(h2_loop *L, h2_cmd *c);
/* A command for `stream` could not be allocated (or was refused): the loop resets the
 * stream (INTERNAL_ERROR) so that its call ends. Allocates nothing. Any thread. */
void h2_loop_doom_stream(h2_loop *L, h2_id stream);
/* Creates the loop's resources (cfg, cb already set). 0 or errno; on failure frees what it made. */
int h2_loop_init(h2_loop *L);
int h2_loop_start_thread(h2_loop *L);
/* Whether the caller runs on the loop's own thread. */
bool h2_loop_on_thread(const h2_loop *L);
/* Wakes the stopping loop and waits for its thread to end (once). */
void h2_loop_join(h2_loop *L);
/* After the loop thread is gone (or on it, as it exits): everything left is closed. */
void h2_loop_teardown(h2_loop *L);
/* Frees the loop's resources and the loop. */
void h2_loop_release(h2_loop *L);
void h2_listeners_close(h2_loop *L);
/* Accept failed (fd limit, no memory): stop polling the listeners for H2_ACCEPT_BACKOFF_MS. */
void h2_loop_pause_accept(h2_loop *L);
/* A server connection was opened: make sure the tick runs. */
void h2_loop_arm_tick(h2_loop *L);
/* A log line for connection `conn` (printf format), through the loop's log function if any. */
void h2_loop_log(h2_loop *L, h2_id conn, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
