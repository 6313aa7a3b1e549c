/* Unit tests for listen/redis_publisher.c against a real redis-server: ids
 * given by Redis count up by one in the stream's epoch whichever publisher
 * appends, the stream holds each event under "<n>-1" with its epoch, type
 * and message, trimming follows max_len, a flushed Redis starts a new
 * epoch, a stream ahead of the count (an entry added by another hand, a
 * meta key deleted alone) is passed, an error or a lost connection is
 * never an id, and with wait_replicas a publish succeeds once a real
 * replica has it, not before.
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

#define DEADLINE_S 10
#define STREAM "test:events"

struct fixture {
    struct event_base *base;
    struct event *tick;
    struct redis_test_server server;
    struct redis_conn *conn;
    struct redis_publisher *pub;
};

struct outcome {
    int calls;
    enum redis_publish_status status;
    uint64_t run, number;
};

struct answer {
    int calls;
    int type;
    long long integer;
    size_t elements;
    char first[8192]; /* a string reply, or the first entry's id of an XRANGE */
    char fields[512]; /* that entry's fields, "k=v " each */
};

static void on_published(void *arg, enum redis_publish_status status, uint64_t run, uint64_t number)
{
    struct outcome *o = arg;
    o->calls++;
    o->status = status;
    o->run = run;
    o->number = number;
}

static void on_answer(void *arg, const redisReply *r)
{
    struct answer *a = arg;
    a->calls++;
    a->type = r ? r->type : -1;
    if (!r)
        return;
    a->integer = r->integer;
    a->elements = r->elements;
    if (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS ||
        r->type == REDIS_REPLY_ERROR)
        snprintf(a->first, sizeof a->first, "%.*s", (int)r->len, r->str);
    /* XRANGE: [[id, [k, v, ...]], ...] */
    if (r->type == REDIS_REPLY_ARRAY && r->elements > 0 &&
        r->element[0]->type == REDIS_REPLY_ARRAY && r->element[0]->elements == 2) {
        const redisReply *entry = r->element[0], *kv = entry->element[1];
        size_t used = 0;
        snprintf(a->first, sizeof a->first, "%s", entry->element[0]->str);
        for (size_t i = 0; i + 1 < kv->elements; i += 2)
            used += (size_t)snprintf(a->fields + used, sizeof a->fields - used, "%s=%s ",
                                     kv->element[i]->str, kv->element[i + 1]->str);
    }
}

static void tick_cb(evutil_socket_t fd, short what, void *arg) {}

static void on_ready(void *arg) {}
static void on_lost(void *arg, const char *reason) {}
static const struct redis_conn_events events = {on_ready, on_lost};

static struct redis_publisher *new_publisher(struct fixture *f, size_t max_len)
{
    struct redis_publisher_config config = {.stream = STREAM, .max_len = max_len};
    char err[160];
    struct redis_publisher *p = redis_publisher_new(f->conn, &config, err, sizeof err);
    if (!p)
        fail_msg("%s", err);
    return p;
}

static void run_until_ready(struct fixture *f)
{
    time_t deadline = time(NULL) + DEADLINE_S;
    while (!redis_conn_ready(f->conn)) {
        if (time(NULL) > deadline)
            fail_msg("not ready: %s", redis_conn_last_error(f->conn));
        event_base_loop(f->base, EVLOOP_ONCE);
    }
}

static void run_until_calls(struct fixture *f, const int *calls, int n)
{
    time_t deadline = time(NULL) + DEADLINE_S;
    while (*calls < n) {
        if (time(NULL) > deadline)
            fail_msg("timed out waiting for %d replies (got %d)", n, *calls);
        event_base_loop(f->base, EVLOOP_ONCE);
    }
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    struct timeval ten_ms = {0, 10000};
    struct redis_conn_config config = {
        .password = REDIS_TEST_PASSWORD, .connect_timeout_ms = 2000, .reply_timeout_ms = 2000};
    char url[160], err[160];
    assert_non_null(f);
    log_set_level(LOG_LEVEL_ERROR);
    redis_test_server_open(&f->server, "evs-redis-pub");
    f->base = event_base_new();
    f->tick = event_new(f->base, -1, EV_PERSIST, tick_cb, NULL);
    assert_int_equal(event_add(f->tick, &ten_ms), 0);
    snprintf(url, sizeof url, "unix:%s", f->server.sock);
    assert_int_equal(redis_url_parse(url, &config.url, err, sizeof err), 0);
    f->conn = redis_conn_new(f->base, &config, &events, f);
    assert_non_null(f->conn);
    run_until_ready(f);
    f->pub = new_publisher(f, 10000);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    redis_publisher_free(f->pub);
    redis_conn_free(f->conn);
    redis_test_server_close(&f->server);
    event_free(f->tick);
    event_base_free(f->base);
    free(f);
    return 0;
}

