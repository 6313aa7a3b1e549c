/* Unit tests for common/daemon/daemon.c: a whole daemon_run on a real event
 * loop with hooks that record what they are called for. Signals are sent
 * with raise() and arrive through the loop like a kill from outside; the
 * service manager's messages are read from a NOTIFY_SOCKET the test binds.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <event2/bufferevent.h>
#include <event2/event.h>

#include "daemon/daemon.h"
#include "net/conn_flush.h"

#define TRACE_MAX 32

static struct daemon_settings settings;

static const struct cfg_option options[] = {
    DAEMON_ADDRESS_OPTIONS(settings),
    DAEMON_TLS_OPTIONS(settings, "serve TLS"),
    DAEMON_LOG_LEVEL_OPTION(settings),
    METRICS_TOKEN_OPTIONS(settings.metrics),
};

static const struct cfg_program program = {"test-daemon", "a daemon for tests", DAEMON_USAGE_NOTES};

/* What the hooks saw, in order, with the service manager's messages. */
struct test_daemon {
    struct daemon daemon;
    char trace[TRACE_MAX][80];
    int count;
    int stop_signal;
    int raise_at_start;        /* a signal start raises, 0: none */
    int raise_at_stop;         /* a signal stop raises again, 0: none */
    bool hold_connection;      /* keeps one client connection open from start */
    bool check_fails;          /* the settings check refuses */
    unsigned release_after_ms; /* stop closes the held connection this much later */
    int notify_fd;             /* -1: no service manager */
    struct event *notify_event, *release_timer;
    bool stop_sent;
};

static struct test_daemon *current;
static char folder[64];
static char tokens_path[128];
static char notify_path[100]; /* fits sun_path */

static void trace_add(struct test_daemon *t, const char *what)
{
    assert_true(t->count < TRACE_MAX);
    snprintf(t->trace[t->count++], sizeof t->trace[0], "%s", what);
}

/* Adds every service manager message sent so far (sd_notify is a datagram
 * sent before it returns), without the periodic status-only ones. */
static void trace_notify(struct test_daemon *t)
{
    char message[256];
    ssize_t n;
    if (t->notify_fd < 0)
        return;
    while ((n = recv(t->notify_fd, message, sizeof message - 1, MSG_DONTWAIT)) > 0) {
        message[n] = '\0';
        if (strncmp(message, "STATUS=", 7) != 0)
            trace_add(t, message);
    }
}

static int trace_find(const struct test_daemon *t, const char *what, int from)
{
    for (int i = from; i < t->count; i++)
        if (strcmp(t->trace[i], what) == 0)
            return i;
    return -1;
}

static int check_settings(char *err, size_t err_len)
{
    trace_add(current, "check");
    if (!current->check_fails)
        return 0;
    snprintf(err, err_len, "settings do not fit");
    return -1;
}

static void status(void *arg, char *buf, unsigned len)
{
    snprintf(buf, len, "testing");
}

static void on_auth_reloaded(void *arg, unsigned sources)
{
    trace_notify(arg);
    trace_add(arg, "auth reloaded");
}

/* After the reload's READY=1, the test stops the daemon. */
static void on_notify(evutil_socket_t fd, short what, void *arg)
{
    struct test_daemon *t = arg;
    int first_ready;
    trace_notify(t);
    first_ready = trace_find(t, "READY=1\nSTATUS=testing", 0);
    if (!t->stop_sent && first_ready >= 0 &&
        trace_find(t, "READY=1\nSTATUS=testing", first_ready + 1) >= 0) {
        t->stop_sent = true;
        raise(SIGTERM);
    }
}

static int start(struct daemon *d, void *arg)
{
    struct test_daemon *t = arg;
    trace_add(t, "start");
    assert_ptr_equal(d, &t->daemon);
    assert_non_null(d->base);
    assert_non_null(d->auth);
    assert_non_null(d->metrics_token);
    assert_null(d->manager);
    auth_store_set_change_callback(d->auth, on_auth_reloaded, t);
    if (t->notify_fd >= 0) {
        t->notify_event = event_new(d->base, t->notify_fd, EV_READ | EV_PERSIST, on_notify, t);
        assert_non_null(t->notify_event);
        assert_int_equal(event_add(t->notify_event, NULL), 0);
    }
    if (t->hold_connection)
        conn_track_open();
    if (t->raise_at_start)
        raise(t->raise_at_start);
    return 0;
}

static int serve(struct daemon *d, void *arg)
{
    struct test_daemon *t = arg;
    assert_non_null(d->manager);
    trace_add(t, "serve");
    service_manager_ready(d->manager);
    return 0;
}

/* Closes the held connection as a server closing its last client would. */
static void release_connection(struct test_daemon *t)
{
    struct bufferevent *bev;
    if (!t->hold_connection)
        return;
    bev = bufferevent_socket_new(t->daemon.base, -1, 0);
    assert_non_null(bev);
    conn_release(bev);
    t->hold_connection = false;
    trace_add(t, "connection closed");
}

