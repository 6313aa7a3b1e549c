/* Unit tests for listen/bus_client.c: the listen daemon's side of the bus.
 *
 * A real bus client on a real event_base connects over a real UNIX socket
 * to a fake broadcast daemon written here: it listens in a temporary
 * folder, speaks the bus protocol with common/bus/bus_codec.h (HELLO, ACK)
 * and records the EVENT frames it gets. The test decides when the peer
 * answers HELLO, acks, or goes away; the loop runs until what is awaited
 * has happened, with a deadline.
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <event2/event.h>

#include "bus/bus_codec.h"
#include "bus/event_id.h"
#include "bus_client.h"
#include "core/log.h"

#define MAX_EVENTS 8
#define DEADLINE_S 5

/* The fake broadcast daemon: one listening socket, one accepted peer. */
struct peer {
    struct event_base *base;
    char path[108];
    int listen_fd;
    int fd; /* the accepted connection, -1 when none */
    struct event *accept_ev;
    struct event *read_ev;
    bool answer_hello; /* sends its HELLO once the client's has come */
    bool hello_seen;
    uint8_t buf[4096];
    size_t len;
    size_t accepted;
    size_t events; /* EVENT frames received */
    uint64_t seq[MAX_EVENTS];
    uint64_t run[MAX_EVENTS], number[MAX_EVENTS]; /* the events' ids */
    char type[MAX_EVENTS][32];
    char message[MAX_EVENTS][128];
    size_t history; /* HISTORY frames received */
    uint64_t history_seq[MAX_EVENTS], history_number[MAX_EVENTS];
    size_t syncs; /* SYNC frames received, each after the HISTORY frames */
    uint64_t sync_run, sync_number;
};

struct fixture {
    struct event_base *base;
    char dir[64];
    struct peer peer;
    struct peer second; /* for the tests with two broadcast daemons */
    struct bus_client *bus;
    struct event *tick;
};

/* What a publish's done callback reported. */
struct result {
    int calls;
    int status;
    char id[EVENT_ID_LEN + 1]; /* empty unless OK */
};

static void on_done(void *arg, int status, const char *id)
{
    struct result *r = arg;
    r->calls++;
    r->status = status;
    /* An id exactly when the event was taken. */
    assert_true((status == BUS_PUBLISH_OK) == (id != NULL));
    if (id) {
        assert_int_equal(strlen(id), EVENT_ID_LEN);
        memcpy(r->id, id, EVENT_ID_LEN + 1);
    }
}

/* The id the client gives the event numbered number. */
static const char *id_of(struct fixture *f, uint64_t number, char out[EVENT_ID_LEN + 1])
{
    struct bus_client_stats s;
    bus_client_get_stats(f->bus, &s);
    event_id_format(out, s.run, number);
    return out;
}

static void peer_send(struct peer *p, const uint8_t *frame, size_t len)
{
    assert_int_equal(send(p->fd, frame, len, MSG_NOSIGNAL), (ssize_t)len);
}

static void peer_send_hello(struct peer *p)
{
    uint8_t hello[BUS_HELLO_FRAME_LEN];
    peer_send(p, hello, bus_encode_hello(hello));
}

static void peer_ack(struct peer *p, uint64_t seq)
{
    uint8_t ack[BUS_ACK_FRAME_LEN];
    peer_send(p, ack, bus_encode_ack(ack, seq));
}

static void peer_drop(struct peer *p)
{
    if (p->read_ev) {
        event_free(p->read_ev);
        p->read_ev = NULL;
    }
    if (p->fd >= 0) {
        close(p->fd);
        p->fd = -1;
    }
    p->len = 0;
    p->hello_seen = false;
    p->history = 0;
    p->syncs = 0;
}

