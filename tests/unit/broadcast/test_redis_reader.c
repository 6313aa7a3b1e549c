/* Unit tests for broadcast/redis_reader.c against a real redis-server, fed
 * by listen/redis_publisher.c: a new reader starts at the stream's end,
 * then gets every event once, in order, with its id; entries that are not
 * ours are skipped and counted; a reader whose connection is killed comes
 * back and gets what was appended meanwhile, once, in order; a stream
 * that was reset (FLUSHALL) is read again from its start, under its new
 * epoch; with load_history, a new reader first reads the stream's past, as
 * history only, then the live events; an entry too large for a reply is
 * skipped, read live, loaded or last in the stream, and what follows it
 * comes.
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
#include "core/log.h"
#include "redis_publisher.h"
#include "redis_reader.h"

#define DEADLINE_S 10
#define STREAM "test:events"
#define MAX_SEEN 64

struct fixture {
    struct event_base *base;
    struct event *tick;
    struct redis_test_server server;
    struct redis_conn_config conn_config;
    struct redis_conn *conn; /* the publishing side's, and the tests' own commands */
    struct redis_publisher *pub;
    struct redis_reader *reader;
    size_t seen;
    uint64_t run[MAX_SEEN], number[MAX_SEEN];
    char message[MAX_SEEN][64];
    char outgoing[MAX_SEEN][64]; /* what publish sends, by value */
    bool history_only[MAX_SEEN];
    int loaded; /* on_loaded calls */
    int published, publish_failed;
};

static void on_event(void *arg, const struct redis_reader_event *ev)
{
    struct fixture *f = arg;
    assert_true(f->seen < MAX_SEEN);
    assert_true(ev->message_len < sizeof f->message[0]);
    f->run[f->seen] = ev->run;
    f->number[f->seen] = ev->number;
    f->history_only[f->seen] = ev->history_only;
    memcpy(f->message[f->seen], ev->message, ev->message_len);
    f->message[f->seen][ev->message_len] = '\0';
    assert_true(ev->id_offset > 0 && ev->id_offset <= ev->message_len);
    f->seen++;
}

static void on_loaded(void *arg)
{
    ((struct fixture *)arg)->loaded++;
}

static void on_published(void *arg, enum redis_publish_status status, uint64_t run, uint64_t number)
{
    struct fixture *f = arg;
    if (status == REDIS_PUBLISH_OK)
        f->published++;
    else
        f->publish_failed++; /* the tests wait for their publishes; teardown frees the rest */
}

static void on_answer(void *arg, const redisReply *r)
{
    (*(int *)arg)++;
}

static void on_ready(void *arg) {}
static void on_lost(void *arg, const char *reason) {}
static const struct redis_conn_events events = {on_ready, on_lost};
static void tick_cb(evutil_socket_t fd, short what, void *arg) {}

typedef bool (*condition_fn)(struct fixture *f, size_t n);

static void run_until(struct fixture *f, condition_fn cond, size_t n, const char *what)
{
    time_t deadline = time(NULL) + DEADLINE_S;
    while (!cond(f, n)) {
        if (time(NULL) > deadline)
            fail_msg("timed out waiting for %s", what);
        event_base_loop(f->base, EVLOOP_ONCE);
    }
}

static bool conn_ready(struct fixture *f, size_t n)
{
    return redis_conn_ready(f->conn);
}

static bool reading(struct fixture *f, size_t n)
{
    return redis_reader_reading(f->reader);
}

static bool loaded(struct fixture *f, size_t n)
{
    return f->loaded > 0;
}

static bool seen_at_least(struct fixture *f, size_t n)
{
    return f->seen >= n;
}

static bool published_at_least(struct fixture *f, size_t n)
{
    return (size_t)f->published >= n;
}

static bool skipped_at_least(struct fixture *f, size_t n)
{
    struct redis_reader_stats s;
    redis_reader_get_stats(f->reader, &s);
    return s.skipped >= n;
}

static void publish(struct fixture *f, int value)
{
    char *message = f->outgoing[value % MAX_SEEN]; /* valid until answered */
    int len = snprintf(message, sizeof f->outgoing[0],
                       "{\"type\":\"event\",\"event\":\"t\",\"data\":%d}", value);
    assert_int_equal(redis_publisher_publish(f->pub, "t", 1, message, (size_t)len, on_published, f),
                     0);
}

