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
#include "bus/event_id.h"
#include "core/clock.h"
#include "history.h"
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
    uint64_t run;      /* of its events' ids: one per connection; 0 before the first */
    uint64_t sync_run; /* the run its SYNC named; 0 before it came */
    /* SYNC came, or an EVENT came first: a listen daemon that keeps no
     * history to send (an older one) sends none, and resumes need not wait
     * for it. */
    bool synced;
    /* Its HISTORY frames, as the first one found them: of a run this daemon
     * had events of before (missed ones are delivered), or of one it never
     * had (kept for resumes only: its sessions came after them). */
    enum { HISTORY_NONE_YET, HISTORY_CATCH_UP, HISTORY_ONLY } history_mode;
    bool overlapped; /* another run's peer was connected at one of its events */
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
    uint64_t last_run;    /* of the last event from any peer */
    uint64_t last_run_ms; /* when it came */
    bool draining;        /* in peers_drain: no drain within a drain */
};

static bool peer_read(struct bus_peer *peer);

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
    if (peer->greeted && !peer->synced)
        hub_bus_peer_lost_unsynced(server->hub);
    bufferevent_free(peer->bev);
    free(peer);
}

static void peer_fail(struct bus_peer *peer, const char *reason)
{
    peer->server->counters.protocol_errors++;
    log_warn("bus peer %lu: %s: disconnected", peer->id, reason);
    peer_free(peer);
}

/* A listen daemon sends HELLO, its history (HISTORY frames) and SYNC, then
 * EVENTs, of any size up to the hard limit. */
static const struct bus_decoder peer_decoder = {BUS_KINDS_FROM_LISTEN, BUS_MESSAGE_HARD_MAX};

/* Reads and handles what peer's socket holds now, up to its end, as its
 * read callback would later. Returns false when the peer is gone (it ended,
 * or broke the protocol). */
static bool peer_drain(struct bus_peer *peer)
{
    struct evbuffer *in = bufferevent_get_input(peer->bev);
    evutil_socket_t fd = bufferevent_getfd(peer->bev);
    int n = 1;
    /* A socket bufferevent keeps the end of its input frozen so that only
     * it adds there; it is not reading now, this callback is. */
    evbuffer_unfreeze(in, 0);
    while (n > 0 && evbuffer_get_length(in) < BUS_MESSAGE_HARD_MAX)
        n = evbuffer_read(in, fd, -1);
    evbuffer_freeze(in, 0);
    if (!peer_read(peer))
        return false;
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {
        log_info("bus peer %lu: listen daemon disconnected", peer->id);
        peer_free(peer);
        return false;
    }
    return true;
}

/* Whether the events of another listen daemon may reach other broadcast
 * daemons in another order than here, around this first-in-line event of
 * peer's (history.h's interleaving), and records this event as the last.
 *
 * A listen daemon that restarts closes its connection before the new one
 * connects: its last events and the end of its connection are in this
 * daemon's socket before the new run's first event, wherever they are
 * read. So the connections of other runs are read to what they hold first
 * (their events go before this one, as they went out before it): one that
 * ends there was a predecessor, not a competitor, and every broadcast
 * daemon orders the two runs the same way. A run still connected after
 * that is live; and a peer that ever met a live run counts the other run as
 * live until HISTORY_INTERLEAVE_MS after its last event, since the two may
 * be ordered differently elsewhere for as long as events of both are on
 * their way. */
static bool other_run_live(struct bus_peer *peer, uint64_t run)
{
    struct bus_server *server = peer->server;
    struct bus_peer *p, *next;
    uint64_t now;
    bool live = false;
    if (!server->draining) {
        server->draining = true;
        for (p = server->peers; p; p = next) {
            next = p->next;
            /* Draining p may free p, never another peer. */
            if (p != peer && p->run && p->run != run)
                peer_drain(p);
        }
        server->draining = false;
    }
    for (p = server->peers; p && !live; p = p->next)
        live = p != peer && p->run && p->run != run;
    if (live)
        peer->overlapped = true;
    now = clock_now_ms();
    if (!live && peer->overlapped && server->last_run && server->last_run != run)
        live = now - server->last_run_ms < HISTORY_INTERLEAVE_MS;
    server->last_run = run;
    server->last_run_ms = now;
    return live;
}