static void peer_read_cb(evutil_socket_t fd, short what, void *arg)
{
    static const struct bus_decoder from_listen = {BUS_KINDS_FROM_LISTEN, 1024};
    struct peer *p = arg;
    struct bus_frame frame;
    size_t frame_len;
    ssize_t n = recv(fd, p->buf + p->len, sizeof p->buf - p->len, 0);
    if (n <= 0) {
        peer_drop(p);
        return;
    }
    p->len += (size_t)n;
    while (bus_decoder_next(&from_listen, p->buf, p->len, &frame, &frame_len) == BUS_OK) {
        if (frame.kind == BUS_KIND_HELLO) {
            assert_int_equal(frame.version, BUS_PROTOCOL_VERSION);
            p->hello_seen = true;
            if (p->answer_hello)
                peer_send_hello(p);
        } else if (frame.kind == BUS_KIND_HISTORY) {
            assert_true(p->hello_seen);
            assert_int_equal(p->syncs, 0); /* the history comes first */
            assert_true(p->history < MAX_EVENTS);
            p->history_seq[p->history] = frame.seq;
            p->history_number[p->history] = frame.number;
            p->history++;
        } else if (frame.kind == BUS_KIND_SYNC) {
            assert_true(p->hello_seen);
            p->syncs++;
            p->sync_run = frame.run;
            p->sync_number = frame.number;
        } else {
            assert_int_equal(frame.kind, BUS_KIND_EVENT);
            assert_true(p->hello_seen);
            assert_true(p->events < MAX_EVENTS);
            assert_true(frame.type_len < sizeof p->type[0]);
            assert_true(frame.message_len < sizeof p->message[0]);
            p->seq[p->events] = frame.seq;
            p->run[p->events] = frame.run;
            p->number[p->events] = frame.number;
            memcpy(p->type[p->events], frame.type, frame.type_len);
            p->type[p->events][frame.type_len] = '\0';
            memcpy(p->message[p->events], frame.message, frame.message_len);
            p->message[p->events][frame.message_len] = '\0';
            p->events++;
        }
        memmove(p->buf, p->buf + frame_len, p->len - frame_len);
        p->len -= frame_len;
    }
}

static void peer_accept_cb(evutil_socket_t fd, short what, void *arg)
{
    struct peer *p = arg;
    int c = accept(fd, NULL, NULL);
    if (c < 0)
        return;
    assert_int_equal(p->fd, -1); /* one client, one link */
    assert_int_equal(evutil_make_socket_nonblocking(c), 0);
    p->fd = c;
    p->accepted++;
    p->read_ev = event_new(p->base, c, EV_READ | EV_PERSIST, peer_read_cb, p);
    assert_non_null(p->read_ev);
    assert_int_equal(event_add(p->read_ev, NULL), 0);
}

/* Starts listening at p->path. */
static void peer_listen(struct peer *p)
{
    struct sockaddr_un sun;
    memset(&sun, 0, sizeof sun);
    sun.sun_family = AF_UNIX;
    strcpy(sun.sun_path, p->path);
    p->listen_fd = socket(AF_UNIX, SOCK_STREAM, 0);
    assert_true(p->listen_fd >= 0);
    assert_int_equal(bind(p->listen_fd, (struct sockaddr *)&sun, sizeof sun), 0);
    assert_int_equal(listen(p->listen_fd, 4), 0);
    assert_int_equal(evutil_make_socket_nonblocking(p->listen_fd), 0);
    p->accept_ev = event_new(p->base, p->listen_fd, EV_READ | EV_PERSIST, peer_accept_cb, p);
    assert_non_null(p->accept_ev);
    assert_int_equal(event_add(p->accept_ev, NULL), 0);
}

static void peer_close(struct peer *p)
{
    peer_drop(p);
    if (p->accept_ev) {
        event_free(p->accept_ev);
        p->accept_ev = NULL;
    }
    if (p->listen_fd >= 0) {
        close(p->listen_fd);
        p->listen_fd = -1;
        unlink(p->path);
    }
}