/* A command on the tests' connection, run to its reply. */
static void command(struct fixture *f, int argc, const char **argv)
{
    size_t lens[12];
    int calls = 0;
    time_t deadline = time(NULL) + DEADLINE_S;
    for (int i = 0; i < argc; i++)
        lens[i] = strlen(argv[i]);
    assert_int_equal(redis_conn_command(f->conn, argc, argv, lens, 0, on_answer, &calls), 0);
    while (calls == 0) {
        if (time(NULL) > deadline)
            fail_msg("no reply to %s", argv[0]);
        event_base_loop(f->base, EVLOOP_ONCE);
    }
}

static void on_added(void *arg, const redisReply *r)
{
    *(int *)arg = r && r->type == REDIS_REPLY_STRING ? 1 : -1;
}

/* XADD <id> x <a value one byte over a reply's string limit>: the reply
 * of any read that returns it whole is refused. */
static void add_too_large_entry(struct fixture *f, const char *id)
{
    size_t len = REDIS_REPLY_STRING_MAX + 1;
    char *value = malloc(len);
    const char *argv[5] = {"XADD", STREAM, id, "x", value};
    size_t lens[5] = {4, strlen(STREAM), strlen(id), 1, len};
    int calls = 0;
    time_t deadline = time(NULL) + 2 * DEADLINE_S;
    assert_non_null(value);
    memset(value, 'y', len);
    /* 65 MiB to write and for Redis to take: more than a reply timeout. */
    assert_int_equal(
        redis_conn_command(f->conn, 5, argv, lens, DEADLINE_S * 1000, on_added, &calls), 0);
    free(value); /* copied */
    while (calls == 0) {
        if (time(NULL) > deadline)
            fail_msg("no reply to XADD");
        event_base_loop(f->base, EVLOOP_ONCE);
    }
    assert_int_equal(calls, 1);
}

static void start_reader_with(struct fixture *f, bool load_history)
{
    struct redis_reader_config config = {.conn = f->conn_config,
                                         .stream = STREAM,
                                         .block_ms = 200,
                                         .count = 3,
                                         .max_message = 1024,
                                         .load_history = load_history,
                                         .on_loaded = on_loaded};
    char err[160];
    f->reader = redis_reader_new(f->base, &config, on_event, f, err, sizeof err);
    if (!f->reader)
        fail_msg("%s", err);
    run_until(f, reading, 0, "the reader to start");
}

static void start_reader(struct fixture *f)
{
    start_reader_with(f, false);
    assert_int_equal(f->loaded, 1); /* at once: nothing to load */
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    struct timeval ten_ms = {0, 10000};
    struct redis_publisher_config pub = {.stream = STREAM, .max_len = 10000};
    char url[160], err[160];
    assert_non_null(f);
    log_set_level(LOG_LEVEL_ERROR);
    redis_test_server_open(&f->server, "evs-redis-reader");
    f->base = event_base_new();
    f->tick = event_new(f->base, -1, EV_PERSIST, tick_cb, NULL);
    assert_int_equal(event_add(f->tick, &ten_ms), 0);
    snprintf(url, sizeof url, "unix:%s", f->server.sock);
    assert_int_equal(redis_url_parse(url, &f->conn_config.url, err, sizeof err), 0);
    f->conn_config.password = REDIS_TEST_PASSWORD;
    f->conn_config.connect_timeout_ms = 2000;
    f->conn_config.reply_timeout_ms = 2000;
    f->conn = redis_conn_new(f->base, &f->conn_config, &events, f);
    run_until(f, conn_ready, 0, "the publishing connection");
    f->pub = redis_publisher_new(f->conn, &pub, err, sizeof err);
    assert_non_null(f->pub);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    redis_reader_free(f->reader);
    redis_publisher_free(f->pub);
    redis_conn_free(f->conn);
    redis_test_server_close(&f->server);
    event_free(f->tick);
    event_base_free(f->base);
    free(f);
    return 0;
}

static void test_a_new_reader_starts_at_the_end_then_gets_each_event_once_in_order(void **state)
{
    struct fixture *f = *state;
    for (int i = 1; i <= 3; i++)
        publish(f, i);
    run_until(f, published_at_least, 3, "three events before the reader");
    start_reader(f);
    assert_string_equal(redis_reader_last_id(f->reader), "3-1");
    for (int i = 4; i <= 10; i++) /* more than one COUNT's worth */
        publish(f, i);
    run_until(f, seen_at_least, 7, "seven events");
    for (size_t i = 0; i < 7; i++) {
        char want[64];
        snprintf(want, sizeof want, "{\"type\":\"event\",\"event\":\"t\",\"data\":%zu}", i + 4);
        assert_int_equal(f->number[i], i + 4);
        assert_true(f->run[i] == f->run[0] && f->run[0] != 0);
        assert_string_equal(f->message[i], want);
    }
    run_until(f, published_at_least, 10, "every publish answered");
    event_base_loop(f->base, EVLOOP_NONBLOCK);
    assert_int_equal(f->seen, 7);
    assert_int_equal(f->publish_failed, 0);
}

