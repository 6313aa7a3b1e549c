#include "bus_link.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "bus/bus_codec.h"
#include "bus/bus_evbuffer.h"
#include "net/conn_write.h"
#include "core/log.h"

enum link_state {
    LINK_DISCONNECTED, /* waiting for the reconnect timer */
    LINK_CONNECTING,
    LINK_HANDSHAKE, /* our HELLO sent, waiting for the peer's */
    LINK_READY,
};

struct in_flight {
    uint64_t seq;
    void *item;
    struct in_flight *next;
};

struct message_ref {
    void (*release)(void *arg);
    void *arg;
};

struct bus_link {
    struct event_base *base;
    char *path;
    unsigned ack_timeout_ms;
    const struct bus_link_events *events;
    void *arg;

    enum link_state state;
    struct bufferevent *bev;
    struct event *timer; /* reconnect backoff, or handshake/ack deadline */
    struct event *flush; /* made active when events are queued: writes them */
    unsigned backoff_ms;
    bool tried;        /* the first attempt has ended one way or the other */
    bool was_ready;    /* it has been ready before: log losses, count reconnects */
    bool logged_down;  /* the current outage has been logged */
    uint64_t next_seq; /* per connection, from 1 */
    struct in_flight *head, *tail;
    unsigned long in_flight_count;
};

static void link_connect(struct bus_link *link);

static void link_arm(struct bus_link *link, unsigned ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(link->timer, &tv);
}

static void link_mark_tried(struct bus_link *link)
{
    if (!link->tried) {
        link->tried = true;
        if (link->events->tried)
            link->events->tried(link->arg, link);
    }
}

/* Ends the connection: every event in flight fails, and a reconnect is
 * scheduled. reason is for the log. */
static void link_drop(struct bus_link *link, const char *reason)
{
    struct in_flight *f;
    if (link->state == LINK_READY || !link->logged_down) {
        log_warn("bus %s: %s%s", link->path, reason,
                 link->state == LINK_READY ? "; reconnecting" : "; retrying");
        link->logged_down = true;
    } else {
        log_debug("bus %s: %s", link->path, reason);
    }
    if (link->bev) {
        bufferevent_free(link->bev); /* releases referenced messages */
        link->bev = NULL;
    }
    link->state = LINK_DISCONNECTED;
    while ((f = link->head)) {
        link->head = f->next;
        link->in_flight_count--;
        if (f->item)
            link->events->failed(link->arg, f->item);
        free(f);
    }
    link->tail = NULL;
    link_mark_tried(link);
    evtimer_del(link->timer);
    link_arm(link, link->backoff_ms);
    link->backoff_ms = link->backoff_ms * 2 > BUS_LINK_BACKOFF_MAX_MS ? BUS_LINK_BACKOFF_MAX_MS
                                                                      : link->backoff_ms * 2;
}

static void link_handle_ack(struct bus_link *link, uint64_t seq)
{
    struct in_flight *f;
    if (seq >= link->next_seq) {
        link_drop(link, "peer acked an event never sent (protocol error)");
        return;
    }
    bool progress = false;
    while ((f = link->head) && f->seq <= seq) {
        link->head = f->next;
        if (!link->head)
            link->tail = NULL;
        link->in_flight_count--;
        if (f->item)
            link->events->acked(link->arg, f->item);
        free(f);
        progress = true;
    }
    /* Only progress restarts the deadline: a peer repeating an old ack
     * must not hold events for ever. */
    if (!progress)
        return;
    evtimer_del(link->timer);
    if (link->head)
        link_arm(link, link->ack_timeout_ms);
}

/* The broadcast daemon only ever sends HELLO and ACK frames. */
static const struct bus_decoder link_decoder = {BUS_KINDS_FROM_BROADCAST, 0};

