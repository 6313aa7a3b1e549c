/* Unit tests for broadcast/hub.c through a transport of the test's own:
 * the hub must run fan-out, the slow-consumer close, the init and close
 * deadlines, the ping sweep and shutdown with nothing but struct
 * subscriber_ops, which is what lets a second transport be a second file.
 *
 * Each subscriber's connection is a real socketpair with a socket
 * bufferevent on the server end, on a real event base; the hub's timers are
 * real and short, and the loop runs until what a test waits for has
 * happened (with a deadline that fails the test instead of hanging).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "hub.h"
#include "net/conn_flush.h"
#include "subscriber.h"
#include "subscriptions.h"

#define WAIT_LIMIT_S 5

/* One subscriber of the test transport, and what the hub asked of it. */
struct test_sub {
    struct subscriber sub;
    int client;          /* the peer's end of the socketpair */
    bool await_close;    /* what ops->close answers */
    unsigned closes;     /* ops->close calls */
    uint16_t close_code; /* the last one's code */
    unsigned pings;      /* ops->ping calls */
    bool *destroyed;     /* set by ops->destroy; owned by the test */
};

static struct test_sub *test_sub_of(struct subscriber *sub)
{
    return (struct test_sub *)((char *)sub - offsetof(struct test_sub, sub));
}

static void t_reply(struct subscriber *sub, const char *text, size_t len)
{
    evbuffer_add(bufferevent_get_output(sub->bev), text, len);
}

static bool t_notify(struct subscriber *sub, const char *text, size_t len)
{
    t_reply(sub, text, len);
    return true;
}

static bool t_close(struct subscriber *sub, uint16_t code, const char *reason)
{
    struct test_sub *t = test_sub_of(sub);
    assert_int_equal(sub->state, SUBSCRIBER_CLOSING); /* the hub decided first */
    t->closes++;
    t->close_code = code;
    if (t->await_close)
        return true;
    hub_end_subscriber(sub);
    return false;
}

static void t_ping(struct subscriber *sub)
{
    test_sub_of(sub)->pings++;
}

static void t_destroy(struct subscriber *sub)
{
    struct test_sub *t = test_sub_of(sub);
    *t->destroyed = true;
    close(t->client);
    free(t);
}

static const struct subscriber_ops test_ops = {
    .name = "test",
    .reply = t_reply,
    .notify = t_notify,
    .close = t_close,
    .ping = t_ping,
    .destroy = t_destroy,
};

struct fixture {
    struct event_base *base;
    struct hub hub;
};

static const struct hub_limits long_limits = {
    .max_message = 4096,
    .max_backlog = 1 << 20,
    .init_timeout_ms = 3600 * 1000,
    .ping_interval_ms = 3600 * 1000,
    .close_timeout_ms = 3600 * 1000,
    .max_subscriptions = 16,
};

static void fixture_start(struct fixture *f, const struct hub_limits *limits)
{
    f->base = event_base_new();
    assert_non_null(f->base);
    assert_int_equal(hub_init(&f->hub, f->base, limits, NULL), 0);
}

static void fixture_stop(struct fixture *f)
{
    hub_free(&f->hub);
    conn_flush_abort_all();
    event_base_free(f->base);
    assert_int_equal(conn_open_count(), 0);
}

/* A new subscriber on a fresh socketpair, registered with the hub and,
 * when type is not NULL, subscribed to it. */
static struct test_sub *add_sub(struct fixture *f, const char *type, bool *destroyed)
{
    struct test_sub *t = calloc(1, sizeof *t);
    int fds[2];
    assert_non_null(t);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds), 0);
    t->client = fds[1];
    t->destroyed = destroyed;
    *destroyed = false;
    t->sub.ops = &test_ops;
    t->sub.bev = bufferevent_socket_new(f->base, fds[0], BEV_OPT_CLOSE_ON_FREE);
    assert_non_null(t->sub.bev);
    bufferevent_enable(t->sub.bev, EV_WRITE);
    conn_track_open();
    snprintf(t->sub.peer, sizeof t->sub.peer, "test");
    hub_add_subscriber(&f->hub, &t->sub);
    if (type) {
        char *types[] = {(char *)type};
        size_t lens[] = {strlen(type)};
        assert_int_equal(subs_add_all(f->hub.subs, &t->sub.subs, &t->sub, types, lens, 1), 1);
    }
    return t;
}

/* Marks t authenticated, as a successful init would. */
static void authenticate(struct test_sub *t)
{
    t->sub.credential = strdup("credential");
    t->sub.credential_len = strlen("credential");
    assert_non_null(t->sub.credential);
    hub_subscriber_authenticated(&t->sub);
}

static void timed_out_cb(evutil_socket_t fd, short what, void *arg)
{
    *(bool *)arg = true;
}

