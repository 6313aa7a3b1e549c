#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "ws_handshake.h"

#define SAMPLE_KEY "dGhlIHNhbXBsZSBub25jZQ=="
#define SAMPLE_ACCEPT "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
#define REASON_VERSION "unsupported Sec-WebSocket-Version; this server speaks 13"

/* Heads are built by hand so that these tests prove the handshake rules
 * alone, independent of the HTTP parser. */
static void head_init(struct http_request_head *head, const char *method, int version_minor)
{
    memset(head, 0, sizeof(*head));
    head->method = method;
    head->method_len = strlen(method);
    head->target = "/";
    head->target_len = 1;
    head->version_minor = version_minor;
}

static void head_add(struct http_request_head *head, const char *name, const char *value)
{
    assert_true(head->header_count < HTTP_MAX_HEADERS);
    struct http_header *h = &head->headers[head->header_count++];
    h->name = name;
    h->name_len = strlen(name);
    h->value = value;
    h->value_len = strlen(value);
}

/* The browser handshake of RFC 6455 §1.3, with the fields in a typical order. */
static void head_valid(struct http_request_head *head)
{
    head_init(head, "GET", 1);
    head_add(head, "Host", "server.example.com");
    head_add(head, "Upgrade", "websocket");
    head_add(head, "Connection", "Upgrade");
    head_add(head, "Sec-WebSocket-Key", SAMPLE_KEY);
    head_add(head, "Sec-WebSocket-Version", "13");
}

static struct http_header *head_find(struct http_request_head *head, const char *name)
{
    for (size_t i = 0; i < head->header_count; i++)
        if (strcmp(head->headers[i].name, name) == 0)
            return &head->headers[i];
    fail_msg("no field %s", name);
    return NULL;
}

static void head_set(struct http_request_head *head, const char *name, const char *value)
{
    struct http_header *h = head_find(head, name);
    h->value = value;
    h->value_len = strlen(value);
}

static void head_remove(struct http_request_head *head, const char *name)
{
    struct http_header *h = head_find(head, name);
    size_t i = (size_t)(h - head->headers);
    memmove(h, h + 1, (head->header_count - i - 1) * sizeof(*h));
    head->header_count--;
}

static void expect_status(const struct http_request_head *head, int want, const char *want_reason)
{
    char accept[WS_ACCEPT_LEN + 1];
    const char *reason = NULL;

    assert_int_equal(ws_handshake_check(head, accept, &reason), want);
    if (want_reason)
        assert_string_equal(reason, want_reason);
    else
        assert_non_null(reason);
}

static void test_accept_key_matches_rfc6455_sample(void **state)
{
    char accept[WS_ACCEPT_LEN + 1];
    memset(accept, 'x', sizeof(accept));
    assert_int_equal(ws_accept_key(SAMPLE_KEY, strlen(SAMPLE_KEY), accept), 0);
    assert_string_equal(accept, SAMPLE_ACCEPT);
}

static void test_accept_key_rejects_key_over_64_bytes(void **state)
{
    char key[65], accept[WS_ACCEPT_LEN + 1];
    memset(key, 'A', sizeof(key));
    assert_int_equal(ws_accept_key(key, 64, accept), 0);
    assert_int_equal(strlen(accept), WS_ACCEPT_LEN);
    assert_int_equal(ws_accept_key(key, 65, accept), -1);
}

static void test_check_accepts_rfc_sample_and_computes_accept(void **state)
{
    struct http_request_head head;
    char accept[WS_ACCEPT_LEN + 1];
    head_valid(&head);
    assert_int_equal(ws_handshake_check(&head, accept, NULL), WS_HANDSHAKE_OK);
    assert_string_equal(accept, SAMPLE_ACCEPT);
}

