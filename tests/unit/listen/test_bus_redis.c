/* Unit tests for listen/bus_redis.c, through bus.h's table of operations as
 * the publish handler uses it, against a real redis-server: an event is
 * OK with the id Redis gave once Redis has it; while Redis is away events
 * wait up to wait_ms and go out in order when it is back, or fail; a
 * reply that never comes and abort are 503, never an id; done is
 * never called from inside publish, and never after cancel.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include <event2/event.h>

#include "../bus/redis_test_server.h"
#include "bus/event_id.h"
#include "bus_redis.h"
#include "core/log.h"

#define DEADLINE_S 10
#define STREAM "test:events"

struct fixture {
    struct event_base *base;
    struct event *tick;
    struct redis_test_server server;
    struct bus bus;
};

struct result {
    int calls;
    int status;
    char id[EVENT_ID_LEN + 1];
};

static void on_done(void *arg, int status, const char *id)
{
    struct result *r = arg;
    r->calls++;
    r->status = status;
    assert_true((status == BUS_PUBLISH_OK) == (id != NULL));
    if (id)
        snprintf(r->id, sizeof r->id, "%s", id);
}

static void tick_cb(evutil_socket_t fd, short what, void *arg) {}

static bool available(struct fixture *f)
{
    return f->bus.ops->available(f->bus.engine);
}

static void run_until_available(struct fixture *f, bool want)
{
    time_t deadline = time(NULL) + DEADLINE_S;
    while (available(f) != want) {
        if (time(NULL) > deadline)
            fail_msg("timed out waiting for availability %d", want);
        event_base_loop(f->base, EVLOOP_ONCE);
    }
}

static void run_until_done(struct fixture *f, const struct result *r)
{
    time_t deadline = time(NULL) + DEADLINE_S;
    while (r->calls == 0) {
        if (time(NULL) > deadline)
            fail_msg("timed out waiting for a publish to be answered");
        event_base_loop(f->base, EVLOOP_ONCE);
    }
}

static void start(struct fixture *f, unsigned wait_ms)
{
    struct bus_redis_config config = {.stream = STREAM, .max_len = 1000, .wait_ms = wait_ms};
    char url[160], err[160];
    snprintf(url, sizeof url, "unix:%s", f->server.sock);
    assert_int_equal(redis_url_parse(url, &config.conn.url, err, sizeof err), 0);
    config.conn.password = REDIS_TEST_PASSWORD;
    config.conn.connect_timeout_ms = 2000;
    config.conn.reply_timeout_ms = 500;
    f->bus.ops = &bus_redis_ops;
    f->bus.engine = bus_redis_new(f->base, &config, err, sizeof err);
    if (!f->bus.engine)
        fail_msg("%s", err);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    struct timeval ten_ms = {0, 10000};
    assert_non_null(f);
    log_set_level(LOG_LEVEL_ERROR);
    redis_test_server_open(&f->server, "evs-bus-redis");
    f->base = event_base_new();
    f->tick = event_new(f->base, -1, EV_PERSIST, tick_cb, NULL);
    assert_int_equal(event_add(f->tick, &ten_ms), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    if (f->bus.engine)
        f->bus.ops->free(f->bus.engine);
    redis_test_server_close(&f->server);
    event_free(f->tick);
    event_base_free(f->base);
    free(f);
    return 0;
}

static void *publish(struct fixture *f, const char *type, struct result *r)
{
    char message[128];
    struct publish_event event;
    void *p;
    snprintf(message, sizeof message, "{\"type\":\"event\",\"event\":\"%s\",\"data\":1}", type);
    event.type = strdup(type);
    event.type_len = strlen(type);
    event.message = strdup(message);
    event.message_len = strlen(message);
    memset(r, 0, sizeof *r);
    p = f->bus.ops->publish(f->bus.engine, &event, on_done, r);
    assert_non_null(p);
    assert_null(event.type);       /* the engine owns the contents now */
    assert_int_equal(r->calls, 0); /* never from inside publish */
    return p;
}

