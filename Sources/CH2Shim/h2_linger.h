/*
 * Lingering close (private): a connection closed right after its last bytes (a TLS alert, a
 * GOAWAY) while the peer's data may still sit unread in our receive buffer. close() on such a
 * socket makes the kernel send RST instead of FIN, and the peer may see "connection reset"
 * before it reads (or while it still writes) those last bytes: the reason is lost. So the
 * socket is shut down for writing (FIN after what was flushed), what the peer still sends is
 * read and dropped on the loop (no blocking) until its EOF, an error or H2_LINGER_MS, and
 * only then closed.
 *
 * Everything else about the connection is closed already (session, streams, statistics): it
 * keeps only its socket, and its place in the connection caps (h2_connlim), released when
 * the socket closes, so a flood of such connections is bounded by the caps and the time.
 * Loop thread only; the lingering connections are a list of the loop (L->local.lingering),
 * checked at the tick.
 */
#ifndef H2_LINGER_H
#define H2_LINGER_H

#include "h2_conn.h"

#include <stdbool.h>
#include <stdint.h>

#define H2_LINGER_MS 1000 /* at most this long (plus a tick) after the last bytes */

/* From h2_conn_close_now: shuts c's socket down for writing and starts lingering. false (the
 * caller closes the socket at once) if that failed (the peer reset it already, no epoll). */
bool h2_linger_start(h2_conn *c);
/* The socket is readable (or failed): reads and drops; EOF or an error ends the linger. */
void h2_linger_event(h2_conn *c);
/* At the tick: ends the lingers past their time. */
void h2_linger_tick(h2_loop *L, int64_t now);
/* Ends every linger (the loop's teardown). */
void h2_linger_end_all(h2_loop *L);

#endif
