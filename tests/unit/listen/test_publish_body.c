/* Unit tests for listen/publish_body.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <cjson/cJSON.h>

#include "core/json_text.h"
#include "publish_body.h"

/* Parses body from an exact-size heap copy (the body is not NUL-terminated
 * in the daemon, so the sanitizer must see any read past its end). */
static int parse_bytes(const char *body, size_t len, struct publish_event *ev, const char **why)
{
    char *copy = malloc(len ? len : 1);
    assert_non_null(copy);
    memcpy(copy, body, len);
    int rc = publish_body_parse(copy, len, ev, why);
    free(copy);
    return rc;
}

static int parse(const char *body, struct publish_event *ev, const char **why)
{
    return parse_bytes(body, strlen(body), ev, why);
}

static void assert_empty(const struct publish_event *ev)
{
    assert_null(ev->type);
    assert_int_equal(ev->type_len, 0);
    assert_null(ev->message);
    assert_int_equal(ev->message_len, 0);
}

/* Checks the message is a JSON object with exactly the promised members:
 * "type":"event", "event" equal to the decoded type, and "data" only when
 * expected. Returns the parsed message for further checks. */
static cJSON *check_message(const struct publish_event *ev, int expect_data)
{
    assert_non_null(ev->message);
    assert_int_equal(strlen(ev->message), ev->message_len);
    assert_true(json_utf8_valid(ev->message, ev->message_len));
    assert_int_equal(strlen(ev->type), ev->type_len);

    const char *end = NULL;
    cJSON *msg = cJSON_ParseWithLengthOpts(ev->message, ev->message_len + 1, &end, 1);
    assert_non_null(msg);
    assert_true(cJSON_IsObject(msg));
    assert_int_equal(cJSON_GetArraySize(msg), expect_data ? 3 : 2);
    cJSON *type = cJSON_GetObjectItemCaseSensitive(msg, "type");
    assert_true(cJSON_IsString(type));
    assert_string_equal(type->valuestring, "event");
    cJSON *event = cJSON_GetObjectItemCaseSensitive(msg, "event");
    assert_true(cJSON_IsString(event));
    assert_string_equal(event->valuestring, ev->type);
    assert_int_equal(cJSON_HasObjectItem(msg, "data"), expect_data);

    /* The message is itself a valid body that reproduces itself. */
    struct publish_event again;
    assert_int_equal(parse_bytes(ev->message, ev->message_len, &again, NULL), PUBLISH_BODY_OK);
    assert_int_equal(again.message_len, ev->message_len);
    assert_memory_equal(again.message, ev->message, ev->message_len);
    publish_event_clear(&again);
    return msg;
}

static void expect_ok(const char *body, const char *type, const char *message)
{
    struct publish_event ev;
    const char *why = NULL;
    assert_int_equal(parse(body, &ev, &why), PUBLISH_BODY_OK);
    assert_non_null(why);
    assert_string_equal(ev.type, type);
    assert_string_equal(ev.message, message);
    cJSON_Delete(check_message(&ev, strstr(message, ",\"data\":") != NULL));
    publish_event_clear(&ev);
    assert_empty(&ev);
}

static void expect_invalid_bytes(const char *body, size_t len, const char *reason)
{
    struct publish_event ev;
    memset(&ev, 0x5a, sizeof(ev));
    const char *why = NULL;
    assert_int_equal(parse_bytes(body, len, &ev, &why), PUBLISH_BODY_INVALID);
    assert_empty(&ev);
    assert_non_null(why);
    assert_string_equal(why, reason);
}

static void expect_invalid(const char *body, const char *reason)
{
    expect_invalid_bytes(body, strlen(body), reason);
}

#define EXPECT_INVALID_LITERAL(lit, reason) expect_invalid_bytes(lit, sizeof(lit) - 1, reason)