/* SYNC: the peer's history has all come (bus_codec.h). */
static bool peer_handle_sync(struct bus_peer *peer, const struct bus_frame *frame)
{
    if (peer->synced) {
        peer_fail(peer, "SYNC after SYNC or after events");
        return false;
    }
    peer->synced = true;
    peer->sync_run = frame->run;
    history_sync(peer->server->hub->history, frame->run, frame->number);
    hub_bus_peer_synced(peer->server->hub);
    log_debug("bus peer %lu: synced at %llu", peer->id, (unsigned long long)frame->number);
    return true;
}

/* Handles one decoded frame. Returns false when the peer was dropped. */
static bool peer_handle_frame(struct bus_peer *peer, const struct bus_frame *frame)
{
    struct hub_event ev;
    if (!peer->greeted) {
        if (frame->kind != BUS_KIND_HELLO) {
            peer_fail(peer, "first frame is not HELLO");
            return false;
        }
        peer->greeted = true;
        bufferevent_set_timeouts(peer->bev, NULL, NULL);
        hub_bus_peer_greeted(peer->server->hub);
        log_info("bus peer %lu: listen daemon connected", peer->id);
        return true;
    }
    if (frame->kind == BUS_KIND_HELLO) {
        peer_fail(peer, "unexpected frame kind");
        return false;
    }
    if ((peer->run && frame->run != peer->run) ||
        (peer->sync_run && frame->run != peer->sync_run)) {
        peer_fail(peer, "event ids of another run");
        return false;
    }
    if (frame->kind == BUS_KIND_SYNC)
        return peer_handle_sync(peer, frame);
    if (frame->kind == BUS_KIND_HISTORY && peer->synced) {
        peer_fail(peer, "HISTORY after SYNC or after events");
        return false;
    }
    if (frame->seq != peer->last_seq + 1) {
        peer_fail(peer, "sequence number out of order");
        return false;
    }
    ev.id_offset = event_message_id_offset(frame->message, frame->message_len);
    if (ev.id_offset == 0) {
        peer_fail(peer, "event message of another shape");
        return false;
    }
    peer->last_seq = frame->seq;
    ev.history_only = false;
    if (frame->kind == BUS_KIND_HISTORY) {
        /* One this daemon has is skipped; one of a run it has events of is
         * one it missed, delivered now, in order; one of a run it never had
         * is kept for resumes only (its subscribers came after it). */
        uint64_t last = 0;
        bool known = history_run_last(peer->server->hub->history, frame->run, &last);
        if (peer->history_mode == HISTORY_NONE_YET)
            peer->history_mode = known ? HISTORY_CATCH_UP : HISTORY_ONLY;
        peer->server->counters.history_frames++;
        if (known && frame->number <= last)
            return true;
        ev.history_only = peer->history_mode == HISTORY_ONLY;
    } else {
        peer->server->counters.events++;
        if (!peer->synced) {
            peer->synced = true;
            hub_bus_peer_synced(peer->server->hub);
        }
    }
    /* Before this peer counts as having sent events of its run. */
    ev.other_run_live = other_run_live(peer, frame->run);
    peer->run = frame->run;
    ev.type = frame->type;
    ev.type_len = frame->type_len;
    ev.message = frame->message;
    ev.message_len = frame->message_len;
    ev.run = frame->run;
    ev.number = frame->number;
    hub_fanout(peer->server->hub, &ev);
    return true;
}

/* Handles every whole frame in peer's input, then acks them. Returns false
 * when the peer broke the protocol and was dropped. */
static bool peer_read(struct bus_peer *peer)
{
    struct bufferevent *bev = peer->bev;
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
            return false;
        }
        if (rc != BUS_OK) {
            peer_fail(peer, bus_status_text(rc));
            return false;
        }
        if (!peer_handle_frame(peer, &frame))
            return false;
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
    return true;
}

static void peer_read_cb(struct bufferevent *bev, void *arg)
{
    peer_read(arg);
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
