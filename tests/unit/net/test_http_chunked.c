/* Unit tests for common/net/http_chunked.c: decoding split at every byte
 * position, every malformed chunk-size line, chunk extensions, the CRLF
 * rules, trailers within and over their bound, and the decoded-size limit. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "net/http_chunked.h"

#define BIG_BODY ((uint64_t)1 << 62)
#define MAX_TRAILER 16384

/* A valid body with extensions, a quoted extension value, hex in both
 * cases, leading zeros, CRLFs inside the data and two trailer fields,
 * followed by the start of the next request. */
static const char MESSAGE[] = "4;name=value\r\nWiki\r\n"
                              "5 ; q=\"a;b\\\"c\"\r\npedia\r\n"
                              "0E\r\n in\r\n\r\nchunks.\r\n"
                              "00a\r\n0123456789\r\n"
                              "0;last\r\n"
                              "Expires: never\r\nX-Check:\tok \r\n"
                              "\r\n";
static const char DECODED[] = "Wikipedia in\r\n\r\nchunks.0123456789";
static const char NEXT[] = "GET /healthz HTTP/1.1\r\n\r\n";

struct outcome {
    int status;
    size_t end; /* offset in the input where the decoder stopped for good */
    char body[256];
    size_t body_len;
    const char *reason;
};

/* Feeds input[0..len) cut at cuts[0] < cuts[1] < ... (ncuts of them), as
 * the bytes of a socket might arrive, and collects the data. */
static void decode_pieces(const char *input, size_t len, const size_t *cuts, size_t ncuts,
                          uint64_t max_body, size_t max_trailer, struct outcome *out)
{
    struct http_chunked_decoder dec;
    size_t start = 0;

    http_chunked_init(&dec, max_body, max_trailer);
    memset(out, 0, sizeof *out);
    out->status = HTTP_CHUNKED_AGAIN;
    for (size_t piece = 0; piece <= ncuts && out->status == HTTP_CHUNKED_AGAIN; piece++) {
        size_t stop = piece < ncuts ? cuts[piece] : len;
        size_t pos = start;

        do {
            const char *data;
            size_t used, data_len;

            out->status = http_chunked_feed(&dec, input + pos, stop - pos, &used, &data, &data_len);
            assert_true(used <= stop - pos);
            if (data_len > 0) {
                /* The data is a slice of what was fed, inside what was used. */
                assert_true(data >= input + pos && data + data_len <= input + pos + used);
                assert_true(out->body_len + data_len <= sizeof out->body);
                memcpy(out->body + out->body_len, data, data_len);
                out->body_len += data_len;
            }
            pos += used;
        } while (out->status == HTTP_CHUNKED_AGAIN && pos < stop);
        out->end = pos;
        start = stop;
    }
    out->reason = http_chunked_reason(&dec);
    assert_true(http_chunked_decoded(&dec) == out->body_len);
}

static void decode(const char *input, uint64_t max_body, size_t max_trailer, struct outcome *out)
{
    decode_pieces(input, strlen(input), NULL, 0, max_body, max_trailer, out);
}

static int decode_status(const char *input)
{
    struct outcome out;

    decode(input, BIG_BODY, MAX_TRAILER, &out);
    return out.status;
}

static void assert_done_with(const char *input, const char *body)
{
    struct outcome out;

    decode(input, BIG_BODY, MAX_TRAILER, &out);
    assert_int_equal(out.status, HTTP_CHUNKED_DONE);
    assert_int_equal(out.end, strlen(input));
    assert_int_equal(out.body_len, strlen(body));
    assert_memory_equal(out.body, body, out.body_len);
    assert_null(out.reason);
}

static void assert_bad(const char *input, const char *reason)
{
    struct outcome out;

    decode(input, BIG_BODY, MAX_TRAILER, &out);
    assert_int_equal(out.status, HTTP_CHUNKED_BAD);
    assert_non_null(out.reason);
    if (reason)
        assert_string_equal(out.reason, reason);
}

static void test_valid_body_is_decoded_and_ends_before_the_next_request(void **state)
{
    char input[512];
    struct outcome out;

    snprintf(input, sizeof input, "%s%s", MESSAGE, NEXT);
    decode(input, BIG_BODY, MAX_TRAILER, &out);
    assert_int_equal(out.status, HTTP_CHUNKED_DONE);
    assert_int_equal(out.end, strlen(MESSAGE));
    assert_int_equal(out.body_len, strlen(DECODED));
    assert_memory_equal(out.body, DECODED, out.body_len);
    assert_null(out.reason);
}