static void publish(struct fixture *f, struct redis_publisher *p, const char *type,
                    const char *message, struct outcome *o)
{
    memset(o, 0, sizeof *o);
    assert_int_equal(
        redis_publisher_publish(p, type, strlen(type), message, strlen(message), on_published, o),
        0);
}

static void command(struct fixture *f, struct answer *a, int argc, const char **argv)
{
    size_t lens[8];
    for (int i = 0; i < argc; i++)
        lens[i] = strlen(argv[i]);
    memset(a, 0, sizeof *a);
    assert_int_equal(redis_conn_command(f->conn, argc, argv, lens, 0, on_answer, a), 0);
    run_until_calls(f, &a->calls, 1);
}

static void test_ids_count_up_in_the_streams_epoch_and_the_stream_holds_the_events(void **state)
{
    struct fixture *f = *state;
    struct outcome o[5];
    struct answer a;
    char id[32], fields[400];
    /* Pipelined: all five go out before the first reply. */
    for (int i = 0; i < 5; i++)
        publish(f, f->pub, "orders", "{\"type\":\"event\",\"event\":\"orders\",\"data\":1}", &o[i]);
    for (int i = 0; i < 5; i++) {
        run_until_calls(f, &o[i].calls, 1);
        assert_int_equal(o[i].status, REDIS_PUBLISH_OK);
        assert_int_equal(o[i].number, (uint64_t)i + 1);
        assert_true(o[i].run != 0 && o[i].run == o[0].run);
    }
    command(f, &a, 1 + 1, (const char *[]){"XLEN", STREAM});
    assert_int_equal(a.integer, 5);
    command(f, &a, 4, (const char *[]){"XRANGE", STREAM, "3-1", "3-1"});
    assert_int_equal(a.elements, 1);
    snprintf(id, sizeof id, "3-1");
    assert_string_equal(a.first, id);
    snprintf(fields, sizeof fields,
             "e=%016llx t=orders m={\"type\":\"event\",\"event\":\"orders\",\"data\":1} ",
             (unsigned long long)o[0].run);
    assert_string_equal(a.fields, fields);
}

static void test_two_publishers_share_one_epoch_and_one_count(void **state)
{
    struct fixture *f = *state;
    struct redis_publisher *other = new_publisher(f, 10000);
    struct outcome o[6];
    bool seen[7] = {false};
    for (int i = 0; i < 6; i++)
        publish(f, i % 2 ? other : f->pub, "t", "{\"type\":\"event\",\"event\":\"t\"}", &o[i]);
    for (int i = 0; i < 6; i++) {
        run_until_calls(f, &o[i].calls, 1);
        assert_int_equal(o[i].status, REDIS_PUBLISH_OK);
        assert_true(o[i].run == o[0].run); /* one epoch for both */
        assert_true(o[i].number >= 1 && o[i].number <= 6 && !seen[o[i].number]);
        seen[o[i].number] = true;
    }
    redis_publisher_free(other);
}

static void test_a_flushed_redis_starts_a_new_epoch(void **state)
{
    struct fixture *f = *state;
    struct outcome before, after;
    struct answer a;
    publish(f, f->pub, "t", "{\"type\":\"event\",\"event\":\"t\"}", &before);
    run_until_calls(f, &before.calls, 1);
    command(f, &a, 1, (const char *[]){"FLUSHALL"});
    assert_int_equal(a.type, REDIS_REPLY_STATUS);
    /* The same publisher: the epoch is Redis's to make, new with the meta key. */
    publish(f, f->pub, "t", "{\"type\":\"event\",\"event\":\"t\"}", &after);
    run_until_calls(f, &after.calls, 1);
    assert_int_equal(after.status, REDIS_PUBLISH_OK);
    assert_int_equal(after.number, 1);
    assert_true(after.run != before.run);
}

