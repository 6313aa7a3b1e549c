#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "ws_frame.h"

static void expect_header(uint64_t len, const uint8_t *want, size_t want_len)
{
    uint8_t out[WS_FRAME_HEADER_MAX];
    memset(out, 0xaa, sizeof(out));
    size_t n = ws_frame_header_encode(out, WS_OPCODE_TEXT, len);
    assert_int_equal(n, want_len);
    assert_memory_equal(out, want, want_len);
}

static void test_frame_empty_payload_uses_two_byte_header(void **state)
{
    static const uint8_t want[] = {0x81, 0x00};
    expect_header(0, want, sizeof(want));
}

static void test_frame_125_is_largest_seven_bit_length(void **state)
{
    static const uint8_t want[] = {0x81, 125};
    expect_header(125, want, sizeof(want));
}

static void test_frame_126_switches_to_sixteen_bit_length(void **state)
{
    static const uint8_t want[] = {0x81, 126, 0x00, 0x7e};
    expect_header(126, want, sizeof(want));
}

static void test_frame_65535_is_largest_sixteen_bit_length(void **state)
{
    static const uint8_t want[] = {0x81, 126, 0xff, 0xff};
    expect_header(65535, want, sizeof(want));
}

static void test_frame_65536_switches_to_sixty_four_bit_length(void **state)
{
    static const uint8_t want[] = {0x81, 127, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00};
    expect_header(65536, want, sizeof(want));
}

static void test_frame_two_to_the_32_is_big_endian(void **state)
{
    static const uint8_t want[] = {0x81, 127, 0, 0, 0, 0x01, 0, 0, 0, 0};
    expect_header(UINT64_C(1) << 32, want, sizeof(want));
}

static void test_frame_every_length_byte_lands_in_place(void **state)
{
    static const uint8_t want[] = {0x81, 127, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef};
    expect_header(UINT64_C(0x0123456789abcdef), want, sizeof(want));
}

static void test_frame_length_top_bit_is_never_set(void **state)
{
    uint8_t out[WS_FRAME_HEADER_MAX];
    assert_int_equal(ws_frame_header_encode(out, WS_OPCODE_TEXT, UINT64_MAX), 10);
    assert_int_equal(out[2] & 0x80, 0);
}

static void test_frame_opcode_is_kept_and_mask_bit_clear(void **state)
{
    uint8_t out[WS_FRAME_HEADER_MAX];
    assert_int_equal(ws_frame_header_encode(out, 0x8, 2), 2);
    assert_int_equal(out[0], 0x88); /* FIN + close */
    assert_int_equal(out[1], 0x02); /* MASK bit clear */
    assert_int_equal(ws_frame_header_encode(out, 0x2, 300), 4);
    assert_int_equal(out[0], 0x82);
    assert_int_equal(out[1] & 0x80, 0);
}

/* The header of a masked client frame with its 4-byte key (never more than
 * 14 bytes), announcing len payload bytes. */
static size_t client_header(uint8_t *out, uint8_t first, uint64_t len)
{
    size_t n = 0;
    out[n++] = first;
    if (len < 126) {
        out[n++] = (uint8_t)(0x80 | len);
    } else if (len <= 0xffff) {
        out[n++] = 0x80 | 126;
        out[n++] = (uint8_t)(len >> 8);
        out[n++] = (uint8_t)len;
    } else {
        out[n++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--)
            out[n++] = (uint8_t)(len >> (8 * i));
    }
    memset(out + n, 0xa5, 4);
    return n + 4;
}

/* A masked client frame: header, 4-byte key, payload (masking not applied:
 * the tracker never looks at payload bytes). */
static size_t client_frame(uint8_t *out, uint8_t first, uint64_t len)
{
    size_t n = client_header(out, first, len);
    memset(out + n, 0x5a, (size_t)len);
    return n + (size_t)len;
}

static void test_tracker_is_idle_only_between_whole_frames(void **state)
{
    (void)state;
    static uint8_t buf[70000];
    size_t len = client_frame(buf, 0x81, 300);
    for (size_t split = 0; split <= len; split++) {
        struct ws_frame_tracker t = {0};
        ws_frame_tracker_feed(&t, buf, split);
        assert_int_equal(ws_frame_tracker_idle(&t), split == 0 || split == len);
        ws_frame_tracker_feed(&t, buf + split, len - split);
        assert_true(ws_frame_tracker_idle(&t));
    }
    len = client_frame(buf, 0x82, 66000); /* 64-bit length */
    struct ws_frame_tracker t = {0};
    ws_frame_tracker_feed(&t, buf, len - 1);
    assert_false(ws_frame_tracker_idle(&t));
    ws_frame_tracker_feed(&t, buf + len - 1, 1);
    assert_true(ws_frame_tracker_idle(&t));
}