static void test_split_at_every_byte_position_gives_the_same_body(void **state)
{
    char input[512];
    size_t len = (size_t)snprintf(input, sizeof input, "%s%s", MESSAGE, NEXT);
    struct outcome out;

    for (size_t cut = 0; cut <= len; cut++) {
        decode_pieces(input, len, &cut, 1, BIG_BODY, MAX_TRAILER, &out);
        assert_int_equal(out.status, HTTP_CHUNKED_DONE);
        assert_int_equal(out.end, strlen(MESSAGE));
        assert_int_equal(out.body_len, strlen(DECODED));
        assert_memory_equal(out.body, DECODED, out.body_len);
    }
}

static void test_split_at_every_pair_of_positions_gives_the_same_body(void **state)
{
    size_t len = strlen(MESSAGE);
    struct outcome out;

    for (size_t a = 0; a <= len; a++) {
        for (size_t b = a; b <= len; b++) {
            size_t cuts[2] = {a, b};

            decode_pieces(MESSAGE, len, cuts, 2, BIG_BODY, MAX_TRAILER, &out);
            assert_int_equal(out.status, HTTP_CHUNKED_DONE);
            assert_int_equal(out.end, len);
            assert_int_equal(out.body_len, strlen(DECODED));
            assert_memory_equal(out.body, DECODED, out.body_len);
        }
    }
}

static void test_byte_at_a_time_gives_the_same_body(void **state)
{
    size_t len = strlen(MESSAGE);
    size_t cuts[sizeof MESSAGE];
    struct outcome out;

    for (size_t i = 0; i < len; i++)
        cuts[i] = i + 1;
    decode_pieces(MESSAGE, len, cuts, len, BIG_BODY, MAX_TRAILER, &out);
    assert_int_equal(out.status, HTTP_CHUNKED_DONE);
    assert_int_equal(out.end, len);
    assert_int_equal(out.body_len, strlen(DECODED));
    assert_memory_equal(out.body, DECODED, out.body_len);
}

static void test_every_proper_prefix_is_again(void **state)
{
    struct outcome out;

    for (size_t len = 0; len < strlen(MESSAGE); len++) {
        decode_pieces(MESSAGE, len, NULL, 0, BIG_BODY, MAX_TRAILER, &out);
        assert_int_equal(out.status, HTTP_CHUNKED_AGAIN);
        assert_int_equal(out.end, len);
        assert_null(out.reason);
    }
}

static void test_empty_body_and_empty_feed(void **state)
{
    struct http_chunked_decoder dec;
    const char *data;
    size_t used = 99, data_len = 99;

    assert_done_with("0\r\n\r\n", "");
    assert_done_with("000\r\n\r\n", "");
    http_chunked_init(&dec, BIG_BODY, MAX_TRAILER);
    assert_int_equal(http_chunked_feed(&dec, "", 0, &used, &data, &data_len), HTTP_CHUNKED_AGAIN);
    assert_int_equal(used, 0);
    assert_int_equal(data_len, 0);
}

static void test_done_is_final_and_consumes_nothing_more(void **state)
{
    struct http_chunked_decoder dec;
    const char *data;
    size_t used, data_len;

    http_chunked_init(&dec, BIG_BODY, MAX_TRAILER);
    assert_int_equal(http_chunked_feed(&dec, "0\r\n\r\nGET", 8, &used, &data, &data_len),
                     HTTP_CHUNKED_DONE);
    assert_int_equal(used, 5);
    assert_int_equal(http_chunked_feed(&dec, "GET", 3, &used, &data, &data_len), HTTP_CHUNKED_DONE);
    assert_int_equal(used, 0);
    assert_int_equal(data_len, 0);
}

static void test_one_slice_per_call_with_data_pointing_into_the_input(void **state)
{
    struct http_chunked_decoder dec;
    const char *input = "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
    const char *data;
    size_t used, data_len;

    http_chunked_init(&dec, BIG_BODY, MAX_TRAILER);
    assert_int_equal(http_chunked_feed(&dec, input, strlen(input), &used, &data, &data_len),
                     HTTP_CHUNKED_AGAIN);
    assert_int_equal(used, 6);
    assert_ptr_equal(data, input + 3);
    assert_int_equal(data_len, 3);
    assert_int_equal(http_chunked_feed(&dec, input + 6, strlen(input) - 6, &used, &data, &data_len),
                     HTTP_CHUNKED_AGAIN);
    assert_ptr_equal(data, input + 11);
    assert_int_equal(data_len, 2);
}

