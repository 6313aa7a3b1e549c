#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "init_message.h"

/* Parses from an exact-size heap copy, without a NUL after it, so that ASan
 * catches any read past len. */
static int parse_n(const char *text, size_t len, size_t max_events, struct init_message *out)
{
    char *copy = malloc(len ? len : 1);
    assert_non_null(copy);
    memcpy(copy, text, len);
    int status = init_message_parse(copy, len, max_events, out);
    free(copy);
    return status;
}

static int parse(const char *text, size_t max_events, struct init_message *out)
{
    return parse_n(text, strlen(text), max_events, out);
}

static void expect_status(const char *text, size_t max_events, int want)
{
    struct init_message msg;
    memset(&msg, 0x5a, sizeof(msg));
    assert_int_equal(parse(text, max_events, &msg), want);
    if (want != INIT_OK) {
        /* A failed parse leaves nothing to free. */
        assert_null(msg.authentication);
        assert_null(msg.events);
        assert_null(msg.event_lens);
        assert_int_equal(msg.event_count, 0);
    }
    init_message_clear(&msg);
}

static void test_init_full_message_parses_events_and_authentication(void **state)
{
    struct init_message msg;
    assert_int_equal(
        parse("{\"authentication\": \"Basic abcdefghijklmnop\", \"events\": [\"news\", \"sport\"]}",
              16, &msg),
        INIT_OK);
    assert_string_equal(msg.authentication, "Basic abcdefghijklmnop");
    assert_int_equal(msg.authentication_len, strlen("Basic abcdefghijklmnop"));
    assert_int_equal(msg.event_count, 2);
    assert_string_equal(msg.events[0], "news");
    assert_int_equal(msg.event_lens[0], 4);
    assert_string_equal(msg.events[1], "sport");
    assert_int_equal(msg.event_lens[1], 5);
    init_message_clear(&msg);
    assert_null(msg.events);
    assert_null(msg.authentication);
    assert_int_equal(msg.event_count, 0);
}

static void test_init_absent_authentication_is_null(void **state)
{
    struct init_message msg;
    assert_int_equal(parse("{\"events\":[\"a\"]}", 16, &msg), INIT_OK);
    assert_null(msg.authentication);
    assert_int_equal(msg.authentication_len, 0);
    assert_int_equal(msg.event_count, 1);
    init_message_clear(&msg);
}

static void test_init_non_string_authentication_is_null(void **state)
{
    static const char *const texts[] = {
        "{\"authentication\": 12, \"events\":[\"a\"]}",
        "{\"authentication\": null, \"events\":[\"a\"]}",
        "{\"authentication\": true, \"events\":[\"a\"]}",
        "{\"authentication\": [\"Basic x\"], \"events\":[\"a\"]}",
        "{\"authentication\": {\"Basic\": \"x\"}, \"events\":[\"a\"]}",
    };
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
        struct init_message msg;
        assert_int_equal(parse(texts[i], 16, &msg), INIT_OK);
        assert_null(msg.authentication);
        assert_int_equal(msg.authentication_len, 0);
        assert_int_equal(msg.event_count, 1);
        init_message_clear(&msg);
    }
}

static void test_init_empty_authentication_string_is_kept(void **state)
{
    struct init_message msg;
    assert_int_equal(parse("{\"authentication\": \"\", \"events\":[\"a\"]}", 16, &msg), INIT_OK);
    assert_non_null(msg.authentication);
    assert_int_equal(msg.authentication_len, 0);
    init_message_clear(&msg);
}

static void test_init_not_json_is_invalid_syntax(void **state)
{
    static const char *const texts[] = {
        "",
        "{",
        "hello",
        "{\"events\": [\"a\"]",
        "{\"events\": [\"a\",]}",
        "{events: [\"a\"]}",
        "{\"events\": [\"a\"]} x",
        "{\"events\": [\"a\"]}{}",
        "   ",
    };
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++)
        expect_status(texts[i], 16, INIT_INVALID_SYNTAX);
}

static void test_init_invalid_utf8_is_invalid_syntax(void **state)
{
    expect_status("{\"events\": [\"\xff\"]}", 16, INIT_INVALID_SYNTAX);
    expect_status("{\"events\": [\"\xc0\xae\"]}", 16, INIT_INVALID_SYNTAX);     /* overlong */
    expect_status("{\"events\": [\"\xed\xa0\x80\"]}", 16, INIT_INVALID_SYNTAX); /* surrogate */
    expect_status("{\"events\": [\"a\"]}\xff", 16, INIT_INVALID_SYNTAX);
}

static void test_init_raw_nul_byte_is_invalid_syntax(void **state)
{
    static const char text[] = "{\"events\": [\"a\0b\"]}";
    struct init_message msg;
    assert_int_equal(parse_n(text, sizeof(text) - 1, 16, &msg), INIT_INVALID_SYNTAX);
    static const char trailing[] = "{\"events\": [\"a\"]}\0";
    assert_int_equal(parse_n(trailing, sizeof(trailing) - 1, 16, &msg), INIT_INVALID_SYNTAX);
}