static void tick_cb(evutil_socket_t fd, short what, void *arg) {}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    struct timeval ten_ms = {0, 10000};
    assert_non_null(f);
    strcpy(f->dir, "/tmp/evs-bus-client-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    f->base = event_base_new();
    assert_non_null(f->base);
    /* Keeps every EVLOOP_ONCE turn short, so that run_until sees its deadline. */
    f->tick = event_new(f->base, -1, EV_PERSIST, tick_cb, NULL);
    assert_int_equal(event_add(f->tick, &ten_ms), 0);
    f->peer.base = f->base;
    f->peer.listen_fd = -1;
    f->peer.fd = -1;
    f->peer.answer_hello = true;
    snprintf(f->peer.path, sizeof f->peer.path, "%s/bus.sock", f->dir);
    f->second = f->peer;
    snprintf(f->second.path, sizeof f->second.path, "%s/second.sock", f->dir);
    log_set_level(LOG_LEVEL_ERROR); /* the links' connect/retry lines are not what is tested */
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    bus_client_free(f->bus);
    peer_close(&f->peer);
    peer_close(&f->second);
    event_free(f->tick);
    event_base_free(f->base);
    rmdir(f->dir);
    free(f);
    return 0;
}

static void start_client_with(struct fixture *f, unsigned wait_ms, const char *const *paths,
                              size_t n, const struct history_limits *history)
{
    struct bus_client_config config = {
        .paths = paths, .path_count = n, .wait_ms = wait_ms, .ack_timeout_ms = 5000};
    if (history)
        config.history = *history;
    f->bus = bus_client_new(f->base, &config);
    assert_non_null(f->bus);
}

/* Without a history (max_events 0): a link that connects gets SYNC only. */
static void start_client(struct fixture *f, unsigned wait_ms, const char *const *paths, size_t n)
{
    start_client_with(f, wait_ms, paths, n, NULL);
}

static struct bus_client_stats stats_of(struct fixture *f)
{
    struct bus_client_stats s;
    bus_client_get_stats(f->bus, &s);
    return s;
}

typedef bool (*condition_fn)(struct fixture *f, const void *arg);

/* Runs the loop until cond holds; fails the test after DEADLINE_S seconds. */
static void run_until(struct fixture *f, condition_fn cond, const void *arg, const char *what)
{
    time_t deadline = time(NULL) + DEADLINE_S;
    while (!cond(f, arg)) {
        if (time(NULL) > deadline)
            fail_msg("timed out waiting for %s", what);
        event_base_loop(f->base, EVLOOP_ONCE);
    }
}

static bool is_ready(struct fixture *f, const void *arg)
{
    return stats_of(f).ready == 1;
}

static bool peer_got_events(struct fixture *f, const void *arg)
{
    return f->peer.events >= *(const size_t *)arg;
}

static bool both_ready(struct fixture *f, const void *arg)
{
    return stats_of(f).ready == 2;
}

static bool both_got_one(struct fixture *f, const void *arg)
{
    return f->peer.events >= 1 && f->second.events >= 1;
}

static bool one_in_flight(struct fixture *f, const void *arg)
{
    return stats_of(f).in_flight == 1;
}

static bool is_done(struct fixture *f, const void *arg)
{
    return ((const struct result *)arg)->calls > 0;
}

static bool all_tried(struct fixture *f, const void *arg)
{
    return bus_client_all_tried(f->bus);
}

static bool peer_synced(struct fixture *f, const void *arg)
{
    return f->peer.syncs > 0;
}

static bool peer_connected(struct fixture *f, const void *arg)
{
    return f->peer.fd >= 0 && f->peer.hello_seen;
}

static struct bus_client_publish *publish(struct fixture *f, const char *type, const char *message,
                                          struct result *r)
{
    struct publish_event event = {.type = strdup(type),
                                  .type_len = strlen(type),
                                  .message = strdup(message),
                                  .message_len = strlen(message)};
    struct bus_client_publish *p;
    assert_non_null(event.type);
    assert_non_null(event.message);
    p = bus_client_publish(f->bus, &event, on_done, r);
    assert_non_null(p);
    assert_null(event.type); /* the client owns the contents now */
    assert_null(event.message);
    assert_int_equal(r->calls, 0); /* never from inside bus_client_publish */
    return p;
}