static void test_non_hex_and_empty_sizes_are_bad(void **state)
{
    assert_bad("g\r\nx\r\n0\r\n\r\n", "chunk size is not hexadecimal");
    assert_bad("1g\r\nx\r\n0\r\n\r\n", "chunk size is not hexadecimal");
    assert_bad("0x1\r\nx\r\n0\r\n\r\n", "chunk size is not hexadecimal");
    assert_bad("-1\r\nx\r\n0\r\n\r\n", "chunk size is not hexadecimal");
    assert_bad("+1\r\nx\r\n0\r\n\r\n", "chunk size is not hexadecimal");
    assert_bad("\x80\r\n", "chunk size is not hexadecimal");
    assert_bad("\r\nx\r\n0\r\n\r\n", "chunk size missing");
    assert_bad(";a=b\r\n", "chunk size missing");
    assert_bad(" 1\r\nx\r\n0\r\n\r\n", "chunk size missing");
    assert_bad("\t1\r\n", "chunk size missing");
    assert_bad("\n", NULL);
}

static void test_size_of_2_to_the_63_or_more_is_bad(void **state)
{
    struct outcome out;

    assert_bad("8000000000000000\r\n", "chunk size of 2^63 or more");
    assert_bad("10000000000000000\r\n", "chunk size of 2^63 or more");
    assert_bad("ffffffffffffffffffffffff\r\n", "chunk size of 2^63 or more");
    /* 2^63 - 1 is a size: too large for the limit, not malformed. */
    decode("7fffffffffffffff\r\n", BIG_BODY, MAX_TRAILER, &out);
    assert_int_equal(out.status, HTTP_CHUNKED_TOO_LARGE);
    decode("7FFFFFFFFFFFFFFF;x\r\n", UINT64_MAX, MAX_TRAILER, &out);
    assert_int_equal(out.status, HTTP_CHUNKED_AGAIN);
    /* Leading zeros are not significant, however many. */
    assert_done_with("00000000000000000000000000000001\r\nx\r\n0\r\n\r\n", "x");
}

static void test_blank_after_size_needs_an_extension(void **state)
{
    assert_bad("1 \r\nx\r\n0\r\n\r\n", "blank after the chunk size without an extension");
    assert_bad("1 x\r\nx\r\n0\r\n\r\n", "blank after the chunk size without an extension");
    assert_done_with("1 \t ;x\r\nx\r\n0\r\n\r\n", "x");
}

static void test_extensions_are_ignored(void **state)
{
    assert_done_with("1;a=b\r\nx\r\n0\r\n\r\n", "x");
    assert_done_with("1;a\r\nx\r\n0;z=\"\\\"\"\r\n\r\n", "x");
    assert_done_with("1;\r\nx\r\n0\r\n\r\n", "x");
    assert_done_with("1;a=b;c=\"d e\";f\r\nx\r\n0\r\n\r\n", "x");
    assert_done_with("2;obs=\xe9\xff\r\nxy\r\n0\r\n\r\n", "xy");
}

static void test_control_characters_in_extensions_are_bad(void **state)
{
    assert_bad("1;a\x01\r\nx\r\n0\r\n\r\n", "control character in a chunk extension");
    assert_bad("1;a\x7f\r\nx\r\n0\r\n\r\n", "control character in a chunk extension");
    {
        static const char nul[] = "1;a=\"\0\"\r\nx\r\n0\r\n\r\n";
        struct outcome out;

        decode_pieces(nul, sizeof nul - 1, NULL, 0, BIG_BODY, MAX_TRAILER, &out);
        assert_int_equal(out.status, HTTP_CHUNKED_BAD);
        assert_int_equal(out.end, 5);
    }
    /* A bare LF inside an extension must not end the line. */
    assert_bad("1;a\nx\r\nx\r\n0\r\n\r\n", "bare LF in the chunked body (lines end in CRLF)");
    assert_bad("1;a\rb\r\n", "CR without LF in the chunked body");
}

