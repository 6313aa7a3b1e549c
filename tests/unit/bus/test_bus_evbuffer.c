/* Unit tests for common/bus/bus_evbuffer.c: the bus decoder fed from a libevent
 * buffer whose bytes lie in several pieces, as a socket's reads leave them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <event2/buffer.h>

#include "bus/bus_evbuffer.h"
#include "bus_test_frames.h"

#define MAX_MESSAGE 70000

static const struct bus_decoder from_listen = {BUS_KINDS_FROM_LISTEN, MAX_MESSAGE};
static const struct bus_decoder from_broadcast = {BUS_KINDS_FROM_BROADCAST, 0};

static void nothing_to_free(const void *data, size_t len, void *arg) {}

/* Appends data as a chain of its own, so that no two pieces are contiguous. */
static void add_piece(struct evbuffer *in, const uint8_t *data, size_t len)
{
    if (len > 0)
        assert_int_equal(evbuffer_add_reference(in, data, len, nothing_to_free, NULL), 0);
}

/* Takes the next frame off in, as the daemons' read callbacks do. */
static int take(const struct bus_decoder *dec, struct evbuffer *in, struct bus_frame *f)
{
    size_t frame_len = 0;
    int rc = bus_evbuffer_next(dec, in, f, &frame_len);

    if (rc == BUS_OK) {
        assert_true(frame_len <= evbuffer_get_length(in));
        /* The frame is still there for the caller to handle; then it drains. */
        assert_int_equal(evbuffer_drain(in, frame_len), 0);
    }
    return rc;
}

static void test_frames_split_across_pieces_at_every_byte_come_out_whole(void **state)
{
    uint8_t wire[256];
    size_t n = bus_encode_hello(wire);
    struct bus_frame f;

    n += build_event(wire + n, 1, "news", "{\"data\":1}");
    for (size_t split = 0; split <= n; split++) {
        struct evbuffer *in = evbuffer_new();

        add_piece(in, wire, split);
        /* Whatever the first piece holds, it yields the frames it completes. */
        int got = 0;
        while (take(&from_listen, in, &f) == BUS_OK)
            got++;
        assert_int_equal(got, (split >= BUS_HELLO_FRAME_LEN) + (split == n));
        add_piece(in, wire + split, n - split);
        while (got < 2) {
            assert_int_equal(take(&from_listen, in, &f), BUS_OK);
            got++;
        }
        assert_int_equal(f.kind, BUS_KIND_EVENT);
        assert_true(f.seq == 1);
        assert_int_equal(f.type_len, 4);
        assert_int_equal(f.message_len, strlen("{\"data\":1}"));
        assert_int_equal(take(&from_listen, in, &f), BUS_AGAIN);
        assert_int_equal(evbuffer_get_length(in), 0);
        evbuffer_free(in);
    }
}

static void test_several_frames_in_one_piece_come_out_one_by_one(void **state)
{
    uint8_t wire[256];
    size_t n = bus_encode_hello(wire);
    struct evbuffer *in = evbuffer_new();
    struct bus_frame f;

    n += bus_encode_ack(wire + n, 1);
    n += bus_encode_ack(wire + n, 2);
    add_piece(in, wire, n);
    assert_int_equal(take(&from_broadcast, in, &f), BUS_OK);
    assert_int_equal(f.kind, BUS_KIND_HELLO);
    assert_int_equal(take(&from_broadcast, in, &f), BUS_OK);
    assert_true(f.kind == BUS_KIND_ACK && f.seq == 1);
    assert_int_equal(take(&from_broadcast, in, &f), BUS_OK);
    assert_true(f.kind == BUS_KIND_ACK && f.seq == 2);
    assert_int_equal(take(&from_broadcast, in, &f), BUS_AGAIN);
    evbuffer_free(in);
}

/* A large frame half in: nothing is made contiguous until all of it is. */
static void test_incomplete_frame_is_not_gathered_before_it_is_all_in(void **state)
{
    static uint8_t wire[BUS_EVENT_HEAD_MAX + 65536];
    static char message[65536];
    struct evbuffer *in = evbuffer_new();
    struct bus_frame f;
    size_t n;

    memset(message, 'm', sizeof(message) - 1);
    n = build_event(wire, 1, "big", message);
    add_piece(in, wire, 4);
    add_piece(in, wire + 4, n / 2 - 4);
    assert_int_equal(take(&from_listen, in, &f), BUS_AGAIN);
    /* The header was gathered to be judged; the body was left where it lay. */
    assert_int_equal(evbuffer_get_contiguous_space(in), BUS_HEADER_LEN);
    assert_int_equal(evbuffer_get_length(in), n / 2);
    add_piece(in, wire + n / 2, n - n / 2);
    assert_int_equal(take(&from_listen, in, &f), BUS_OK);
    assert_int_equal(f.message_len, sizeof(message) - 1);
    evbuffer_free(in);
}

static void test_refused_frames_are_refused_on_their_header_alone(void **state)
{
    uint8_t huge[BUS_HEADER_LEN] = {0xff, 0xff, 0xff, 0xff, BUS_KIND_EVENT, 0, 0, 0};
    uint8_t event[BUS_EVENT_HEAD_MAX + 8];
    size_t n = build_event(event, 1, "t", "m");
    struct bus_frame f;
    struct evbuffer *in = evbuffer_new();

    add_piece(in, huge, sizeof(huge));
    assert_int_equal(take(&from_listen, in, &f), BUS_ERR_TOO_LARGE);
    evbuffer_free(in);

    /* An EVENT reaching the listen daemon: refused by its kind byte. */
    in = evbuffer_new();
    add_piece(in, event, 5);
    assert_int_equal(take(&from_broadcast, in, &f), BUS_ERR_NOT_ALLOWED);
    add_piece(in, event + 5, n - 5);
    assert_int_equal(take(&from_broadcast, in, &f), BUS_ERR_NOT_ALLOWED);
    evbuffer_free(in);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_frames_split_across_pieces_at_every_byte_come_out_whole),
        cmocka_unit_test(test_several_frames_in_one_piece_come_out_one_by_one),
        cmocka_unit_test(test_incomplete_frame_is_not_gathered_before_it_is_all_in),
        cmocka_unit_test(test_refused_frames_are_refused_on_their_header_alone),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
