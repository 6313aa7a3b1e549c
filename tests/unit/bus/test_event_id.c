/* Unit tests for common/bus/event_id.c: the id text clients may send, the
 * ids the listen daemon gives, and where an event message takes its id. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "bus/event_id.h"

static void test_valid_ids_are_1_to_64_characters_of_the_id_alphabet(void **state)
{
    char longest[EVENT_ID_MAX + 1];
    memset(longest, 'z', sizeof longest);
    assert_true(event_id_valid("a", 1));
    assert_true(event_id_valid("0123456789abcdef-ABC.xyz_:", 26));
    assert_true(event_id_valid(longest, EVENT_ID_MAX));
    assert_false(event_id_valid(longest, EVENT_ID_MAX + 1));
    assert_false(event_id_valid("", 0));
    static const char *const bad[] = {"a/b", "a b", "a\"b", "caf\xc3\xa9", "a\\b", "a\nb", "{}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_false(event_id_valid(bad[i], strlen(bad[i])));
    assert_false(event_id_valid("a\0b", 3));
}

static void test_format_and_parse_round_trip_and_sort_in_order(void **state)
{
    char a[EVENT_ID_LEN + 1], b[EVENT_ID_LEN + 1];
    uint64_t run = 0, number = 0;
    assert_int_equal(event_id_format(a, UINT64_C(0x0123456789abcdef), 9), EVENT_ID_LEN);
    assert_string_equal(a, "0123456789abcdef-0000000000000009");
    assert_true(event_id_valid(a, strlen(a)));
    assert_int_equal(event_id_parse(a, strlen(a), &run, &number), 0);
    assert_true(run == UINT64_C(0x0123456789abcdef) && number == 9);
    /* Fixed width: within a run, and from one run to a later one, the text
     * sorts as the numbers do. */
    event_id_format(b, UINT64_C(0x0123456789abcdef), 16);
    assert_true(strcmp(a, b) < 0);
    event_id_format(b, UINT64_C(0x0123456789abcdf0), 1);
    assert_true(strcmp(a, b) < 0);
    event_id_format(a, UINT64_MAX, UINT64_MAX);
    assert_int_equal(event_id_parse(a, strlen(a), &run, &number), 0);
    assert_true(run == UINT64_MAX && number == UINT64_MAX);
}

static void test_parse_refuses_what_format_never_writes(void **state)
{
    uint64_t run = 7, number = 7;
    static const char *const bad[] = {
        "0123456789abcdef-000000000000000",   /* short */
        "0123456789abcdef-00000000000000001", /* long */
        "0123456789ABCDEF-0000000000000001",  /* upper case */
        "0123456789abcdef_0000000000000001",  /* no '-' */
        "0123456789abcdeg-0000000000000001",  /* not hex */
        "0123456789abcdef-0000000000000000",  /* number 0 */
        "oldest",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(event_id_parse(bad[i], strlen(bad[i]), &run, &number), -1);
    assert_true(run == 7 && number == 7); /* untouched */
}

static void test_new_runs_are_nonzero_and_later_ones_larger(void **state)
{
    uint64_t first = event_id_new_run(), second;
    do
        second = event_id_new_run();
    while ((second >> 12) == (first >> 12)); /* the same microsecond: its noise decides */
    assert_true(first != 0);
    assert_true(second > first);
}

static size_t offset_of(const char *message)
{
    return event_message_id_offset((const uint8_t *)message, strlen(message));
}

static void test_the_id_goes_right_after_the_event_type(void **state)
{
    static const char with_data[] = "{\"type\":\"event\",\"event\":\"t\",\"data\":1}";
    static const char without[] = "{\"type\":\"event\",\"event\":\"t\"}";
    static const char escaped[] = "{\"type\":\"event\",\"event\":\"a\\\"b\\\\\",\"data\":null}";
    assert_int_equal(offset_of(with_data), strlen("{\"type\":\"event\",\"event\":\"t\""));
    assert_int_equal(offset_of(without), strlen("{\"type\":\"event\",\"event\":\"t\""));
    assert_int_equal(offset_of(escaped), strlen("{\"type\":\"event\",\"event\":\"a\\\"b\\\\\""));
}

static void test_messages_of_another_shape_have_no_place_for_an_id(void **state)
{
    static const char *const bad[] = {
        "",
        "{\"data\":1}",
        "{\"type\":\"event\",\"event\":",
        "{\"type\":\"event\",\"event\":\"",
        "{\"type\":\"event\",\"event\":\"unterminated",
        "{\"type\":\"event\",\"event\":\"ends in an escape\\",
        "{\"type\":\"event\",\"event\":\"t\"",
        "{\"type\":\"event\",\"event\":\"t\" ,\"data\":1}",
        "{\"type\":\"event\", \"event\":\"t\"}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(offset_of(bad[i]), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_ids_are_1_to_64_characters_of_the_id_alphabet),
        cmocka_unit_test(test_format_and_parse_round_trip_and_sort_in_order),
        cmocka_unit_test(test_parse_refuses_what_format_never_writes),
        cmocka_unit_test(test_new_runs_are_nonzero_and_later_ones_larger),
        cmocka_unit_test(test_the_id_goes_right_after_the_event_type),
        cmocka_unit_test(test_messages_of_another_shape_have_no_place_for_an_id),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
