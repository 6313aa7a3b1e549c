/* Unit tests for common/bus/redis_conn.c against a real redis-server
 * (Debian's), started here in a temporary folder on a UNIX socket or a
 * loopback port, with requirepass, and stopped by PID: the connection
 * authenticates and selects its database, refuses to be ready with a wrong
 * password, reports a lost server to every pending command, reconnects
 * once the server is back, and drops a server that stops answering.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
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
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <event2/event.h>
#include <netinet/in.h>

#include "bus/redis_conn.h"
#include "core/log.h"
#include "redis_test_server.h"

#define DEADLINE_S 30 /* a bound on failure only; the sanitizer build is slow */
#define PASSWORD REDIS_TEST_PASSWORD

struct fixture {
    struct event_base *base;
    struct event *tick;
    struct redis_test_server server;
    struct redis_conn *conn;
    int ready, lost;
    char lost_reason[200];
};

/* What one command's done callback got. */
struct answer {
    int calls;
    int type; /* -1: NULL */
    char text[64];
    long long integer;
};

static void on_ready(void *arg)
{
    ((struct fixture *)arg)->ready++;
}

static void on_lost(void *arg, const char *reason)
{
    struct fixture *f = arg;
    f->lost++;
    snprintf(f->lost_reason, sizeof f->lost_reason, "%s", reason);
}

static const struct redis_conn_events events = {on_ready, on_lost};

static void on_done(void *arg, const redisReply *reply)
{
    struct answer *a = arg;
    a->calls++;
    a->type = reply ? reply->type : -1;
    if (reply && reply->str)
        snprintf(a->text, sizeof a->text, "%.*s", (int)reply->len, reply->str);
    if (reply && reply->type == REDIS_REPLY_INTEGER)
        a->integer = reply->integer;
}

static void tick_cb(evutil_socket_t fd, short what, void *arg) {}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    struct timeval ten_ms = {0, 10000};
    assert_non_null(f);
    f->base = event_base_new();
    f->tick = event_new(f->base, -1, EV_PERSIST, tick_cb, NULL);
    assert_int_equal(event_add(f->tick, &ten_ms), 0);
    log_set_level(LOG_LEVEL_ERROR);
    redis_test_server_open(&f->server, "evs-redis-conn");
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    redis_conn_free(f->conn);
    redis_test_server_close(&f->server);
    event_free(f->tick);
    event_base_free(f->base);
    free(f);
    return 0;
}

typedef bool (*condition_fn)(struct fixture *f, const void *arg);

static void run_until(struct fixture *f, condition_fn cond, const void *arg, const char *what)
{
    time_t deadline = time(NULL) + DEADLINE_S;
    while (!cond(f, arg)) {
        if (time(NULL) > deadline)
            fail_msg("timed out waiting for %s (last error: %s)", what,
                     f->conn ? redis_conn_last_error(f->conn) : "-");
        event_base_loop(f->base, EVLOOP_ONCE);
    }
}

static bool ready_times(struct fixture *f, const void *arg)
{
    return f->ready >= *(const int *)arg && redis_conn_ready(f->conn);
}

static bool lost_times(struct fixture *f, const void *arg)
{
    return f->lost >= *(const int *)arg;
}

static bool answered(struct fixture *f, const void *arg)
{
    return ((const struct answer *)arg)->calls > 0;
}

static void connect_with(struct fixture *f, const char *url, const char *password,
                         unsigned reply_timeout_ms)
{
    struct redis_conn_config config = {
        .password = password, .connect_timeout_ms = 2000, .reply_timeout_ms = reply_timeout_ms};
    char err[200];
    if (redis_url_parse(url, &config.url, err, sizeof err) != 0)
        fail_msg("%s", err);
    f->conn = redis_conn_new(f->base, &config, &events, f);
    assert_non_null(f->conn);
}

static void command(struct fixture *f, struct answer *a, int argc, const char **argv)
{
    size_t lens[8];
    for (int i = 0; i < argc; i++)
        lens[i] = strlen(argv[i]);
    memset(a, 0, sizeof *a);
    assert_int_equal(redis_conn_command(f->conn, argc, argv, lens, 0, on_done, a), 0);
}