static void connect_client(struct fixture *f)
{
    const char *paths[] = {f->peer.path};
    peer_listen(&f->peer);
    start_client(f, 5000, paths, 1);
    run_until(f, is_ready, NULL, "the link to be ready");
}

static void test_publish_is_done_ok_after_the_peer_acks_it(void **state)
{
    struct fixture *f = *state;
    struct result r = {0};
    const size_t one = 1;
    const char *message = "{\"type\":\"event\",\"event\":\"orders\",\"data\":1}";
    struct bus_client_stats s;
    char id[EVENT_ID_LEN + 1];

    connect_client(f);
    publish(f, "orders", message, &r);
    run_until(f, peer_got_events, &one, "the EVENT frame at the peer");
    assert_int_equal(f->peer.seq[0], 1);
    assert_int_equal(f->peer.number[0], 1);
    assert_true(f->peer.run[0] == stats_of(f).run && f->peer.run[0] != 0);
    assert_string_equal(f->peer.type[0], "orders");
    assert_string_equal(f->peer.message[0], message);
    /* Sent, not acked: not done yet. */
    event_base_loop(f->base, EVLOOP_NONBLOCK);
    assert_int_equal(r.calls, 0);
    s = stats_of(f);
    assert_int_equal(s.in_flight, 1);
    assert_int_equal(s.waiting, 0);

    peer_ack(&f->peer, 1);
    run_until(f, is_done, &r, "the publish to be done");
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.status, BUS_PUBLISH_OK);
    assert_string_equal(r.id, id_of(f, 1, id));
    s = stats_of(f);
    assert_int_equal(s.in_flight, 0);
    assert_int_equal(s.numbered, 1);
    assert_int_equal(s.links, 1);
    assert_int_equal(s.ready, 1);
    assert_int_equal(s.reconnects, 0);
}

static void test_a_cumulative_ack_completes_every_event_up_to_it_in_order(void **state)
{
    struct fixture *f = *state;
    struct result r[3] = {{0}};
    const size_t three = 3;

    connect_client(f);
    for (int i = 0; i < 3; i++)
        publish(f, "t", "{\"type\":\"event\",\"event\":\"t\"}", &r[i]);
    run_until(f, peer_got_events, &three, "three EVENT frames at the peer");
    for (int i = 0; i < 3; i++) {
        assert_int_equal(f->peer.seq[i], (uint64_t)i + 1);
        assert_int_equal(f->peer.number[i], (uint64_t)i + 1);
    }

    peer_ack(&f->peer, 2);
    run_until(f, is_done, &r[1], "the second publish to be done");
    assert_int_equal(r[0].calls, 1);
    assert_int_equal(r[0].status, BUS_PUBLISH_OK);
    assert_int_equal(r[1].status, BUS_PUBLISH_OK);
    assert_int_equal(r[2].calls, 0);
    assert_int_equal(stats_of(f).in_flight, 1);

    peer_ack(&f->peer, 3);
    run_until(f, is_done, &r[2], "the third publish to be done");
    assert_int_equal(r[2].status, BUS_PUBLISH_OK);
    assert_int_equal(stats_of(f).in_flight, 0);
}

static void test_with_two_peers_a_publish_is_done_only_when_both_have_acked(void **state)
{
    struct fixture *f = *state;
    const char *paths[] = {f->peer.path, f->second.path};
    struct result r = {0};

    peer_listen(&f->peer);
    peer_listen(&f->second);
    start_client(f, 5000, paths, 2);
    run_until(f, both_ready, NULL, "both links to be ready");
    publish(f, "two", "{\"type\":\"event\",\"event\":\"two\"}", &r);
    run_until(f, both_got_one, NULL, "the EVENT frame at both peers");
    assert_int_equal(stats_of(f).in_flight, 2);

    peer_ack(&f->peer, 1);
    run_until(f, one_in_flight, NULL, "the first peer's ack to be taken");
    assert_int_equal(r.calls, 0); /* one ack of two: not done */
    peer_ack(&f->second, 1);
    run_until(f, is_done, &r, "the publish to be done");
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.status, BUS_PUBLISH_OK);
    assert_int_equal(stats_of(f).in_flight, 0);
}

