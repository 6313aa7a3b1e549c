/* Unit tests for common/bus/bus_codec.c: round trips, frames split at every byte,
 * streams of frames, every malformed header and body the decoder refuses, and
 * the decoder as each daemon's side drives it: a stream arriving in chunks,
 * kinds refused by direction, and a stream that ends inside a frame. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "bus/bus_codec.h"
#include "bus_test_frames.h"

/* An EVENT body before its type: seq, run, number, type_len. */
#define EVENT_FIXED 25
#define MAX_MESSAGE 1024
/* Where the kind sits in the header: the byte that decides most refusals. */
#define KIND_BYTE 4

/* Decodes as a side that receives every kind would: for the tests about the
 * frames themselves (the stream tests below use each daemon's direction). */
static int decode_any(const uint8_t *buf, size_t len, size_t max_message, struct bus_frame *out,
                      size_t *frame_len)
{
    const struct bus_decoder dec = {BUS_KINDS_FROM_LISTEN | BUS_KINDS_FROM_BROADCAST, max_message};

    return bus_decoder_next(&dec, buf, len, out, frame_len);
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static void test_hello_round_trip(void **state)
{
    uint8_t buf[BUS_HELLO_FRAME_LEN];
    struct bus_frame f;
    size_t frame_len = 0;

    assert_int_equal(bus_encode_hello(buf), BUS_HELLO_FRAME_LEN);
    assert_int_equal(decode_any(buf, sizeof(buf), MAX_MESSAGE, &f, &frame_len), BUS_OK);
    assert_int_equal(frame_len, BUS_HELLO_FRAME_LEN);
    assert_int_equal(f.kind, BUS_KIND_HELLO);
    assert_int_equal(f.version, BUS_PROTOCOL_VERSION);
    /* The wire bytes are fixed by the spec: check them literally. */
    static const uint8_t expected[] = {0, 0, 0, 8, 1, 0, 0, 0, 'E', 'V', 'S', 'B', 0, 2, 0, 0};
    assert_memory_equal(buf, expected, sizeof(expected));
}

static void test_ack_round_trip(void **state)
{
    uint8_t buf[BUS_ACK_FRAME_LEN];
    struct bus_frame f;
    size_t frame_len = 0;

    assert_int_equal(bus_encode_ack(buf, 0x0102030405060708ull), BUS_ACK_FRAME_LEN);
    assert_int_equal(decode_any(buf, sizeof(buf), MAX_MESSAGE, &f, &frame_len), BUS_OK);
    assert_int_equal(frame_len, BUS_ACK_FRAME_LEN);
    assert_int_equal(f.kind, BUS_KIND_ACK);
    assert_true(f.seq == 0x0102030405060708ull);
    static const uint8_t expected[] = {0, 0, 0, 8, 3, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8};
    assert_memory_equal(buf, expected, sizeof(expected));
}

static void test_event_round_trip(void **state)
{
    uint8_t buf[BUS_EVENT_HEAD_MAX + 64];
    const char *message = "{\"type\":\"event\",\"event\":\"news\",\"data\":1}";
    struct bus_frame f;
    size_t frame_len = 0;
    size_t n = build_event(buf, 42, "news", message);

    assert_int_equal(n, BUS_HEADER_LEN + EVENT_FIXED + 4 + strlen(message));
    assert_int_equal(decode_any(buf, n, MAX_MESSAGE, &f, &frame_len), BUS_OK);
    assert_int_equal(frame_len, n);
    assert_int_equal(f.kind, BUS_KIND_EVENT);
    assert_true(f.seq == 42);
    assert_true(f.run == 1 && f.number == 42);
    assert_int_equal(f.type_len, 4);
    assert_memory_equal(f.type, "news", 4);
    assert_int_equal(f.message_len, strlen(message));
    assert_memory_equal(f.message, message, strlen(message));
    assert_ptr_equal(f.type, buf + BUS_HEADER_LEN + EVENT_FIXED);
    assert_ptr_equal(f.message, buf + BUS_HEADER_LEN + EVENT_FIXED + 4);
}

static void test_event_round_trip_longest_type(void **state)
{
    uint8_t buf[BUS_EVENT_HEAD_MAX + 1];
    char type[BUS_TYPE_MAX];
    struct bus_frame f;
    size_t frame_len = 0;

    memset(type, 't', sizeof(type));
    size_t head = bus_encode_event_head(buf, BUS_KIND_EVENT, 7, 1, 1, type, sizeof(type), 1);
    assert_int_equal(head, BUS_EVENT_HEAD_MAX);
    buf[head] = 'm';
    assert_int_equal(decode_any(buf, head + 1, MAX_MESSAGE, &f, &frame_len), BUS_OK);
    assert_int_equal(frame_len, head + 1);
    assert_int_equal(f.type_len, BUS_TYPE_MAX);
    assert_int_equal(f.message_len, 1);
    assert_int_equal(f.message[0], 'm');
}

static void assert_every_prefix_is_again(const uint8_t *buf, size_t n)
{
    struct bus_frame f;
    size_t frame_len;

    /* Each time, it says how many bytes it needs in one piece to say more. */
    for (size_t i = 0; i < n; i++) {
        frame_len = 12345;
        assert_int_equal(decode_any(buf, i, MAX_MESSAGE, &f, &frame_len), BUS_AGAIN);
        assert_int_equal(frame_len, i < BUS_HEADER_LEN ? BUS_HEADER_LEN : n);
    }
    assert_int_equal(decode_any(buf, n, MAX_MESSAGE, &f, &frame_len), BUS_OK);
    assert_int_equal(frame_len, n);
}

static void test_frame_split_at_every_byte_returns_again(void **state)
{
    uint8_t hello[BUS_HELLO_FRAME_LEN];
    uint8_t ack[BUS_ACK_FRAME_LEN];
    uint8_t event[BUS_EVENT_HEAD_MAX + 64];

    assert_every_prefix_is_again(hello, bus_encode_hello(hello));
    assert_every_prefix_is_again(ack, bus_encode_ack(ack, 9));
    assert_every_prefix_is_again(event, build_event(event, 1, "t", "{\"a\":1}"));
}

static void test_concatenated_frames_decode_one_after_another(void **state)
{
    uint8_t buf[512];
    size_t n = 0;
    size_t off = 0;
    size_t frame_len;
    struct bus_frame f;

    n += bus_encode_hello(buf + n);
    n += build_event(buf + n, 1, "alpha", "first");
    n += build_event(buf + n, 2, "beta", "second message");
    n += bus_encode_ack(buf + n, 2);

    assert_int_equal(decode_any(buf + off, n - off, MAX_MESSAGE, &f, &frame_len), BUS_OK);
    assert_int_equal(f.kind, BUS_KIND_HELLO);
    off += frame_len;

    assert_int_equal(decode_any(buf + off, n - off, MAX_MESSAGE, &f, &frame_len), BUS_OK);
    assert_int_equal(f.kind, BUS_KIND_EVENT);
    assert_true(f.seq == 1);
    assert_int_equal(f.type_len, 5);
    assert_memory_equal(f.type, "alpha", 5);
    assert_int_equal(f.message_len, 5);
    assert_memory_equal(f.message, "first", 5);
    off += frame_len;

    assert_int_equal(decode_any(buf + off, n - off, MAX_MESSAGE, &f, &frame_len), BUS_OK);
    assert_int_equal(f.kind, BUS_KIND_EVENT);
    assert_true(f.seq == 2);
    assert_memory_equal(f.type, "beta", 4);
    assert_int_equal(f.message_len, strlen("second message"));
    off += frame_len;

    assert_int_equal(decode_any(buf + off, n - off, MAX_MESSAGE, &f, &frame_len), BUS_OK);
    assert_int_equal(f.kind, BUS_KIND_ACK);
    assert_true(f.seq == 2);
    off += frame_len;

    assert_int_equal(off, n);
    assert_int_equal(decode_any(buf + off, n - off, MAX_MESSAGE, &f, &frame_len), BUS_AGAIN);
}

static void test_oversized_event_refused_with_only_header(void **state)
{
    uint8_t hdr[BUS_HEADER_LEN] = {0, 0, 0, 0, BUS_KIND_EVENT, 0, 0, 0};
    struct bus_frame f;
    size_t frame_len;

    put_be32(hdr, EVENT_FIXED + BUS_TYPE_MAX + MAX_MESSAGE + 1);
    assert_int_equal(decode_any(hdr, sizeof(hdr), MAX_MESSAGE, &f, &frame_len), BUS_ERR_TOO_LARGE);
    /* The largest body the header bound allows is only incomplete. */
    put_be32(hdr, EVENT_FIXED + BUS_TYPE_MAX + MAX_MESSAGE);
    assert_int_equal(decode_any(hdr, sizeof(hdr), MAX_MESSAGE, &f, &frame_len), BUS_AGAIN);
    /* A length announcing 4 GiB is refused as well, whatever max_message. */
    put_be32(hdr, 0xffffffffu);
    assert_int_equal(decode_any(hdr, sizeof(hdr), SIZE_MAX, &f, &frame_len), BUS_ERR_TOO_LARGE);
}

static void test_oversized_event_refused_as_soon_as_kind_is_known(void **state)
{
    uint8_t hdr[BUS_HEADER_LEN] = {0xff, 0xff, 0xff, 0xff, BUS_KIND_EVENT, 0, 0, 0};
    struct bus_frame f;
    size_t frame_len;

    assert_int_equal(decode_any(hdr, 4, MAX_MESSAGE, &f, &frame_len), BUS_AGAIN);
    assert_int_equal(decode_any(hdr, 5, MAX_MESSAGE, &f, &frame_len), BUS_ERR_TOO_LARGE);
}

static void test_unknown_kind_is_refused_early(void **state)
{
    uint8_t buf[BUS_HELLO_FRAME_LEN];
    struct bus_frame f;
    size_t frame_len;
    static const uint8_t bad_kinds[] = {0, 6, 0x7f, 0xff};

    for (size_t i = 0; i < sizeof(bad_kinds); i++) {
        bus_encode_hello(buf);
        buf[4] = bad_kinds[i];
        assert_int_equal(decode_any(buf, 5, MAX_MESSAGE, &f, &frame_len), BUS_ERR_KIND);
        assert_int_equal(decode_any(buf, sizeof(buf), MAX_MESSAGE, &f, &frame_len), BUS_ERR_KIND);
    }
}

static void test_nonzero_flags_are_refused_early(void **state)
{
    uint8_t buf[BUS_ACK_FRAME_LEN];
    struct bus_frame f;
    size_t frame_len;

    bus_encode_ack(buf, 1);
    buf[5] = 0x80;
    assert_int_equal(decode_any(buf, 5, MAX_MESSAGE, &f, &frame_len), BUS_AGAIN);
    assert_int_equal(decode_any(buf, 6, MAX_MESSAGE, &f, &frame_len), BUS_ERR_MALFORMED);
    assert_int_equal(decode_any(buf, sizeof(buf), MAX_MESSAGE, &f, &frame_len), BUS_ERR_MALFORMED);
}

static void test_nonzero_header_reserved_is_refused(void **state)
{
    uint8_t buf[BUS_ACK_FRAME_LEN];
    struct bus_frame f;
    size_t frame_len;

    for (size_t i = 6; i < 8; i++) {
        bus_encode_ack(buf, 1);
        buf[i] = 1;
        assert_int_equal(decode_any(buf, i, MAX_MESSAGE, &f, &frame_len), BUS_AGAIN);
        assert_int_equal(decode_any(buf, i + 1, MAX_MESSAGE, &f, &frame_len), BUS_ERR_MALFORMED);
        assert_int_equal(decode_any(buf, sizeof(buf), MAX_MESSAGE, &f, &frame_len),
                         BUS_ERR_MALFORMED);
    }
}

static void test_hello_with_wrong_size_is_malformed(void **state)
{
    uint8_t buf[BUS_HELLO_FRAME_LEN + 1] = {0};
    struct bus_frame f;
    size_t frame_len;

    bus_encode_hello(buf);
    put_be32(buf, 7);
    assert_int_equal(decode_any(buf, BUS_HEADER_LEN, MAX_MESSAGE, &f, &frame_len),
                     BUS_ERR_MALFORMED);
    put_be32(buf, 9);
    assert_int_equal(decode_any(buf, sizeof(buf), MAX_MESSAGE, &f, &frame_len), BUS_ERR_MALFORMED);
    put_be32(buf, 0);
    assert_int_equal(decode_any(buf, BUS_HEADER_LEN, MAX_MESSAGE, &f, &frame_len),
                     BUS_ERR_MALFORMED);
}

static void test_hello_with_wrong_magic_is_version_error(void **state)
{
    uint8_t buf[BUS_HELLO_FRAME_LEN];
    struct bus_frame f;
    size_t frame_len;

    bus_encode_hello(buf);
    buf[BUS_HEADER_LEN] = 'X';
    assert_int_equal(decode_any(buf, sizeof(buf), MAX_MESSAGE, &f, &frame_len), BUS_ERR_VERSION);
}

static void test_hello_with_wrong_version_is_version_error(void **state)
{
    uint8_t buf[BUS_HELLO_FRAME_LEN];
    struct bus_frame f;
    size_t frame_len;

    bus_encode_hello(buf);
    buf[BUS_HEADER_LEN + 5] = BUS_PROTOCOL_VERSION + 1;
    assert_int_equal(decode_any(buf, sizeof(buf), MAX_MESSAGE, &f, &frame_len), BUS_ERR_VERSION);
    buf[BUS_HEADER_LEN + 5] = BUS_PROTOCOL_VERSION;
    buf[BUS_HEADER_LEN + 4] = 1; /* version 0x0101 */
    assert_int_equal(decode_any(buf, sizeof(buf), MAX_MESSAGE, &f, &frame_len), BUS_ERR_VERSION);
}

static void test_hello_with_nonzero_body_reserved_is_malformed(void **state)
{
    uint8_t buf[BUS_HELLO_FRAME_LEN];
    struct bus_frame f;
    size_t frame_len;

    bus_encode_hello(buf);
    buf[BUS_HELLO_FRAME_LEN - 1] = 1;
    assert_int_equal(decode_any(buf, sizeof(buf), MAX_MESSAGE, &f, &frame_len), BUS_ERR_MALFORMED);
}

static void test_ack_with_wrong_size_is_malformed(void **state)
{
    uint8_t buf[BUS_ACK_FRAME_LEN + 8] = {0};
    struct bus_frame f;
    size_t frame_len;

    bus_encode_ack(buf, 3);
    put_be32(buf, 16);
    assert_int_equal(decode_any(buf, sizeof(buf), MAX_MESSAGE, &f, &frame_len), BUS_ERR_MALFORMED);
    put_be32(buf, 4);
    assert_int_equal(decode_any(buf, BUS_HEADER_LEN, MAX_MESSAGE, &f, &frame_len),
                     BUS_ERR_MALFORMED);
}

static void test_event_id_round_trip_and_zero_refused(void **state)
{
    uint8_t buf[BUS_EVENT_HEAD_MAX + 8];
    struct bus_frame f;
    size_t frame_len;
    size_t head = bus_encode_event_head(buf, BUS_KIND_EVENT, 3, 0x0102030405060708ull,
                                        0x1112131415161718ull, "t", 1, 1);
    buf[head] = 'm';
    assert_int_equal(decode_any(buf, head + 1, MAX_MESSAGE, &f, &frame_len), BUS_OK);
    assert_true(f.seq == 3);
    assert_true(f.run == 0x0102030405060708ull);
    assert_true(f.number == 0x1112131415161718ull);
    /* Neither half of an id may be 0, on the wire or to the encoder. */
    memset(buf + BUS_HEADER_LEN + 8, 0, 8);
    assert_int_equal(decode_any(buf, head + 1, MAX_MESSAGE, &f, &frame_len), BUS_ERR_MALFORMED);
    head = bus_encode_event_head(buf, BUS_KIND_EVENT, 3, 1, 1, "t", 1, 1);
    buf[head] = 'm';
    memset(buf + BUS_HEADER_LEN + 16, 0, 8);
    assert_int_equal(decode_any(buf, head + 1, MAX_MESSAGE, &f, &frame_len), BUS_ERR_MALFORMED);
    assert_int_equal(bus_encode_event_head(buf, BUS_KIND_EVENT, 1, 0, 1, "t", 1, 1), 0);
    assert_int_equal(bus_encode_event_head(buf, BUS_KIND_EVENT, 1, 1, 0, "t", 1, 1), 0);
}

static void test_history_frame_is_an_event_body_of_its_own_kind(void **state)
{
    uint8_t buf[BUS_EVENT_HEAD_MAX + 8];
    const struct bus_decoder from_broadcast = {BUS_KINDS_FROM_BROADCAST, MAX_MESSAGE};
    struct bus_frame f;
    size_t frame_len;
    size_t head = bus_encode_event_head(buf, BUS_KIND_HISTORY, 9, 5, 77, "news", 4, 2);
    memcpy(buf + head, "{}", 2);
    assert_int_equal(decode_any(buf, head + 2, MAX_MESSAGE, &f, &frame_len), BUS_OK);
    assert_int_equal(f.kind, BUS_KIND_HISTORY);
    assert_true(f.seq == 9 && f.run == 5 && f.number == 77);
    assert_memory_equal(f.type, "news", 4);
    assert_int_equal(f.message_len, 2);
    assert_int_equal(frame_len, head + 2);
    /* Only the listen daemon sends it. */
    assert_int_equal(bus_decoder_next(&from_broadcast, buf, head + 2, &f, &frame_len),
                     BUS_ERR_NOT_ALLOWED);
    /* No other kind goes through the event encoder. */
    assert_int_equal(bus_encode_event_head(buf, BUS_KIND_ACK, 1, 1, 1, "t", 1, 1), 0);
    assert_int_equal(bus_encode_event_head(buf, BUS_KIND_SYNC, 1, 1, 1, "t", 1, 1), 0);
}

static void test_sync_round_trip_and_bounds(void **state)
{
    uint8_t buf[BUS_SYNC_FRAME_LEN + 8];
    const struct bus_decoder from_broadcast = {BUS_KINDS_FROM_BROADCAST, MAX_MESSAGE};
    struct bus_frame f;
    size_t frame_len;
    assert_int_equal(bus_encode_sync(buf, 0x0102030405060708ull, 0), BUS_SYNC_FRAME_LEN);
    assert_int_equal(decode_any(buf, BUS_SYNC_FRAME_LEN, MAX_MESSAGE, &f, &frame_len), BUS_OK);
    assert_int_equal(f.kind, BUS_KIND_SYNC);
    assert_true(f.run == 0x0102030405060708ull && f.number == 0);
    assert_int_equal(frame_len, BUS_SYNC_FRAME_LEN);
    assert_int_equal(bus_decoder_next(&from_broadcast, buf, BUS_SYNC_FRAME_LEN, &f, &frame_len),
                     BUS_ERR_NOT_ALLOWED);
    /* A run of 0 is no run. */
    assert_int_equal(bus_encode_sync(buf, 0, 1), 0);
    bus_encode_sync(buf, 1, 1);
    memset(buf + BUS_HEADER_LEN, 0, 8);
    assert_int_equal(decode_any(buf, BUS_SYNC_FRAME_LEN, MAX_MESSAGE, &f, &frame_len),
                     BUS_ERR_MALFORMED);
    /* Its body is exactly 16 bytes, judged from the header alone. */
    bus_encode_sync(buf, 1, 1);
    put_be32(buf, 15);
    assert_int_equal(decode_any(buf, 5, MAX_MESSAGE, &f, &frame_len), BUS_ERR_MALFORMED);
    put_be32(buf, 24);
    assert_int_equal(decode_any(buf, 5, MAX_MESSAGE, &f, &frame_len), BUS_ERR_MALFORMED);
}

static void test_event_with_zero_type_len_is_malformed(void **state)
{
    uint8_t buf[64];
    struct bus_frame f;
    size_t frame_len;
    size_t n = build_event(buf, 1, "ab", "message");

    buf[BUS_HEADER_LEN + EVENT_FIXED - 1] = 0;
    assert_int_equal(decode_any(buf, n, MAX_MESSAGE, &f, &frame_len), BUS_ERR_MALFORMED);
}

static void test_event_with_type_len_beyond_body_is_malformed(void **state)
{
    uint8_t buf[64];
    struct bus_frame f;
    size_t frame_len;
    size_t n = build_event(buf, 1, "ab", "msg");

    /* body = 25 + 2 + 3 = 30; a type of 5 leaves nothing, 200 overruns. */
    buf[BUS_HEADER_LEN + EVENT_FIXED - 1] = 200;
    assert_int_equal(decode_any(buf, n, MAX_MESSAGE, &f, &frame_len), BUS_ERR_MALFORMED);
    buf[BUS_HEADER_LEN + EVENT_FIXED - 1] = 255;
    assert_int_equal(decode_any(buf, n, MAX_MESSAGE, &f, &frame_len), BUS_ERR_MALFORMED);
}

static void test_event_without_message_bytes_is_malformed(void **state)
{
    uint8_t buf[64];
    struct bus_frame f;
    size_t frame_len;
    size_t n = build_event(buf, 1, "ab", "msg");

    /* The type swallows the whole rest of the body. */
    buf[BUS_HEADER_LEN + EVENT_FIXED - 1] = 5;
    assert_int_equal(decode_any(buf, n, MAX_MESSAGE, &f, &frame_len), BUS_ERR_MALFORMED);
    /* One byte shorter type leaves exactly one message byte: valid. */
    buf[BUS_HEADER_LEN + EVENT_FIXED - 1] = 4;
    assert_int_equal(decode_any(buf, n, MAX_MESSAGE, &f, &frame_len), BUS_OK);
    assert_int_equal(f.type_len, 4);
    assert_int_equal(f.message_len, 1);
    assert_int_equal(f.message[0], 'g');
}

static void test_event_body_below_minimum_is_malformed_with_only_header(void **state)
{
    uint8_t hdr[BUS_HEADER_LEN] = {0, 0, 0, EVENT_FIXED + 1, BUS_KIND_EVENT, 0, 0, 0};
    struct bus_frame f;
    size_t frame_len;

    assert_int_equal(decode_any(hdr, sizeof(hdr), MAX_MESSAGE, &f, &frame_len), BUS_ERR_MALFORMED);
    hdr[3] = EVENT_FIXED + 2;
    assert_int_equal(decode_any(hdr, sizeof(hdr), MAX_MESSAGE, &f, &frame_len), BUS_AGAIN);
}

static void test_event_max_message_honoured_exactly_at_boundary(void **state)
{
    const size_t max = 100;
    uint8_t buf[BUS_EVENT_HEAD_MAX + 101];
    char message[102];
    struct bus_frame f;
    size_t frame_len;

    memset(message, 'x', sizeof(message));
    message[sizeof(message) - 1] = '\0';

    message[max] = '\0';
    size_t n = build_event(buf, 1, "t", message);
    assert_int_equal(decode_any(buf, n, max, &f, &frame_len), BUS_OK);
    assert_int_equal(f.message_len, max);

    message[max] = 'x';
    n = build_event(buf, 1, "t", message);
    assert_int_equal(decode_any(buf, n, max, &f, &frame_len), BUS_ERR_TOO_LARGE);
    assert_int_equal(decode_any(buf, n, max + 1, &f, &frame_len), BUS_OK);
    assert_int_equal(f.message_len, max + 1);
}

static void test_max_message_is_clamped_to_hard_max(void **state)
{
    uint8_t hdr[BUS_HEADER_LEN] = {0, 0, 0, 0, BUS_KIND_EVENT, 0, 0, 0};
    struct bus_frame f;
    size_t frame_len;

    put_be32(hdr, EVENT_FIXED + BUS_TYPE_MAX + BUS_MESSAGE_HARD_MAX);
    assert_int_equal(decode_any(hdr, sizeof(hdr), SIZE_MAX, &f, &frame_len), BUS_AGAIN);
    put_be32(hdr, EVENT_FIXED + BUS_TYPE_MAX + BUS_MESSAGE_HARD_MAX + 1);
    assert_int_equal(decode_any(hdr, sizeof(hdr), SIZE_MAX, &f, &frame_len), BUS_ERR_TOO_LARGE);
}

static void test_encoder_refuses_bad_lengths(void **state)
{
    uint8_t buf[BUS_EVENT_HEAD_MAX];
    char type[BUS_TYPE_MAX + 1];

    memset(type, 'a', sizeof(type));
    assert_int_equal(bus_encode_event_head(buf, BUS_KIND_EVENT, 1, 1, 1, type, 0, 10), 0);
    assert_int_equal(
        bus_encode_event_head(buf, BUS_KIND_EVENT, 1, 1, 1, type, BUS_TYPE_MAX + 1, 10), 0);
    assert_int_equal(bus_encode_event_head(buf, BUS_KIND_EVENT, 1, 1, 1, type, 3, 0), 0);
    assert_int_equal(
        bus_encode_event_head(buf, BUS_KIND_EVENT, 1, 1, 1, type, 3, BUS_MESSAGE_HARD_MAX + 1), 0);
    assert_int_equal(
        bus_encode_event_head(buf, BUS_KIND_EVENT, 1, 1, 1, type, 3, BUS_MESSAGE_HARD_MAX),
        BUS_HEADER_LEN + EVENT_FIXED + 3);
}

static void test_status_text_names_every_status(void **state)
{
    static const int statuses[] = {
        BUS_OK,          BUS_AGAIN,           BUS_ERR_TOO_LARGE, BUS_ERR_KIND, BUS_ERR_MALFORMED,
        BUS_ERR_VERSION, BUS_ERR_NOT_ALLOWED, BUS_ERR_TRUNCATED};
    const char *unknown = bus_status_text(-100);

    assert_non_null(unknown);
    for (size_t i = 0; i < sizeof(statuses) / sizeof(statuses[0]); i++) {
        const char *text = bus_status_text(statuses[i]);
        assert_non_null(text);
        assert_true(strlen(text) > 0);
        assert_string_not_equal(text, unknown);
        for (size_t j = 0; j < i; j++)
            assert_string_not_equal(text, bus_status_text(statuses[j]));
    }
}

/* --- streams: the decoder as the daemons drive it ------------------------------------------- */

static const struct bus_decoder from_listen = {BUS_KINDS_FROM_LISTEN, MAX_MESSAGE};
static const struct bus_decoder from_broadcast = {BUS_KINDS_FROM_BROADCAST, 0};

#define STREAM_FRAMES 8

struct received {
    enum bus_kind kind;
    uint64_t seq;
    char type[BUS_TYPE_MAX + 1];
    char message[MAX_MESSAGE + 1];
};

/* A receiving side: bytes arrive in chunks and are kept, every whole frame is
 * taken off the front as soon as it is in, and a protocol error ends it. */
struct stream {
    const struct bus_decoder *dec;
    uint8_t buf[4096];
    size_t len;
    struct received frames[STREAM_FRAMES];
    size_t count;
    int status; /* of the last bus_decoder_next: BUS_AGAIN while it goes on */
};

static void stream_init(struct stream *s, const struct bus_decoder *dec)
{
    memset(s, 0, sizeof(*s));
    s->dec = dec;
    s->status = BUS_AGAIN;
}

static void stream_feed(struct stream *s, const uint8_t *data, size_t n)
{
    struct bus_frame f;
    size_t frame_len;

    assert_int_equal(s->status, BUS_AGAIN); /* nothing is read after an error */
    assert_true(n <= sizeof(s->buf) - s->len);
    memcpy(s->buf + s->len, data, n);
    s->len += n;
    for (;;) {
        s->status = bus_decoder_next(s->dec, s->buf, s->len, &f, &frame_len);
        if (s->status == BUS_AGAIN)
            assert_true(frame_len > s->len);
        if (s->status != BUS_OK)
            return;
        assert_true(frame_len <= s->len);
        assert_true(s->count < STREAM_FRAMES);
        struct received *r = &s->frames[s->count++];
        r->kind = f.kind;
        r->seq = f.seq;
        if (f.kind == BUS_KIND_EVENT) { /* type and message are NULL otherwise */
            memcpy(r->type, f.type, f.type_len);
            memcpy(r->message, f.message, f.message_len);
        }
        r->type[f.type_len] = '\0';
        r->message[f.message_len] = '\0';
        memmove(s->buf, s->buf + frame_len, s->len - frame_len);
        s->len -= frame_len;
    }
}

/* HELLO, then two EVENTs: what a listen daemon sends first. */
static size_t build_listen_stream(uint8_t *out)
{
    size_t n = bus_encode_hello(out);

    n += build_event(out + n, 1, "alpha", "{\"type\":\"event\",\"event\":\"alpha\"}");
    n += build_event(out + n, 2, "b", "x");
    return n;
}

static void assert_listen_stream_received(const struct stream *s)
{
    assert_int_equal(s->status, BUS_AGAIN);
    assert_int_equal(s->len, 0);
    assert_int_equal(s->count, 3);
    assert_int_equal(s->frames[0].kind, BUS_KIND_HELLO);
    assert_int_equal(s->frames[1].kind, BUS_KIND_EVENT);
    assert_true(s->frames[1].seq == 1);
    assert_string_equal(s->frames[1].type, "alpha");
    assert_string_equal(s->frames[1].message, "{\"type\":\"event\",\"event\":\"alpha\"}");
    assert_int_equal(s->frames[2].kind, BUS_KIND_EVENT);
    assert_true(s->frames[2].seq == 2);
    assert_string_equal(s->frames[2].type, "b");
    assert_string_equal(s->frames[2].message, "x");
}

static void test_stream_split_at_every_byte_boundary_yields_the_same_frames(void **state)
{
    uint8_t wire[512];
    size_t n = build_listen_stream(wire);
    struct stream s;

    for (size_t split = 0; split <= n; split++) {
        stream_init(&s, &from_listen);
        stream_feed(&s, wire, split);
        stream_feed(&s, wire + split, n - split);
        assert_listen_stream_received(&s);
    }
    stream_init(&s, &from_listen);
    for (size_t i = 0; i < n; i++)
        stream_feed(&s, wire + i, 1);
    assert_listen_stream_received(&s);
}

static void test_stream_several_frames_in_one_chunk_come_out_one_by_one(void **state)
{
    uint8_t wire[512];
    size_t n = build_listen_stream(wire);
    struct stream s;

    size_t last = build_event(wire + n, 3, "c", "next");

    /* The chunk also holds the first 3 bytes of the next frame: kept for later. */
    stream_init(&s, &from_listen);
    stream_feed(&s, wire, n + 3);
    assert_int_equal(s.count, 3);
    assert_int_equal(s.len, 3);
    assert_int_equal(s.status, BUS_AGAIN);
    stream_feed(&s, wire + n + 3, last - 3);
    assert_int_equal(s.count, 4);
    assert_true(s.frames[3].seq == 3);
    assert_string_equal(s.frames[3].message, "next");
    assert_int_equal(s.len, 0);
}

static void test_stream_oversized_event_refused_before_its_body_is_buffered(void **state)
{
    uint8_t hdr[BUS_HEADER_LEN] = {0, 0, 0, 0, BUS_KIND_EVENT, 0, 0, 0};
    uint8_t hello[BUS_HELLO_FRAME_LEN];
    struct stream s;

    /* One byte over what the longest type and MAX_MESSAGE could need. */
    put_be32(hdr, EVENT_FIXED + BUS_TYPE_MAX + MAX_MESSAGE + 1);
    stream_init(&s, &from_listen);
    stream_feed(&s, hello, bus_encode_hello(hello));
    for (size_t i = 0; i < sizeof(hdr) && s.status == BUS_AGAIN; i++)
        stream_feed(&s, hdr + i, 1);
    assert_int_equal(s.status, BUS_ERR_TOO_LARGE);
    /* Refused with its kind byte: not even the whole header was waited for. */
    assert_int_equal(s.len, KIND_BYTE + 1);
}

static void test_stream_kind_from_the_wrong_direction_is_refused_at_its_kind_byte(void **state)
{
    uint8_t event[BUS_EVENT_HEAD_MAX + 16];
    uint8_t ack[BUS_ACK_FRAME_LEN];
    uint8_t hello[BUS_HELLO_FRAME_LEN];
    uint8_t huge_event[BUS_HEADER_LEN] = {0xff, 0xff, 0xff, 0xff, BUS_KIND_EVENT, 0, 0, 0};
    uint8_t unknown[BUS_HEADER_LEN] = {0, 0, 0, 8, 9, 0, 0, 0};
    struct {
        const struct bus_decoder *dec;
        const uint8_t *frame;
        size_t len;
        int status;
    } cases[] = {
        /* A broadcast daemon never sends EVENT, even one its length alone would refuse. */
        {&from_broadcast, event, build_event(event, 1, "t", "m"), BUS_ERR_NOT_ALLOWED},
        {&from_broadcast, huge_event, sizeof(huge_event), BUS_ERR_NOT_ALLOWED},
        /* A listen daemon never sends ACK. */
        {&from_listen, ack, bus_encode_ack(ack, 1), BUS_ERR_NOT_ALLOWED},
        /* A kind nobody sends is another error on both sides. */
        {&from_broadcast, unknown, sizeof(unknown), BUS_ERR_KIND},
        {&from_listen, unknown, sizeof(unknown), BUS_ERR_KIND},
    };
    struct stream s;

    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        stream_init(&s, cases[c].dec);
        for (size_t i = 0; i < cases[c].len && s.status == BUS_AGAIN; i++)
            stream_feed(&s, cases[c].frame + i, 1);
        assert_int_equal(s.status, cases[c].status);
        assert_int_equal(s.len, KIND_BYTE + 1);
        assert_int_equal(s.count, 0);
    }
    /* Each side takes what its peer does send. */
    stream_init(&s, &from_broadcast);
    stream_feed(&s, ack, sizeof(ack));
    stream_feed(&s, hello, bus_encode_hello(hello));
    assert_int_equal(s.count, 2);
    assert_int_equal(s.frames[0].kind, BUS_KIND_ACK);
    assert_int_equal(s.frames[1].kind, BUS_KIND_HELLO);
}