static void test_ready_after_auth_and_select_on_a_unix_socket(void **state)
{
    struct fixture *f = *state;
    char url[160];
    const int one = 1;
    struct answer a;
    struct redis_conn_stats s;
    snprintf(url, sizeof url, "unix:%s?db=5", f->server.sock);
    connect_with(f, url, PASSWORD, 2000);
    assert_false(redis_conn_ready(f->conn));
    run_until(f, ready_times, &one, "ready");

    /* It is on database 5: a key set here is not on database 0. */
    command(f, &a, 3, (const char *[]){"SET", "where", "five"});
    run_until(f, answered, &a, "SET");
    assert_int_equal(a.type, REDIS_REPLY_STATUS);
    command(f, &a, 2, (const char *[]){"CLIENT", "INFO"});
    run_until(f, answered, &a, "CLIENT INFO");
    assert_int_equal(a.type, REDIS_REPLY_STRING);
    command(f, &a, 1, (const char *[]){"DBSIZE"});
    run_until(f, answered, &a, "DBSIZE");
    assert_int_equal(a.integer, 1);
    command(f, &a, 2, (const char *[]){"NOSUCHCOMMAND", "x"});
    run_until(f, answered, &a, "an error reply");
    assert_int_equal(a.type, REDIS_REPLY_ERROR);
    redis_conn_get_stats(f->conn, &s);
    assert_int_equal(s.connects, 1);
    assert_int_equal(s.errors, 1);
    assert_true(s.round_trips >= 4);
    assert_int_equal(redis_conn_pending(f->conn), 0);
}

static void test_ready_over_tcp_on_loopback(void **state)
{
    struct fixture *f = *state;
    char url[64];
    const int one = 1;
    struct answer a;
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", f->server.port);
    connect_with(f, url, PASSWORD, 2000);
    run_until(f, ready_times, &one, "ready over TCP");
    command(f, &a, 2, (const char *[]){"ECHO", "hello"});
    run_until(f, answered, &a, "ECHO");
    assert_string_equal(a.text, "hello");
}

static void test_a_wrong_password_is_never_ready_and_says_why(void **state)
{
    struct fixture *f = *state;
    char url[160];
    const int two = 2;
    snprintf(url, sizeof url, "unix:%s", f->server.sock);
    connect_with(f, url, "not-the-password", 2000);
    run_until(f, lost_times, &two, "two refused attempts"); /* it retries with backoff */
    assert_int_equal(f->ready, 0);
    assert_false(redis_conn_ready(f->conn));
    if (!strstr(f->lost_reason, "AUTH refused"))
        fail_msg("reason: %s", f->lost_reason);
    assert_null(strstr(f->lost_reason, "not-the-password"));

    /* No password at all: PING is refused with NOAUTH. */
    redis_conn_free(f->conn);
    f->lost = 0;
    connect_with(f, url, NULL, 2000);
    run_until(f, lost_times, &two, "two refused attempts without a password");
    if (!strstr(f->lost_reason, "NOAUTH"))
        fail_msg("reason: %s", f->lost_reason);
}