static void test_a_stream_ahead_of_the_count_is_passed(void **state)
{
    struct fixture *f = *state;
    struct outcome o;
    struct answer a;
    uint64_t run, last;
    char top[sizeof((struct answer *)0)->first];
    publish(f, f->pub, "t", "{\"type\":\"event\",\"event\":\"t\"}", &o);
    run_until_calls(f, &o.calls, 1);
    run = o.run;
    /* Someone else's entry, with an id of Redis's clock. */
    command(f, &a, 5, (const char *[]){"XADD", STREAM, "*", "not", "ours"});
    assert_int_equal(a.type, REDIS_REPLY_STRING);
    publish(f, f->pub, "t", "{\"type\":\"event\",\"event\":\"t\"}", &o);
    run_until_calls(f, &o.calls, 1);
    assert_int_equal(o.status, REDIS_PUBLISH_OK);
    assert_int_equal(o.run, run);
    assert_true(o.number == strtoull(a.first, NULL, 10) + 1); /* just past it */
    /* The count alone deleted (the epoch kept): past the stream's last id
     * again, even when that entry was deleted. */
    command(f, &a, 3, (const char *[]){"HDEL", STREAM ":meta", "seq"});
    command(f, &a, 6, (const char *[]){"XREVRANGE", STREAM, "+", "-", "COUNT", "1"});
    snprintf(top, sizeof top, "%s", a.first);
    last = strtoull(top, NULL, 10);
    assert_int_equal(last, o.number);
    command(f, &a, 3, (const char *[]){"XDEL", STREAM, top});
    assert_int_equal(a.integer, 1);
    publish(f, f->pub, "t", "{\"type\":\"event\",\"event\":\"t\"}", &o);
    run_until_calls(f, &o.calls, 1);
    assert_int_equal(o.status, REDIS_PUBLISH_OK);
    assert_int_equal(o.run, run);
    assert_int_equal(o.number, last + 1);
    publish(f, f->pub, "t", "{\"type\":\"event\",\"event\":\"t\"}", &o);
    run_until_calls(f, &o.calls, 1);
    assert_int_equal(o.number, last + 2); /* counting on from there */
}

/* The calls of command name (lower case) that INFO commandstats counts. */
static long command_calls(struct fixture *f, const char *name)
{
    struct answer a;
    char key[64];
    const char *at;
    command(f, &a, 2, (const char *[]){"INFO", "commandstats"});
    snprintf(key, sizeof key, "cmdstat_%s:calls=", name);
    at = strstr(a.first, key);
    return at ? strtol(at + strlen(key), NULL, 10) : 0;
}

static void test_the_script_goes_by_its_sha_and_by_its_text_when_redis_lacks_it(void **state)
{
    struct fixture *f = *state;
    struct outcome o[3];
    struct answer a;
    /* A new Redis: NOSCRIPT, then the text, once. */
    for (int i = 0; i < 3; i++) {
        publish(f, f->pub, "t", "{\"type\":\"event\",\"event\":\"t\"}", &o[i]);
        run_until_calls(f, &o[i].calls, 1);
        assert_int_equal(o[i].status, REDIS_PUBLISH_OK);
        assert_int_equal(o[i].number, (uint64_t)i + 1);
    }
    assert_int_equal(command_calls(f, "eval"), 1);
    assert_int_equal(command_calls(f, "evalsha"), 3);
    /* Scripts flushed while connected: the text again, once. */
    command(f, &a, 2, (const char *[]){"SCRIPT", "FLUSH"});
    for (int i = 0; i < 2; i++) {
        publish(f, f->pub, "t", "{\"type\":\"event\",\"event\":\"t\"}", &o[i]);
        run_until_calls(f, &o[i].calls, 1);
        assert_int_equal(o[i].status, REDIS_PUBLISH_OK);
        assert_int_equal(o[i].number, (uint64_t)i + 4);
    }
    assert_int_equal(command_calls(f, "eval"), 2);
    assert_int_equal(command_calls(f, "evalsha"), 5);
}