static bool reads_at_least(struct fixture *f, size_t n)
{
    struct redis_reader_stats s;
    redis_reader_get_stats(f->reader, &s);
    return s.reads >= n;
}

static void test_a_block_that_runs_out_is_no_error(void **state)
{
    struct fixture *f = *state;
    struct redis_reader_stats s;
    start_reader(f);
    run_until(f, reads_at_least, 3, "blocks that run out (a nil reply each)");
    redis_reader_get_stats(f->reader, &s);
    assert_int_equal(s.errors, 0);
    assert_int_equal(s.entries, 0);
    publish(f, 1);
    run_until(f, seen_at_least, 1, "an event after them");
    run_until(f, published_at_least, 1, "the publish answered");
}

static void test_an_empty_stream_is_read_from_its_start(void **state)
{
    struct fixture *f = *state;
    start_reader(f);
    assert_string_equal(redis_reader_last_id(f->reader), "0-0");
    publish(f, 1);
    run_until(f, seen_at_least, 1, "the first event");
    assert_int_equal(f->number[0], 1);
    run_until(f, published_at_least, 1, "the publish answered");
    assert_int_equal(f->publish_failed, 0);
}

static void test_entries_that_are_not_ours_are_skipped_and_counted(void **state)
{
    struct fixture *f = *state;
    struct redis_reader_stats s;
    start_reader(f);
    publish(f, 1);
    run_until(f, seen_at_least, 1, "the first event");
    /* Foreign entries, each wrong in one way, with ids after ours. */
    command(f, 9,
            (const char *[]){"XADD", STREAM, "2-1", "e", "00000000000000ff", "t", "t", "x", "y"});
    command(f, 9,
            (const char *[]){"XADD", STREAM, "3-1", "e", "00000000000000FF", "t", "t", "m",
                             "{\"type\":\"event\",\"event\":\"t\"}"});
    command(f, 9,
            (const char *[]){"XADD", STREAM, "4-1", "e", "00000000000000ff", "t", "t", "m",
                             "not json"});
    command(f, 9,
            (const char *[]){"XADD", STREAM, "5-7", "e", "00000000000000ff", "t", "t", "m",
                             "{\"type\":\"event\",\"event\":\"t\"}"});
    command(f, 5, (const char *[]){"XADD", STREAM, "6-1", "only", "this"});
    run_until(f, skipped_at_least, 5, "five skipped entries");
    assert_int_equal(f->seen, 1);
    assert_string_equal(redis_reader_last_id(f->reader), "6-1");
    redis_reader_get_stats(f->reader, &s);
    assert_int_equal(s.entries, 1);
    assert_int_equal(s.skipped, 5);
    run_until(f, published_at_least, 1, "the publish answered");
    assert_int_equal(f->publish_failed, 0);
}

static void test_a_reader_cut_off_gets_what_came_meanwhile_once_in_order(void **state)
{
    struct fixture *f = *state;
    struct redis_reader_stats s;
    start_reader(f);
    publish(f, 1);
    run_until(f, seen_at_least, 1, "the first event");
    /* Kill the reader's connection (the one blocked in XREAD); publish while
     * it reconnects. */
    command(f, 4, (const char *[]){"CLIENT", "KILL", "SKIPME", "yes"});
    run_until(f, conn_ready, 0, "the tests' connection again");
    for (int i = 2; i <= 6; i++)
        publish(f, i);
    run_until(f, seen_at_least, 6, "the events published meanwhile");
    for (size_t i = 0; i < 6; i++)
        assert_int_equal(f->number[i], i + 1);
    redis_reader_get_stats(f->reader, &s);
    assert_true(s.conn.connects >= 2);
    run_until(f, published_at_least, 6, "every publish answered");
    event_base_loop(f->base, EVLOOP_NONBLOCK);
    assert_int_equal(f->seen, 6);
    assert_int_equal(f->publish_failed, 0);
}