static void test_a_lost_server_fails_pending_commands_then_the_connection_comes_back(void **state)
{
    struct fixture *f = *state;
    char url[160];
    const int one = 1, two = 2;
    struct answer blocked, after;
    struct redis_conn_stats s;
    size_t lens[3] = {5, 3, 1};
    snprintf(url, sizeof url, "unix:%s", f->server.sock);
    connect_with(f, url, PASSWORD, 2000);
    run_until(f, ready_times, &one, "ready");

    /* A blocking read with no data: pending until the server goes. */
    memset(&blocked, 0, sizeof blocked);
    assert_int_equal(redis_conn_command(f->conn, 3, (const char *[]){"BLPOP", "key", "0"}, lens,
                                        60000, on_done, &blocked),
                     0);
    event_base_loop(f->base, EVLOOP_NONBLOCK);
    assert_int_equal(redis_conn_pending(f->conn), 1);
    redis_test_server_stop(&f->server, SIGKILL);
    run_until(f, answered, &blocked, "the pending command to fail");
    assert_int_equal(blocked.type, -1);
    assert_int_equal(f->lost, 1);
    assert_false(redis_conn_ready(f->conn));
    assert_false(redis_conn_lost_to_oversized(f->conn)); /* lost, not for a reply's size */
    memset(&after, 0, sizeof after);
    assert_int_equal(
        redis_conn_command(f->conn, 1, (const char *[]){"PING"}, lens, 0, on_done, &after),
        -1); /* not ready: refused, done never called */

    redis_test_server_start(&f->server);
    run_until(f, ready_times, &two, "ready again");
    command(f, &after, 1, (const char *[]){"PING"});
    run_until(f, answered, &after, "PING after the restart");
    assert_string_equal(after.text, "PONG");
    redis_conn_get_stats(f->conn, &s);
    assert_int_equal(s.connects, 2);
    assert_true(s.failures >= 1);
    assert_int_equal(after.calls, 1);
}

static void test_a_server_that_stops_answering_is_dropped_at_the_reply_timeout(void **state)
{
    struct fixture *f = *state;
    char url[160];
    const int one = 1, two = 2;
    struct answer a;
    struct redis_conn_stats s;
    time_t sent;
    snprintf(url, sizeof url, "unix:%s", f->server.sock);
    connect_with(f, url, PASSWORD, 300);
    run_until(f, ready_times, &one, "ready");

    kill(f->server.pid, SIGSTOP); /* it still accepts (the kernel does), never answers */
    sent = time(NULL);
    command(f, &a, 1, (const char *[]){"PING"});
    run_until(f, answered, &a, "the unanswered command to fail");
    assert_int_equal(a.type, -1);
    assert_true(time(NULL) - sent <= 2);
    if (!strstr(f->lost_reason, "timeout"))
        fail_msg("reason: %s", f->lost_reason);
    redis_conn_get_stats(f->conn, &s);
    assert_int_equal(s.timeouts, 1);

    kill(f->server.pid, SIGCONT);
    run_until(f, ready_times, &two, "ready once it answers again");
}

static void test_free_reports_every_pending_command_once(void **state)
{
    struct fixture *f = *state;
    char url[160];
    const int one = 1;
    struct answer a[3];
    size_t lens[3] = {5, 1, 1};
    snprintf(url, sizeof url, "unix:%s", f->server.sock);
    connect_with(f, url, PASSWORD, 2000);
    run_until(f, ready_times, &one, "ready");
    for (int i = 0; i < 3; i++) {
        memset(&a[i], 0, sizeof a[i]);
        assert_int_equal(redis_conn_command(f->conn, 3, (const char *[]){"BLPOP", "k", "0"}, lens,
                                            60000, on_done, &a[i]),
                         0);
    }
    redis_conn_free(f->conn);
    f->conn = NULL;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(a[i].calls, 1);
        assert_int_equal(a[i].type, -1);
    }
    assert_int_equal(f->lost, 0); /* no events once freed */
}

/* A server that is not Redis at the URL: it answers the handshake's PING,
 * then answers the next command with a string announced as 100 GB and
 * sends bytes of it for as long as the connection lasts. */
struct flood {
    int listen_fd, fd;
    struct event *accept_ev, *io_ev;
    bool ponged, flooding;
    const char *header; /* what the flood starts with */
    size_t sent;
    char chunk[1 << 16];
};

static void flood_io_cb(evutil_socket_t fd, short what, void *arg)
{
    struct flood *fl = arg;
    char buf[4096];
    if (what & EV_READ) {
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n <= 0) {
            event_free(fl->io_ev);
            fl->io_ev = NULL;
            close(fl->fd);
            fl->fd = -1;
            return;
        }
        if (!fl->ponged) {
            fl->ponged = true;
            assert_int_equal(send(fd, "+PONG\r\n", 7, MSG_NOSIGNAL), 7);
        } else if (!fl->flooding) {
            fl->flooding = true;
            size_t len = strlen(fl->header);
            assert_int_equal(send(fd, fl->header, len, MSG_NOSIGNAL), (ssize_t)len);
        }
    }
    while (fl->flooding && (what & EV_WRITE) && fl->fd >= 0) {
        ssize_t n = send(fd, fl->chunk, sizeof fl->chunk, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n <= 0)
            break; /* the socket is full (or gone): on the next write event */
        fl->sent += (size_t)n;
    }
}