static void test_data_object_is_forwarded_verbatim(void **state)
{
    expect_ok("{\"event\":\"user.created\",\"data\":{\"id\":7,\"tags\":[\"a\",\"b\"]}}",
              "user.created",
              "{\"type\":\"event\",\"event\":\"user.created\","
              "\"data\":{\"id\":7,\"tags\":[\"a\",\"b\"]}}");
}

static void test_data_of_every_scalar_kind_is_forwarded_verbatim(void **state)
{
    expect_ok("{\"event\":\"t\",\"data\":[1,2,[3]]}", "t",
              "{\"type\":\"event\",\"event\":\"t\",\"data\":[1,2,[3]]}");
    expect_ok("{\"event\":\"t\",\"data\":\"caf\xc3\xa9 \\u00e9 \\\"q\\\" \\n \\ud83d\\ude00\"}",
              "t",
              "{\"type\":\"event\",\"event\":\"t\","
              "\"data\":\"caf\xc3\xa9 \\u00e9 \\\"q\\\" \\n \\ud83d\\ude00\"}");
    expect_ok("{\"event\":\"t\",\"data\":12345678901234567890}", "t",
              "{\"type\":\"event\",\"event\":\"t\",\"data\":12345678901234567890}");
    expect_ok("{\"event\":\"t\",\"data\":0.1000000000000000055511151231257827}", "t",
              "{\"type\":\"event\",\"event\":\"t\","
              "\"data\":0.1000000000000000055511151231257827}");
    expect_ok("{\"event\":\"t\",\"data\":-1.5E+300}", "t",
              "{\"type\":\"event\",\"event\":\"t\",\"data\":-1.5E+300}");
    expect_ok("{\"event\":\"t\",\"data\":true}", "t",
              "{\"type\":\"event\",\"event\":\"t\",\"data\":true}");
    expect_ok("{\"event\":\"t\",\"data\":false}", "t",
              "{\"type\":\"event\",\"event\":\"t\",\"data\":false}");
    expect_ok("{\"event\":\"t\",\"data\":null}", "t",
              "{\"type\":\"event\",\"event\":\"t\",\"data\":null}");
    expect_ok("{\"event\":\"t\",\"data\":{}}", "t",
              "{\"type\":\"event\",\"event\":\"t\",\"data\":{}}");
}

static void test_precise_number_digits_survive_into_message(void **state)
{
    struct publish_event ev;
    assert_int_equal(parse("{\"event\":\"n\",\"data\":{\"big\":12345678901234567890}}", &ev, NULL),
                     PUBLISH_BODY_OK);
    assert_non_null(strstr(ev.message, "12345678901234567890"));
    cJSON_Delete(check_message(&ev, 1));
    publish_event_clear(&ev);
}

static void test_missing_data_gives_message_without_data(void **state)
{
    expect_ok("{\"event\":\"ping\"}", "ping", "{\"type\":\"event\",\"event\":\"ping\"}");
}

static void test_whitespace_inside_data_is_preserved(void **state)
{
    expect_ok(" \n{ \"event\" : \"t\" ,\r\n \"data\" :\t{ \"a\" :\n [ 1 ,\t2 ] }\n }\n", "t",
              "{\"type\":\"event\",\"event\":\"t\",\"data\":{ \"a\" :\n [ 1 ,\t2 ] }}");
}

static void test_extra_members_are_ignored(void **state)
{
    expect_ok("{\"id\":1,\"event\":\"t\",\"x\":{\"event\":\"inner\",\"data\":0},\"data\":2,"
              "\"z\":[]}",
              "t", "{\"type\":\"event\",\"event\":\"t\",\"data\":2}");
}

static void test_duplicate_members_last_wins(void **state)
{
    expect_ok("{\"event\":\"first\",\"data\":1,\"event\":\"second\",\"data\":2}", "second",
              "{\"type\":\"event\",\"event\":\"second\",\"data\":2}");
    /* A later non-string event replaces an earlier valid one. */
    expect_invalid("{\"event\":\"ok\",\"event\":1}", "event not a string");
}