static void release_cb(evutil_socket_t fd, short what, void *arg)
{
    release_connection(arg);
}

static void stop(struct daemon *d, int sig, void *arg)
{
    struct test_daemon *t = arg;
    trace_notify(t);
    trace_add(t, "stop");
    t->stop_signal = sig;
    if (t->raise_at_stop)
        raise(t->raise_at_stop);
    if (t->release_after_ms) {
        struct timeval later = {0, (suseconds_t)t->release_after_ms * 1000};
        t->release_timer = evtimer_new(d->base, release_cb, t);
        assert_non_null(t->release_timer);
        evtimer_add(t->release_timer, &later);
    }
}

static void teardown_hook(void *arg)
{
    struct test_daemon *t = arg;
    trace_add(t, "teardown");
    release_connection(t);
    if (t->release_timer)
        event_free(t->release_timer);
    if (t->notify_event)
        event_free(t->notify_event);
}

static struct daemon_spec spec_for(unsigned grace_ms)
{
    struct daemon_spec spec = {
        DAEMON_SPEC_SETTINGS(program, options, settings),
        .shutdown_grace_ms = grace_ms,
        .drain_check_ms = 5,
        .check = check_settings,
        .start = start,
        .serve = serve,
        .stop = stop,
        .teardown = teardown_hook,
        .status = status,
    };
    return spec;
}

/* Runs the test daemon with a tokens file and extra_flags (NULL-ended). */
static int run(struct test_daemon *t, unsigned grace_ms, const char *const *extra_flags)
{
    struct daemon_spec spec = spec_for(grace_ms);
    char *argv[16] = {"test-daemon", "--tokens", tokens_path, "--log-level", "error"};
    int argc = 5;
    for (; extra_flags && *extra_flags; extra_flags++)
        argv[argc++] = (char *)*extra_flags;
    current = t;
    return daemon_run(&t->daemon, &spec, t, argc, argv);
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000.0 + ts.tv_nsec / 1e6;
}

static int setup(void **state)
{
    static struct test_daemon t;
    FILE *f;
    memset(&t, 0, sizeof t);
    t.notify_fd = -1;
    snprintf(folder, sizeof folder, "/tmp/evs-daemon-XXXXXX");
    assert_non_null(mkdtemp(folder));
    snprintf(tokens_path, sizeof tokens_path, "%s/tokens", folder);
    f = fopen(tokens_path, "w");
    assert_non_null(f);
    fputs("tok-0123456789abcdef0123456789abcdef\n", f);
    fclose(f);
    unsetenv("NOTIFY_SOCKET");
    unsetenv("WATCHDOG_USEC");
    *state = &t;
    return 0;
}

static int teardown(void **state)
{
    struct test_daemon *t = *state;
    if (t->notify_fd >= 0) {
        close(t->notify_fd);
        unlink(notify_path);
    }
    unsetenv("NOTIFY_SOCKET");
    unlink(tokens_path);
    rmdir(folder);
    return 0;
}

static void test_help_exits_0_without_starting(void **state)
{
    struct test_daemon *t = *state;
    int saved = dup(STDOUT_FILENO);
    int null_fd = open("/dev/null", O_WRONLY);
    int status;
    assert_true(saved >= 0 && null_fd >= 0);
    fflush(stdout);
    dup2(null_fd, STDOUT_FILENO);
    status = run(t, 1000, (const char *[]){"--help", NULL});
    fflush(stdout);
    dup2(saved, STDOUT_FILENO);
    close(saved);
    close(null_fd);
    assert_int_equal(status, DAEMON_EXIT_OK);
    assert_int_equal(t->count, 0);
}

static void test_unknown_flag_exits_2_without_starting(void **state)
{
    struct test_daemon *t = *state;
    assert_int_equal(run(t, 1000, (const char *[]){"--no-such-flag", NULL}), DAEMON_EXIT_SETTINGS);
    assert_int_equal(t->count, 0);
}

static void test_failed_settings_check_exits_2_without_starting(void **state)
{
    struct test_daemon *t = *state;
    t->check_fails = true;
    assert_int_equal(run(t, 1000, NULL), DAEMON_EXIT_SETTINGS);
    assert_int_equal(t->count, 1);
    assert_string_equal(t->trace[0], "check");
}

static void test_unusable_tls_certificate_exits_2_without_starting(void **state)
{
    struct test_daemon *t = *state;
    char missing[160];
    snprintf(missing, sizeof missing, "%s/missing.crt", folder);
    assert_int_equal(run(t, 1000, (const char *[]){"--tls", "--cert", missing, NULL}),
                     DAEMON_EXIT_SETTINGS);
    assert_int_equal(t->count, 1);
    assert_string_equal(t->trace[0], "check");
}

/* Raised while start runs, the signal waits for the loop: stop comes after
 * serve, once, with the signal; with no connection open the drain is over
 * at once and daemon_run returns 0 after teardown. */
