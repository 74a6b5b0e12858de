/*
 * h2shim — the narrow C API between libnghttp2 and the Swift RPC core (H2RPC).
 *
 * One h2_loop = one epoll event loop on its own thread. The loop thread owns every
 * socket and every nghttp2 session (server and client connections alike). Other
 * threads never touch a session: they post operations (h2_send, h2_reset, ...) into a
 * mutex-protected queue and wake the loop through an eventfd (one wake-up per burst).
 * All callbacks run on the loop thread and must not block.
 *
 * gRPC message framing (1-byte flag + 4-byte big-endian length) is done here: the
 * application receives whole messages and sends whole messages.
 *
 * Flow control reflects what the application consumed: automatic window updates are
 * off. Bytes of a complete message count as consumed only when the application says so
 * (the return value of on_message, or h2_consume later). Bytes of a partial message are
 * consumed as they are buffered while the application holds no unconsumed message of the
 * stream (so a message larger than the window can complete), and only once it caught up
 * otherwise (so a stream buffers at most its held messages plus one window). Bytes of a
 * stream the application no longer reads (after an error or reset) are consumed at once.
 *
 * No global state. Every handle is a 64-bit token that is never reused during the
 * life of a loop, so an operation that arrives after its stream or connection is gone
 * is dropped safely.
 */
#ifndef H2SHIM_H
#define H2SHIM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct h2_loop h2_loop;

/** A stream or connection token; 0 means none. Never reused within one loop. */
typedef uint64_t h2_id;

/** One header field. Not NUL-terminated. */
typedef struct h2_nv {
    const uint8_t *name;
    size_t namelen;
    const uint8_t *value;
    size_t valuelen;
} h2_nv;

/* flags of on_headers */
#define H2_HEADERS_END_STREAM 0x1 /* the peer half-closed with this HEADERS frame */
#define H2_HEADERS_TRAILERS 0x2   /* a second HEADERS block (trailers) */

/* kinds of on_stream_error: the inbound message stream is broken; no more on_message
 * calls follow for this stream (its remaining inbound bytes are discarded). */
#define H2_STREAM_ERR_TOO_LARGE 1 /* detail = declared message length */
#define H2_STREAM_ERR_TRUNCATED 2 /* END_STREAM in the middle of a message; detail = bytes buffered */
#define H2_STREAM_ERR_BUSY 3      /* the loop holds too many bytes of partial messages (h2_config.max_partial_bytes); detail = the limit */