static void test_waiting_for_replicas_succeeds_only_with_them(void **state)
{
    struct fixture *f = *state;
    struct redis_publisher_config config = {.stream = STREAM,
                                            .max_len = 10000,
                                            .wait_replicas = 1,
                                            .wait_timeout_ms = 100,
                                            .base = f->base};
    struct redis_test_server replica;
    struct redis_publisher *waiting;
    struct outcome o[4];
    struct answer a;
    char err[160];
    time_t deadline = time(NULL) + DEADLINE_S;
    assert_non_null(waiting = redis_publisher_new(f->conn, &config, err, sizeof err));
    /* No replica: taken, but not confirmed. */
    publish(f, waiting, "t", "{\"type\":\"event\",\"event\":\"t\"}", &o[0]);
    run_until_calls(f, &o[0].calls, 1);
    assert_int_equal(o[0].status, REDIS_PUBLISH_UNREPLICATED);
    assert_true(o[0].run == 0 && o[0].number == 0);
    command(f, &a, 2, (const char *[]){"XLEN", STREAM});
    assert_int_equal(a.integer, 1);

    memset(&replica, 0, sizeof replica);
    snprintf(replica.dir, sizeof replica.dir, "/tmp/evs-redis-replica-XXXXXX");
    assert_non_null(mkdtemp(replica.dir));
    snprintf(replica.sock, sizeof replica.sock, "%s/redis.sock", replica.dir);
    replica.port = redis_test_free_port();
    replica.master_port = f->server.port;
    redis_test_server_start(&replica);
    for (;;) { /* until the master counts it in sync */
        command(f, &a, 2, (const char *[]){"INFO", "replication"});
        if (strstr(a.first, "state=online"))
            break;
        if (time(NULL) > deadline)
            fail_msg("the replica did not come online: %s", a.first);
        command(f, &a, 3, (const char *[]){"WAIT", "1", "100"});
    }
    /* Pipelined: one WAIT answers for the three; time enough for a busy
     * machine. */
    redis_publisher_free(waiting);
    config.wait_timeout_ms = 3000;
    assert_non_null(waiting = redis_publisher_new(f->conn, &config, err, sizeof err));
    for (int i = 1; i < 4; i++)
        publish(f, waiting, "t", "{\"type\":\"event\",\"event\":\"t\"}", &o[i]);
    for (int i = 1; i < 4; i++) {
        run_until_calls(f, &o[i].calls, 1);
        assert_int_equal(o[i].status, REDIS_PUBLISH_OK);
        assert_int_equal(o[i].number, (uint64_t)i + 1);
    }
    redis_test_server_close(&replica);
    redis_publisher_free(waiting);
}

static void test_the_stream_is_trimmed_near_max_len(void **state)
{
    struct fixture *f = *state;
    struct redis_publisher *small = new_publisher(f, 100);
    struct outcome o;
    struct answer a;
    for (int i = 0; i < 1000; i++) {
        publish(f, small, "t", "{\"type\":\"event\",\"event\":\"t\"}", &o);
        run_until_calls(f, &o.calls, 1);
        assert_int_equal(o.status, REDIS_PUBLISH_OK);
    }
    command(f, &a, 2, (const char *[]){"XLEN", STREAM});
    /* "~": whole nodes of entries go, so a little over 100 stay. */
    assert_true(a.integer >= 100 && a.integer < 300);
    redis_publisher_free(small);
}

