#include "net/conn_flush.h"

#include <stdbool.h>
#include <stdlib.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "net/conn_write.h"

/* How often a layered connection is checked while its lower layer drains
 * (libevent gives no callback for that). Only closing connections poll. */
#define CONN_FLUSH_POLL_MS 10
/* After the last byte is written, the socket is shut down for writing and
 * input is read and dropped for up to this long before it is closed. Closing
 * with unread input would make the kernel send a reset, which can destroy
 * the answer before the client reads it (a 413 sent while the client is
 * still sending its body, say): the "lingering close" of RFC 9112 §9.6. */
#define CONN_LINGER_MS 2000

struct flush_state {
    struct bufferevent *bev;
    struct event *poll;
    struct event *deadline;
    bool lingering;
    bool linger_wanted;
    struct flush_state *prev, *next;
};

/* Single-threaded daemons: process-wide state is fine here. */
static size_t open_connections;
static struct flush_state *flushing;
static size_t flushing_count;
static conn_release_hook_fn release_hook;
static void *release_hook_arg;

void conn_track_open(void)
{
    open_connections++;
}

size_t conn_open_count(void)
{
    return open_connections;
}

void conn_set_release_hook(conn_release_hook_fn hook, void *arg)
{
    release_hook = hook;
    release_hook_arg = arg;
}

void conn_release(struct bufferevent *bev)
{
    size_t unsent = release_hook ? conn_output_pending(bev) : 0;
    bufferevent_free(bev);
    open_connections--;
    if (release_hook)
        release_hook(release_hook_arg, unsent);
}

size_t conn_flush_count(void)
{
    return flushing_count;
}

size_t conn_output_pending(struct bufferevent *bev)
{
    struct bufferevent *under = bufferevent_get_underlying(bev);
    size_t n = evbuffer_get_length(bufferevent_get_output(bev));
    if (under)
        n += evbuffer_get_length(bufferevent_get_output(under));
    return n;
}

static void flush_finish(struct flush_state *st)
{
    if (st->prev)
        st->prev->next = st->next;
    else
        flushing = st->next;
    if (st->next)
        st->next->prev = st->prev;
    flushing_count--;
    event_free(st->poll);
    event_free(st->deadline);
    conn_release(st->bev);
    free(st);
}

void conn_flush_abort_all(void)
{
    while (flushing)
        flush_finish(flushing);
}

/* EOF, a reset or a write error: the peer is gone, nothing more to do. */
static void flush_event_cb(struct bufferevent *bev, short what, void *arg)
{
    flush_finish(arg);
}

static void flush_linger_read_cb(struct bufferevent *bev, void *arg)
{
    struct evbuffer *in = bufferevent_get_input(bev);
    evbuffer_drain(in, evbuffer_get_length(in));
}

static void flush_start_linger(struct flush_state *st)
{
    struct timeval tv = {CONN_LINGER_MS / 1000, (CONN_LINGER_MS % 1000) * 1000};
    evutil_socket_t fd = bufferevent_getfd(st->bev);
    if (fd < 0 || shutdown(fd, SHUT_WR) < 0) {
        flush_finish(st);
        return;
    }
    st->lingering = true;
    evtimer_del(st->poll);
    evtimer_add(st->deadline, &tv);
    bufferevent_setcb(st->bev, flush_linger_read_cb, NULL, flush_event_cb, st);
    flush_linger_read_cb(st->bev, st);
    bufferevent_enable(st->bev, EV_READ);
}

static void flush_check(struct flush_state *st)
{
    struct timeval tv = {0, CONN_FLUSH_POLL_MS * 1000};
    if (st->lingering)
        return;
    if (conn_output_pending(st->bev) == 0) {
        if (st->linger_wanted)
            flush_start_linger(st);
        else
            flush_finish(st);
        return;
    }
    if (bufferevent_get_underlying(st->bev) &&
        evbuffer_get_length(bufferevent_get_output(st->bev)) == 0)
        evtimer_add(st->poll, &tv);
}

static void flush_write_cb(struct bufferevent *bev, void *arg)
{
    flush_check(arg);
}

static void flush_poll_cb(evutil_socket_t fd, short what, void *arg)
{
    flush_check(arg);
}

static void flush_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
    flush_finish(arg);
}

void conn_flush_and_close(struct bufferevent *bev, unsigned timeout_ms, enum conn_close_mode mode)
{
    struct event_base *base = bufferevent_get_base(bev);
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    struct flush_state *st;

    if (!(st = calloc(1, sizeof *st))) {
        conn_release(bev);
        return;
    }
    st->bev = bev;
    st->linger_wanted = mode == CONN_CLOSE_GRACEFUL;
    st->poll = evtimer_new(base, flush_poll_cb, st);
    st->deadline = evtimer_new(base, flush_deadline_cb, st);
    if (!st->poll || !st->deadline) {
        if (st->poll)
            event_free(st->poll);
        if (st->deadline)
            event_free(st->deadline);
        free(st);
        conn_release(bev);
        return;
    }
    st->next = flushing;
    if (flushing)
        flushing->prev = st;
    flushing = st;
    flushing_count++;
    conn_write_set_timeout(bev, NULL);
    bufferevent_setwatermark(bev, EV_WRITE, 0, 0);
    bufferevent_setcb(bev, NULL, flush_write_cb, flush_event_cb, st);
    bufferevent_disable(bev, EV_READ);
    bufferevent_enable(bev, EV_WRITE);
    /* A socket turns its writing off when a write fails, and reports the
     * error once, to whoever held the connection then: writing again meets
     * the error again and ends the flush, instead of waiting out the
     * deadline for bytes that can never leave. */
    if (bufferevent_get_underlying(bev))
        bufferevent_enable(bufferevent_get_underlying(bev), EV_WRITE);
    /* A layered (TLS) connection ends its stream properly: BEV_FINISHED
     * makes the filter write its closing record (close_notify). */
    if (mode != CONN_CLOSE_FAILED)
        bufferevent_flush(bev, EV_WRITE, BEV_FINISHED);
    evtimer_add(st->deadline, &tv);
    flush_check(st);
}
