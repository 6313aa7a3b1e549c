/* Unit tests for common/net/http_request.c: well-formed heads, every malformed
 * form the parser must refuse, the size limits, incremental feeding, and the
 * helpers that read the parsed head. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "net/http_request.h"

#define MAX_HEAD 8192

static struct http_request_head head;

static int parse(const char *s)
{
    return http_request_parse(s, strlen(s), MAX_HEAD, &head);
}

static int parse_len(const char *s, size_t len)
{
    return http_request_parse(s, len, MAX_HEAD, &head);
}

static void assert_slice(const char *p, size_t len, const char *expected)
{
    assert_int_equal(len, strlen(expected));
    assert_memory_equal(p, expected, len);
}

static void test_get_request_is_parsed(void **state)
{
    const char *req = "GET /events?x=1 HTTP/1.1\r\n"
                      "Host: example.com\r\n"
                      "Upgrade: websocket\r\n"
                      "\r\n";

    assert_int_equal(parse(req), HTTP_PARSE_OK);
    assert_slice(head.method, head.method_len, "GET");
    assert_slice(head.target, head.target_len, "/events?x=1");
    assert_int_equal(head.version_minor, 1);
    assert_int_equal(head.header_count, 2);
    assert_slice(head.headers[0].name, head.headers[0].name_len, "Host");
    assert_slice(head.headers[0].value, head.headers[0].value_len, "example.com");
    assert_slice(head.headers[1].name, head.headers[1].name_len, "Upgrade");
    assert_slice(head.headers[1].value, head.headers[1].value_len, "websocket");
    assert_int_equal(head.head_len, strlen(req));
    assert_true(http_request_method_is(&head, "GET"));
    assert_false(http_request_method_is(&head, "get"));
    assert_false(http_request_method_is(&head, "GE"));
    assert_int_equal(http_request_path_len(&head), strlen("/events"));
}

static void test_post_request_head_stops_before_body(void **state)
{
    const char *req = "POST /event HTTP/1.0\r\n"
                      "Content-Type: application/json\r\n"
                      "Content-Length: 11\r\n"
                      "\r\n"
                      "{\"a\":\"b\"}\r\n";
    uint64_t cl = 0;

    assert_int_equal(parse(req), HTTP_PARSE_OK);
    assert_true(http_request_method_is(&head, "POST"));
    assert_slice(head.target, head.target_len, "/event");
    assert_int_equal(head.version_minor, 0);
    assert_int_equal(head.header_count, 2);
    assert_int_equal(head.head_len, strlen(req) - 11);
    assert_int_equal(http_request_content_length(&head, &cl), 1);
    assert_true(cl == 11);
}

static void test_request_without_headers_is_parsed(void **state)
{
    assert_int_equal(parse("GET / HTTP/1.1\r\n\r\n"), HTTP_PARSE_OK);
    assert_int_equal(head.header_count, 0);
    assert_int_equal(head.head_len, 18);
    assert_int_equal(http_request_path_len(&head), 1);
}

static void test_headers_are_found_case_insensitively(void **state)
{
    assert_int_equal(parse("GET / HTTP/1.1\r\nHoSt: a\r\nX-Thing: 1\r\nx-thing: 2\r\n\r\n"),
                     HTTP_PARSE_OK);
    const struct http_header *h = http_request_header(&head, "host");
    assert_non_null(h);
    assert_slice(h->value, h->value_len, "a");
    h = http_request_header(&head, "X-THING");
    assert_non_null(h);
    assert_slice(h->value, h->value_len, "1"); /* the first one */
    assert_null(http_request_header(&head, "hos"));
    assert_null(http_request_header(&head, "hostx"));
    assert_null(http_request_header(&head, "Missing"));
}

static void test_header_values_are_trimmed(void **state)
{
    assert_int_equal(parse("GET / HTTP/1.1\r\n"
                           "A:   spaced value \t \r\n"
                           "B:\tx\r\n"
                           "C:\r\n"
                           "D: \t \r\n"
                           "E:inner  blanks\tkept\r\n"
                           "\r\n"),
                     HTTP_PARSE_OK);
    assert_int_equal(head.header_count, 5);
    assert_slice(head.headers[0].value, head.headers[0].value_len, "spaced value");
    assert_slice(head.headers[1].value, head.headers[1].value_len, "x");
    assert_int_equal(head.headers[2].value_len, 0);
    assert_int_equal(head.headers[3].value_len, 0);
    assert_slice(head.headers[4].value, head.headers[4].value_len, "inner  blanks\tkept");
}

