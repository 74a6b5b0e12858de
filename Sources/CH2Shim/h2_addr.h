/*
 * Peer addresses as text (private), in grpc's peer format: `ipv4:127.0.0.1:5555`,
 * `ipv6:[::1]:5555` (an IPv4-mapped IPv6 address, from a dual-stack listener, is written as
 * its IPv4 address), `unix:/path` (`unix:` for an unnamed socket). Formatted once per
 * accepted connection, for the access log.
 */
#ifndef H2_ADDR_H
#define H2_ADDR_H

#include <stddef.h>
#include <sys/socket.h>

/* Room for any formatted peer (a unix path is cut to fit). Matches H2_PEER_NAME_MAX. */
#define H2_ADDR_TEXT_MAX 128

/* Writes the peer text of `sa` (`len` bytes) into `out` (`cap` bytes, NUL-terminated, cut to
 * fit); an unknown family or a short `len` gives `unknown`. Returns the length written. */
size_t h2_addr_format(const struct sockaddr *sa, socklen_t len, char *out, size_t cap);

#endif