static void test_a_lost_peer_fails_every_pending_publish(void **state)
{
    struct fixture *f = *state;
    struct result r[2] = {{0}};
    const size_t two = 2;

    connect_client(f);
    publish(f, "a", "{\"type\":\"event\",\"event\":\"a\"}", &r[0]);
    publish(f, "b", "{\"type\":\"event\",\"event\":\"b\"}", &r[1]);
    run_until(f, peer_got_events, &two, "both EVENT frames at the peer");
    assert_int_equal(stats_of(f).in_flight, 2);

    peer_drop(&f->peer); /* the broadcast daemon goes away without acking */
    run_until(f, is_done, &r[1], "the second publish to fail");
    assert_int_equal(r[0].calls, 1);
    assert_int_equal(r[0].status, BUS_PUBLISH_UNAVAILABLE);
    assert_int_equal(r[1].calls, 1);
    assert_int_equal(r[1].status, BUS_PUBLISH_UNAVAILABLE);
    assert_int_equal(stats_of(f).in_flight, 0);
    assert_int_equal(stats_of(f).ready, 0);
    assert_string_equal(r[0].id, ""); /* no id in a refusal */
}

/* Numbers follow the order events go out; one that went out keeps its
 * number even when it failed (a broadcast daemon may have had it), and one
 * that never went out takes none, so a skipped number always means an event
 * a broadcast daemon missed. Across reconnects the run and the numbers go
 * on, while sequence numbers start again. */
static void test_ids_count_the_events_that_went_out(void **state)
{
    struct fixture *f = *state;
    const char *paths[] = {f->peer.path};
    struct result early = {0}, lost = {0}, later = {0};
    const size_t one = 1;
    char id[EVENT_ID_LEN + 1];

    start_client(f, 100, paths, 1); /* nobody listens yet */
    publish(f, "n", "{\"type\":\"event\",\"event\":\"n\"}", &early);
    run_until(f, is_done, &early, "the publish to fail");
    assert_int_equal(early.status, BUS_PUBLISH_UNAVAILABLE);
    assert_int_equal(stats_of(f).numbered, 0);

    peer_listen(&f->peer);
    run_until(f, is_ready, NULL, "the link to be ready");
    publish(f, "n", "{\"type\":\"event\",\"event\":\"n\"}", &lost);
    run_until(f, peer_got_events, &one, "the EVENT frame at the peer");
    assert_int_equal(f->peer.number[0], 1);
    peer_drop(&f->peer);
    run_until(f, is_done, &lost, "the unacked publish to fail");
    assert_int_equal(lost.status, BUS_PUBLISH_UNAVAILABLE);

    f->peer.events = 0;
    run_until(f, is_ready, NULL, "the link to be ready again");
    publish(f, "n", "{\"type\":\"event\",\"event\":\"n\"}", &later);
    run_until(f, peer_got_events, &one, "the EVENT frame at the peer");
    assert_int_equal(f->peer.seq[0], 1);
    assert_int_equal(f->peer.number[0], 2);
    peer_ack(&f->peer, 1);
    run_until(f, is_done, &later, "the publish to be done");
    assert_string_equal(later.id, id_of(f, 2, id));
}

static void test_the_link_reconnects_and_counts_it(void **state)
{
    struct fixture *f = *state;
    struct result r = {0};
    const size_t one = 1;

    connect_client(f);
    peer_drop(&f->peer);
    run_until(f, peer_connected, NULL, "the client to connect again");
    run_until(f, is_ready, NULL, "the link to be ready again");
    assert_int_equal(f->peer.accepted, 2);
    assert_int_equal(stats_of(f).reconnects, 1);

    /* Sequence numbers start again at 1 on the new connection. */
    publish(f, "x", "{\"type\":\"event\",\"event\":\"x\"}", &r);
    run_until(f, peer_got_events, &one, "the EVENT frame at the peer");
    assert_int_equal(f->peer.seq[0], 1);
    peer_ack(&f->peer, 1);
    run_until(f, is_done, &r, "the publish to be done");
    assert_int_equal(r.status, BUS_PUBLISH_OK);
}