static void test_an_error_or_a_lost_connection_is_never_an_id(void **state)
{
    struct fixture *f = *state;
    struct outcome o;
    struct answer a;
    /* The meta key of another type: the script fails. */
    command(f, &a, 3, (const char *[]){"SET", STREAM ":meta", "not a hash"});
    publish(f, f->pub, "t", "{\"type\":\"event\",\"event\":\"t\"}", &o);
    run_until_calls(f, &o.calls, 1);
    assert_int_equal(o.status, REDIS_PUBLISH_REFUSED);
    assert_true(o.run == 0 && o.number == 0);

    command(f, &a, 2, (const char *[]){"DEL", STREAM ":meta"});
    kill(f->server.pid, SIGSTOP); /* it stops answering */
    publish(f, f->pub, "t", "{\"type\":\"event\",\"event\":\"t\"}", &o);
    run_until_calls(f, &o.calls, 1); /* the reply timeout drops the connection */
    assert_int_equal(o.status, REDIS_PUBLISH_UNAVAILABLE);
    kill(f->server.pid, SIGCONT);
    assert_int_equal(redis_publisher_publish(f->pub, "t", 1, "{}", 2, on_published, &o), -1);
}

static void test_replies_that_are_not_ours_are_refused(void **state)
{
    redisReply e = {.type = REDIS_REPLY_STRING, .str = "00000000000000ff", .len = 16};
    redisReply n = {.type = REDIS_REPLY_INTEGER, .integer = 7};
    redisReply *both[2] = {&e, &n};
    redisReply r = {.type = REDIS_REPLY_ARRAY, .elements = 2, .element = both};
    uint64_t run, number;
    assert_int_equal(redis_publisher_parse_reply(&r, &run, &number), 0);
    assert_true(run == 0xff && number == 7);

    n.integer = 0; /* numbers start at 1 */
    assert_int_equal(redis_publisher_parse_reply(&r, &run, &number), -1);
    n.integer = 7;
    e.str = "00000000000000fF"; /* only the lower-case hex that %016x writes */
    assert_int_equal(redis_publisher_parse_reply(&r, &run, &number), -1);
    e.str = "0000000000000000"; /* run 0 is no run */
    assert_int_equal(redis_publisher_parse_reply(&r, &run, &number), -1);
    e.str = "00000000000000ff0";
    e.len = 17;
    assert_int_equal(redis_publisher_parse_reply(&r, &run, &number), -1);
    e.len = 16;
    e.str = "00000000000000ff";
    e.type = REDIS_REPLY_STATUS;
    assert_int_equal(redis_publisher_parse_reply(&r, &run, &number), -1);
    e.type = REDIS_REPLY_STRING;
    r.elements = 1;
    assert_int_equal(redis_publisher_parse_reply(&r, &run, &number), -1);
    r.elements = 2;
    r.type = REDIS_REPLY_ERROR;
    assert_int_equal(redis_publisher_parse_reply(&r, &run, &number), -1);
    assert_int_equal(redis_publisher_parse_reply(NULL, &run, &number), -1);
}

static void test_bad_stream_names_are_refused(void **state)
{
    struct fixture *f = *state;
    char err[160], longest[REDIS_STREAM_MAX + 2];
    struct redis_publisher_config config = {.stream = "", .max_len = 10};
    assert_null(redis_publisher_new(f->conn, &config, err, sizeof err));
    config.stream = "has space";
    assert_null(redis_publisher_new(f->conn, &config, err, sizeof err));
    assert_non_null(strstr(err, "REDIS_STREAM"));
    memset(longest, 's', sizeof longest - 1);
    longest[sizeof longest - 1] = '\0';
    config.stream = longest;
    assert_null(redis_publisher_new(f->conn, &config, err, sizeof err));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_ids_count_up_in_the_streams_epoch_and_the_stream_holds_the_events, setup,
            teardown),
        cmocka_unit_test_setup_teardown(test_two_publishers_share_one_epoch_and_one_count, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_a_flushed_redis_starts_a_new_epoch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_stream_ahead_of_the_count_is_passed, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_the_script_goes_by_its_sha_and_by_its_text_when_redis_lacks_it, setup, teardown),
        cmocka_unit_test_setup_teardown(test_waiting_for_replicas_succeeds_only_with_them, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_the_stream_is_trimmed_near_max_len, setup, teardown),
        cmocka_unit_test_setup_teardown(test_an_error_or_a_lost_connection_is_never_an_id, setup,
                                        teardown),
        cmocka_unit_test(test_replies_that_are_not_ours_are_refused),
        cmocka_unit_test_setup_teardown(test_bad_stream_names_are_refused, setup, teardown),
    };
    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
