/* Unit tests for common/net/conn_write.c: writing straight to the socket, and
 * leaving to the bufferevent only what the kernel would not take.
 *
 * Real bufferevents over a socketpair on a real event_base: the peer end
 * is read with plain recv(), so what arrives, and when, is what a client
 * would see.
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
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

#include "net/conn_write.h"

struct pair {
    struct event_base *base;
    struct bufferevent *bev; /* our end */
    int peer;                /* the other end, read with recv() */
    short events;            /* what the event callback reported */
    int filter_calls;        /* layered: how often the output filter ran */
};

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    struct pair *p = arg;
    p->events |= what;
}

static void pair_open(struct pair *p, int sndbuf)
{
    int fds[2];
    memset(p, 0, sizeof *p);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
    if (sndbuf > 0)
        assert_int_equal(setsockopt(fds[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf), 0);
    assert_int_equal(evutil_make_socket_nonblocking(fds[0]), 0);
    assert_int_equal(evutil_make_socket_nonblocking(fds[1]), 0);
    p->base = event_base_new();
    assert_non_null(p->base);
    p->bev = bufferevent_socket_new(p->base, fds[0], BEV_OPT_CLOSE_ON_FREE);
    assert_non_null(p->bev);
    p->peer = fds[1];
    bufferevent_setcb(p->bev, NULL, conn_write_drained, on_event, p);
    conn_write_enable(p->bev);
}

static void pair_close(struct pair *p)
{
    if (p->bev)
        bufferevent_free(p->bev);
    if (p->peer >= 0)
        close(p->peer);
    event_base_free(p->base);
}

/* Bytes the peer can read right now, without waiting. */
static size_t peer_read(struct pair *p, uint8_t *buf, size_t cap)
{
    size_t got = 0;
    for (;;) {
        ssize_t n = recv(p->peer, buf + got, cap - got, MSG_DONTWAIT);
        if (n <= 0)
            return got;
        got += (size_t)n;
    }
}

static bool writing(struct pair *p)
{
    return (bufferevent_get_enabled(p->bev) & EV_WRITE) != 0;
}

static void fill_pattern(uint8_t *buf, size_t len, size_t from)
{
    for (size_t i = 0; i < len; i++)
        buf[i] = (uint8_t)((from + i) % 251);
}

static void test_flush_writes_to_the_socket_before_the_loop_runs(void **state)
{
    struct pair p;
    uint8_t buf[64];
    pair_open(&p, 0);
    assert_false(writing(&p)); /* nothing queued: no write event */

    evbuffer_add(bufferevent_get_output(p.bev), "hello, ", 7);
    evbuffer_add(bufferevent_get_output(p.bev), "world", 5);
    conn_write_flush(p.bev);

    assert_int_equal(evbuffer_get_length(bufferevent_get_output(p.bev)), 0);
    assert_false(writing(&p));
    assert_int_equal(peer_read(&p, buf, sizeof buf), 12);
    assert_memory_equal(buf, "hello, world", 12);
    pair_close(&p);
}

static void test_flush_of_nothing_does_nothing(void **state)
{
    struct pair p;
    uint8_t buf[8];
    pair_open(&p, 0);
    conn_write_flush(p.bev);
    assert_false(writing(&p));
    assert_int_equal(peer_read(&p, buf, sizeof buf), 0);
    pair_close(&p);
}

/* A peer that reads slowly: the kernel takes part of 1 MiB, the
 * bufferevent writes the rest from the loop, in order, and its write
 * event is off again once all is out. */
static void test_what_the_kernel_refuses_is_written_later_in_order(void **state)
{
    enum { TOTAL = 1 << 20, CHUNK = 10000 };
    struct pair p;
    uint8_t *sent = malloc(TOTAL), *got = malloc(TOTAL);
    size_t have = 0, queued = 0;
    assert_non_null(sent);
    assert_non_null(got);
    pair_open(&p, 4096);
    fill_pattern(sent, TOTAL, 0);
    while (queued < TOTAL) {
        size_t n = TOTAL - queued < CHUNK ? TOTAL - queued : CHUNK;
        evbuffer_add(bufferevent_get_output(p.bev), sent + queued, n);
        queued += n;
    }
    conn_write_flush(p.bev);
    assert_true(evbuffer_get_length(bufferevent_get_output(p.bev)) > 0);
    assert_true(evbuffer_get_length(bufferevent_get_output(p.bev)) < TOTAL);
    assert_true(writing(&p));

    /* A second flush while the bufferevent owns the output writes nothing
     * itself: bytes never leave out of order. */
    have = peer_read(&p, got, TOTAL);
    {
        size_t pending = evbuffer_get_length(bufferevent_get_output(p.bev));
        conn_write_flush(p.bev);
        assert_int_equal(evbuffer_get_length(bufferevent_get_output(p.bev)), pending);
    }
    while (have < TOTAL) {
        size_t before = have;
        event_base_loop(p.base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        have += peer_read(&p, got + have, TOTAL - have);
        if (have == before)
            event_base_loop(p.base, EVLOOP_ONCE); /* wait for writability */
    }
    assert_memory_equal(got, sent, TOTAL);
    assert_int_equal(evbuffer_get_length(bufferevent_get_output(p.bev)), 0);
    assert_false(writing(&p));
    assert_int_equal(p.events, 0);
    free(sent);
    free(got);
    pair_close(&p);
}

/* A write error is not swallowed: the bufferevent meets it and reports it. */
static void test_write_to_a_closed_peer_reaches_the_event_callback(void **state)
{
    struct pair p;
    pair_open(&p, 0);
    close(p.peer);
    p.peer = -1;
    evbuffer_add(bufferevent_get_output(p.bev), "lost", 4);
    conn_write_flush(p.bev);
    assert_true(writing(&p));
    event_base_loop(p.base, EVLOOP_ONCE);
    assert_true(p.events & BEV_EVENT_ERROR);
    assert_true(p.events & BEV_EVENT_WRITING);
    pair_close(&p);
}

static enum bufferevent_filter_result count_out(struct evbuffer *src, struct evbuffer *dst,
                                                ev_ssize_t limit, enum bufferevent_flush_mode mode,
                                                void *arg)
{
    struct pair *p = arg;
    p->filter_calls++;
    evbuffer_add_buffer(dst, src);
    return BEV_OK;
}

/* A layered connection runs its filter only when flushed, once over
 * everything queued since the last flush. */
static void test_layered_output_is_filtered_at_flush_all_at_once(void **state)
{
    struct pair p;
    struct bufferevent *filter;
    uint8_t buf[64];
    size_t have = 0;
    pair_open(&p, 0);
    filter = bufferevent_filter_new(p.bev, NULL, count_out, BEV_OPT_CLOSE_ON_FREE, NULL, &p);
    assert_non_null(filter);
    p.bev = NULL; /* freed with the filter */
    bufferevent_setcb(filter, NULL, conn_write_drained, on_event, &p);
    conn_write_enable(filter);

    evbuffer_add(bufferevent_get_output(filter), "one ", 4);
    evbuffer_add(bufferevent_get_output(filter), "two ", 4);
    evbuffer_add(bufferevent_get_output(filter), "three", 5);
    assert_int_equal(p.filter_calls, 0);
    conn_write_flush(filter);
    assert_int_equal(p.filter_calls, 1);
    assert_int_equal(evbuffer_get_length(bufferevent_get_output(filter)), 0);

    while (have < 13) {
        event_base_loop(p.base, EVLOOP_ONCE);
        have += peer_read(&p, buf + have, sizeof buf - have);
    }
    assert_memory_equal(buf, "one two three", 13);
    bufferevent_free(filter);
    close(p.peer);
    event_base_free(p.base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_flush_writes_to_the_socket_before_the_loop_runs),
        cmocka_unit_test(test_flush_of_nothing_does_nothing),
        cmocka_unit_test(test_what_the_kernel_refuses_is_written_later_in_order),
        cmocka_unit_test(test_write_to_a_closed_peer_reaches_the_event_callback),
        cmocka_unit_test(test_layered_output_is_filtered_at_flush_all_at_once),
    };
    signal(SIGPIPE, SIG_IGN); /* a write to the closed peer must fail, not kill */
    return cmocka_run_group_tests(tests, NULL, NULL);
}