static void test_obs_text_in_value_is_accepted(void **state)
{
    assert_int_equal(parse("GET / HTTP/1.1\r\nX: caf\xc3\xa9 \xff\r\n\r\n"), HTTP_PARSE_OK);
    assert_slice(head.headers[0].value, head.headers[0].value_len, "caf\xc3\xa9 \xff");
}

static void test_malformed_request_lines_are_bad(void **state)
{
    static const char *const bad[] = {
        " / HTTP/1.1\r\n\r\n",                        /* empty method */
        "GE(T / HTTP/1.1\r\n\r\n",                    /* method not a token */
        "GET\t/ HTTP/1.1\r\n\r\n",                    /* HTAB instead of SP */
        "GET  / HTTP/1.1\r\n\r\n",                    /* two SP */
        "GET /  HTTP/1.1\r\n\r\n",                    /* two SP before the version */
        "GET / HTTP/1.1 \r\n\r\n",                    /* trailing SP */
        "GET /a b HTTP/1.1\r\n\r\n",                  /* space in target */
        "GET /\x01 HTTP/1.1\r\n\r\n",                 /* control char in target */
        "GET /\x80 HTTP/1.1\r\n\r\n",                 /* non-ASCII in target */
        "GET /\x7f HTTP/1.1\r\n\r\n",                 /* DEL in target */
        "GET HTTP/1.1\r\n\r\n",                       /* no target */
        "GET /\r\n\r\n",                              /* no version */
        "GET / \r\n\r\n",                             /* empty version */
        "GET / http/1.1\r\n\r\n",                     /* HTTP-name is case-sensitive */
        "GET / HTTP/1\r\n\r\n",                       /* not shaped like a version */
        "GET / HTTP/1.10\r\n\r\n",                    /* not shaped like a version */
        "GET / HTTP/11\r\n\r\n",                      /* not shaped like a version */
        "GET / HTTPS/1.1\r\n\r\n",                    /* not shaped like a version */
        "GET / HTTP/1.1\r\r\n\r\n",                   /* stray CR */
        "GET / HTTP/1.1 extra\r\n\r\n",               /* a fourth part */
        "\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\n\r\n", /* too many empty lines */
    };

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (parse(bad[i]) != HTTP_PARSE_BAD)
            fail_msg("case %zu not refused as BAD: %s", i, bad[i]);
    }
}

static void test_request_line_with_nul_is_bad(void **state)
{
    static const char req[] = "GET /\0 HTTP/1.1\r\n\r\n";

    assert_int_equal(parse_len(req, sizeof(req) - 1), HTTP_PARSE_BAD);
}

static void test_unsupported_versions_are_version_errors(void **state)
{
    static const char *const versions[] = {"HTTP/2.0", "HTTP/1.2", "HTTP/0.9", "HTTP/3.0",
                                           "HTTP/9.9"};
    char req[64];

    for (size_t i = 0; i < sizeof(versions) / sizeof(versions[0]); i++) {
        snprintf(req, sizeof(req), "GET / %s\r\nHost: a\r\n\r\n", versions[i]);
        assert_int_equal(parse(req), HTTP_PARSE_VERSION);
    }
}

static void test_malformed_header_lines_are_bad(void **state)
{
    static const char *const bad[] = {
        "Host : a\r\n",      /* blank before the colon */
        "Host\t: a\r\n",     /* HTAB before the colon */
        "Host a\r\n",        /* no colon */
        "Host\r\n",          /* no colon at all */
        ": a\r\n",           /* empty name */
        "Ho(st: a\r\n",      /* name not a token */
        "Ho\xc3\xa9: a\r\n", /* non-ASCII name */
        " Host: a\r\n",      /* leading blank: obs-fold */
        "X: a\x01 b\r\n",    /* control char in value */
        "X: a\x7f\r\n",      /* DEL in value */
        "X: a\rb\r\n",       /* bare CR in value */
        "X: a\x1b[0m\r\n",   /* escape in value */
        "X: a\r\r\n",        /* CR CR LF */
    };
    char req[128];

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(req, sizeof(req), "GET / HTTP/1.1\r\nA: 1\r\n%s\r\n", bad[i]);
        if (parse(req) != HTTP_PARSE_BAD)
            fail_msg("case %zu not refused as BAD: %s", i, bad[i]);
    }
}