static void test_a_stream_that_was_reset_is_read_again_from_its_start(void **state)
{
    struct fixture *f = *state;
    struct redis_reader_stats s;
    uint64_t old_run;
    start_reader(f);
    for (int i = 1; i <= 3; i++)
        publish(f, i);
    run_until(f, seen_at_least, 3, "three events");
    run_until(f, published_at_least, 3, "every publish answered");
    old_run = f->run[0];
    /* Redis loses everything while the reader is connected and blocked. */
    command(f, 1, (const char *[]){"FLUSHALL"});
    publish(f, 4);
    run_until(f, seen_at_least, 4, "the first event of the new stream");
    assert_int_equal(f->number[3], 1); /* numbered from 1 again */
    assert_true(f->run[3] != old_run); /* under a new epoch */
    redis_reader_get_stats(f->reader, &s);
    assert_int_equal(s.resets, 1);
    run_until(f, published_at_least, 4, "every publish answered");
    assert_int_equal(f->publish_failed, 0);
}

static bool lag_is(struct fixture *f, size_t n)
{
    struct redis_reader_stats s;
    redis_reader_get_stats(f->reader, &s);
    return s.lag == n;
}

static void test_the_lag_is_the_distance_to_the_streams_count(void **state)
{
    struct fixture *f = *state;
    start_reader(f);
    for (int i = 1; i <= 3; i++)
        publish(f, i);
    run_until(f, seen_at_least, 3, "three events");
    run_until(f, lag_is, 0, "no lag");
    /* The count says 10 were numbered: 7 not read. */
    command(f, 4, (const char *[]){"HSET", STREAM ":meta", "seq", "10"});
    run_until(f, lag_is, 7, "the lag sampled again");
    run_until(f, published_at_least, 3, "every publish answered");
}

static void test_a_new_epoch_on_the_same_stream_repeats_nothing(void **state)
{
    struct fixture *f = *state;
    struct redis_reader_stats s;
    start_reader(f);
    for (int i = 1; i <= 3; i++)
        publish(f, i);
    run_until(f, seen_at_least, 3, "three events");
    run_until(f, published_at_least, 3, "every publish answered");
    /* The meta key alone is lost: the next events have a new epoch, on the
     * stream that holds the old ones; the reader finds it on reconnecting. */
    command(f, 2, (const char *[]){"DEL", STREAM ":meta"});
    {
        /* One write: Redis has 4 and 5 before the reader is back. */
        const char *kill[] = {"CLIENT", "KILL", "SKIPME", "yes"};
        size_t lens[] = {6, 4, 6, 3};
        static int calls; /* answered after this block */
        assert_int_equal(redis_conn_command(f->conn, 4, kill, lens, 0, on_answer, &calls), 0);
        publish(f, 4);
        publish(f, 5);
    }
    run_until(f, seen_at_least, 5, "the new epoch's events");
    assert_true(f->run[3] != f->run[0] && f->run[4] == f->run[3]);
    assert_int_equal(f->number[3], 4); /* numbered past the stream's last id */
    assert_int_equal(f->number[4], 5);
    run_until(f, published_at_least, 5, "every publish answered");
    publish(f, 6);
    run_until(f, seen_at_least, 6, "one more");
    assert_int_equal(f->seen, 6);
    redis_reader_get_stats(f->reader, &s);
    assert_int_equal(s.entries, 6);
    assert_int_equal(s.resets, 1);
}

static void test_a_new_reader_loads_the_past_as_history_then_reads_live(void **state)
{
    struct fixture *f = *state;
    struct redis_reader_stats s;
    for (int i = 1; i <= 4; i++)
        publish(f, i);
    run_until(f, published_at_least, 4, "four events");
    command(f, 5, (const char *[]){"XADD", STREAM, "5-0", "not", "ours"});
    for (int i = 5; i <= 7; i++) /* three loads of COUNT 3, one of them short */
        publish(f, i);
    run_until(f, published_at_least, 7, "seven events before the reader");
    start_reader_with(f, true);
    run_until(f, loaded, 0, "the load");
    assert_int_equal(f->seen, 7);
    for (size_t i = 0; i < 7; i++) {
        assert_int_equal(f->number[i], i + 1);
        assert_true(f->history_only[i]);
    }
    assert_string_equal(redis_reader_last_id(f->reader), "7-1");
    publish(f, 8);
    publish(f, 9);
    run_until(f, seen_at_least, 9, "the live events");
    assert_int_equal(f->number[7], 8);
    assert_int_equal(f->number[8], 9);
    assert_false(f->history_only[7]);
    assert_false(f->history_only[8]);
    assert_int_equal(f->loaded, 1);
    redis_reader_get_stats(f->reader, &s);
    assert_int_equal(s.loaded, 7);
    assert_int_equal(s.entries, 9);
    assert_int_equal(s.skipped, 1);
    run_until(f, published_at_least, 9, "every publish answered");
    assert_int_equal(f->publish_failed, 0);
}