/* events of on_conn (client connections) */
#define H2_CONN_CONNECTED 1 /* TCP connected (TLS: handshake done, ALPN h2), HTTP/2 preface sent */
#define H2_CONN_FAILED 2    /* connect (or the TLS handshake: EPROTO) failed; detail = errno; the connection
                             * is gone (reported before its streams' on_close(H2_CLOSE_CONN_LOST)) */
#define H2_CONN_GOAWAY 3    /* peer sent GOAWAY; detail = last stream id; open no new streams */
#define H2_CONN_CLOSED 4    /* connection closed (detail = errno or 0); the token is dead */

/* on_close codes above the HTTP/2 error code range */
#define H2_CLOSE_CONN_LOST 0x1000  /* the connection dropped (or failed) under the stream */
#define H2_CLOSE_SHUTDOWN 0x1001   /* the loop stopped with the stream still open */
#define H2_CLOSE_REFUSED 0x1002    /* a client stream could not be opened (conn dead, GOAWAY, nghttp2 refused) */
#define H2_CLOSE_HEADERS_TOO_LARGE 0x1003 /* a received header block was over max_header_count or
                                           * max_header_list_size: the stream was reset (INTERNAL_ERROR) */

/* flags of h2_send */
#define H2_SEND_END 0x1        /* end the stream after what this call sends */
#define H2_SEND_COMPRESSED 0x2 /* set the compressed flag of the message */

typedef struct h2_callbacks {
    /** Passed back to every callback. */
    void *ctx;

    /**
     * Server: a new request's header block is complete. `stream` and `conn` are its
     * tokens. Returns the application's pointer for the stream (passed to every later
     * callback of this stream), or NULL to have the shim reset it (REFUSED_STREAM).
     */
    void *(*on_request)(void *ctx, h2_id conn, h2_id stream, const h2_nv *nv, size_t nvlen, int flags);

    /**
     * Client: response headers, or trailers (H2_HEADERS_TRAILERS). A Trailers-Only
     * response arrives as one block with H2_HEADERS_END_STREAM and without the TRAILERS flag.
     */
    void (*on_headers)(void *ctx, void *user, const h2_nv *nv, size_t nvlen, int flags);

    /**
     * One complete inbound message. `data` is valid only during the call. Returns how
     * many of `len` + 5 bytes the application consumed now (0 or len + 5); the rest must be
     * released later with h2_consume, or the peer's window stays closed.
     */
    size_t (*on_message)(void *ctx, void *user, int compressed, const uint8_t *data, size_t len);

    /**
     * Optional. One complete inbound message that the shim assembled from several DATA
     * chunks, handed over with its buffer instead of being copied: `buf` (`len` bytes)
     * now belongs to the application, which releases it with h2_buf_free (from any
     * thread, before h2_loop_destroy). Returns as on_message. When NULL, such messages go
     * to on_message and the shim keeps their buffers. Messages that arrive whole inside
     * one DATA chunk always go to on_message.
     */
    size_t (*on_message_buf)(void *ctx, void *user, int compressed, uint8_t *buf, size_t len);

    /** The peer half-closed the stream (END_STREAM on DATA; or on HEADERS for server streams). */
    void (*on_end)(void *ctx, void *user);

    /** The inbound message stream is broken (see H2_STREAM_ERR_*). */
    void (*on_stream_error)(void *ctx, void *user, int kind, size_t detail);

    /**
     * `bytes` of queued outbound message data (prefix included) were handed to the
     * socket: the application may lower its count of in-flight bytes.
     */
    void (*on_drain)(void *ctx, void *user, size_t bytes);

    /**
     * The stream is gone: closed by either side (`code` = HTTP/2 error code, 0 =
     * NO_ERROR), or H2_CLOSE_*. Called exactly once for every stream that had a user
     * pointer; the application releases it here. No callback for this stream follows.
     * A server stream the peer reset with NO_ERROR reports CANCEL (0x8): the client left the
     * call unfinished either way, and the application must stop serving it.
     */
    void (*on_close)(void *ctx, void *user, uint32_t code);

    /** Client connection events (H2_CONN_*). */
    void (*on_conn)(void *ctx, h2_id conn, int event, int detail);
} h2_callbacks;

typedef struct h2_config {
    /** Largest inbound message (payload bytes); larger → H2_STREAM_ERR_TOO_LARGE. Default 4 MiB. */
    size_t max_recv_message;
    /** SETTINGS_MAX_CONCURRENT_STREAMS advertised by server sessions; excess → REFUSED_STREAM. Default 1000. */
    uint32_t max_concurrent_streams;
    /** SETTINGS_INITIAL_WINDOW_SIZE (per stream). Default 1 MiB. */
    uint32_t initial_window;
    /** Connection-level receive window. Default 16 MiB. */
    uint32_t connection_window;
    /** SETTINGS_MAX_FRAME_SIZE advertised: the largest frame a peer may send us. Default 16384.
     * (Outbound DATA frames of large messages are as large as the peer allows, up to 256 KiB.) */
    uint32_t max_frame_size;

    /* -- HTTP/2 stream and header limits (0 in any of these = its default) -- */
    /** SETTINGS_MAX_HEADER_LIST_SIZE advertised, and enforced on every received header block:
     * the sum over its fields of name + value + 32 bytes (RFC 7541 4.1). Default 16 KiB (grpc's);
     * at most 256 KiB. See max_header_count for what happens to a block over it. */
    uint32_t max_header_list_size;
    /** Most fields (pseudo-headers included) in one received header block. Default 100. Fields
     * past either limit are not copied; a request over it is answered at once (Trailers-Only,
     * grpc-status 8 RESOURCE_EXHAUSTED, never reaching on_request); any other block over it
     * resets its stream (on_close(H2_CLOSE_HEADERS_TOO_LARGE)). */
    uint32_t max_header_count;
    /** Server rapid-reset guard (CVE-2023-44487), a token bucket per connection: every
     * RST_STREAM the peer sends takes a token; `rst_burst` tokens at most, `rst_rate` come back
     * each second; a reset that finds none → GOAWAY ENHANCE_YOUR_CALM and the connection
     * closes. Defaults 1000 and 100 (nghttp2's own limiter stays on behind it at twice both). */
    uint32_t rst_burst;
    uint32_t rst_rate;
    /* -- end of the stream and header limits -- */

    /** 1 = listen with SO_REUSEPORT, so several loops can serve one port. Default 0. */
    uint32_t reuse_port;

    /* Connection limits (server connections; see the README's "Limits: connections"). */
    /** Most server connections open at once (across the loops that share limits, see
     * h2_loop_share_limits); further ones are accepted and closed at once. 0 (default) =
     * automatic: min(10000, the soft RLIMIT_NOFILE less a quarter of it, and at least 64
     * less, left for the application's files). */
    uint32_t max_connections;
    /** Most server connections from one peer address (an IPv4 address, or an IPv6 /64);
     * further ones are accepted and closed at once. 0 = no per-address cap. Default 1000. */
    uint32_t max_connections_per_addr;
    /** A server connection that has not delivered the client preface and its first
     * SETTINGS frame this many ms after it was accepted is closed. 0 = never. Default 10000. */
    uint32_t handshake_timeout_ms;
    /** A server connection without open streams (and no new one) for this many ms is sent
     * GOAWAY(NO_ERROR) and closed a second later (or when the peer closes). 0 = never.
     * Default 300000 (5 minutes). This is the "max connection idle" of grpc. */
    uint32_t idle_timeout_ms;

    /* Partially received messages (see the README's "Limits: HTTP/2 streams and headers"). A
     * message larger than a stream's window can only complete if the shim re-opens the window
     * before the message is whole; it does so only while the connection holds at most
     * `max_partial_bytes_per_conn` and the loop at most `max_partial_bytes` bytes of partial
     * messages. Past either, the sender waits for its window (back-pressure, nothing buffered)
     * until other messages complete or end; one waiting stream at a time (the oldest) may go
     * past the budgets until its message is whole, so waiting streams never deadlock. A loop
     * past twice `max_partial_bytes` plus `max_recv_message` ends the stream whose bytes
     * arrive (H2_STREAM_ERR_BUSY). Defaults 64 MiB and 8 MiB. */
    size_t max_partial_bytes;
    size_t max_partial_bytes_per_conn;
    /** Bytes of response messages queued on a server connection's streams that the peer has
     * not read (its windows are closed): past it, a new request on the connection is answered
     * at once with grpc-status 8 (RESOURCE_EXHAUSTED) instead of reaching on_request, so a
     * client that never reads cannot pin finished responses without bound. Default 16 MiB.
     * While the loop holds more than `max_unsent` such bytes in all, the limit per connection
     * drops to 64 KiB. Default 64 MiB. */
    size_t max_unsent_per_conn;
    size_t max_unsent;
    /* Keepalive and connection lifetimes (see the README's "Connections"). 0 turns each off. */
    /** Nothing received for this many ms: send a PING. Server connections always; client
     * connections only while they have streams open. Default 7200000 (2 h, grpc's server default). */
    uint32_t keepalive_time_ms;
    /** After that PING, nothing received for this many ms: the connection is dead and closed,
     * its streams get on_close(H2_CLOSE_CONN_LOST). Default 20000. */
    uint32_t keepalive_timeout_ms;
    /** Server: a client PING sooner than this after its previous one, with no HEADERS or DATA
     * sent by the server in between, is a strike; the third gets GOAWAY ENHANCE_YOUR_CALM with
     * debug data "too_many_pings" and the connection closes (grpc's policy). Default 300000 (5 min). */
    uint32_t min_ping_interval_ms;
    /** Server: this many ms (±10 % jitter) after a connection was accepted it gets
     * GOAWAY(NO_ERROR); new calls go to a new connection. Default 0 (no limit). */
    uint32_t max_connection_age_ms;
    /** Server: after the max-age GOAWAY, the connection is closed this many ms later even if
     * calls are still open (they fail). Default 0: the calls may take as long as they need. */
    uint32_t max_connection_age_grace_ms;
    /** Client (h2_connect_addrs): an address that has not accepted the connection within this
     * many ms is given up and the next one is tried. Default 2000. */
    uint32_t connect_timeout_ms;
} h2_config;

/** Fills `cfg` with the defaults. */
void h2_config_init(h2_config *cfg);

/** Creates a loop (not yet running). `cb` is copied. Returns NULL on failure (errno set). */
h2_loop *h2_loop_create(const h2_config *cfg, const h2_callbacks *cb);

/**
 * Listens on host:port (IPv4 or IPv6 literal, or a name resolved with getaddrinfo;
 * NULL = "::" dual-stack). port 0 picks a free port. Writes the bound port to
 * *bound_port. Returns 0, or -errno. May be called before or after h2_loop_start.
 */
int h2_listen(h2_loop *loop, const char *host, uint16_t port, uint16_t *bound_port);

/**
 * Makes `loop` count its server connections against the caps of `with` (its
 * max_connections and max_connections_per_addr then apply to both together), so several
 * loops serving one port (reuse_port) share one global and one per-address cap. Call before
 * `loop` starts. Returns 0, or -EINVAL if `loop` has started.
 */
int h2_loop_share_limits(h2_loop *loop, h2_loop *with);

/** Starts the loop thread. Returns 0 or -errno. */
int h2_loop_start(h2_loop *loop);

/**
 * Graceful shutdown, step 1: stop accepting, send GOAWAY (last stream id = the last
 * one processed) on every server connection. Streams already open continue.
 */
void h2_loop_goaway(h2_loop *loop);

/**
 * Stops the loop thread and closes every connection. on_close(H2_CLOSE_SHUTDOWN) is
 * called for every stream still open (on the calling thread, after the loop thread has
 * exited). Safe to call more than once. Called from one of the loop's own callbacks, it
 * returns at once and the loop thread does the closing as it exits.
 */
void h2_loop_stop(h2_loop *loop);

/**
 * Frees the loop (stops it first if needed). Safe from one of the loop's own callbacks
 * (e.g. when the owner's last reference goes away there): no callback runs after it
 * returns, and the loop thread frees the loop once its current iteration is done.
 */
void h2_loop_destroy(h2_loop *loop);

/**
 * Opens a client connection (h2c, prior knowledge) to host:port: h2_resolve here on the calling
 * thread (it blocks for DNS; h2_connect_pending + h2_connect_addrs resolve elsewhere), then
 * each address in turn as h2_connect_addrs does. Asynchronous: returns
 * the connection token at once; on_conn reports CONNECTED or FAILED. Streams may be
 * opened on it right away (they start once connected). Returns 0 if it cannot even
 * start (errno set).
 */
h2_id h2_connect(h2_loop *loop, const char *host, uint16_t port);

/** Room for a peer address written by h2_conn_peer (terminating NUL included). */
#define H2_PEER_NAME_MAX 128

/**
 * Writes the peer address of server connection `conn` into `buf` (`cap` bytes, NUL-terminated,
 * cut to fit; H2_PEER_NAME_MAX is always enough) in grpc's peer format: `ipv4:127.0.0.1:5555`,
 * `ipv6:[::1]:5555` (an IPv4-mapped address as IPv4), `unix:/path`. Loop thread only (e.g.
 * inside on_request). Returns the length written, or 0 (and an empty string) when `conn` is not
 * a live server connection of this loop.
 */
size_t h2_conn_peer(h2_loop *loop, h2_id conn, char *buf, size_t cap);

/**
 * Address lists for client connections: the addresses to try, in order. Build one with
 * h2_resolve, h2_addrs_unix or h2_addrs_add; h2_connect_addrs takes it.
 */
typedef struct h2_addrs h2_addrs;

/**
 * Resolves host:port with getaddrinfo: IPv6 and IPv4 addresses in the resolver's order.
 * "localhost" (and names ending in ".localhost") always includes both ::1 and 127.0.0.1,
 * whatever the hosts file says. Blocks (DNS): call it on a thread that may block, never on
 * the loop. Returns NULL on failure with *err set (ENOENT: no such name).
 */
h2_addrs *h2_resolve(const char *host, uint16_t port, int *err);

/** A list of one Unix domain socket path. NULL with *err (ENAMETOOLONG, EINVAL, ENOMEM). */
h2_addrs *h2_addrs_unix(const char *path, int *err);

/** Appends a socket address (`sa`: a struct sockaddr of `salen` bytes) to *list (created
 * when NULL). Returns 0, or -EINVAL / -ENOMEM. */
int h2_addrs_add(h2_addrs **list, const void *sa, size_t salen);

/** The number of addresses in the list (0 for NULL). */
size_t h2_addrs_count(const h2_addrs *addrs);

/** Frees a list not handed to h2_connect_addrs. NULL is ignored. */
void h2_addrs_free(h2_addrs *addrs);

/**
 * Opens a client connection whose addresses come later, through h2_connect_addrs: the
 * caller resolves the name on a thread of its own meanwhile. Streams may be opened on the
 * token at once (they start once connected). Returns 0 if the loop is stopped (errno set).
 */
h2_id h2_connect_pending(h2_loop *loop);


/**
 * Connects the pending connection `conn` to the first address of `addrs` that accepts it:
 * each in order, moving on after a failure or connect_timeout_ms. Takes `addrs` in every
 * case; NULL fails the connection with `err`. on_conn reports CONNECTED, or FAILED with the
 * last address's error (ETIMEDOUT when it timed out).
 */
void h2_connect_addrs(h2_loop *loop, h2_id conn, h2_addrs *addrs, int err);

/** h2_connect to a Unix domain socket at `path` (h2c, prior knowledge). Returns 0 if it
 * cannot start (errno set). */
h2_id h2_connect_unix(h2_loop *loop, const char *path);

/**
 * Listens on a Unix domain socket at `path`. A socket file already there is replaced if no
 * server answers on it (-EADDRINUSE if one does); any other file is an error, -EEXIST. Connections from it count under one shared peer address
 * for max_connections_per_addr. Returns 0 or -errno.
 */
int h2_listen_unix(h2_loop *loop, const char *path);

/** Closes a client or server connection at once; its open streams get on_close(H2_CLOSE_CONN_LOST). */
void h2_conn_close(h2_loop *loop, h2_id conn);

/**
 * Opens a client stream on `conn` with request headers (pseudo-headers first). `user`
 * is the application's pointer for the stream's callbacks; on_close is guaranteed for it
 * (H2_CLOSE_REFUSED if the stream cannot be opened). Returns the stream token.
 */
h2_id h2_open_stream(h2_loop *loop, h2_id conn, void *user, const h2_nv *headers, size_t nheaders);

/**
 * Sends on a stream, in this order, each part optional: a header block (`headers`,
 * response headers on a server stream; with H2_SEND_END and no message, a Trailers-Only
 * response), one message (`msg` with `has_msg`=1; a zero-length message is valid),
 * trailers (server streams; implies end). H2_SEND_END without trailers on a client
 * stream half-closes it. Everything is copied; returns at once. Returns 0, or -1 if the
 * loop is stopped (on_close comes for every stream) or the copy could not be allocated
 * (errno ENOMEM or EMSGSIZE): the stream is then reset (INTERNAL_ERROR) and on_close
 * follows, so a call never waits for what was not sent. h2_send_buf, h2_reset and
 * h2_consume do the same when they fail.
 */
int h2_send(h2_loop *loop, h2_id stream,
            const h2_nv *headers, size_t nheaders,
            int has_msg, const uint8_t *msg, size_t msglen,
            const h2_nv *trailers, size_t ntrailers,
            int flags);

/**
 * Message buffers: the application encodes an outbound message straight into memory the
 * shim sends from, instead of having h2_send copy it. Buffers of large messages are
 * recycled through a small per-loop pool, so a stream of big messages does not map and
 * fault in fresh pages for each one.
 *
 * h2_buf_alloc returns room for a message of up to `len` bytes (thread-safe), or NULL
 * (errno set). Fill it, then hand it to h2_send_buf, or drop it with h2_buf_free.
 */
uint8_t *h2_buf_alloc(h2_loop *loop, size_t len);

/**
 * Sends `len` bytes (at most the size allocated) of a buffer from h2_buf_alloc as one
 * message on `stream` (flags: H2_SEND_END, H2_SEND_COMPRESSED). The shim takes the buffer
 * on every path. Returns 0, or -1 if the loop is stopped or `len` is too large.
 */
int h2_send_buf(h2_loop *loop, h2_id stream, uint8_t *buf, size_t len, int flags);

/** Releases a buffer from h2_buf_alloc that was not sent, or one handed over by
 * on_message_buf. Thread-safe; NULL is ignored. */
void h2_buf_free(h2_loop *loop, uint8_t *buf);

/** Resets a stream with the HTTP/2 error code (e.g. 0x8 CANCEL). */
void h2_reset(h2_loop *loop, h2_id stream, uint32_t error_code);

/** The application consumed `bytes` inbound bytes of this stream: reopen the windows. */
void h2_consume(h2_loop *loop, h2_id stream, size_t bytes);

/** A function run on the loop thread (on_loop = 1), or, if the loop stopped before it
 * ran, on the thread calling h2_loop_stop (on_loop = 0: hand the work elsewhere). */
typedef void (*h2_run_fn)(void *ctx, void *arg, int on_loop);

/**
 * Runs fn(ctx, arg, 1) on the loop thread, in order with the other posted operations
 * (this is how Swift tasks are executed on the loop: a task executor). Thread-safe; from
 * the loop thread itself it costs no wake-up. Returns 0, or -1 if the loop is stopped
 * (fn is then not called).
 */
int h2_loop_run(h2_loop *loop, h2_run_fn fn, void *ctx, void *arg);

/* ---------------------------------------------------------------- TLS
 * TLS 1.2 and 1.3 through OpenSSL, beside the cleartext path: a TLS listener or client
 * connection speaks h2 over TLS with ALPN "h2" required (a handshake that agrees on no
 * protocol, or another one, is closed and logged). Contexts load PEM files; errors come back
 * as text in `err` (what file, and OpenSSL's reason). A context is reference counted:
 * listeners and connections hold it, so the caller may release its reference at any time. */

/** A TLS context: a server's certificate chain, key and client CA, or a client's trust and
 * certificate. Thread-safe. */
typedef struct h2_tls_ctx h2_tls_ctx;

/**
 * A server context from PEM files: the certificate chain (leaf first) and its private key;
 * with `client_ca_file` (may be NULL) every client must present a certificate that CA signed
 * (mTLS). NULL on failure, with the reason in `err` (errlen bytes, NUL-terminated).
 */
h2_tls_ctx *h2_tls_server_new(const char *cert_file, const char *key_file, const char *client_ca_file, char *err,
                              size_t errlen);

/**
 * Loads the files again into `tls` (a server context): connections accepted afterwards use the
 * new certificates, connections already open keep theirs. On failure returns -1 with the reason
 * in `err`, and the old certificates stay in use. Thread-safe.
 */
int h2_tls_server_reload(h2_tls_ctx *tls, const char *cert_file, const char *key_file, const char *client_ca_file,
                         char *err, size_t errlen);

/**
 * A client context: servers are verified against the PEM `ca_file`, or the system's trusted
 * certificates when NULL; `cert_file` and `key_file` (both or neither) are the client's own
 * certificate for mTLS. NULL on failure, with the reason in `err`.
 */
h2_tls_ctx *h2_tls_client_new(const char *ca_file, const char *cert_file, const char *key_file, char *err,
                              size_t errlen);

/** Releases the caller's reference (NULL is ignored). */
void h2_tls_release(h2_tls_ctx *tls);

/** As h2_listen, with TLS from the server context `tls` (the listener takes a reference). */
int h2_listen_tls(h2_loop *loop, const char *host, uint16_t port, h2_tls_ctx *tls, uint16_t *bound_port);

/**
 * As h2_connect, over TLS with the client context `tls`: the server's certificate must name
 * `server_name` (host name or IP literal; NULL = `host`), which is also sent as SNI when it is a
 * name. on_conn reports CONNECTED once the handshake agreed on h2; a failed handshake reports
 * FAILED (detail EPROTO) after the log function (h2_loop_set_log) got the reason.
 */
h2_id h2_connect_tls(h2_loop *loop, const char *host, uint16_t port, h2_tls_ctx *tls, const char *server_name);

/**
 * h2_connect_pending over TLS: once an address accepts the connection, the TLS handshake runs
 * (ALPN h2, verifying the certificate and `server_name`, also sent as SNI) before CONNECTED.
 * Takes its own reference to `tls`. Returns 0 if the loop is stopped (errno set).
 */
h2_id h2_connect_pending_tls(h2_loop *loop, h2_tls_ctx *tls, const char *server_name);

/** A connection's log line (TLS handshake failures, ALPN refusals, TLS errors), on the loop thread. */
typedef void (*h2_log_fn)(void *ctx, h2_id conn, const char *msg);

/** Sets the loop's log function (before h2_loop_start; NULL = none). Returns 0, or -EINVAL if started. */
int h2_loop_set_log(h2_loop *loop, h2_log_fn fn, void *ctx);

/** Counters, read without locking (approximate while the loop runs). */
typedef struct h2_stats {
    uint64_t connections;       /* open connections */
    uint64_t streams;           /* open streams with application state */
    uint64_t inbound_buffered;  /* bytes of partially received messages (stream receive buffers) */
    uint64_t outbound_buffered; /* bytes queued in stream send buffers */
    uint64_t streams_total;     /* streams ever opened */
    uint64_t pooled;            /* bytes of message buffers kept for reuse (freed after 1 s idle) */
    /* connection limits (since the loop started) */
    uint64_t conns_rejected;     /* accepted and closed at once: over max_connections or max_connections_per_addr */
    uint64_t conns_shed;         /* accepted and closed at once at the fd limit (EMFILE/ENFILE), through the reserved fd */
    uint64_t handshake_timeouts; /* closed: no client preface + SETTINGS within handshake_timeout_ms */
    uint64_t idle_goaways;       /* sent GOAWAY after idle_timeout_ms without streams */
    uint64_t accept_pauses;      /* accept failed (fd limit, no memory): the listeners paused for 100 ms */
    uint64_t assembling_waits;   /* a stream's window stayed closed: over max_partial_bytes(_per_conn) */
    uint64_t assembling_busy;    /* streams ended with H2_STREAM_ERR_BUSY */
    /* keepalive and lifetimes (since the loop started) */
    uint64_t keepalive_pings;     /* PINGs sent after keepalive_time_ms without anything received */
    uint64_t keepalive_timeouts;  /* connections closed: their PING went unanswered for keepalive_timeout_ms */
    uint64_t ping_strike_goaways; /* GOAWAY ENHANCE_YOUR_CALM "too_many_pings" sent */
    uint64_t age_goaways;         /* GOAWAY sent at max_connection_age_ms */
} h2_stats;

void h2_loop_stats(h2_loop *loop, h2_stats *out);

#ifdef __cplusplus
}
#endif

#endif