static void test_repeated_authorization_is_bad_whatever_its_case_or_value(void **state)
{
    (void)state;
    assert_int_equal(parse("POST /event HTTP/1.1\r\nAuthorization: Basic a\r\n"
                           "Authorization: Basic a\r\n\r\n"),
                     HTTP_PARSE_BAD);
    assert_int_equal(parse("GET / HTTP/1.1\r\nauthorization: Basic a\r\nHost: x\r\n"
                           "AUTHORIZATION: Bearer b\r\n\r\n"),
                     HTTP_PARSE_BAD);
    /* Refused on the second field, before the head is complete. */
    assert_int_equal(parse("GET / HTTP/1.1\r\nAuthorization: a\r\nAuthorization: b\r\n"),
                     HTTP_PARSE_BAD);
    /* Once is fine, and so are other repeated fields and look-alike names. */
    assert_int_equal(parse("GET / HTTP/1.1\r\nAuthorization: Basic a\r\nX-Authorization: b\r\n"
                           "Proxy-Authorization: c\r\nAccept: d\r\nAccept: e\r\n\r\n"),
                     HTTP_PARSE_OK);
    assert_slice(http_request_header(&head, "authorization")->value,
                 http_request_header(&head, "authorization")->value_len, "Basic a");
}

static void test_obs_fold_continuation_is_bad(void **state)
{
    assert_int_equal(parse("GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n"), HTTP_PARSE_BAD);
    assert_int_equal(parse("GET / HTTP/1.1\r\nX: a\r\n\tb\r\n\r\n"), HTTP_PARSE_BAD);
}

static void test_nul_in_header_value_is_bad(void **state)
{
    static const char req[] = "GET / HTTP/1.1\r\nX: a\0b\r\n\r\n";

    assert_int_equal(parse_len(req, sizeof(req) - 1), HTTP_PARSE_BAD);
}

static void test_bad_line_is_reported_before_head_is_complete(void **state)
{
    assert_int_equal(parse("GET / HTTP/1.1\r\nHost : a\r\n"), HTTP_PARSE_BAD);
    assert_int_equal(parse("GET  / HTTP/1.1\r\n"), HTTP_PARSE_BAD);
}

static void test_leading_empty_lines_are_ignored(void **state)
{
    const char *req = "\r\n\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n";

    assert_int_equal(parse(req), HTTP_PARSE_OK);
    assert_slice(head.method, head.method_len, "GET");
    assert_int_equal(head.head_len, strlen(req));
    assert_int_equal(parse("\r\n\r\n"), HTTP_PARSE_AGAIN);
}

static void test_bare_lf_line_ends_are_accepted(void **state)
{
    const char *req = "GET /x HTTP/1.1\nHost: a \nX: b\r\n\n";

    assert_int_equal(parse(req), HTTP_PARSE_OK);
    assert_int_equal(head.header_count, 2);
    assert_slice(head.headers[0].value, head.headers[0].value_len, "a");
    assert_slice(head.headers[1].value, head.headers[1].value_len, "b");
    assert_int_equal(head.head_len, strlen(req));
}

static void test_every_proper_prefix_is_again(void **state)
{
    static const char *const reqs[] = {
        "GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n",
        "POST /event HTTP/1.0\nContent-Length: 2\n\n",
        "\r\nGET / HTTP/1.1\r\n\r\n",
    };

    for (size_t r = 0; r < sizeof(reqs) / sizeof(reqs[0]); r++) {
        size_t n = strlen(reqs[r]);
        for (size_t i = 0; i < n; i++) {
            if (parse_len(reqs[r], i) != HTTP_PARSE_AGAIN)
                fail_msg("request %zu prefix %zu not AGAIN", r, i);
        }
        assert_int_equal(parse_len(reqs[r], n), HTTP_PARSE_OK);
        assert_int_equal(head.head_len, n);
    }
}