static void test_stream_that_ends_inside_a_frame_is_truncated(void **state)
{
    uint8_t event[BUS_EVENT_HEAD_MAX + 16];
    size_t n = build_event(event, 1, "type", "message");
    uint8_t unknown[BUS_HEADER_LEN] = {0, 0, 0, 8, 9, 0, 0, 0};

    /* Nothing left over: a clean end. */
    assert_int_equal(bus_decoder_finish(&from_listen, event, 0), BUS_OK);
    for (size_t i = 1; i < n; i++)
        assert_int_equal(bus_decoder_finish(&from_listen, event, i), BUS_ERR_TRUNCATED);
    /* Left-over bytes that are already wrong keep their own error. */
    assert_int_equal(bus_decoder_finish(&from_listen, unknown, 5), BUS_ERR_KIND);
    assert_int_equal(bus_decoder_finish(&from_broadcast, event, 5), BUS_ERR_NOT_ALLOWED);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hello_round_trip),
        cmocka_unit_test(test_ack_round_trip),
        cmocka_unit_test(test_event_round_trip),
        cmocka_unit_test(test_event_round_trip_longest_type),
        cmocka_unit_test(test_frame_split_at_every_byte_returns_again),
        cmocka_unit_test(test_concatenated_frames_decode_one_after_another),
        cmocka_unit_test(test_oversized_event_refused_with_only_header),
        cmocka_unit_test(test_oversized_event_refused_as_soon_as_kind_is_known),
        cmocka_unit_test(test_unknown_kind_is_refused_early),
        cmocka_unit_test(test_nonzero_flags_are_refused_early),
        cmocka_unit_test(test_nonzero_header_reserved_is_refused),
        cmocka_unit_test(test_hello_with_wrong_size_is_malformed),
        cmocka_unit_test(test_hello_with_wrong_magic_is_version_error),
        cmocka_unit_test(test_hello_with_wrong_version_is_version_error),
        cmocka_unit_test(test_hello_with_nonzero_body_reserved_is_malformed),
        cmocka_unit_test(test_ack_with_wrong_size_is_malformed),
        cmocka_unit_test(test_event_id_round_trip_and_zero_refused),
        cmocka_unit_test(test_history_frame_is_an_event_body_of_its_own_kind),
        cmocka_unit_test(test_sync_round_trip_and_bounds),
        cmocka_unit_test(test_event_with_zero_type_len_is_malformed),
        cmocka_unit_test(test_event_with_type_len_beyond_body_is_malformed),
        cmocka_unit_test(test_event_without_message_bytes_is_malformed),
        cmocka_unit_test(test_event_body_below_minimum_is_malformed_with_only_header),
        cmocka_unit_test(test_event_max_message_honoured_exactly_at_boundary),
        cmocka_unit_test(test_max_message_is_clamped_to_hard_max),
        cmocka_unit_test(test_encoder_refuses_bad_lengths),
        cmocka_unit_test(test_status_text_names_every_status),
        cmocka_unit_test(test_stream_split_at_every_byte_boundary_yields_the_same_frames),
        cmocka_unit_test(test_stream_several_frames_in_one_chunk_come_out_one_by_one),
        cmocka_unit_test(test_stream_oversized_event_refused_before_its_body_is_buffered),
        cmocka_unit_test(test_stream_kind_from_the_wrong_direction_is_refused_at_its_kind_byte),
        cmocka_unit_test(test_stream_that_ends_inside_a_frame_is_truncated),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