static void test_ok_with_the_id_redis_gave(void **state)
{
    struct fixture *f = *state;
    struct result r[3];
    uint64_t run, number;
    start(f, 1000);
    run_until_available(f, true);
    assert_true(f->bus.ops->all_tried(f->bus.engine));
    for (int i = 0; i < 3; i++)
        publish(f, "orders", &r[i]);
    for (int i = 0; i < 3; i++) {
        run_until_done(f, &r[i]);
        assert_int_equal(r[i].status, BUS_PUBLISH_OK);
        assert_int_equal(event_id_parse(r[i].id, strlen(r[i].id), &run, &number), 0);
        assert_int_equal(number, (uint64_t)i + 1);
    }
}

static void test_events_wait_for_redis_and_go_out_in_order_or_fail(void **state)
{
    struct fixture *f = *state;
    struct result early[3], late;
    uint64_t run, number;
    redis_test_server_stop(&f->server, SIGKILL); /* Redis is not there yet */
    start(f, 5000);
    for (int i = 0; i < 3; i++)
        publish(f, "w", &early[i]);
    event_base_loop(f->base, EVLOOP_NONBLOCK);
    assert_int_equal(early[0].calls, 0); /* waiting */
    assert_false(available(f));
    redis_test_server_start(&f->server);
    for (int i = 0; i < 3; i++) {
        run_until_done(f, &early[i]);
        assert_int_equal(early[i].status, BUS_PUBLISH_OK);
        assert_int_equal(event_id_parse(early[i].id, strlen(early[i].id), &run, &number), 0);
        assert_int_equal(number, (uint64_t)i + 1); /* in the order they were published */
    }

    /* Away for longer than wait_ms: 503. */
    f->bus.ops->free(f->bus.engine);
    redis_test_server_stop(&f->server, SIGKILL);
    start(f, 200);
    publish(f, "w", &late);
    run_until_done(f, &late);
    assert_int_equal(late.status, BUS_PUBLISH_UNAVAILABLE);
    assert_string_equal(late.id, "");
}

static void test_a_reply_that_never_comes_is_never_an_id(void **state)
{
    struct fixture *f = *state;
    struct result r;
    struct bus_redis_stats s;
    start(f, 1000);
    run_until_available(f, true);
    kill(f->server.pid, SIGSTOP); /* it stops answering: the reply timeout drops it */
    publish(f, "x", &r);
    run_until_done(f, &r);
    assert_int_equal(r.status, BUS_PUBLISH_UNAVAILABLE);
    kill(f->server.pid, SIGCONT);
    run_until_available(f, true);
    bus_redis_get_stats(f->bus.engine, &s);
    assert_true(s.conn.timeouts >= 1);
    assert_int_equal(s.in_flight, 0);
}

static void test_cancel_and_abort(void **state)
{
    struct fixture *f = *state;
    struct result cancelled, sent, after;
    void *p;
    start(f, 1000);
    run_until_available(f, true);
    p = publish(f, "c", &cancelled);
    f->bus.ops->cancel(p);
    publish(f, "c", &sent);
    run_until_done(f, &sent);
    assert_int_equal(sent.status, BUS_PUBLISH_OK);
    assert_int_equal(cancelled.calls, 0); /* it still went out, nobody is told */

    /* abort: in Redis's hands or waiting, all 503 now, later ones too. */
    publish(f, "a", &sent);
    kill(f->server.pid, SIGSTOP);
    f->bus.ops->abort(f->bus.engine);
    assert_int_equal(sent.calls, 1);
    assert_int_equal(sent.status, BUS_PUBLISH_UNAVAILABLE);
    publish(f, "a", &after);
    run_until_done(f, &after);
    assert_int_equal(after.status, BUS_PUBLISH_UNAVAILABLE);
    assert_false(available(f));
    kill(f->server.pid, SIGCONT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_ok_with_the_id_redis_gave, setup, teardown),
        cmocka_unit_test_setup_teardown(test_events_wait_for_redis_and_go_out_in_order_or_fail,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_reply_that_never_comes_is_never_an_id, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_cancel_and_abort, setup, teardown),
    };
    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