static void test_tracker_keeps_a_fragmented_message_open_across_control_frames(void **state)
{
    (void)state;
    uint8_t buf[256];
    struct ws_frame_tracker t = {0};
    size_t n = client_frame(buf, 0x01, 5); /* text, no FIN */
    ws_frame_tracker_feed(&t, buf, n);
    assert_false(ws_frame_tracker_idle(&t));
    n = client_frame(buf, 0x89, 3); /* ping in between */
    ws_frame_tracker_feed(&t, buf, n);
    assert_false(ws_frame_tracker_idle(&t));
    n = client_frame(buf, 0x00, 4); /* continuation, no FIN */
    ws_frame_tracker_feed(&t, buf, n);
    assert_false(ws_frame_tracker_idle(&t));
    n = client_frame(buf, 0x80, 4); /* last continuation */
    ws_frame_tracker_feed(&t, buf, n);
    assert_true(ws_frame_tracker_idle(&t));
}

static void test_tracker_counts_an_empty_frame_as_whole(void **state)
{
    (void)state;
    uint8_t buf[16];
    struct ws_frame_tracker t = {0};
    size_t n = client_frame(buf, 0x8a, 0); /* empty pong */
    ws_frame_tracker_feed(&t, buf, 1);
    assert_false(ws_frame_tracker_idle(&t));
    ws_frame_tracker_feed(&t, buf + 1, n - 1);
    assert_true(ws_frame_tracker_idle(&t));
}

/* Feeds a good text frame and then buf[0..len) (one frame and whatever
 * follows it) in one call; returns the tracker. */
static struct ws_frame_tracker feed_after_text(const uint8_t *buf, size_t len, uint64_t max)
{
    static uint8_t stream[512];
    struct ws_frame_tracker t = {0};
    size_t text = client_frame(stream, 0x81, 10);
    assert_true(text + len <= sizeof stream);
    memcpy(stream + text, buf, len);
    t.max_payload = max;
    ws_frame_tracker_feed(&t, stream, text + len);
    return t;
}

static void assert_refused(const uint8_t *buf, size_t header_len, size_t len, uint16_t code,
                           const char *reason)
{
    struct ws_frame_tracker t = feed_after_text(buf, len, 4096);
    assert_int_equal(t.failure, code);
    assert_string_equal(t.failure_reason, reason);
    /* It stops right after the refused header; the frame began after the text frame. */
    assert_int_equal(t.frame_offset, 16);
    assert_int_equal(t.offset, 16 + header_len);
    assert_false(ws_frame_tracker_idle(&t));
}

static void assert_accepted(const uint8_t *buf, size_t len)
{
    struct ws_frame_tracker t = feed_after_text(buf, len, 4096);
    assert_int_equal(t.failure, 0);
    assert_null(t.failure_reason);
    assert_int_equal(t.offset, 16 + len);
    assert_true(ws_frame_tracker_idle(&t));
}

static void test_tracker_refuses_control_frames_over_125_bytes(void **state)
{
    (void)state;
    uint8_t buf[300];
    const char *reason = "control frame over 125 bytes";
    assert_accepted(buf, client_frame(buf, 0x89, 125)); /* ping of 125: the largest */
    assert_refused(buf, 8, client_frame(buf, 0x89, 126), 1002, reason);
    assert_refused(buf, 8, client_frame(buf, 0x8a, 200), 1002, reason);
    assert_refused(buf, 8, client_frame(buf, 0x88, 126), 1002, reason);
    /* Judged on the header alone: a 2^62-byte ping needs no payload to be refused. */
    assert_refused(buf, 14, client_header(buf, 0x89, UINT64_C(1) << 62), 1002, reason);
    assert_accepted(buf, client_frame(buf, 0x82, 200)); /* a data frame may be longer */
}