static void test_check_accepts_keep_alive_upgrade_connection(void **state)
{
    struct http_request_head head;
    char accept[WS_ACCEPT_LEN + 1];
    head_valid(&head);
    head_set(&head, "Connection", "keep-alive, Upgrade");
    assert_int_equal(ws_handshake_check(&head, accept, NULL), WS_HANDSHAKE_OK);
    assert_string_equal(accept, SAMPLE_ACCEPT);
}

static void test_check_accepts_mixed_case_websocket_token(void **state)
{
    struct http_request_head head;
    char accept[WS_ACCEPT_LEN + 1];
    head_valid(&head);
    head_set(&head, "Upgrade", "WebSocket");
    head_set(&head, "Connection", "upgrade");
    assert_int_equal(ws_handshake_check(&head, accept, NULL), WS_HANDSHAKE_OK);
}

static void test_check_finds_tokens_in_repeated_fields(void **state)
{
    struct http_request_head head;
    char accept[WS_ACCEPT_LEN + 1];
    head_valid(&head);
    head_set(&head, "Connection", "keep-alive");
    head_add(&head, "Connection", "Upgrade");
    assert_int_equal(ws_handshake_check(&head, accept, NULL), WS_HANDSHAKE_OK);
}

static void test_check_plain_get_is_not_upgrade(void **state)
{
    struct http_request_head head;
    head_init(&head, "GET", 1);
    head_add(&head, "Host", "server.example.com");
    expect_status(&head, WS_HANDSHAKE_NOT_UPGRADE, NULL);
}

static void test_check_post_without_upgrade_is_not_upgrade(void **state)
{
    struct http_request_head head;
    head_init(&head, "POST", 1);
    head_add(&head, "Content-Length", "0");
    expect_status(&head, WS_HANDSHAKE_NOT_UPGRADE, NULL);
}

static void test_check_other_upgrade_protocol_is_not_upgrade(void **state)
{
    struct http_request_head head;
    head_valid(&head);
    head_set(&head, "Upgrade", "h2c");
    expect_status(&head, WS_HANDSHAKE_NOT_UPGRADE, NULL);
}

static void test_check_websocket_upgrade_with_post_is_bad(void **state)
{
    struct http_request_head head;
    head_valid(&head);
    head.method = "POST";
    head.method_len = 4;
    expect_status(&head, WS_HANDSHAKE_BAD, "method must be GET");
}

static void test_check_lowercase_get_is_bad(void **state)
{
    struct http_request_head head;
    head_valid(&head);
    head.method = "get";
    expect_status(&head, WS_HANDSHAKE_BAD, "method must be GET");
}

static void test_check_http10_upgrade_is_bad(void **state)
{
    struct http_request_head head;
    head_valid(&head);
    head.version_minor = 0;
    expect_status(&head, WS_HANDSHAKE_BAD, "HTTP/1.1 required");
}

static void test_check_missing_connection_is_bad(void **state)
{
    struct http_request_head head;
    head_valid(&head);
    head_remove(&head, "Connection");
    expect_status(&head, WS_HANDSHAKE_BAD, "Connection must include Upgrade");
}

static void test_check_connection_without_upgrade_token_is_bad(void **state)
{
    struct http_request_head head;
    head_valid(&head);
    head_set(&head, "Connection", "keep-alive, upgraded");
    expect_status(&head, WS_HANDSHAKE_BAD, "Connection must include Upgrade");
}

static void test_check_version_8_is_bad_with_version_reason(void **state)
{
    struct http_request_head head;
    head_valid(&head);
    head_set(&head, "Sec-WebSocket-Version", "8");
    expect_status(&head, WS_HANDSHAKE_BAD, REASON_VERSION);
}

static void test_check_version_must_be_exactly_13(void **state)
{
    static const char *const wrong[] = {"130", "1", "13, 8", "013", "13 "};
    struct http_request_head head;
    for (size_t i = 0; i < sizeof(wrong) / sizeof(wrong[0]); i++) {
        head_valid(&head);
        head_set(&head, "Sec-WebSocket-Version", wrong[i]);
        expect_status(&head, WS_HANDSHAKE_BAD, REASON_VERSION);
    }
}