static void flood_accept_cb(evutil_socket_t fd, short what, void *arg)
{
    struct flood *fl = arg;
    struct event_base *base = event_get_base(fl->accept_ev);
    if (fl->fd >= 0) { /* one connection at a time: a reconnect replaces it */
        event_free(fl->io_ev);
        close(fl->fd);
    }
    fl->ponged = fl->flooding = false;
    fl->fd = accept(fd, NULL, NULL);
    assert_true(fl->fd >= 0);
    evutil_make_socket_nonblocking(fl->fd);
    fl->io_ev = event_new(base, fl->fd, EV_READ | EV_WRITE | EV_PERSIST, flood_io_cb, fl);
    event_add(fl->io_ev, NULL);
}

static bool lost_once(struct fixture *f, const void *arg)
{
    return f->lost >= 1;
}

/* An impostor that answers PING, then floods the next reply: header, then
 * 'x' for ever. */
static void flood_the_reply(void **state, const char *header)
{
    struct fixture *f = *state;
    struct flood *fl = calloc(1, sizeof *fl);
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    char url[160];
    const int one = 1;
    static struct answer a; /* outlives a failure here: teardown's free answers it */
    assert_non_null(fl);
    memset(fl->chunk, 'x', sizeof fl->chunk);
    fl->header = header;
    snprintf(sun.sun_path, sizeof sun.sun_path, "%s/flood.sock", f->server.dir);
    fl->listen_fd = socket(AF_UNIX, SOCK_STREAM, 0);
    fl->fd = -1;
    assert_int_equal(bind(fl->listen_fd, (struct sockaddr *)&sun, sizeof sun), 0);
    assert_int_equal(listen(fl->listen_fd, 4), 0);
    fl->accept_ev = event_new(f->base, fl->listen_fd, EV_READ | EV_PERSIST, flood_accept_cb, fl);
    event_add(fl->accept_ev, NULL);
    snprintf(url, sizeof url, "unix:%s", sun.sun_path);
    connect_with(f, url, NULL, 60000);
    run_until(f, ready_times, &one, "ready at the impostor");
    command(f, &a, 1, (const char *[]){"PING"});
    run_until(f, answered, &a, "the command to fail");
    assert_int_equal(a.type, -1);
    run_until(f, lost_once, NULL, "the connection to drop");
    if (!strstr(f->lost_reason, "size limit"))
        fail_msg("reason: %s", f->lost_reason);
    /* It stopped at the header, not after reading up to the limit. */
    assert_true(fl->sent < REDIS_CONN_UNREAD_MAX);
    assert_true(redis_conn_lost_to_oversized(f->conn));
    {
        struct redis_conn_stats s;
        redis_conn_get_stats(f->conn, &s);
        assert_true(s.oversized >= 1);
    }
    redis_conn_free(f->conn);
    f->conn = NULL;
    if (fl->io_ev)
        event_free(fl->io_ev);
    event_free(fl->accept_ev);
    if (fl->fd >= 0)
        close(fl->fd);
    close(fl->listen_fd);
    unlink(sun.sun_path);
    free(fl);
}

static void test_a_string_announced_over_the_size_limit_drops_the_connection_at_once(void **state)
{
    flood_the_reply(state, "$100000000000\r\n");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_ready_after_auth_and_select_on_a_unix_socket, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_ready_over_tcp_on_loopback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_wrong_password_is_never_ready_and_says_why, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_a_lost_server_fails_pending_commands_then_the_connection_comes_back, setup,
            teardown),
        cmocka_unit_test_setup_teardown(
            test_a_server_that_stops_answering_is_dropped_at_the_reply_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_reports_every_pending_command_once, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_a_string_announced_over_the_size_limit_drops_the_connection_at_once, setup,
            teardown),
    };
    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