static void link_read_cb(struct bufferevent *bev, void *arg)
{
    struct bus_link *link = arg;
    struct evbuffer *in = bufferevent_get_input(bev);

    /* Anything other than HELLO and ACK, or anything malformed, ends the
     * connection. */
    while (link->bev) {
        struct bus_frame frame;
        size_t frame_len = 0;
        int rc = bus_evbuffer_next(&link_decoder, in, &frame, &frame_len);
        if (rc == BUS_AGAIN)
            return;
        if (rc == BUS_ERR_KIND || rc == BUS_ERR_NOT_ALLOWED) {
            link_drop(link, "unexpected frame kind from peer (protocol error)");
            return;
        }
        if (rc != BUS_OK) {
            link_drop(link, bus_status_text(rc));
            return;
        }
        evbuffer_drain(in, frame_len);
        if (frame.kind == BUS_KIND_HELLO && link->state == LINK_HANDSHAKE) {
            link->state = LINK_READY;
            link->backoff_ms = BUS_LINK_BACKOFF_MIN_MS;
            link->logged_down = false;
            evtimer_del(link->timer);
            log_info("bus %s: %s", link->path, link->was_ready ? "reconnected" : "connected");
            link->was_ready = true;
            link_mark_tried(link);
            link->events->ready(link->arg, link);
        } else if (frame.kind == BUS_KIND_ACK && link->state == LINK_READY) {
            link_handle_ack(link, frame.seq);
        } else {
            link_drop(link, "unexpected frame from peer (protocol error)");
            return;
        }
    }
}

static void link_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct bus_link *link = arg;
    if (what & BEV_EVENT_CONNECTED) {
        uint8_t hello[BUS_HELLO_FRAME_LEN];
        size_t n = bus_encode_hello(hello);
        link->state = LINK_HANDSHAKE;
        link->next_seq = 1;
        /* From here on the link writes through conn_write_flush. */
        conn_write_enable(bev);
        bufferevent_write(bev, hello, n);
        conn_write_flush(bev);
        link_arm(link, link->ack_timeout_ms);
        return;
    }
    if (what & BEV_EVENT_EOF)
        link_drop(link, "connection closed by the broadcast daemon");
    else if (link->state == LINK_CONNECTING)
        link_drop(link, strerror(EVUTIL_SOCKET_ERROR()));
    else
        link_drop(link, "connection error");
}

/* Runs once the loop has finished its current callback: every event queued
 * during it leaves in one write. */
static void link_flush_cb(evutil_socket_t fd, short what, void *arg)
{
    struct bus_link *link = arg;
    if (link->bev && link->state == LINK_READY)
        conn_write_flush(link->bev);
}

static void link_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct bus_link *link = arg;
    switch (link->state) {
    case LINK_DISCONNECTED:
        link_connect(link);
        break;
    case LINK_CONNECTING:
    case LINK_HANDSHAKE:
        link_drop(link, "no handshake from the broadcast daemon in time");
        break;
    case LINK_READY:
        link_drop(link, "the broadcast daemon did not ack in time");
        break;
    }
}

static void link_connect(struct bus_link *link)
{
    struct sockaddr_un sun;
    memset(&sun, 0, sizeof sun);
    sun.sun_family = AF_UNIX;
    if (strlen(link->path) >= sizeof sun.sun_path) {
        link_drop(link, "socket path too long");
        return;
    }
    strcpy(sun.sun_path, link->path);
    link->bev = bufferevent_socket_new(link->base, -1, BEV_OPT_CLOSE_ON_FREE);
    if (!link->bev) {
        link_drop(link, "out of memory");
        return;
    }
    bufferevent_setcb(link->bev, link_read_cb, conn_write_drained, link_event_cb, link);
    link->state = LINK_CONNECTING;
    link_arm(link, link->ack_timeout_ms);
    if (bufferevent_socket_connect(link->bev, (struct sockaddr *)&sun, sizeof sun) < 0) {
        /* An immediate failure (no socket file, refused) also lands here. */
        if (link->bev)
            link_drop(link, strerror(errno ? errno : ECONNREFUSED));
    }
}