static void test_check_missing_version_is_bad_with_version_reason(void **state)
{
    struct http_request_head head;
    head_valid(&head);
    head_remove(&head, "Sec-WebSocket-Version");
    expect_status(&head, WS_HANDSHAKE_BAD, REASON_VERSION);
}

static void test_check_repeated_version_is_bad(void **state)
{
    struct http_request_head head;
    head_valid(&head);
    head_add(&head, "Sec-WebSocket-Version", "8");
    expect_status(&head, WS_HANDSHAKE_BAD, REASON_VERSION);
}

static void test_check_missing_key_is_bad(void **state)
{
    struct http_request_head head;
    head_valid(&head);
    head_remove(&head, "Sec-WebSocket-Key");
    expect_status(&head, WS_HANDSHAKE_BAD, "missing Sec-WebSocket-Key");
}

static void test_check_repeated_key_is_bad(void **state)
{
    struct http_request_head head;
    head_valid(&head);
    head_add(&head, "Sec-WebSocket-Key", SAMPLE_KEY);
    expect_status(&head, WS_HANDSHAKE_BAD, "Sec-WebSocket-Key must appear once");
}

static void test_check_key_of_16_raw_bytes_is_bad(void **state)
{
    struct http_request_head head;
    head_valid(&head);
    head_set(&head, "Sec-WebSocket-Key", "the sample nonce");
    expect_status(&head, WS_HANDSHAKE_BAD, "Sec-WebSocket-Key must be base64 of 16 bytes");
}

static void test_check_key_of_23_or_25_chars_is_bad(void **state)
{
    struct http_request_head head;
    head_valid(&head);
    head_set(&head, "Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=");
    expect_status(&head, WS_HANDSHAKE_BAD, "Sec-WebSocket-Key must be base64 of 16 bytes");
    head_set(&head, "Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ===");
    expect_status(&head, WS_HANDSHAKE_BAD, "Sec-WebSocket-Key must be base64 of 16 bytes");
}

static void test_check_key_decoding_to_other_length_is_bad(void **state)
{
    struct http_request_head head;
    head_valid(&head);
    /* 24 base64 characters without padding decode to 18 bytes. */
    head_set(&head, "Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQAA");
    expect_status(&head, WS_HANDSHAKE_BAD, "Sec-WebSocket-Key must be base64 of 16 bytes");
    /* 24 characters whose padding sits in the middle. */
    head_set(&head, "Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25j==QA");
    expect_status(&head, WS_HANDSHAKE_BAD, "Sec-WebSocket-Key must be base64 of 16 bytes");
}

static void test_check_key_with_blank_inside_is_bad(void **state)
{
    struct http_request_head head;
    head_valid(&head);
    head_set(&head, "Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25 jZ==");
    expect_status(&head, WS_HANDSHAKE_BAD, "Sec-WebSocket-Key must be base64 of 16 bytes");
    head_set(&head, "Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25\r\nZ==");
    expect_status(&head, WS_HANDSHAKE_BAD, "Sec-WebSocket-Key must be base64 of 16 bytes");
}

static void test_check_tolerates_null_reason(void **state)
{
    struct http_request_head head;
    char accept[WS_ACCEPT_LEN + 1];
    head_valid(&head);
    head_remove(&head, "Sec-WebSocket-Key");
    assert_int_equal(ws_handshake_check(&head, accept, NULL), WS_HANDSHAKE_BAD);
}

