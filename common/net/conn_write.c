#include "net/conn_write.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

static int conn_is_layered(struct bufferevent *bev)
{
    return bufferevent_get_underlying(bev) != NULL;
}

void conn_write_enable(struct bufferevent *bev)
{
    bufferevent_enable(bev, EV_READ);
    /* A new bufferevent starts with writing enabled. */
    if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
        bufferevent_disable(bev, EV_WRITE);
}

void conn_write_flush(struct bufferevent *bev)
{
    struct evbuffer *out = bufferevent_get_output(bev);
    evutil_socket_t fd;

    if (evbuffer_get_length(out) == 0)
        return;
    if (conn_is_layered(bev)) {
        /* A filter with its write event disabled runs only when flushed.
         * Running it re-arms the filter's write timeout whatever its write
         * event (libevent 2.1); disabling writing again cancels it, in
         * case one was set (conn_write_set_timeout sets none there). */
        bufferevent_flush(bev, EV_WRITE, BEV_FLUSH);
        if (!(bufferevent_get_enabled(bev) & EV_WRITE))
            bufferevent_disable(bev, EV_WRITE);
        return;
    }
    if (bufferevent_get_enabled(bev) & EV_WRITE)
        return;
    fd = bufferevent_getfd(bev);
    if (fd >= 0) {
        /* A socket bufferevent keeps the front of its output frozen so that
         * only it drains it; its write event is idle, so nothing else is
         * writing from there now. */
        evbuffer_unfreeze(out, 1);
        evbuffer_write(out, fd);
        evbuffer_freeze(out, 1);
    }
    if (evbuffer_get_length(out) > 0)
        bufferevent_enable(bev, EV_WRITE);
}

void conn_write_set_timeout(struct bufferevent *bev, const struct timeval *tv)
{
    struct bufferevent *under = bufferevent_get_underlying(bev);
    if (under) {
        bufferevent_set_timeouts(bev, NULL, NULL);
        bufferevent_set_timeouts(under, NULL, tv); /* the filter passes its events up */
    } else {
        bufferevent_set_timeouts(bev, NULL, tv);
    }
}

void conn_write_drained(struct bufferevent *bev, void *arg)
{
    if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
        bufferevent_disable(bev, EV_WRITE);
}