static void test_init_trailing_blanks_are_accepted(void **state)
{
    expect_status(" \t\r\n{\"events\": [\"a\"]} \t\r\n", 16, INIT_OK);
}

static void test_init_reads_only_len_bytes(void **state)
{
    /* The bytes after len would make the text invalid if they were read. */
    static const char text[] = "{\"events\":[\"a\"]}garbage";
    struct init_message msg;
    assert_int_equal(init_message_parse(text, strlen("{\"events\":[\"a\"]}"), 16, &msg), INIT_OK);
    assert_int_equal(msg.event_count, 1);
    init_message_clear(&msg);
    /* Cut inside the value: incomplete, hence not JSON. */
    assert_int_equal(init_message_parse(text, 10, 16, &msg), INIT_INVALID_SYNTAX);
}

static void test_init_deep_nesting_is_rejected_without_crash(void **state)
{
    size_t depth = 100000;
    char *text = malloc(depth);
    assert_non_null(text);
    memset(text, '[', depth);
    struct init_message msg;
    assert_int_equal(parse_n(text, depth, 16, &msg), INIT_INVALID_SYNTAX);
    free(text);
}

static void test_init_root_not_object_is_events_missing(void **state)
{
    static const char *const texts[] = {"[\"a\"]", "\"events\"", "42", "null", "true"};
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++)
        expect_status(texts[i], 16, INIT_EVENTS_MISSING);
}

static void test_init_events_absent_or_not_array_is_events_missing(void **state)
{
    static const char *const texts[] = {
        "{}",
        "{\"authentication\": \"Basic abcdefghijklmnop\"}",
        "{\"events\": \"news\"}",
        "{\"events\": {\"0\": \"news\"}}",
        "{\"events\": null}",
        "{\"Events\": [\"news\"]}",
    };
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++)
        expect_status(texts[i], 16, INIT_EVENTS_MISSING);
}

static void test_init_bad_entry_is_events_missing(void **state)
{
    static const char *const texts[] = {
        "{\"events\": [\"a\", 1]}",   "{\"events\": [null]}", "{\"events\": [[\"a\"]]}",
        "{\"events\": [{\"a\": 1}]}", "{\"events\": [\"\"]}", "{\"events\": [true]}",
    };
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++)
        expect_status(texts[i], 16, INIT_EVENTS_MISSING);
}

/* Builds {"events":["<prefix><n x c>"]}. */
static char *events_with_type(const char *unit, size_t repeat, const char *suffix)
{
    size_t unit_len = strlen(unit), cap = 32 + unit_len * repeat + strlen(suffix);
    char *text = malloc(cap), *p = text;
    assert_non_null(text);
    p += sprintf(p, "{\"events\":[\"");
    for (size_t i = 0; i < repeat; i++)
        p += sprintf(p, "%s", unit);
    sprintf(p, "%s\"]}", suffix);
    return text;
}

static void test_init_type_of_255_bytes_is_accepted_and_256_rejected(void **state)
{
    struct init_message msg;
    char *text = events_with_type("x", INIT_TYPE_MAX, "");
    assert_int_equal(parse(text, 16, &msg), INIT_OK);
    assert_int_equal(msg.event_lens[0], INIT_TYPE_MAX);
    assert_int_equal(strlen(msg.events[0]), INIT_TYPE_MAX);
    init_message_clear(&msg);
    free(text);

    text = events_with_type("x", INIT_TYPE_MAX + 1, "");
    expect_status(text, 16, INIT_EVENTS_MISSING);
    free(text);
}

static void test_init_type_limit_counts_utf8_bytes(void **state)
{
    struct init_message msg;
    /* 127 two-byte characters and one ASCII byte: 255 bytes. */
    char *text = events_with_type("\xc3\xa9", 127, "a");
    assert_int_equal(parse(text, 16, &msg), INIT_OK);
    assert_int_equal(msg.event_lens[0], 255);
    init_message_clear(&msg);
    free(text);

    text = events_with_type("\xc3\xa9", 128, "");
    expect_status(text, 16, INIT_EVENTS_MISSING);
    free(text);

    /* An escape counts as the bytes it decodes to, not the six it is written in. */
    text = events_with_type("\\u00e9", 127, "a");
    assert_int_equal(parse(text, 16, &msg), INIT_OK);
    assert_int_equal(msg.event_lens[0], 255);
    assert_memory_equal(msg.events[0], "\xc3\xa9", 2);
    init_message_clear(&msg);
    free(text);
}

static void test_init_escaped_nul_truncates_type_known_limit(void **state)
{
    /* Documented limit of init_message.c: cJSON strings end at a NUL. */
    struct init_message msg;
    assert_int_equal(parse("{\"events\": [\"a\\u0000b\"]}", 16, &msg), INIT_OK);
    assert_int_equal(msg.event_lens[0], 1);
    assert_string_equal(msg.events[0], "a");
    init_message_clear(&msg);
    expect_status("{\"events\": [\"\\u0000b\"]}", 16, INIT_EVENTS_MISSING);
}