static void test_tracker_refuses_fragmented_control_frames(void **state)
{
    (void)state;
    uint8_t buf[64];
    const char *reason = "fragmented control frame";
    assert_refused(buf, 6, client_frame(buf, 0x09, 3), 1002, reason);
    assert_refused(buf, 6, client_frame(buf, 0x0a, 0), 1002, reason);
    assert_refused(buf, 6, client_frame(buf, 0x08, 2), 1002, reason);
    /* A data frame may be fragmented: the message stays open. */
    struct ws_frame_tracker t = feed_after_text(buf, client_frame(buf, 0x01, 3), 4096);
    assert_int_equal(t.failure, 0);
    assert_true(t.fragmented);
}

static void test_tracker_refuses_a_close_frame_with_a_1_byte_body_only(void **state)
{
    (void)state;
    uint8_t buf[64];
    assert_refused(buf, 6, client_frame(buf, 0x88, 1), 1002, "close frame with a 1-byte body");
    assert_accepted(buf, client_frame(buf, 0x88, 0));
    assert_accepted(buf, client_frame(buf, 0x88, 2));
    assert_accepted(buf, client_frame(buf, 0x89, 1)); /* a ping may carry 1 byte */
}

static void test_tracker_refuses_a_frame_over_max_payload_with_1009(void **state)
{
    (void)state;
    uint8_t buf[32];
    size_t n = client_header(buf, 0x81, UINT64_C(1) << 62);
    struct ws_frame_tracker t = feed_after_text(buf, n, 4096);
    assert_int_equal(t.failure, 1009);
    assert_string_equal(t.failure_reason, "message too big");
    assert_int_equal(t.payload_len, UINT64_C(1) << 62);
    t = feed_after_text(buf, n, 0); /* no limit: it is just a long frame */
    assert_int_equal(t.failure, 0);
    assert_true(t.in_payload);
    n = client_header(buf, 0x82, 4097);
    t = feed_after_text(buf, n, 4096);
    assert_int_equal(t.failure, 1009);
    n = client_header(buf, 0x82, 4096);
    t = feed_after_text(buf, n, 4096);
    assert_int_equal(t.failure, 0);
}

static void test_tracker_stops_at_a_refused_header_split_across_feeds(void **state)
{
    (void)state;
    uint8_t buf[64];
    size_t text = client_frame(buf, 0x81, 2);
    client_header(buf + text, 0x89, 126); /* its payload never comes */
    struct ws_frame_tracker t = {0};
    ws_frame_tracker_feed(&t, buf, text + 3); /* the text frame and 3 header bytes */
    assert_int_equal(t.failure, 0);
    ws_frame_tracker_feed(&t, buf + text + 3, 10); /* the rest of the header, and more */
    assert_int_equal(t.failure, 1002);
    assert_int_equal(t.frame_offset, text);
    assert_int_equal(t.offset, text + 8);
    ws_frame_tracker_feed(&t, buf, 5); /* consumes nothing once refused */
    assert_int_equal(t.offset, text + 8);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tracker_is_idle_only_between_whole_frames),
        cmocka_unit_test(test_tracker_keeps_a_fragmented_message_open_across_control_frames),
        cmocka_unit_test(test_tracker_counts_an_empty_frame_as_whole),
        cmocka_unit_test(test_tracker_refuses_control_frames_over_125_bytes),
        cmocka_unit_test(test_tracker_refuses_fragmented_control_frames),
        cmocka_unit_test(test_tracker_refuses_a_close_frame_with_a_1_byte_body_only),
        cmocka_unit_test(test_tracker_refuses_a_frame_over_max_payload_with_1009),
        cmocka_unit_test(test_tracker_stops_at_a_refused_header_split_across_feeds),
        cmocka_unit_test(test_frame_empty_payload_uses_two_byte_header),
        cmocka_unit_test(test_frame_125_is_largest_seven_bit_length),
        cmocka_unit_test(test_frame_126_switches_to_sixteen_bit_length),
        cmocka_unit_test(test_frame_65535_is_largest_sixteen_bit_length),
        cmocka_unit_test(test_frame_65536_switches_to_sixty_four_bit_length),
        cmocka_unit_test(test_frame_two_to_the_32_is_big_endian),
        cmocka_unit_test(test_frame_every_length_byte_lands_in_place),
        cmocka_unit_test(test_frame_length_top_bit_is_never_set),
        cmocka_unit_test(test_frame_opcode_is_kept_and_mask_bit_clear),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