/* Builds "GET / HTTP/1.1\r\n" + headers padded to reach total bytes,
 * ending with the blank line when terminated. Returns the length. */
static size_t build_padded_head(char *out, size_t total, bool terminated)
{
    static const char start[] = "GET / HTTP/1.1\r\nX: ";
    size_t tail = terminated ? 4 : 2;
    size_t n = sizeof(start) - 1;

    memcpy(out, start, n);
    memset(out + n, 'v', total - n - tail);
    memcpy(out + total - tail, "\r\n\r\n", tail);
    return total;
}

static void test_head_at_max_head_is_accepted(void **state)
{
    char buf[MAX_HEAD + 16];
    size_t n = build_padded_head(buf, MAX_HEAD, true);

    assert_int_equal(http_request_parse(buf, n, MAX_HEAD, &head), HTTP_PARSE_OK);
    assert_int_equal(head.head_len, MAX_HEAD);
}

static void test_head_over_max_head_with_blank_line_is_too_large(void **state)
{
    char buf[MAX_HEAD + 16];
    size_t n = build_padded_head(buf, MAX_HEAD + 1, true);

    assert_int_equal(http_request_parse(buf, n, MAX_HEAD, &head), HTTP_PARSE_TOO_LARGE);
}

static void test_head_over_max_head_without_blank_line_is_too_large(void **state)
{
    char buf[MAX_HEAD + 16];
    size_t n = build_padded_head(buf, MAX_HEAD + 8, false);

    /* Up to max_head bytes an unfinished head may still fit... */
    assert_int_equal(http_request_parse(buf, MAX_HEAD, MAX_HEAD, &head), HTTP_PARSE_AGAIN);
    /* ...one byte more and it cannot. */
    assert_int_equal(http_request_parse(buf, MAX_HEAD + 1, MAX_HEAD, &head), HTTP_PARSE_TOO_LARGE);
    assert_int_equal(http_request_parse(buf, n, MAX_HEAD, &head), HTTP_PARSE_TOO_LARGE);
    /* A line without any LF at all is bounded the same way. */
    memset(buf, 'A', sizeof(buf));
    assert_int_equal(http_request_parse(buf, sizeof(buf), MAX_HEAD, &head), HTTP_PARSE_TOO_LARGE);
}

static size_t build_many_headers(char *out, size_t count)
{
    size_t n = (size_t)sprintf(out, "GET / HTTP/1.1\r\n");

    for (size_t i = 0; i < count; i++)
        n += (size_t)sprintf(out + n, "H%zu: %zu\r\n", i, i);
    n += (size_t)sprintf(out + n, "\r\n");
    return n;
}

static void test_64_headers_accepted_65_too_large(void **state)
{
    char buf[4096];
    size_t n = build_many_headers(buf, HTTP_MAX_HEADERS);

    assert_int_equal(parse_len(buf, n), HTTP_PARSE_OK);
    assert_int_equal(head.header_count, HTTP_MAX_HEADERS);
    assert_slice(head.headers[63].name, head.headers[63].name_len, "H63");

    n = build_many_headers(buf, HTTP_MAX_HEADERS + 1);
    assert_int_equal(parse_len(buf, n), HTTP_PARSE_TOO_LARGE);
}

static void test_byte_by_byte_feed_of_8k_head_is_fast(void **state)
{
    char buf[MAX_HEAD];
    size_t n = 0;
    clock_t start;

    /* 60 fields of 136 bytes: close to both limits at once. */
    n += (size_t)sprintf(buf, "GET / HTTP/1.1\r\n");
    for (int i = 0; i < 60; i++)
        n += (size_t)sprintf(buf + n, "X-Pad-%02d: %0124d\r\n", i, i);
    n += (size_t)sprintf(buf + n, "\r\n");
    assert_true(n <= MAX_HEAD);

    start = clock();
    for (size_t i = 0; i < n; i++) {
        if (http_request_parse(buf, i, MAX_HEAD, &head) != HTTP_PARSE_AGAIN)
            fail_msg("prefix %zu not AGAIN", i);
    }
    assert_int_equal(http_request_parse(buf, n, MAX_HEAD, &head), HTTP_PARSE_OK);
    /* Linear per call: ~8k calls over ~8k bytes. Quadratic-per-call work
     * would take minutes; allow a wide margin for sanitizers. */
    assert_true((double)(clock() - start) / CLOCKS_PER_SEC < 10.0);
}