/* Runs the loop until done(arg); fails after WAIT_LIMIT_S. */
static void run_until_done(struct fixture *f, bool (*done)(const void *), const void *arg)
{
    bool timed_out = false;
    struct timeval limit = {WAIT_LIMIT_S, 0};
    struct event *timer = evtimer_new(f->base, timed_out_cb, &timed_out);
    evtimer_add(timer, &limit);
    while (!done(arg) && !timed_out)
        event_base_loop(f->base, EVLOOP_ONCE);
    event_free(timer);
    assert_true(done(arg));
}

static bool flag_set(const void *flag)
{
    return *(const bool *)flag;
}

/* Runs the loop until *flag is set; fails after WAIT_LIMIT_S. */
static void run_until(struct fixture *f, const bool *flag)
{
    run_until_done(f, flag_set, flag);
}

/* Runs the loop until every pending write of this pass has been made. */
static void run_once(struct fixture *f)
{
    event_base_loop(f->base, EVLOOP_NONBLOCK);
}

/* What the peer has received so far (up to cap bytes). */
static size_t received(const struct test_sub *t, uint8_t *buf, size_t cap)
{
    ssize_t n = recv(t->client, buf, cap, MSG_DONTWAIT);
    return n > 0 ? (size_t)n : 0;
}

/* One event from the bus, numbered in the order of the calls. Without a
 * history and without sessions that asked for ids, the message goes out as
 * it is, whatever its shape. */
static void fanout(struct fixture *f, const char *type, const char *message)
{
    static uint64_t number;
    struct hub_event ev = {
        .type = (const uint8_t *)type,
        .type_len = strlen(type),
        .message = (const uint8_t *)message,
        .message_len = strlen(message),
        .id_offset = strlen(message),
        .run = 1,
        .number = ++number,
    };
    hub_fanout(&f->hub, &ev);
}

static void test_fanout_reaches_the_subscribers_of_the_type_only(void **state)
{
    struct fixture f;
    bool gone_a, gone_b;
    uint8_t buf[256];
    fixture_start(&f, &long_limits);
    struct test_sub *a = add_sub(&f, "orders", &gone_a), *b = add_sub(&f, "users", &gone_b);

    fanout(&f, "orders", "{\"n\":1}");
    fanout(&f, "nobody", "{\"n\":2}");
    run_once(&f); /* the flush event writes the deliveries */
    assert_int_equal(received(a, buf, sizeof buf), 2 + 7);
    assert_int_equal(buf[0], 0x81);
    assert_memory_equal(buf + 2, "{\"n\":1}", 7);
    assert_int_equal(received(b, buf, sizeof buf), 0);
    assert_int_equal(f.hub.counters.events_received, 2);
    assert_int_equal(f.hub.counters.events_unrouted, 1);
    assert_int_equal(f.hub.counters.deliveries, 1);
    assert_int_equal(a->closes + b->closes, 0);
    fixture_stop(&f);
    assert_true(gone_a && gone_b);
}

static void
test_slow_consumer_is_closed_1013_after_the_fanout_and_the_others_still_get_it(void **state)
{
    struct hub_limits limits = long_limits;
    struct fixture f;
    bool gone_slow, gone_fast;
    char message[151], unsent[300];
    uint8_t buf[512];
    limits.max_backlog = 400;
    fixture_start(&f, &limits);
    struct test_sub *slow = add_sub(&f, "t", &gone_slow), *fast = add_sub(&f, "t", &gone_fast);
    slow->await_close = true;
    memset(message, 'x', sizeof message - 1);
    message[sizeof message - 1] = '\0';
    /* The slow peer has not taken 300 bytes yet: a 152-byte frame (copied,
     * so it costs its bytes) takes it over 400. */
    memset(unsent, 'u', sizeof unsent);
    evbuffer_add(bufferevent_get_output(slow->sub.bev), unsent, sizeof unsent);

    fanout(&f, "t", message);
    assert_int_equal(slow->closes, 1);
    assert_int_equal(slow->close_code, 1013);
    assert_int_equal(slow->sub.state, SUBSCRIBER_CLOSING);
    assert_null(slow->sub.subs.head); /* its subscriptions ended with the close */
    assert_int_equal(fast->closes, 0);
    assert_int_equal(f.hub.counters.slow_consumer_closes, 1);
    assert_int_equal(f.hub.counters.deliveries, 1);
    fanout(&f, "t", message); /* a closing subscriber gets nothing more */
    assert_int_equal(f.hub.counters.deliveries, 2);
    run_once(&f);
    assert_int_equal(received(fast, buf, sizeof buf), 2 * (4 + 150));
    fixture_stop(&f);
    assert_true(gone_slow && gone_fast);
}