static void test_check_accepts_parsed_rfc6455_request(void **state)
{
    /* The client handshake of RFC 6455 §1.2, through the real parser. */
    static const char raw[] = "GET /chat HTTP/1.1\r\n"
                              "Host: server.example.com\r\n"
                              "Upgrade: websocket\r\n"
                              "Connection: Upgrade\r\n"
                              "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                              "Origin: http://example.com\r\n"
                              "Sec-WebSocket-Protocol: chat, superchat\r\n"
                              "Sec-WebSocket-Version: 13\r\n"
                              "\r\n";
    struct http_request_head head;
    char accept[WS_ACCEPT_LEN + 1];
    assert_int_equal(http_request_parse(raw, sizeof(raw) - 1, 8192, &head), HTTP_PARSE_OK);
    assert_int_equal(ws_handshake_check(&head, accept, NULL), WS_HANDSHAKE_OK);
    assert_string_equal(accept, SAMPLE_ACCEPT);
}

static void test_response_is_exact_101_answer(void **state)
{
    static const char want[] = "HTTP/1.1 101 Switching Protocols\r\n"
                               "Upgrade: websocket\r\n"
                               "Connection: Upgrade\r\n"
                               "Sec-WebSocket-Accept: " SAMPLE_ACCEPT "\r\n"
                               "\r\n";
    char out[256];
    size_t n = ws_handshake_response(out, sizeof(out), SAMPLE_ACCEPT);
    assert_int_equal(n, strlen(want));
    assert_memory_equal(out, want, n);
}

static void test_response_returns_zero_when_cap_too_small(void **state)
{
    char out[256];
    size_t n = ws_handshake_response(out, sizeof(out), SAMPLE_ACCEPT);
    assert_true(n > 0);
    assert_int_equal(ws_handshake_response(out, n, SAMPLE_ACCEPT), 0);
    assert_int_equal(ws_handshake_response(out, n + 1, SAMPLE_ACCEPT), n);
    assert_int_equal(ws_handshake_response(NULL, 0, SAMPLE_ACCEPT), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accept_key_matches_rfc6455_sample),
        cmocka_unit_test(test_accept_key_rejects_key_over_64_bytes),
        cmocka_unit_test(test_check_accepts_rfc_sample_and_computes_accept),
        cmocka_unit_test(test_check_accepts_keep_alive_upgrade_connection),
        cmocka_unit_test(test_check_accepts_mixed_case_websocket_token),
        cmocka_unit_test(test_check_finds_tokens_in_repeated_fields),
        cmocka_unit_test(test_check_plain_get_is_not_upgrade),
        cmocka_unit_test(test_check_post_without_upgrade_is_not_upgrade),
        cmocka_unit_test(test_check_other_upgrade_protocol_is_not_upgrade),
        cmocka_unit_test(test_check_websocket_upgrade_with_post_is_bad),
        cmocka_unit_test(test_check_lowercase_get_is_bad),
        cmocka_unit_test(test_check_http10_upgrade_is_bad),
        cmocka_unit_test(test_check_missing_connection_is_bad),
        cmocka_unit_test(test_check_connection_without_upgrade_token_is_bad),
        cmocka_unit_test(test_check_version_8_is_bad_with_version_reason),
        cmocka_unit_test(test_check_version_must_be_exactly_13),
        cmocka_unit_test(test_check_missing_version_is_bad_with_version_reason),
        cmocka_unit_test(test_check_repeated_version_is_bad),
        cmocka_unit_test(test_check_missing_key_is_bad),
        cmocka_unit_test(test_check_repeated_key_is_bad),
        cmocka_unit_test(test_check_key_of_16_raw_bytes_is_bad),
        cmocka_unit_test(test_check_key_of_23_or_25_chars_is_bad),
        cmocka_unit_test(test_check_key_decoding_to_other_length_is_bad),
        cmocka_unit_test(test_check_key_with_blank_inside_is_bad),
        cmocka_unit_test(test_check_tolerates_null_reason),
        cmocka_unit_test(test_check_accepts_parsed_rfc6455_request),
        cmocka_unit_test(test_response_is_exact_101_answer),
        cmocka_unit_test(test_response_returns_zero_when_cap_too_small),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