static void test_keep_alive_follows_version_and_connection(void **state)
{
    assert_int_equal(parse("GET / HTTP/1.1\r\n\r\n"), HTTP_PARSE_OK);
    assert_true(http_request_keep_alive(&head));
    assert_int_equal(parse("GET / HTTP/1.1\r\nConnection: close\r\n\r\n"), HTTP_PARSE_OK);
    assert_false(http_request_keep_alive(&head));
    assert_int_equal(parse("GET / HTTP/1.1\r\nConnection: Upgrade, CLOSE\r\n\r\n"), HTTP_PARSE_OK);
    assert_false(http_request_keep_alive(&head));
    assert_int_equal(parse("GET / HTTP/1.1\r\nConnection: Upgrade\r\nconnection: close\r\n\r\n"),
                     HTTP_PARSE_OK);
    assert_false(http_request_keep_alive(&head));

    assert_int_equal(parse("GET / HTTP/1.0\r\n\r\n"), HTTP_PARSE_OK);
    assert_false(http_request_keep_alive(&head));
    assert_int_equal(parse("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"), HTTP_PARSE_OK);
    assert_true(http_request_keep_alive(&head));
    assert_int_equal(parse("GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n"),
                     HTTP_PARSE_OK);
    assert_false(http_request_keep_alive(&head));
    assert_int_equal(parse("GET / HTTP/1.0\r\nConnection: keep-alivex\r\n\r\n"), HTTP_PARSE_OK);
    assert_false(http_request_keep_alive(&head));
}

static int content_length_of(const char *headers, uint64_t *out)
{
    char req[512];

    snprintf(req, sizeof(req), "POST /event HTTP/1.1\r\n%s\r\n", headers);
    assert_int_equal(parse(req), HTTP_PARSE_OK);
    return http_request_content_length(&head, out);
}

static void test_content_length_cases(void **state)
{
    uint64_t v = 77;

    assert_int_equal(content_length_of("Host: a\r\n", &v), 0);
    assert_true(v == 77);
    assert_int_equal(content_length_of("Content-Length: 0\r\n", &v), 1);
    assert_true(v == 0);
    assert_int_equal(content_length_of("content-length:   123  \r\n", &v), 1);
    assert_true(v == 123);
    assert_int_equal(content_length_of("Content-Length: 4611686018427387904\r\n", &v), 1);
    assert_true(v == (uint64_t)1 << 62);
    assert_int_equal(content_length_of("Content-Length: 5\r\nContent-Length: 5\r\n", &v), 1);
    assert_true(v == 5);

    assert_int_equal(content_length_of("Content-Length: 4611686018427387905\r\n", &v), -1);
    assert_int_equal(content_length_of("Content-Length: 99999999999999999999999999\r\n", &v), -1);
    /* 1844674407370955162 * 10 = 2^64 + 4: must not wrap around to 4. */
    assert_int_equal(content_length_of("Content-Length: 18446744073709551620\r\n", &v), -1);
    assert_int_equal(content_length_of("Content-Length: 46116860184273879040\r\n", &v), -1);
    assert_int_equal(content_length_of("Content-Length: 5\r\nContent-Length: 6\r\n", &v), -1);
    assert_int_equal(content_length_of("Content-Length: 5, 5\r\n", &v), -1);
    assert_int_equal(content_length_of("Content-Length:\r\n", &v), -1);
    assert_int_equal(content_length_of("Content-Length: +5\r\n", &v), -1);
    assert_int_equal(content_length_of("Content-Length: -1\r\n", &v), -1);
    assert_int_equal(content_length_of("Content-Length: 0x10\r\n", &v), -1);
    assert_int_equal(content_length_of("Content-Length: 1 2\r\n", &v), -1);
    assert_int_equal(content_length_of("Content-Length: 5\r\nContent-Length: x\r\n", &v), -1);
}

