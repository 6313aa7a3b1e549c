/* Unit tests for common/core/clock.c: the monotonic clock read against a
 * real sleep, and timers armed at a deadline on a real event_base. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <event2/event.h>

#include "core/clock.h"

/* libevent may read CLOCK_MONOTONIC_COARSE (millisecond ticks), so a timer
 * can fire up to a tick before the deadline read on CLOCK_MONOTONIC. */
#define TIMER_EARLY_SLACK_MS 2

static void sleep_ns(uint64_t ns)
{
    struct timespec want = {(time_t)(ns / 1000000000u), (long)(ns % 1000000000u)}, left;
    while (nanosleep(&want, &left) != 0) {
        assert_int_equal(errno, EINTR);
        want = left;
    }
}

static void test_readings_never_go_back(void **state)
{
    uint64_t last_ns = clock_now_ns(), last_ms = clock_now_ms();
    for (int i = 0; i < 100000; i++) {
        uint64_t ns = clock_now_ns(), ms = clock_now_ms();
        assert_true(ns >= last_ns);
        assert_true(ms >= last_ms);
        last_ns = ns;
        last_ms = ms;
    }
}

static uint64_t monotonic_ns(void)
{
    struct timespec ts;
    assert_int_equal(clock_gettime(CLOCK_MONOTONIC, &ts), 0);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void test_readings_are_clock_monotonic_in_nanoseconds_and_milliseconds(void **state)
{
    for (int i = 0; i < 1000; i++) {
        uint64_t before = monotonic_ns(), ns = clock_now_ns(), ms = clock_now_ms();
        uint64_t after = monotonic_ns();
        assert_true(before <= ns);
        assert_true(ns <= after);
        assert_true(ns / 1000000u <= ms);
        assert_true(ms <= after / 1000000u);
    }
}

static void test_clock_advances_at_least_as_long_as_a_sleep(void **state)
{
    const uint64_t sleep = 50 * 1000000u; /* 50 ms */
    uint64_t ns0 = clock_now_ns(), ms0 = clock_now_ms();
    sleep_ns(sleep);
    uint64_t ns1 = clock_now_ns(), ms1 = clock_now_ms();
    assert_true(ns1 - ns0 >= sleep);
    assert_true(ms1 - ms0 >= sleep / 1000000u);
    /* ... and not wildly more: a clock in the wrong unit would be. */
    assert_true(ns1 - ns0 < 100 * sleep);
}

struct firing {
    unsigned count;
    uint64_t at_ms;
};

static void record_cb(evutil_socket_t fd, short what, void *arg)
{
    struct firing *f = arg;
    f->count++;
    f->at_ms = clock_now_ms();
}

/* A base with the timer under test and a guard timer far off: the guard
 * firing first would mean the timer under test was armed too late. */
struct timers {
    struct event_base *base;
    struct event *timer, *guard_timer;
    struct firing fired, guard;
};

static int timers_setup(void **state)
{
    static struct timers t;
    memset(&t, 0, sizeof t);
    t.base = event_base_new();
    assert_non_null(t.base);
    t.timer = evtimer_new(t.base, record_cb, &t.fired);
    t.guard_timer = evtimer_new(t.base, record_cb, &t.guard);
    assert_non_null(t.timer);
    assert_non_null(t.guard_timer);
    *state = &t;
    return 0;
}

static int timers_teardown(void **state)
{
    struct timers *t = *state;
    event_free(t->timer);
    event_free(t->guard_timer);
    event_base_free(t->base);
    return 0;
}

static void test_timer_fires_once_when_its_deadline_has_come(void **state)
{
    struct timers *t = *state;
    uint64_t deadline = clock_now_ms() + 80;

    assert_int_equal(clock_arm_at(t->timer, deadline), 0);
    assert_int_equal(event_base_dispatch(t->base), 1); /* 1: it ran until nothing was pending */
    assert_int_equal(t->fired.count, 1);
    assert_true(t->fired.at_ms + TIMER_EARLY_SLACK_MS >= deadline);
}

static void test_timer_with_a_past_deadline_fires_on_the_next_loop_turn(void **state)
{
    struct timers *t = *state;

    assert_int_equal(clock_arm_at(t->guard_timer, clock_now_ms() + 10000), 0);
    assert_int_equal(clock_arm_at(t->timer, 0), 0); /* long gone on any monotonic clock */
    assert_int_equal(t->fired.count, 0);            /* not inside the call */
    assert_int_equal(event_base_loop(t->base, EVLOOP_ONCE), 0);
    assert_int_equal(t->fired.count, 1);
    assert_int_equal(t->guard.count, 0);
}

static void test_rearming_a_pending_timer_moves_its_deadline(void **state)
{
    struct timers *t = *state;
    uint64_t now = clock_now_ms();

    assert_int_equal(clock_arm_at(t->guard_timer, now + 10000), 0);
    assert_int_equal(clock_arm_at(t->timer, now + 20000), 0);
    assert_int_equal(clock_arm_at(t->timer, now + 30), 0); /* earlier */
    assert_int_equal(event_base_loop(t->base, EVLOOP_ONCE), 0);
    assert_int_equal(t->fired.count, 1);
    assert_int_equal(t->guard.count, 0);
    assert_true(t->fired.at_ms + TIMER_EARLY_SLACK_MS >= now + 30);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_readings_never_go_back),
        cmocka_unit_test(test_readings_are_clock_monotonic_in_nanoseconds_and_milliseconds),
        cmocka_unit_test(test_clock_advances_at_least_as_long_as_a_sleep),
        cmocka_unit_test_setup_teardown(test_timer_fires_once_when_its_deadline_has_come,
                                        timers_setup, timers_teardown),
        cmocka_unit_test_setup_teardown(test_timer_with_a_past_deadline_fires_on_the_next_loop_turn,
                                        timers_setup, timers_teardown),
        cmocka_unit_test_setup_teardown(test_rearming_a_pending_timer_moves_its_deadline,
                                        timers_setup, timers_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
