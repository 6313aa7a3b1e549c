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

/* A masked client frame: header, 4-byte key, payload (masking not applied:
 * the tracker never looks at payload bytes). */
static size_t client_frame(uint8_t *out, uint8_t first, uint64_t len)
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
    memset(out + n, 0x5a, 4 + (size_t)len);
    return n + 4 + (size_t)len;
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tracker_is_idle_only_between_whole_frames),
        cmocka_unit_test(test_tracker_keeps_a_fragmented_message_open_across_control_frames),
        cmocka_unit_test(test_tracker_counts_an_empty_frame_as_whole),
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