/* The framing of a request with these headers, in HTTP/1.minor. */
static int framing_of(int minor, const char *headers, struct http_body_framing *out)
{
    char req[512];
    const char *reason = "unset";
    int rc;

    snprintf(req, sizeof(req), "POST /event HTTP/1.%d\r\n%s\r\n", minor, headers);
    assert_int_equal(parse(req), HTTP_PARSE_OK);
    rc = http_request_body_framing(&head, out, &reason);
    /* Every refusal says why; an acceptance does not. */
    if (rc == HTTP_PARSE_OK)
        assert_null(reason);
    else
        assert_non_null(reason);
    return rc;
}

static void test_body_framing_by_content_length(void **state)
{
    struct http_body_framing f;

    assert_int_equal(framing_of(1, "Host: a\r\n", &f), HTTP_PARSE_OK);
    assert_false(f.chunked);
    assert_true(f.length == 0);
    assert_int_equal(framing_of(0, "Content-Length: 12\r\n", &f), HTTP_PARSE_OK);
    assert_false(f.chunked);
    assert_true(f.length == 12);
    assert_int_equal(framing_of(1, "Content-Length: 1x\r\n", &f), HTTP_PARSE_BAD);
    assert_int_equal(framing_of(1, "Content-Length: 1\r\nContent-Length: 2\r\n", &f),
                     HTTP_PARSE_BAD);
}

static void test_body_framing_by_transfer_encoding(void **state)
{
    struct http_body_framing f;

    assert_int_equal(framing_of(1, "Transfer-Encoding: chunked\r\n", &f), HTTP_PARSE_OK);
    assert_true(f.chunked);
    assert_true(f.length == 0);
    /* Codings are case-insensitive; empty list elements are skipped. */
    assert_int_equal(framing_of(1, "transfer-encoding: CHUNKED\r\n", &f), HTTP_PARSE_OK);
    assert_true(f.chunked);
    assert_int_equal(framing_of(1, "Transfer-Encoding: , chunked ,\r\n", &f), HTTP_PARSE_OK);
    assert_true(f.chunked);
    assert_int_equal(framing_of(1, "Transfer-Encoding:\r\nTransfer-Encoding: chunked\r\n", &f),
                     HTTP_PARSE_OK);
    assert_true(f.chunked);
}

static void test_body_framing_refusals(void **state)
{
    struct http_body_framing f;

    /* Both framings: a smuggling attempt, whatever the values. */
    assert_int_equal(framing_of(1, "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", &f),
                     HTTP_PARSE_BAD);
    assert_int_equal(framing_of(1, "Transfer-Encoding: chunked\r\nContent-Length: 0\r\n", &f),
                     HTTP_PARSE_BAD);
    assert_int_equal(framing_of(1, "Transfer-Encoding: chunked\r\nContent-Length: x\r\n", &f),
                     HTTP_PARSE_BAD);
    /* HTTP/1.0 has no transfer codings (RFC 9112 §6.1). */
    assert_int_equal(framing_of(0, "Transfer-Encoding: chunked\r\n", &f), HTTP_PARSE_BAD);
    /* The last coding must be chunked, or the length cannot be known. */
    assert_int_equal(framing_of(1, "Transfer-Encoding: gzip\r\n", &f), HTTP_PARSE_BAD);
    assert_int_equal(framing_of(1, "Transfer-Encoding: chunked, gzip\r\n", &f), HTTP_PARSE_BAD);
    assert_int_equal(framing_of(1, "Transfer-Encoding: identity\r\n", &f), HTTP_PARSE_BAD);
    assert_int_equal(framing_of(1, "Transfer-Encoding: chunked;x=1\r\n", &f), HTTP_PARSE_BAD);
    assert_int_equal(framing_of(1, "Transfer-Encoding: chunkedx\r\n", &f), HTTP_PARSE_BAD);
    assert_int_equal(framing_of(1, "Transfer-Encoding:\r\n", &f), HTTP_PARSE_BAD);
    assert_int_equal(framing_of(1, "Transfer-Encoding: , ,\r\n", &f), HTTP_PARSE_BAD);
    assert_int_equal(framing_of(1, "Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n", &f),
                     HTTP_PARSE_BAD);
    /* Chunked last, after another coding or after itself: not implemented. */
    assert_int_equal(framing_of(1, "Transfer-Encoding: gzip, chunked\r\n", &f),
                     HTTP_PARSE_UNSUPPORTED);
    assert_int_equal(framing_of(1, "Transfer-Encoding: chunked, chunked\r\n", &f),
                     HTTP_PARSE_UNSUPPORTED);
    assert_int_equal(framing_of(1, "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n", &f),
                     HTTP_PARSE_UNSUPPORTED);
}

