#include "bus_server.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "bus/bus_codec.h"
#include "bus/bus_evbuffer.h"
#include "net/conn_write.h"
#include "hub.h"
#include "core/log.h"

/* A peer gets this long to send its HELLO. */
#define BUS_HELLO_TIMEOUT_MS 5000

struct bus_peer {
    struct bus_server *server;
    struct bufferevent *bev;
    bool greeted;      /* its HELLO arrived */
    uint64_t last_seq; /* of the last EVENT fanned out */
    unsigned long id;
    struct bus_peer *prev, *next;
};

struct bus_server {
    struct event_base *base;
    struct hub *hub;
    struct evconnlistener *listener;
    struct event *resume;
    struct bus_peer *peers;
    unsigned long next_id;
    struct bus_server_counters counters;
};

static void peer_free(struct bus_peer *peer)
{
    struct bus_server *server = peer->server;
    if (peer->prev)
        peer->prev->next = peer->next;
    else
        server->peers = peer->next;
    if (peer->next)
        peer->next->prev = peer->prev;
    server->counters.peers_connected--;
    bufferevent_free(peer->bev);
    free(peer);
}

static void peer_fail(struct bus_peer *peer, const char *reason)
{
    peer->server->counters.protocol_errors++;
    log_warn("bus peer %lu: %s: disconnected", peer->id, reason);
    peer_free(peer);
}

/* A listen daemon sends HELLO, then EVENTs of any size up to the hard limit. */
static const struct bus_decoder peer_decoder = {BUS_KINDS_FROM_LISTEN, BUS_MESSAGE_HARD_MAX};

/* Handles one decoded frame. Returns false when the peer was dropped. */
static bool peer_handle_frame(struct bus_peer *peer, const struct bus_frame *frame)
{
    if (!peer->greeted) {
        if (frame->kind != BUS_KIND_HELLO) {
            peer_fail(peer, "first frame is not HELLO");
            return false;
        }
        peer->greeted = true;
        bufferevent_set_timeouts(peer->bev, NULL, NULL);
        log_info("bus peer %lu: listen daemon connected", peer->id);
        return true;
    }
    if (frame->kind != BUS_KIND_EVENT) {
        peer_fail(peer, "unexpected frame kind");
        return false;
    }
    if (frame->seq != peer->last_seq + 1) {
        peer_fail(peer, "sequence number out of order");
        return false;
    }
    peer->last_seq = frame->seq;
    peer->server->counters.events++;
    hub_fanout(peer->server->hub, frame->type, frame->type_len, frame->message, frame->message_len);
    return true;
}

static void peer_read_cb(struct bufferevent *bev, void *arg)
{
    struct bus_peer *peer = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    uint64_t acked = peer->last_seq;

    for (;;) {
        struct bus_frame frame;
        size_t frame_len = 0;
        int rc = bus_evbuffer_next(&peer_decoder, in, &frame, &frame_len);

        if (rc == BUS_AGAIN)
            break;
        if (rc == BUS_ERR_NOT_ALLOWED) {
            /* An ACK: refused as soon as its kind is in. */
            peer_fail(peer, peer->greeted ? "unexpected frame kind" : "first frame is not HELLO");
            return;
        }
        if (rc != BUS_OK) {
            peer_fail(peer, bus_status_text(rc));
            return;
        }
        if (!peer_handle_frame(peer, &frame))
            return;
        evbuffer_drain(in, frame_len);
    }
    if (peer->last_seq != acked) {
        uint8_t ack[BUS_ACK_FRAME_LEN];
        bufferevent_write(bev, ack, bus_encode_ack(ack, peer->last_seq));
        /* Now, before the deliveries of these events are written (the hub
         * flushes them once this callback is over): a large fan-out must
         * not hold up the answers to the publishers. */
        conn_write_flush(bev);
    }
}

static void peer_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct bus_peer *peer = arg;
    if (what & BEV_EVENT_TIMEOUT) {
        peer_fail(peer, "no HELLO in time");
        return;
    }
    log_info("bus peer %lu: listen daemon disconnected", peer->id);
    peer_free(peer);
}