static void test_size_line_length_limit(void **state)
{
    static char line[HTTP_CHUNKED_MAX_LINE + 64];
    struct outcome out;
    size_t n;

    /* Exactly HTTP_CHUNKED_MAX_LINE bytes before the CRLF: accepted. */
    memset(line, 0, sizeof line);
    memcpy(line, "1;", 2);
    memset(line + 2, 'e', HTTP_CHUNKED_MAX_LINE - 2);
    n = strlen(line);
    assert_int_equal(n, HTTP_CHUNKED_MAX_LINE);
    memcpy(line + n, "\r\nx\r\n0\r\n\r\n", 11);
    assert_done_with(line, "x");
    /* One more: refused, as soon as that byte comes. */
    memset(line, 0, sizeof line);
    memcpy(line, "1;", 2);
    memset(line + 2, 'e', HTTP_CHUNKED_MAX_LINE - 1);
    decode(line, BIG_BODY, MAX_TRAILER, &out);
    assert_int_equal(out.status, HTTP_CHUNKED_BAD);
    assert_int_equal(out.end, HTTP_CHUNKED_MAX_LINE);
    assert_string_equal(out.reason, "chunk-size line too long");
    /* Leading zeros count too: the line, not the number, is bounded. */
    memset(line, 0, sizeof line);
    memset(line, '0', HTTP_CHUNKED_MAX_LINE + 1);
    assert_bad(line, "chunk-size line too long");
    /* The limit applies to every line, not just the first. */
    memset(line, 0, sizeof line);
    memcpy(line, "1\r\nx\r\n0;", 8);
    memset(line + 8, 'e', HTTP_CHUNKED_MAX_LINE);
    assert_bad(line, "chunk-size line too long");
}

static void test_missing_crlf_after_data_is_bad(void **state)
{
    const char *reason = "chunk data not followed by CRLF";

    assert_bad("1\r\nxy\r\n0\r\n\r\n", reason);
    assert_bad("3\r\nab\r\n0\r\n\r\n", NULL); /* "\r\n" taken as data, then "0\r" */
    assert_bad("1\r\nx\r0\r\n\r\n", reason);
    assert_bad("1\r\nx0\r\n\r\n", reason);
}

static void test_bare_lf_and_lone_cr_are_bad_everywhere(void **state)
{
    const char *bare_lf = "bare LF in the chunked body (lines end in CRLF)";
    const char *lone_cr = "CR without LF in the chunked body";

    assert_bad("1\nx\r\n0\r\n\r\n", bare_lf);
    assert_bad("1\r\nx\n0\r\n\r\n", bare_lf);
    assert_bad("1\r\nx\r\n0\n\r\n", bare_lf);
    assert_bad("1\r\nx\r\n0\r\n\n", bare_lf);
    assert_bad("0\r\nA: b\n\r\n", bare_lf);
    assert_bad("1\rx\r\n0\r\n\r\n", lone_cr);
    assert_bad("0\r\n\rx", lone_cr);
    assert_bad("0\r\nA: b\rc\r\n\r\n", lone_cr);
}

static void test_trailers_are_ignored(void **state)
{
    assert_done_with("1\r\nx\r\n0\r\nExpires: never\r\n\r\n", "x");
    assert_done_with("1\r\nx\r\n0\r\nA:\r\nB: two words\r\nContent-Length: 5\r\n\r\n", "x");
}

static void test_malformed_trailers_are_bad(void **state)
{
    const char *reason = "malformed trailer field";

    assert_bad("0\r\n: x\r\n\r\n", reason);
    assert_bad("0\r\nNo colon\r\n\r\n", reason);
    assert_bad("0\r\nName : x\r\n\r\n", reason);
    assert_bad("0\r\nA: b\r\n folded\r\n\r\n", reason);
    assert_bad("0\r\nA: b\x01\r\n\r\n", reason);
}

static void test_trailer_section_bound(void **state)
{
    /* Every byte after the last chunk's line counts, the final CRLF too. */
    const char *body = "1\r\nx\r\n0\r\nA: 123\r\n\r\n";
    size_t trailer = strlen("A: 123\r\n\r\n");
    struct outcome out;

    decode(body, BIG_BODY, trailer, &out);
    assert_int_equal(out.status, HTTP_CHUNKED_DONE);
    decode(body, BIG_BODY, trailer - 1, &out);
    assert_int_equal(out.status, HTTP_CHUNKED_TRAILER_TOO_LARGE);
    assert_int_equal(out.end, strlen(body) - 1);
    assert_string_equal(out.reason, "trailer section over the size limit");
    /* Without trailers the section is the final CRLF alone. */
    decode("0\r\n\r\n", BIG_BODY, 2, &out);
    assert_int_equal(out.status, HTTP_CHUNKED_DONE);
    decode("0\r\n\r\n", BIG_BODY, 1, &out);
    assert_int_equal(out.status, HTTP_CHUNKED_TRAILER_TOO_LARGE);
}

