/*
 * The nghttp2 session (private): its settings, and the callbacks that connect it to
 * streams and connections (header blocks, DATA chunks, stream close, the data source of
 * outbound messages with NO_COPY for large ones). Loop thread only.
 */
#ifndef H2_SESSION_H
#define H2_SESSION_H

#include "h2_conn.h"

#include <nghttp2/nghttp2.h>

#define H2_FRAME_HEADER_LEN 9            /* HTTP/2 frame header (RFC 9113 4.1) */
#define H2_MAX_HEADER_BYTES (256 * 1024) /* ceiling of h2_config.max_header_list_size */
#define H2_UNSENT_BUSY_SHARE (64 * 1024)  /* unread bytes a connection may hold while the loop is over max_unsent */
/* Defaults of h2_config's stream and header limits (see h2shim.h; the reasons in h2_session.c). */
#define H2_DEFAULT_MAX_HEADER_LIST (16 * 1024)
#define H2_DEFAULT_MAX_HEADER_COUNT 100
#define H2_DEFAULT_RST_BURST 1000
#define H2_DEFAULT_RST_RATE 100
#define H2_NOCOPY_MIN (16 * 1024)        /* message bytes left to send from which DATA frames reference the
                                            message (NO_COPY + writev) instead of copying it */
#define H2_MAX_SEND_FRAME (256 * 1024)   /* largest DATA frame we send (if the peer allows it) */

/* The loop's shared callbacks and options (from the loop's clamped config). 0, or an nghttp2 error code. */
int h2_session_callbacks_new(const h2_config *cfg, nghttp2_session_callbacks **scb, nghttp2_option **opt);
/* Creates c->sess and submits our SETTINGS. 0, or an nghttp2 error code (c->sess may be set). */
int h2_session_setup(h2_conn *c);
/* The data provider of a stream's outbound messages. */
nghttp2_data_provider h2_session_data_provider(h2_stream *st);

#endif