static void server_accept_cb(struct evconnlistener *listener, evutil_socket_t fd,
                             struct sockaddr *sa, int socklen, void *arg)
{
    struct bus_server *server = arg;
    struct timeval hello_tv = {BUS_HELLO_TIMEOUT_MS / 1000, 0};
    uint8_t hello[BUS_HELLO_FRAME_LEN];
    struct bus_peer *peer = calloc(1, sizeof *peer);
    if (!peer) {
        close(fd);
        return;
    }
    peer->bev = bufferevent_socket_new(server->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (!peer->bev) {
        close(fd);
        free(peer);
        return;
    }
    peer->server = server;
    peer->id = ++server->next_id;
    peer->next = server->peers;
    if (server->peers)
        server->peers->prev = peer;
    server->peers = peer;
    server->counters.peers_accepted++;
    server->counters.peers_connected++;
    bufferevent_setcb(peer->bev, peer_read_cb, conn_write_drained, peer_event_cb, peer);
    bufferevent_set_timeouts(peer->bev, &hello_tv, NULL);
    conn_write_enable(peer->bev);
    bufferevent_write(peer->bev, hello, bus_encode_hello(hello));
    conn_write_flush(peer->bev);
}

static void server_resume_cb(evutil_socket_t fd, short what, void *arg)
{
    struct bus_server *server = arg;
    evconnlistener_enable(server->listener);
}

/* accept() failed, most likely EMFILE: pause instead of spinning on a
 * listener that stays readable. */
static void server_accept_error_cb(struct evconnlistener *listener, void *arg)
{
    struct bus_server *server = arg;
    struct timeval tv = {0, 100 * 1000};
    log_warn("bus: accept failed: %s; pausing accepts for 100 ms", strerror(errno));
    evconnlistener_disable(listener);
    evtimer_add(server->resume, &tv);
}

struct bus_server *bus_server_new(struct event_base *base, int fd, struct hub *hub)
{
    struct bus_server *server = calloc(1, sizeof *server);
    if (!server) {
        close(fd);
        return NULL;
    }
    server->base = base;
    server->hub = hub;
    server->resume = evtimer_new(base, server_resume_cb, server);
    /* Backlog 0: fd is already listening (with its own backlog). */
    server->listener = evconnlistener_new(base, server_accept_cb, server,
                                          LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 0, fd);
    if (!server->listener || !server->resume) {
        if (server->listener)
            evconnlistener_free(server->listener);
        else
            close(fd);
        if (server->resume)
            event_free(server->resume);
        free(server);
        return NULL;
    }
    evconnlistener_set_error_cb(server->listener, server_accept_error_cb);
    return server;
}

static void peer_stopped_drained_cb(struct bufferevent *bev, void *arg)
{
    if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
        peer_free(arg);
}

void bus_server_stop(struct bus_server *server)
{
    struct bus_peer *peer, *next;
    evconnlistener_disable(server->listener);
    for (peer = server->peers; peer; peer = next) {
        next = peer->next;
        /* Its last ack went out with conn_write_flush at the end of its
         * last read, or waits for the socket: the write event is on. */
        bufferevent_disable(peer->bev, EV_READ);
        log_info("bus peer %lu: shutting down: disconnecting the listen daemon", peer->id);
        if (evbuffer_get_length(bufferevent_get_output(peer->bev)) == 0)
            peer_free(peer);
        else
            bufferevent_setcb(peer->bev, NULL, peer_stopped_drained_cb, peer_event_cb, peer);
    }
}

const struct bus_server_counters *bus_server_counters(const struct bus_server *server)
{
    return &server->counters;
}

void bus_server_free(struct bus_server *server)
{
    if (!server)
        return;
    while (server->peers)
        peer_free(server->peers);
    evconnlistener_free(server->listener);
    event_free(server->resume);
    free(server);
}