static void test_escaped_type_is_decoded_and_reescaped(void **state)
{
    expect_ok("{\"event\":\"a\\u0062\"}", "ab", "{\"type\":\"event\",\"event\":\"ab\"}");
    expect_ok("{\"ev\\u0065nt\":\"k\"}", "k", "{\"type\":\"event\",\"event\":\"k\"}");
    expect_ok("{\"event\":\"q\\\"\\\\\\/\\t\\u00e9\"}", "q\"\\/\t\xc3\xa9",
              "{\"type\":\"event\",\"event\":\"q\\\"\\\\/\\t\xc3\xa9\"}");
    expect_ok("{\"event\":\"\\ud83d\\ude00\"}", "\xf0\x9f\x98\x80",
              "{\"type\":\"event\",\"event\":\"\xf0\x9f\x98\x80\"}");
}

static void test_type_of_255_bytes_is_accepted(void **state)
{
    char body[400];
    char type[PUBLISH_TYPE_MAX + 1];
    memset(type, 'x', PUBLISH_TYPE_MAX);
    type[PUBLISH_TYPE_MAX] = '\0';
    snprintf(body, sizeof(body), "{\"event\":\"%s\"}", type);
    struct publish_event ev;
    assert_int_equal(parse(body, &ev, NULL), PUBLISH_BODY_OK);
    assert_int_equal(ev.type_len, PUBLISH_TYPE_MAX);
    assert_string_equal(ev.type, type);
    cJSON_Delete(check_message(&ev, 0));
    publish_event_clear(&ev);
}

static void test_type_of_256_bytes_is_rejected(void **state)
{
    char body[400];
    char type[PUBLISH_TYPE_MAX + 2];
    memset(type, 'x', PUBLISH_TYPE_MAX + 1);
    type[PUBLISH_TYPE_MAX + 1] = '\0';
    snprintf(body, sizeof(body), "{\"event\":\"%s\"}", type);
    expect_invalid(body, "event too long");
}

static void test_type_length_counts_decoded_bytes(void **state)
{
    /* 128 two-byte characters written as \u escapes: 256 decoded bytes. */
    char body[2048];
    size_t n = 0;
    n += (size_t)sprintf(body, "{\"event\":\"");
    for (int i = 0; i < 128; i++)
        n += (size_t)sprintf(body + n, "\\u00e9");
    sprintf(body + n, "\"}");
    expect_invalid(body, "event too long");

    /* 85 three-byte characters: 255 bytes, accepted. */
    n = (size_t)sprintf(body, "{\"event\":\"");
    for (int i = 0; i < 85; i++)
        n += (size_t)sprintf(body + n, "\\u20ac");
    sprintf(body + n, "\"}");
    struct publish_event ev;
    assert_int_equal(parse(body, &ev, NULL), PUBLISH_BODY_OK);
    assert_int_equal(ev.type_len, 255);
    cJSON_Delete(check_message(&ev, 0));
    publish_event_clear(&ev);
}

static void test_byte_order_mark_is_ignored(void **state)
{
    expect_ok("\xef\xbb\xbf{\"event\":\"t\",\"data\":1}", "t",
              "{\"type\":\"event\",\"event\":\"t\",\"data\":1}");
}

static void test_invalid_structure_is_rejected(void **state)
{
    expect_invalid_bytes("", 0, "empty body");
    expect_invalid("   ", "not JSON");
    expect_invalid("not json", "not JSON");
    expect_invalid("{\"event\":\"t\"", "not JSON");
    expect_invalid("{\"event\":\"t\",}", "not JSON");
    expect_invalid("{\"event\":\"t\"} x", "trailing data after JSON");
    expect_invalid("{\"event\":\"t\"}{}", "trailing data after JSON");
    EXPECT_INVALID_LITERAL("{\"event\":\"t\"}\0", "trailing data after JSON");
    expect_invalid("[{\"event\":\"t\"}]", "not an object");
    expect_invalid("\"event\"", "not an object");
    expect_invalid("42", "not an object");
    expect_invalid("null", "not an object");
}