/* A broadcast daemon that (re)connects is sent the retained events as
 * HISTORY frames, oldest first and within the bounds, then SYNC with the
 * last number given; the events that follow are EVENT frames whose
 * sequence numbers go on after the history's. */
static void test_a_link_that_connects_gets_the_history_then_sync(void **state)
{
    struct fixture *f = *state;
    const char *paths[] = {f->peer.path};
    const struct history_limits two = {2, 1 << 20, 3600 * 1000};
    struct result r[4] = {{0}};
    const size_t three = 3, one = 1;
    struct bus_client_stats s;

    peer_listen(&f->peer);
    start_client_with(f, 5000, paths, 1, &two);
    run_until(f, peer_synced, NULL, "SYNC on the first connection");
    assert_int_equal(f->peer.history, 0); /* nothing sent yet */
    assert_true(f->peer.sync_run == stats_of(f).run && f->peer.sync_run != 0);
    assert_int_equal(f->peer.sync_number, 0);
    for (int i = 0; i < 3; i++)
        publish(f, "h", "{\"type\":\"event\",\"event\":\"h\"}", &r[i]);
    run_until(f, peer_got_events, &three, "three EVENT frames at the peer");
    peer_ack(&f->peer, 3);
    run_until(f, is_done, &r[2], "the third publish to be done");
    s = stats_of(f);
    assert_int_equal(s.history_events, 2); /* the bound: the first went */
    assert_true(s.history_bytes > 0);

    peer_drop(&f->peer);
    f->peer.events = 0;
    run_until(f, peer_synced, NULL, "SYNC on the new connection");
    assert_int_equal(f->peer.history, 2);
    assert_int_equal(f->peer.history_number[0], 2);
    assert_int_equal(f->peer.history_number[1], 3);
    assert_int_equal(f->peer.history_seq[0], 1);
    assert_int_equal(f->peer.history_seq[1], 2);
    assert_int_equal(f->peer.sync_number, 3);
    assert_int_equal(f->peer.events, 0);
    assert_int_equal(stats_of(f).history_sent, 2);

    publish(f, "h", "{\"type\":\"event\",\"event\":\"h\"}", &r[3]);
    run_until(f, peer_got_events, &one, "the EVENT frame after the history");
    assert_int_equal(f->peer.seq[0], 3);
    assert_int_equal(f->peer.number[0], 4);
    peer_ack(&f->peer, 3); /* one cumulative ack covers the history too */
    run_until(f, is_done, &r[3], "the publish after the history to be done");
    assert_int_equal(r[3].status, BUS_PUBLISH_OK);
    assert_int_equal(stats_of(f).in_flight, 0);
}

static void test_a_publish_waits_for_a_ready_link_then_goes_out(void **state)
{
    struct fixture *f = *state;
    const char *paths[] = {f->peer.path};
    struct result r = {0};
    const size_t one = 1;
    struct bus_client_stats s;

    f->peer.answer_hello = false;
    peer_listen(&f->peer);
    start_client(f, 10000, paths, 1);
    run_until(f, peer_connected, NULL, "the client's HELLO");
    publish(f, "w", "{\"type\":\"event\",\"event\":\"w\"}", &r);
    s = stats_of(f);
    assert_int_equal(s.ready, 0);
    assert_int_equal(s.waiting, 1);
    assert_int_equal(s.in_flight, 0);

    peer_send_hello(&f->peer); /* the handshake completes: the event goes out */
    run_until(f, peer_got_events, &one, "the EVENT frame at the peer");
    s = stats_of(f);
    assert_int_equal(s.waiting, 0);
    assert_int_equal(s.in_flight, 1);
    assert_int_equal(r.calls, 0);
    peer_ack(&f->peer, 1);
    run_until(f, is_done, &r, "the publish to be done");
    assert_int_equal(r.status, BUS_PUBLISH_OK);
}