static void test_loading_an_empty_stream_ends_at_once(void **state)
{
    struct fixture *f = *state;
    start_reader_with(f, true);
    assert_int_equal(f->loaded, 1);
    publish(f, 1);
    run_until(f, seen_at_least, 1, "the first event");
    assert_false(f->history_only[0]);
    run_until(f, published_at_least, 1, "the publish answered");
}

static void test_an_entry_too_large_to_read_is_skipped_not_read_again_and_again(void **state)
{
    struct fixture *f = *state;
    struct redis_reader_stats s;
    start_reader(f);
    publish(f, 1);
    run_until(f, seen_at_least, 1, "the first event");
    add_too_large_entry(f, "1-2");
    publish(f, 2);
    run_until(f, seen_at_least, 2, "the event after the large entry");
    assert_int_equal(f->number[1], 2);
    redis_reader_get_stats(f->reader, &s);
    assert_int_equal(s.skipped, 1);
    assert_int_equal(s.errors, 0);
    assert_true(s.conn.oversized >= 1);
    publish(f, 3); /* read as usual again */
    run_until(f, seen_at_least, 3, "one more");
    assert_int_equal(f->number[2], 3);
    run_until(f, published_at_least, 3, "every publish answered");
    event_base_loop(f->base, EVLOOP_NONBLOCK);
    assert_int_equal(f->seen, 3);
    redis_reader_get_stats(f->reader, &s);
    assert_int_equal(s.skipped, 1);
    assert_int_equal(f->publish_failed, 0);
}

static void test_an_entry_too_large_to_read_is_skipped_in_the_load(void **state)
{
    struct fixture *f = *state;
    struct redis_reader_stats s;
    publish(f, 1);
    run_until(f, published_at_least, 1, "the first event");
    add_too_large_entry(f, "1-2");
    publish(f, 2);
    run_until(f, published_at_least, 2, "the event after the large entry");
    start_reader_with(f, true);
    run_until(f, loaded, 0, "the load");
    assert_int_equal(f->seen, 2);
    assert_int_equal(f->number[0], 1);
    assert_int_equal(f->number[1], 2);
    assert_true(f->history_only[0] && f->history_only[1]);
    assert_string_equal(redis_reader_last_id(f->reader), "2-1");
    redis_reader_get_stats(f->reader, &s);
    assert_int_equal(s.skipped, 1);
    assert_int_equal(s.loaded, 2);
    publish(f, 3);
    run_until(f, seen_at_least, 3, "the live event");
    assert_false(f->history_only[2]);
    run_until(f, published_at_least, 3, "every publish answered");
    assert_int_equal(f->publish_failed, 0);
}

static void test_a_last_entry_too_large_to_read_is_where_the_reader_starts(void **state)
{
    struct fixture *f = *state;
    struct redis_reader_stats s;
    publish(f, 1);
    run_until(f, published_at_least, 1, "the first event");
    add_too_large_entry(f, "1-2");
    start_reader_with(f, true);
    run_until(f, loaded, 0, "the load");
    assert_int_equal(f->seen, 1);
    assert_string_equal(redis_reader_last_id(f->reader), "1-2");
    /* Blocks that run out look at the stream's last entry again: by its
     * size, not by reading it. */
    run_until(f, reads_at_least, 3, "blocks that run out");
    publish(f, 2);
    run_until(f, seen_at_least, 2, "the live event");
    assert_int_equal(f->number[1], 2);
    redis_reader_get_stats(f->reader, &s);
    assert_int_equal(s.skipped, 1);
    assert_int_equal(s.conn.oversized, 1);
    assert_int_equal(s.errors, 0);
    run_until(f, published_at_least, 2, "every publish answered");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_a_new_reader_starts_at_the_end_then_gets_each_event_once_in_order, setup,
            teardown),
        cmocka_unit_test_setup_teardown(test_an_empty_stream_is_read_from_its_start, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_a_block_that_runs_out_is_no_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_entries_that_are_not_ours_are_skipped_and_counted,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_a_reader_cut_off_gets_what_came_meanwhile_once_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_stream_that_was_reset_is_read_again_from_its_start,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_the_lag_is_the_distance_to_the_streams_count, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_a_new_epoch_on_the_same_stream_repeats_nothing, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_a_new_reader_loads_the_past_as_history_then_reads_live,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_loading_an_empty_stream_ends_at_once, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_an_entry_too_large_to_read_is_skipped_not_read_again_and_again, setup, teardown),
        cmocka_unit_test_setup_teardown(test_an_entry_too_large_to_read_is_skipped_in_the_load,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_a_last_entry_too_large_to_read_is_where_the_reader_starts, setup, teardown),
    };
    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