static void test_invalid_event_is_rejected(void **state)
{
    expect_invalid("{}", "event missing");
    expect_invalid("{\"data\":1}", "event missing");
    expect_invalid("{\"data\":{\"event\":\"nested\"}}", "event missing");
    expect_invalid("{\"Event\":\"t\"}", "event missing");
    expect_invalid("{\"event\":1}", "event not a string");
    expect_invalid("{\"event\":null}", "event not a string");
    expect_invalid("{\"event\":[\"t\"]}", "event not a string");
    expect_invalid("{\"event\":{\"t\":1}}", "event not a string");
    expect_invalid("{\"event\":true}", "event not a string");
    expect_invalid("{\"event\":\"\"}", "event empty");
    expect_invalid("{\"event\":\"a\\u0000b\"}", "event contains NUL");
    expect_invalid("{\"event\":\"\\u0000\"}", "event contains NUL");
}

static void test_invalid_utf8_is_rejected(void **state)
{
    expect_invalid("{\"event\":\"t\",\"data\":\"\xff\"}", "not UTF-8");
    expect_invalid("{\"event\":\"\xc0\x80\"}", "not UTF-8");
    expect_invalid("{\"event\":\"t\",\"data\":\"\xed\xa0\x80\"}", "not UTF-8");
    expect_invalid("{\"event\":\"t\",\"data\":\"\xf4\x90\x80\x80\"}", "not UTF-8");
    expect_invalid("{\"event\":\"t\xe2\x82\"}", "not UTF-8");
}

/* cJSON accepts these, but they are not RFC 8259 JSON and would reach
 * subscribers verbatim. */
static void test_text_cjson_tolerates_but_json_forbids_is_rejected(void **state)
{
    expect_invalid("{\"event\":\"t\",\"data\":01}", "not JSON");
    expect_invalid("{\"event\":\"t\",\"data\":1.}", "not JSON");
    expect_invalid("{\"event\":\"t\",\"data\":-.5}", "not JSON");
    expect_invalid("{\"event\":\"t\",\"data\":[1.e5]}", "not JSON");
    expect_invalid("{\"event\":\"t\",\"data\":\"a\nb\"}", "not JSON");
    expect_invalid("{\"event\":\"t\",\"data\":\"a\tb\"}", "not JSON");
    expect_invalid("{\"event\":\"t\",\"data\":\"\\u00zz\"}", "not JSON");
    expect_invalid("{\"event\":\"t\",\"data\":\f1}", "not JSON");
    expect_invalid("{\"event\":\"t\",\"data\":[1,\v2]}", "not JSON");
    EXPECT_INVALID_LITERAL("{\"event\":\"t\",\"data\":\0001}", "not JSON");
    EXPECT_INVALID_LITERAL("\0{\"event\":\"t\"}", "not JSON");
    expect_invalid("{\"event\":\"a\x01\"}", "not JSON");
}

static void test_nesting_beyond_cjson_limit_is_rejected(void **state)
{
    size_t depth = CJSON_NESTING_LIMIT + 10;
    size_t len = strlen("{\"event\":\"t\",\"data\":") + 2 * depth + 1;
    char *body = malloc(len + 1);
    assert_non_null(body);
    size_t n = (size_t)sprintf(body, "{\"event\":\"t\",\"data\":");
    memset(body + n, '[', depth);
    memset(body + n + depth, ']', depth);
    body[len - 1] = '}';
    body[len] = '\0';
    expect_invalid(body, "not JSON");
    free(body);
}