static void test_a_publish_with_no_ready_link_fails_after_wait_ms(void **state)
{
    struct fixture *f = *state;
    const char *paths[] = {f->peer.path}; /* nobody listens there */
    struct result r = {0};

    start_client(f, 100, paths, 1);
    publish(f, "n", "{\"type\":\"event\",\"event\":\"n\"}", &r);
    assert_int_equal(stats_of(f).waiting, 1);
    run_until(f, is_done, &r, "the publish to fail");
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.status, BUS_PUBLISH_UNAVAILABLE);
    assert_int_equal(stats_of(f).waiting, 0);
}

static void test_a_cancelled_publish_is_not_reported(void **state)
{
    struct fixture *f = *state;
    struct result cancelled = {0}, later = {0};
    const size_t two = 2;

    connect_client(f);
    bus_client_publish_cancel(publish(f, "c", "{\"type\":\"event\",\"event\":\"c\"}", &cancelled));
    publish(f, "c", "{\"type\":\"event\",\"event\":\"c\"}", &later);
    run_until(f, peer_got_events, &two, "both EVENT frames at the peer"); /* it still goes out */
    peer_ack(&f->peer, 2);
    run_until(f, is_done, &later, "the second publish to be done");
    assert_int_equal(later.status, BUS_PUBLISH_OK);
    assert_int_equal(cancelled.calls, 0);
    assert_int_equal(stats_of(f).in_flight, 0);
}

static void test_all_tried_once_every_link_has_had_its_first_attempt(void **state)
{
    struct fixture *f = *state;
    char dead[128];
    const char *paths[] = {f->peer.path, dead};
    struct bus_client_stats s;

    snprintf(dead, sizeof dead, "%s/nobody.sock", f->dir);
    peer_listen(&f->peer);
    start_client(f, 1000, paths, 2);
    assert_false(bus_client_all_tried(f->bus)); /* nothing tried before the loop runs */
    run_until(f, all_tried, NULL, "every link to be tried");
    run_until(f, is_ready, NULL, "the live link to be ready");
    s = stats_of(f);
    assert_int_equal(s.links, 2);
    assert_int_equal(s.ready, 1);
    assert_true(bus_client_all_tried(f->bus));
}

static void test_all_tried_waits_for_a_link_still_in_its_handshake(void **state)
{
    struct fixture *f = *state;
    const char *paths[] = {f->peer.path};

    f->peer.answer_hello = false;
    peer_listen(&f->peer);
    start_client(f, 1000, paths, 1);
    run_until(f, peer_connected, NULL, "the client's HELLO");
    event_base_loop(f->base, EVLOOP_NONBLOCK);
    assert_false(bus_client_all_tried(f->bus)); /* connected, handshake not done: not yet */
    peer_send_hello(&f->peer);
    run_until(f, all_tried, NULL, "the link to be tried");
    assert_int_equal(stats_of(f).ready, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_publish_is_done_ok_after_the_peer_acks_it, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_a_cumulative_ack_completes_every_event_up_to_it_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_with_two_peers_a_publish_is_done_only_when_both_have_acked, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_lost_peer_fails_every_pending_publish, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_ids_count_the_events_that_went_out, setup, teardown),
        cmocka_unit_test_setup_teardown(test_the_link_reconnects_and_counts_it, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_link_that_connects_gets_the_history_then_sync, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_a_publish_waits_for_a_ready_link_then_goes_out, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_a_publish_with_no_ready_link_fails_after_wait_ms,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_cancelled_publish_is_not_reported, setup, teardown),
        cmocka_unit_test_setup_teardown(test_all_tried_once_every_link_has_had_its_first_attempt,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_all_tried_waits_for_a_link_still_in_its_handshake,
                                        setup, teardown),
    };
    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