static void stop_signal_during_start_stops_in_the_loop(struct test_daemon *t, int sig)
{
    t->raise_at_start = sig;
    assert_int_equal(run(t, 60000, NULL), DAEMON_EXIT_OK);
    assert_int_equal(t->count, 5);
    assert_string_equal(t->trace[0], "check");
    assert_string_equal(t->trace[1], "start");
    assert_string_equal(t->trace[2], "serve");
    assert_string_equal(t->trace[3], "stop");
    assert_string_equal(t->trace[4], "teardown");
    assert_int_equal(t->stop_signal, sig);
}

static void test_sigterm_during_start_runs_stop_in_the_loop_and_exits_0(void **state)
{
    stop_signal_during_start_stops_in_the_loop(*state, SIGTERM);
}

static void test_sigint_during_start_runs_stop_in_the_loop_and_exits_0(void **state)
{
    stop_signal_during_start_stops_in_the_loop(*state, SIGINT);
}

static void test_drain_ends_when_the_last_connection_closes(void **state)
{
    struct test_daemon *t = *state;
    double began = now_ms();
    t->hold_connection = true;
    t->release_after_ms = 50;
    t->raise_at_start = SIGTERM;
    assert_int_equal(run(t, 60000, NULL), DAEMON_EXIT_OK);
    assert_true(now_ms() - began < 30000); /* not the grace */
    assert_int_equal(t->count, 6);
    assert_string_equal(t->trace[3], "stop");
    assert_string_equal(t->trace[4], "connection closed");
    assert_string_equal(t->trace[5], "teardown");
}

static void test_connection_left_open_ends_the_drain_at_the_grace(void **state)
{
    struct test_daemon *t = *state;
    double began = now_ms();
    t->hold_connection = true;
    t->raise_at_start = SIGTERM;
    assert_int_equal(run(t, 300, NULL), DAEMON_EXIT_OK);
    assert_true(now_ms() - began >= 290);
    assert_int_equal(t->count, 6);
    assert_string_equal(t->trace[3], "stop");
    assert_string_equal(t->trace[4], "teardown");
    assert_string_equal(t->trace[5], "connection closed"); /* by teardown */
}

static void test_second_stop_signal_ends_the_drain_at_once(void **state)
{
    struct test_daemon *t = *state;
    double began = now_ms();
    t->hold_connection = true;
    t->raise_at_start = SIGTERM;
    t->raise_at_stop = SIGINT;
    assert_int_equal(run(t, 60000, NULL), DAEMON_EXIT_OK);
    assert_true(now_ms() - began < 30000);
    assert_int_equal(t->count, 6);
    assert_string_equal(t->trace[3], "stop"); /* once: the second signal ends the loop */
    assert_string_equal(t->trace[4], "teardown");
    assert_int_equal(t->stop_signal, SIGTERM);
}

/* SIGHUP: RELOADING=1, the auth store reloaded, READY=1, in that order;
 * then SIGTERM's STOPPING=1 comes before stop runs. */
static void test_sighup_reloads_between_reloading_and_ready(void **state)
{
#ifdef HAVE_LIBSYSTEMD
    struct test_daemon *t = *state;
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    static const char *const expected[] = {
        "check",
        "start",
        "serve",
        "READY=1\nSTATUS=testing",
        "RELOADING=1\nSTATUS=testing",
        "auth reloaded",
        "READY=1\nSTATUS=testing",
        "STOPPING=1\nSTATUS=testing",
        "stop",
        "teardown",
    };
    snprintf(notify_path, sizeof notify_path, "%s/notify", folder);
    snprintf(addr.sun_path, sizeof addr.sun_path, "%s", notify_path);
    t->notify_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    assert_true(t->notify_fd >= 0);
    assert_int_equal(bind(t->notify_fd, (struct sockaddr *)&addr, sizeof addr), 0);
    setenv("NOTIFY_SOCKET", notify_path, 1);
    t->raise_at_start = SIGHUP;
    assert_int_equal(run(t, 60000, NULL), DAEMON_EXIT_OK);
    trace_notify(t);
    assert_int_equal(t->count, (int)(sizeof expected / sizeof expected[0]));
    for (int i = 0; i < t->count; i++)
        assert_string_equal(t->trace[i], expected[i]);
#else
    skip();
#endif
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_help_exits_0_without_starting),
        T(test_unknown_flag_exits_2_without_starting),
        T(test_failed_settings_check_exits_2_without_starting),
        T(test_unusable_tls_certificate_exits_2_without_starting),
        T(test_sigterm_during_start_runs_stop_in_the_loop_and_exits_0),
        T(test_sigint_during_start_runs_stop_in_the_loop_and_exits_0),
        T(test_drain_ends_when_the_last_connection_closes),
        T(test_connection_left_open_ends_the_drain_at_the_grace),
        T(test_second_stop_signal_ends_the_drain_at_once),
        T(test_sighup_reloads_between_reloading_and_ready),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