static void test_deep_data_within_limit_is_forwarded(void **state)
{
    size_t depth = 500;
    size_t len = strlen("{\"event\":\"t\",\"data\":") + 2 * depth + 1;
    char *body = malloc(len + 1);
    assert_non_null(body);
    size_t n = (size_t)sprintf(body, "{\"event\":\"t\",\"data\":");
    memset(body + n, '[', depth);
    memset(body + n + depth, ']', depth);
    body[len - 1] = '}';
    body[len] = '\0';
    struct publish_event ev;
    assert_int_equal(parse(body, &ev, NULL), PUBLISH_BODY_OK);
    assert_int_equal(ev.message_len,
                     strlen("{\"type\":\"event\",\"event\":\"t\",\"data\":") + 2 * depth + 1);
    cJSON_Delete(check_message(&ev, 1));
    publish_event_clear(&ev);
    free(body);
}

static void test_large_data_is_forwarded(void **state)
{
    /* A 1 MiB string value. */
    size_t payload = 1024 * 1024;
    const char *head = "{\"event\":\"big\",\"data\":\"";
    size_t len = strlen(head) + payload + 2;
    char *body = malloc(len);
    assert_non_null(body);
    memcpy(body, head, strlen(head));
    memset(body + strlen(head), 'z', payload);
    memcpy(body + len - 2, "\"}", 2);
    struct publish_event ev;
    assert_int_equal(parse_bytes(body, len, &ev, NULL), PUBLISH_BODY_OK);
    cJSON *msg = check_message(&ev, 1);
    cJSON *data = cJSON_GetObjectItemCaseSensitive(msg, "data");
    assert_true(cJSON_IsString(data));
    assert_int_equal(strlen(data->valuestring), payload);
    cJSON_Delete(msg);
    publish_event_clear(&ev);
    free(body);
}

static void test_reason_may_be_null(void **state)
{
    struct publish_event ev;
    assert_int_equal(publish_body_parse("{}", 2, &ev, NULL), PUBLISH_BODY_INVALID);
    assert_empty(&ev);
}

static void test_clear_accepts_null_and_is_repeatable(void **state)
{
    publish_event_clear(NULL);
    struct publish_event ev;
    assert_int_equal(parse("{\"event\":\"t\"}", &ev, NULL), PUBLISH_BODY_OK);
    publish_event_clear(&ev);
    assert_empty(&ev);
    publish_event_clear(&ev);
    assert_empty(&ev);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_data_object_is_forwarded_verbatim),
        cmocka_unit_test(test_data_of_every_scalar_kind_is_forwarded_verbatim),
        cmocka_unit_test(test_precise_number_digits_survive_into_message),
        cmocka_unit_test(test_missing_data_gives_message_without_data),
        cmocka_unit_test(test_whitespace_inside_data_is_preserved),
        cmocka_unit_test(test_extra_members_are_ignored),
        cmocka_unit_test(test_duplicate_members_last_wins),
        cmocka_unit_test(test_escaped_type_is_decoded_and_reescaped),
        cmocka_unit_test(test_type_of_255_bytes_is_accepted),
        cmocka_unit_test(test_type_of_256_bytes_is_rejected),
        cmocka_unit_test(test_type_length_counts_decoded_bytes),
        cmocka_unit_test(test_byte_order_mark_is_ignored),
        cmocka_unit_test(test_invalid_structure_is_rejected),
        cmocka_unit_test(test_invalid_event_is_rejected),
        cmocka_unit_test(test_invalid_utf8_is_rejected),
        cmocka_unit_test(test_text_cjson_tolerates_but_json_forbids_is_rejected),
        cmocka_unit_test(test_nesting_beyond_cjson_limit_is_rejected),
        cmocka_unit_test(test_deep_data_within_limit_is_forwarded),
        cmocka_unit_test(test_large_data_is_forwarded),
        cmocka_unit_test(test_reason_may_be_null),
        cmocka_unit_test(test_clear_accepts_null_and_is_repeatable),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
