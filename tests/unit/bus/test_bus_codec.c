/* Unit tests for common/bus/bus_codec.c: round trips, frames split at every byte,
 * streams of frames, and every malformed header and body the decoder refuses. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "bus/bus_codec.h"

#define MAX_MESSAGE 1024

/* Decodes as a side that receives every kind would: these tests are about
 * the frames themselves. */
static int decode_any(const uint8_t *buf, size_t len, size_t max_message, struct bus_frame *out,
                      size_t *frame_len)
{
    const struct bus_decoder dec = {BUS_KINDS_FROM_LISTEN | BUS_KINDS_FROM_BROADCAST, max_message};

    return bus_decoder_next(&dec, buf, len, out, frame_len);
}

/* Builds a whole EVENT frame into out (which must be large enough). */
static size_t build_event(uint8_t *out, uint64_t seq, const char *type, const char *message)
{
    size_t message_len = strlen(message);
    size_t head = bus_encode_event_head(out, seq, type, strlen(type), message_len);

    assert_true(head > 0);
    memcpy(out + head, message, message_len);
    return head + message_len;
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
    static const uint8_t expected[] = {0, 0, 0, 8, 1, 0, 0, 0, 'E', 'V', 'S', 'B', 0, 1, 0, 0};
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

    assert_int_equal(n, BUS_HEADER_LEN + 8 + 1 + 4 + strlen(message));
    assert_int_equal(decode_any(buf, n, MAX_MESSAGE, &f, &frame_len), BUS_OK);
    assert_int_equal(frame_len, n);
    assert_int_equal(f.kind, BUS_KIND_EVENT);
    assert_true(f.seq == 42);
    assert_int_equal(f.type_len, 4);
    assert_memory_equal(f.type, "news", 4);
    assert_int_equal(f.message_len, strlen(message));
    assert_memory_equal(f.message, message, strlen(message));
    assert_ptr_equal(f.type, buf + BUS_HEADER_LEN + 9);
    assert_ptr_equal(f.message, buf + BUS_HEADER_LEN + 9 + 4);
}

static void test_event_round_trip_longest_type(void **state)
{
    uint8_t buf[BUS_EVENT_HEAD_MAX + 1];
    char type[BUS_TYPE_MAX];
    struct bus_frame f;
    size_t frame_len = 0;

    memset(type, 't', sizeof(type));
    size_t head = bus_encode_event_head(buf, 7, type, sizeof(type), 1);
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

    put_be32(hdr, 8 + 1 + BUS_TYPE_MAX + MAX_MESSAGE + 1);
    assert_int_equal(decode_any(hdr, sizeof(hdr), MAX_MESSAGE, &f, &frame_len), BUS_ERR_TOO_LARGE);
    /* The largest body the header bound allows is only incomplete. */
    put_be32(hdr, 8 + 1 + BUS_TYPE_MAX + MAX_MESSAGE);
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
    static const uint8_t bad_kinds[] = {0, 4, 0x7f, 0xff};

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

static void test_event_with_zero_type_len_is_malformed(void **state)
{
    uint8_t buf[64];
    struct bus_frame f;
    size_t frame_len;
    size_t n = build_event(buf, 1, "ab", "message");

    buf[BUS_HEADER_LEN + 8] = 0;
    assert_int_equal(decode_any(buf, n, MAX_MESSAGE, &f, &frame_len), BUS_ERR_MALFORMED);
}

static void test_event_with_type_len_beyond_body_is_malformed(void **state)
{
    uint8_t buf[64];
    struct bus_frame f;
    size_t frame_len;
    size_t n = build_event(buf, 1, "ab", "msg");

    /* body = 8 + 1 + 2 + 3 = 14; a type of 6 leaves nothing, 200 overruns. */
    buf[BUS_HEADER_LEN + 8] = 200;
    assert_int_equal(decode_any(buf, n, MAX_MESSAGE, &f, &frame_len), BUS_ERR_MALFORMED);
    buf[BUS_HEADER_LEN + 8] = 255;
    assert_int_equal(decode_any(buf, n, MAX_MESSAGE, &f, &frame_len), BUS_ERR_MALFORMED);
}

static void test_event_without_message_bytes_is_malformed(void **state)
{
    uint8_t buf[64];
    struct bus_frame f;
    size_t frame_len;
    size_t n = build_event(buf, 1, "ab", "msg");

    /* The type swallows the whole rest of the body. */
    buf[BUS_HEADER_LEN + 8] = 5;
    assert_int_equal(decode_any(buf, n, MAX_MESSAGE, &f, &frame_len), BUS_ERR_MALFORMED);
    /* One byte shorter type leaves exactly one message byte: valid. */
    buf[BUS_HEADER_LEN + 8] = 4;
    assert_int_equal(decode_any(buf, n, MAX_MESSAGE, &f, &frame_len), BUS_OK);
    assert_int_equal(f.type_len, 4);
    assert_int_equal(f.message_len, 1);
    assert_int_equal(f.message[0], 'g');
}

static void test_event_body_below_minimum_is_malformed_with_only_header(void **state)
{
    uint8_t hdr[BUS_HEADER_LEN] = {0, 0, 0, 10, BUS_KIND_EVENT, 0, 0, 0};
    struct bus_frame f;
    size_t frame_len;

    assert_int_equal(decode_any(hdr, sizeof(hdr), MAX_MESSAGE, &f, &frame_len), BUS_ERR_MALFORMED);
    hdr[3] = 11;
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

    put_be32(hdr, 8 + 1 + BUS_TYPE_MAX + BUS_MESSAGE_HARD_MAX);
    assert_int_equal(decode_any(hdr, sizeof(hdr), SIZE_MAX, &f, &frame_len), BUS_AGAIN);
    put_be32(hdr, 8 + 1 + BUS_TYPE_MAX + BUS_MESSAGE_HARD_MAX + 1);
    assert_int_equal(decode_any(hdr, sizeof(hdr), SIZE_MAX, &f, &frame_len), BUS_ERR_TOO_LARGE);
}

static void test_encoder_refuses_bad_lengths(void **state)
{
    uint8_t buf[BUS_EVENT_HEAD_MAX];
    char type[BUS_TYPE_MAX + 1];

    memset(type, 'a', sizeof(type));
    assert_int_equal(bus_encode_event_head(buf, 1, type, 0, 10), 0);
    assert_int_equal(bus_encode_event_head(buf, 1, type, BUS_TYPE_MAX + 1, 10), 0);
    assert_int_equal(bus_encode_event_head(buf, 1, type, 3, 0), 0);
    assert_int_equal(bus_encode_event_head(buf, 1, type, 3, BUS_MESSAGE_HARD_MAX + 1), 0);
    assert_int_equal(bus_encode_event_head(buf, 1, type, 3, BUS_MESSAGE_HARD_MAX),
                     BUS_HEADER_LEN + 9 + 3);
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
        cmocka_unit_test(test_event_with_zero_type_len_is_malformed),
        cmocka_unit_test(test_event_with_type_len_beyond_body_is_malformed),
        cmocka_unit_test(test_event_without_message_bytes_is_malformed),
        cmocka_unit_test(test_event_body_below_minimum_is_malformed_with_only_header),
        cmocka_unit_test(test_event_max_message_honoured_exactly_at_boundary),
        cmocka_unit_test(test_max_message_is_clamped_to_hard_max),
        cmocka_unit_test(test_encoder_refuses_bad_lengths),
        cmocka_unit_test(test_status_text_names_every_status),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
