/* Lingering close: FIN after the last bytes, the peer's late bytes read and dropped, then close. */
#define _GNU_SOURCE
#include "h2_linger.h"
#include "h2_connlim.h"
#include "h2_loop.h"

#include <errno.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

bool h2_linger_start(h2_conn *c)
{
    h2_loop *L = c->loop;
    /* Fails when the peer reset the connection already (ENOTCONN): nothing to wait for. */
    if (shutdown(c->fd, SHUT_WR) != 0) return false;
    if (h2_conn_epoll(c, EPOLL_CTL_MOD, EPOLLIN) != 0) return false; /* no EPOLLOUT: nothing more to write */
    c->want_out = false;
    c->lingering = true;
    c->linger_until = L->local.now + H2_LINGER_MS;
    c->prev = NULL;
    c->next = L->local.lingering;
    if (c->next) c->next->prev = c;
    L->local.lingering = c;
    h2_loop_arm_tick(L);
    return true;
}

/* Closes the socket, gives its place in the caps back, and frees c at the end of the
 * iteration (epoll events of this batch may still point at it). */
static void linger_end(h2_conn *c)
{
    h2_loop *L = c->loop;
    if (c->prev)
        c->prev->next = c->next;
    else
        L->local.lingering = c->next;
    if (c->next) c->next->prev = c->prev;
    c->prev = c->next = NULL;
    c->lingering = false;
    close(c->fd);
    c->fd = -1;
    if (c->lim_counted) h2_connlim_release(L->lim, c->peer);
    c->lim_counted = false;
    c->dead_next = L->local.dead;
    L->local.dead = c;
}

void h2_linger_event(h2_conn *c)
{
    uint8_t *buf = c->loop->local.rbuf;
    /* A bounded batch: level-triggered epoll brings the rest; a peer that never stops sending
     * is cut off at linger_until. */
    for (int i = 0; i < 4; i++) {
        ssize_t n = recv(c->fd, buf, H2_READ_BUF, MSG_DONTWAIT);
        if (n > 0) continue;
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        linger_end(c); /* EOF: the peer has read ours and closed; or the socket failed */
        return;
    }
}

void h2_linger_tick(h2_loop *L, int64_t now)
{
    for (h2_conn *c = L->local.lingering, *next; c; c = next) {
        next = c->next; /* ending unlinks c */
        if (now >= c->linger_until) linger_end(c);
    }
}

void h2_linger_end_all(h2_loop *L)
{
    while (L->local.lingering) linger_end(L->local.lingering);
}