struct bus_link *bus_link_new(struct event_base *base, const char *path, unsigned ack_timeout_ms,
                              const struct bus_link_events *events, void *arg)
{
    struct bus_link *link = calloc(1, sizeof *link);
    if (!link)
        return NULL;
    link->base = base;
    link->path = strdup(path);
    link->ack_timeout_ms = ack_timeout_ms;
    link->events = events;
    link->arg = arg;
    link->backoff_ms = BUS_LINK_BACKOFF_MIN_MS;
    link->timer = evtimer_new(base, link_timer_cb, link);
    link->flush = event_new(base, -1, 0, link_flush_cb, link);
    if (!link->path || !link->timer || !link->flush) {
        free(link->path);
        if (link->timer)
            event_free(link->timer);
        if (link->flush)
            event_free(link->flush);
        free(link);
        return NULL;
    }
    link->state = LINK_DISCONNECTED;
    link_arm(link, 0);
    return link;
}

void bus_link_free(struct bus_link *link)
{
    struct in_flight *f;
    if (!link)
        return;
    if (link->bev)
        bufferevent_free(link->bev);
    while ((f = link->head)) {
        link->head = f->next;
        if (f->item)
            link->events->failed(link->arg, f->item);
        free(f);
    }
    event_free(link->timer);
    event_free(link->flush);
    free(link->path);
    free(link);
}

bool bus_link_is_ready(const struct bus_link *link)
{
    return link->state == LINK_READY;
}

const char *bus_link_path(const struct bus_link *link)
{
    return link->path;
}

unsigned long bus_link_in_flight(const struct bus_link *link)
{
    return link->in_flight_count;
}

static void message_ref_cleanup(const void *data, size_t len, void *arg)
{
    struct message_ref *ref = arg;
    ref->release(ref->arg);
    free(ref);
}

int bus_link_send(struct bus_link *link, enum bus_kind kind, uint64_t run, uint64_t number,
                  const char *type, size_t type_len, const char *message, size_t message_len,
                  void (*release)(void *arg), void *release_arg, void *item)
{
    uint8_t head[BUS_EVENT_HEAD_MAX];
    struct in_flight *f;
    struct message_ref *ref;
    struct evbuffer *out;
    size_t head_len;

    if (link->state != LINK_READY)
        return -1;
    head_len =
        bus_encode_event_head(head, kind, link->next_seq, run, number, type, type_len, message_len);
    if (head_len == 0)
        return -1;
    f = malloc(sizeof *f);
    ref = malloc(sizeof *ref);
    if (!f || !ref) {
        free(f);
        free(ref);
        return -1;
    }
    ref->release = release;
    ref->arg = release_arg;
    out = bufferevent_get_output(link->bev);
    if (evbuffer_add(out, head, head_len) < 0) {
        free(f);
        free(ref);
        return -1;
    }
    if (evbuffer_add_reference(out, message, message_len, message_ref_cleanup, ref) < 0) {
        /* The head is queued without its message: the stream is broken. */
        free(f);
        free(ref);
        link_drop(link, "out of memory");
        return -1;
    }
    f->seq = link->next_seq++;
    f->item = item;
    f->next = NULL;
    if (link->tail)
        link->tail->next = f;
    else
        link->head = f;
    link->tail = f;
    if (link->in_flight_count++ == 0)
        link_arm(link, link->ack_timeout_ms);
    event_active(link->flush, EV_TIMEOUT, 0); /* a no-op when already active */
    return 0;
}

int bus_link_send_sync(struct bus_link *link, uint64_t run, uint64_t number)
{
    uint8_t frame[BUS_SYNC_FRAME_LEN];
    size_t n = bus_encode_sync(frame, run, number);
    if (link->state != LINK_READY || n == 0 ||
        evbuffer_add(bufferevent_get_output(link->bev), frame, n) < 0)
        return -1;
    event_active(link->flush, EV_TIMEOUT, 0);
    return 0;
}