static bool has_token(const char *value, const char *token)
{
    return http_value_has_token(value, strlen(value), token);
}

static void test_value_has_token_cases(void **state)
{
    assert_true(has_token("keep-alive, Upgrade", "upgrade"));
    assert_true(has_token("keep-alive, Upgrade", "KEEP-ALIVE"));
    assert_true(has_token("Upgrade", "upgrade"));
    assert_true(has_token(" ,\tupgrade\t, ", "upgrade"));
    assert_true(has_token("a,,upgrade", "upgrade"));
    assert_false(has_token("upgradex", "upgrade"));
    assert_false(has_token("xupgrade", "upgrade"));
    assert_false(has_token("upgrade x", "upgrade"));
    assert_false(has_token("keep-alive", "upgrade"));
    assert_false(has_token("", "upgrade"));
    assert_false(has_token(",,", "upgrade"));
    assert_false(has_token("upgrade", ""));
    /* Only len bytes are looked at. */
    assert_false(http_value_has_token("upgrade", 6, "upgrade"));
    assert_true(http_value_has_token("close, upgrade", 5, "close"));
}

static void test_path_len_stops_at_query_or_fragment(void **state)
{
    assert_int_equal(parse("GET /a/b?c=d#e HTTP/1.1\r\n\r\n"), HTTP_PARSE_OK);
    assert_int_equal(http_request_path_len(&head), 4);
    assert_int_equal(parse("GET /a#b?c HTTP/1.1\r\n\r\n"), HTTP_PARSE_OK);
    assert_int_equal(http_request_path_len(&head), 2);
    assert_int_equal(parse("GET ?q HTTP/1.1\r\n\r\n"), HTTP_PARSE_OK);
    assert_int_equal(http_request_path_len(&head), 0);
    assert_int_equal(parse("OPTIONS * HTTP/1.1\r\n\r\n"), HTTP_PARSE_OK);
    assert_int_equal(http_request_path_len(&head), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get_request_is_parsed),
        cmocka_unit_test(test_post_request_head_stops_before_body),
        cmocka_unit_test(test_request_without_headers_is_parsed),
        cmocka_unit_test(test_headers_are_found_case_insensitively),
        cmocka_unit_test(test_header_values_are_trimmed),
        cmocka_unit_test(test_obs_text_in_value_is_accepted),
        cmocka_unit_test(test_malformed_request_lines_are_bad),
        cmocka_unit_test(test_request_line_with_nul_is_bad),
        cmocka_unit_test(test_unsupported_versions_are_version_errors),
        cmocka_unit_test(test_malformed_header_lines_are_bad),
        cmocka_unit_test(test_repeated_authorization_is_bad_whatever_its_case_or_value),
        cmocka_unit_test(test_obs_fold_continuation_is_bad),
        cmocka_unit_test(test_nul_in_header_value_is_bad),
        cmocka_unit_test(test_bad_line_is_reported_before_head_is_complete),
        cmocka_unit_test(test_leading_empty_lines_are_ignored),
        cmocka_unit_test(test_bare_lf_line_ends_are_accepted),
        cmocka_unit_test(test_every_proper_prefix_is_again),
        cmocka_unit_test(test_head_at_max_head_is_accepted),
        cmocka_unit_test(test_head_over_max_head_with_blank_line_is_too_large),
        cmocka_unit_test(test_head_over_max_head_without_blank_line_is_too_large),
        cmocka_unit_test(test_64_headers_accepted_65_too_large),
        cmocka_unit_test(test_byte_by_byte_feed_of_8k_head_is_fast),
        cmocka_unit_test(test_keep_alive_follows_version_and_connection),
        cmocka_unit_test(test_content_length_cases),
        cmocka_unit_test(test_body_framing_by_content_length),
        cmocka_unit_test(test_body_framing_by_transfer_encoding),
        cmocka_unit_test(test_body_framing_refusals),
        cmocka_unit_test(test_value_has_token_cases),
        cmocka_unit_test(test_path_len_stops_at_query_or_fragment),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