static void test_decoded_size_limit(void **state)
{
    struct outcome out;
    const char *over = "5\r\n12345\r\n6\r\n678901\r\n0\r\n\r\n";

    /* Exactly the limit, in one chunk or several, is accepted. */
    decode("a\r\n0123456789\r\n0\r\n\r\n", 10, MAX_TRAILER, &out);
    assert_int_equal(out.status, HTTP_CHUNKED_DONE);
    assert_int_equal(out.body_len, 10);
    decode("5\r\n12345\r\n5\r\n67890\r\n0\r\n\r\n", 10, MAX_TRAILER, &out);
    assert_int_equal(out.status, HTTP_CHUNKED_DONE);
    /* A chunk that would pass it is refused at the end of its size line,
     * before any of its data: the rest need not be read. */
    decode(over, 10, MAX_TRAILER, &out);
    assert_int_equal(out.status, HTTP_CHUNKED_TOO_LARGE);
    assert_int_equal(out.end, strlen("5\r\n12345\r\n6\r"));
    assert_int_equal(out.body_len, 5);
    assert_string_equal(out.reason, "chunked body over the size limit");
    decode_pieces(over, strlen("5\r\n12345\r\n6\r\n"), NULL, 0, 10, MAX_TRAILER, &out);
    assert_int_equal(out.status, HTTP_CHUNKED_TOO_LARGE);
    decode("b\r\n", 10, MAX_TRAILER, &out);
    assert_int_equal(out.status, HTTP_CHUNKED_TOO_LARGE);
    /* A limit of 0 takes the empty body only. */
    decode("0\r\n\r\n", 0, MAX_TRAILER, &out);
    assert_int_equal(out.status, HTTP_CHUNKED_DONE);
    decode("1\r\n", 0, MAX_TRAILER, &out);
    assert_int_equal(out.status, HTTP_CHUNKED_TOO_LARGE);
}

static void test_refusal_is_final(void **state)
{
    struct http_chunked_decoder dec;
    const char *data;
    size_t used, data_len;

    http_chunked_init(&dec, BIG_BODY, MAX_TRAILER);
    assert_int_equal(http_chunked_feed(&dec, "1x", 2, &used, &data, &data_len), HTTP_CHUNKED_BAD);
    assert_int_equal(used, 1);
    assert_int_equal(http_chunked_feed(&dec, "\r\nx\r\n0\r\n\r\n", 10, &used, &data, &data_len),
                     HTTP_CHUNKED_BAD);
    assert_int_equal(used, 0);
    assert_int_equal(data_len, 0);
    assert_string_equal(http_chunked_reason(&dec), "chunk size is not hexadecimal");
    /* init starts over. */
    http_chunked_init(&dec, BIG_BODY, MAX_TRAILER);
    assert_null(http_chunked_reason(&dec));
    assert_int_equal(decode_status("0\r\n\r\n"), HTTP_CHUNKED_DONE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_body_is_decoded_and_ends_before_the_next_request),
        cmocka_unit_test(test_split_at_every_byte_position_gives_the_same_body),
        cmocka_unit_test(test_split_at_every_pair_of_positions_gives_the_same_body),
        cmocka_unit_test(test_byte_at_a_time_gives_the_same_body),
        cmocka_unit_test(test_every_proper_prefix_is_again),
        cmocka_unit_test(test_empty_body_and_empty_feed),
        cmocka_unit_test(test_done_is_final_and_consumes_nothing_more),
        cmocka_unit_test(test_one_slice_per_call_with_data_pointing_into_the_input),
        cmocka_unit_test(test_non_hex_and_empty_sizes_are_bad),
        cmocka_unit_test(test_size_of_2_to_the_63_or_more_is_bad),
        cmocka_unit_test(test_blank_after_size_needs_an_extension),
        cmocka_unit_test(test_extensions_are_ignored),
        cmocka_unit_test(test_control_characters_in_extensions_are_bad),
        cmocka_unit_test(test_size_line_length_limit),
        cmocka_unit_test(test_missing_crlf_after_data_is_bad),
        cmocka_unit_test(test_bare_lf_and_lone_cr_are_bad_everywhere),
        cmocka_unit_test(test_trailers_are_ignored),
        cmocka_unit_test(test_malformed_trailers_are_bad),
        cmocka_unit_test(test_trailer_section_bound),
        cmocka_unit_test(test_decoded_size_limit),
        cmocka_unit_test(test_refusal_is_final),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