static bool closed_once(const void *t)
{
    return ((const struct test_sub *)t)->closes == 1;
}

static void test_no_init_in_time_closes_1008_and_an_authenticated_one_stays(void **state)
{
    struct hub_limits limits = long_limits;
    struct fixture f;
    bool gone_late, gone_ok;
    limits.init_timeout_ms = 20;
    fixture_start(&f, &limits);
    struct test_sub *late = add_sub(&f, NULL, &gone_late), *ok = add_sub(&f, NULL, &gone_ok);
    late->await_close = true;
    authenticate(ok);
    assert_int_equal(f.hub.counters.sessions_authenticated, 1);

    run_until_done(&f, closed_once, late);
    assert_false(gone_late); /* awaiting the peer's answer */
    assert_int_equal(late->close_code, 1008);
    assert_int_equal(f.hub.counters.init_timeout_closes, 1);
    assert_int_equal(f.hub.counters.sessions_open, 2);
    assert_false(gone_ok);
    assert_int_equal(ok->closes, 0);
    fixture_stop(&f);
    assert_true(gone_ok);
    assert_int_equal(f.hub.counters.sessions_authenticated, 0);
}

static void test_a_close_not_answered_in_time_is_dropped(void **state)
{
    struct hub_limits limits = long_limits;
    struct fixture f;
    bool gone;
    limits.close_timeout_ms = 20;
    fixture_start(&f, &limits);
    struct test_sub *t = add_sub(&f, "t", &gone);
    t->await_close = true;

    hub_close_subscriber(&t->sub, 1001, "going away");
    assert_int_equal(t->closes, 1);
    hub_close_subscriber(&t->sub, 1008, "again"); /* closing already: nothing more */
    assert_int_equal(t->closes, 1);
    assert_false(gone);
    run_until(&f, &gone);
    assert_int_equal(f.hub.counters.sessions_open, 0);
    fixture_stop(&f);
}

static bool pinged_once(const void *t)
{
    return ((const struct test_sub *)t)->pings == 1;
}

static void test_ping_sweep_drops_a_silent_subscriber_and_pings_the_others_again(void **state)
{
    struct hub_limits limits = long_limits;
    struct fixture f;
    bool gone_silent, gone_alive;
    limits.ping_interval_ms = 20;
    fixture_start(&f, &limits);
    struct test_sub *silent = add_sub(&f, NULL, &gone_silent);
    silent->await_close = true; /* were it closed, not dropped, it would stay */
    struct test_sub *alive = add_sub(&f, NULL, &gone_alive);

    run_until_done(&f, pinged_once, alive); /* the first sweep pings both */
    assert_int_equal(silent->pings, 1);
    assert_int_equal(silent->sub.state, SUBSCRIBER_PINGED);
    subscriber_alive(&alive->sub); /* its pong */
    assert_int_equal(alive->sub.state, SUBSCRIBER_OPEN);
    run_until(&f, &gone_silent); /* the next sweep */
    assert_int_equal(f.hub.counters.ping_timeout_closes, 1);
    assert_false(gone_alive);
    assert_int_equal(alive->pings, 2);
    fixture_stop(&f);
}

static void test_close_all_closes_each_open_subscriber_once(void **state)
{
    struct fixture f;
    bool gone[3];
    struct test_sub *t[3];
    fixture_start(&f, &long_limits);
    for (int i = 0; i < 3; i++) {
        t[i] = add_sub(&f, "t", &gone[i]);
        t[i]->await_close = true;
    }
    hub_close_subscriber(&t[1]->sub, 1008, "policy");

    hub_close_all(&f.hub, 1001, "server shutting down");
    assert_int_equal(t[0]->closes, 1);
    assert_int_equal(t[0]->close_code, 1001);
    assert_int_equal(t[1]->closes, 1);
    assert_int_equal(t[1]->close_code, 1008);
    assert_int_equal(t[2]->closes, 1);
    assert_int_equal(t[2]->close_code, 1001);
    assert_int_equal(subs_index_entry_count(f.hub.subs), 0);
    fixture_stop(&f);
    for (int i = 0; i < 3; i++)
        assert_true(gone[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fanout_reaches_the_subscribers_of_the_type_only),
        cmocka_unit_test(
            test_slow_consumer_is_closed_1013_after_the_fanout_and_the_others_still_get_it),
        cmocka_unit_test(test_no_init_in_time_closes_1008_and_an_authenticated_one_stays),
        cmocka_unit_test(test_a_close_not_answered_in_time_is_dropped),
        cmocka_unit_test(test_ping_sweep_drops_a_silent_subscriber_and_pings_the_others_again),
        cmocka_unit_test(test_close_all_closes_each_open_subscriber_once),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