static void test_init_duplicate_types_are_preserved(void **state)
{
    struct init_message msg;
    assert_int_equal(parse("{\"events\": [\"a\", \"b\", \"a\", \"a\"]}", 16, &msg), INIT_OK);
    assert_int_equal(msg.event_count, 4);
    assert_string_equal(msg.events[0], "a");
    assert_string_equal(msg.events[1], "b");
    assert_string_equal(msg.events[2], "a");
    assert_string_equal(msg.events[3], "a");
    init_message_clear(&msg);
}

static void test_init_empty_events_array_is_ok_with_no_types(void **state)
{
    struct init_message msg;
    assert_int_equal(parse("{\"events\": []}", 16, &msg), INIT_OK);
    assert_int_equal(msg.event_count, 0);
    init_message_clear(&msg);
    assert_int_equal(parse("{\"events\": []}", 0, &msg), INIT_OK);
    init_message_clear(&msg);
}

static void test_init_max_events_boundary(void **state)
{
    struct init_message msg;
    const char *three = "{\"events\": [\"a\", \"b\", \"c\"]}";
    assert_int_equal(parse(three, 3, &msg), INIT_OK);
    assert_int_equal(msg.event_count, 3);
    init_message_clear(&msg);
    expect_status(three, 2, INIT_TOO_MANY_EVENTS);
    expect_status("{\"events\": [\"a\"]}", 0, INIT_TOO_MANY_EVENTS);
    /* Duplicates count: the limit applies to what was sent. */
    expect_status("{\"events\": [\"a\", \"a\", \"a\"]}", 2, INIT_TOO_MANY_EVENTS);
}

static void test_init_bad_entry_wins_over_too_many(void **state)
{
    expect_status("{\"events\": [\"a\", \"b\", 3]}", 1, INIT_EVENTS_MISSING);
}

static void test_init_repeated_member_last_wins(void **state)
{
    struct init_message msg;
    assert_int_equal(parse("{\"events\": 1, \"authentication\": \"one\", \"events\": [\"b\"], "
                           "\"authentication\": \"two\"}",
                           16, &msg),
                     INIT_OK);
    assert_int_equal(msg.event_count, 1);
    assert_string_equal(msg.events[0], "b");
    assert_string_equal(msg.authentication, "two");
    init_message_clear(&msg);
    expect_status("{\"events\": [\"b\"], \"events\": 1}", 16, INIT_EVENTS_MISSING);
}

static void test_init_unknown_members_are_ignored(void **state)
{
    expect_status("{\"events\": [\"a\"], \"extra\": {\"deep\": [1, 2, {\"x\": null}]}}", 16,
                  INIT_OK);
}

static void test_init_status_codes_match_wire_contract(void **state)
{
    assert_string_equal(init_status_code(INIT_OK), "OK");
    assert_string_equal(init_status_code(INIT_INVALID_SYNTAX), "INVALID_SYNTAX");
    assert_string_equal(init_status_code(INIT_EVENTS_MISSING), "INVALID_EVENTS_MISSING");
    assert_string_equal(init_status_code(INIT_TOO_MANY_EVENTS), "TOO_MANY_EVENTS");
    assert_string_equal(init_status_code(INIT_NOMEM), "INTERNAL_ERROR");
    assert_string_equal(init_status_code(-99), "INTERNAL_ERROR");
}

static void test_init_clear_null_is_noop(void **state)
{
    init_message_clear(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init_full_message_parses_events_and_authentication),
        cmocka_unit_test(test_init_absent_authentication_is_null),
        cmocka_unit_test(test_init_non_string_authentication_is_null),
        cmocka_unit_test(test_init_empty_authentication_string_is_kept),
        cmocka_unit_test(test_init_not_json_is_invalid_syntax),
        cmocka_unit_test(test_init_invalid_utf8_is_invalid_syntax),
        cmocka_unit_test(test_init_raw_nul_byte_is_invalid_syntax),
        cmocka_unit_test(test_init_trailing_blanks_are_accepted),
        cmocka_unit_test(test_init_reads_only_len_bytes),
        cmocka_unit_test(test_init_deep_nesting_is_rejected_without_crash),
        cmocka_unit_test(test_init_root_not_object_is_events_missing),
        cmocka_unit_test(test_init_events_absent_or_not_array_is_events_missing),
        cmocka_unit_test(test_init_bad_entry_is_events_missing),
        cmocka_unit_test(test_init_type_of_255_bytes_is_accepted_and_256_rejected),
        cmocka_unit_test(test_init_type_limit_counts_utf8_bytes),
        cmocka_unit_test(test_init_escaped_nul_truncates_type_known_limit),
        cmocka_unit_test(test_init_duplicate_types_are_preserved),
        cmocka_unit_test(test_init_empty_events_array_is_ok_with_no_types),
        cmocka_unit_test(test_init_max_events_boundary),
        cmocka_unit_test(test_init_bad_entry_wins_over_too_many),
        cmocka_unit_test(test_init_repeated_member_last_wins),
        cmocka_unit_test(test_init_unknown_members_are_ignored),
        cmocka_unit_test(test_init_status_codes_match_wire_contract),
        cmocka_unit_test(test_init_clear_null_is_noop),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
