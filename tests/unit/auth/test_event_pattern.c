/* Unit tests for common/auth/event_pattern.c: validity, matching, lists. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "auth/event_pattern.h"

static bool valid(const char *pattern)
{
    return event_pattern_valid(pattern, strlen(pattern));
}

static bool match(const char *pattern, const char *type)
{
    return event_pattern_match(pattern, type, strlen(type));
}

static void test_exact_pattern_matches_only_the_same_type(void **state)
{
    assert_true(match("orders.created", "orders.created"));
    assert_false(match("orders.created", "orders.create"));
    assert_false(match("orders.created", "orders.created.eu"));
    assert_false(match("orders.created", "Orders.created"));
    assert_false(match("orders", "orders.created"));
    assert_false(match("orders.created", ""));
}

static void test_trailing_wildcard_matches_types_under_the_prefix(void **state)
{
    assert_true(match("orders.*", "orders.created"));
    assert_true(match("orders.*", "orders.eu.created"));
    assert_false(match("orders.*", "orders"));
    assert_false(match("orders.*", "ordersX"));
    assert_false(match("orders.*", "order"));
    assert_false(match("orders.*", "payments.created"));
}

static void test_wildcard_without_dot_is_a_plain_prefix(void **state)
{
    assert_true(match("orders*", "orders"));
    assert_true(match("orders*", "ordersX"));
    assert_true(match("orders*", "orders.created"));
    assert_false(match("orders*", "order"));
}

static void test_star_alone_matches_every_type(void **state)
{
    assert_true(match("*", "orders.created"));
    assert_true(match("*", "x"));
    assert_true(match("*", "*"));
    assert_true(match("*", ""));
}

static void test_type_is_compared_by_length_not_by_nul(void **state)
{
    /* The type slice is not NUL-terminated: only type_len bytes count. */
    const char buffer[] = "orders.createdGARBAGE";
    assert_true(event_pattern_match("orders.created", buffer, 14));
    assert_false(event_pattern_match("orders.created", buffer, 13));
    assert_false(event_pattern_match("orders.created", "orders.created\0x", 16));
}

static void test_valid_patterns_are_accepted(void **state)
{
    assert_true(valid("orders.created"));
    assert_true(valid("orders.*"));
    assert_true(valid("*"));
    assert_true(valid("a"));
    assert_true(valid("caf\xc3\xa9.*"));
    assert_true(valid("with space"));
}

static void test_invalid_patterns_are_refused(void **state)
{
    assert_false(valid(""));
    assert_false(event_pattern_valid(NULL, 0));
    assert_false(valid("orders.*.created"));
    assert_false(valid("*.created"));
    assert_false(valid("a**"));
    assert_false(valid("**"));
    assert_false(valid("orders\n"));
    assert_false(valid("orders\r.created"));
    assert_false(valid("\torders"));
    assert_false(valid("orders\x1b"));
    assert_false(valid("orders\x7f"));
    assert_false(event_pattern_valid("ab\0cd", 5));
}

static void test_pattern_length_limit_is_255_bytes(void **state)
{
    char text[EVENT_PATTERN_MAX + 2];
    memset(text, 'a', sizeof(text));

    assert_true(event_pattern_valid(text, EVENT_PATTERN_MAX));
    assert_false(event_pattern_valid(text, EVENT_PATTERN_MAX + 1));
    text[EVENT_PATTERN_MAX - 1] = '*';
    assert_true(event_pattern_valid(text, EVENT_PATTERN_MAX));
}

static void test_add_copies_and_refuses_duplicates_and_invalid(void **state)
{
    struct event_patterns list = {0};
    char buffer[] = "orders.*XYZ";

    assert_int_equal(event_patterns_add(&list, buffer, 8), 0);
    buffer[0] = 'O'; /* the list keeps its own copy */
    assert_int_equal(event_patterns_add(&list, "orders.*", 8), 0);
    assert_int_equal(list.count, 1);
    assert_string_equal(list.items[0], "orders.*");
    assert_int_equal(event_patterns_add(&list, "payments.settled", 16), 0);
    assert_int_equal(list.count, 2);
    assert_int_equal(event_patterns_add(&list, "a**", 3), -1);
    assert_int_equal(event_patterns_add(&list, "", 0), -1);
    assert_int_equal(list.count, 2);
    event_patterns_clear(&list);
    assert_null(list.items);
    assert_int_equal(list.count, 0);
}

static void test_list_matches_when_any_pattern_matches(void **state)
{
    struct event_patterns list = {0};

    assert_false(event_patterns_match(&list, "orders.created", 14));
    assert_false(event_patterns_match(NULL, "orders.created", 14));
    assert_int_equal(event_patterns_add(&list, "orders.*", 8), 0);
    assert_int_equal(event_patterns_add(&list, "payments.settled", 16), 0);
    assert_true(event_patterns_match(&list, "orders.created", 14));
    assert_true(event_patterns_match(&list, "payments.settled", 16));
    assert_false(event_patterns_match(&list, "payments.created", 16));
    assert_false(event_patterns_match(&list, "orders", 6));
    event_patterns_clear(&list);
}

static void test_merge_appends_without_duplicates(void **state)
{
    struct event_patterns a = {0}, b = {0};

    assert_int_equal(event_patterns_add(&a, "orders.*", 8), 0);
    assert_int_equal(event_patterns_add(&a, "x", 1), 0);
    assert_int_equal(event_patterns_add(&b, "x", 1), 0);
    assert_int_equal(event_patterns_add(&b, "payments.*", 10), 0);
    assert_int_equal(event_patterns_add(&b, "orders.*", 8), 0);

    assert_int_equal(event_patterns_merge(&a, &b), 0);
    assert_int_equal(a.count, 3);
    assert_string_equal(a.items[0], "orders.*");
    assert_string_equal(a.items[1], "x");
    assert_string_equal(a.items[2], "payments.*");
    assert_int_equal(b.count, 3); /* the source is unchanged */

    assert_int_equal(event_patterns_merge(&a, &a), 0);
    assert_int_equal(a.count, 3);
    assert_int_equal(event_patterns_merge(&a, NULL), 0);

    struct event_patterns empty = {0};
    assert_int_equal(event_patterns_merge(&empty, &b), 0);
    assert_int_equal(empty.count, 3);

    event_patterns_clear(&a);
    event_patterns_clear(&b);
    event_patterns_clear(&empty);
    event_patterns_clear(NULL);
}

static void test_many_patterns_grow_the_list(void **state)
{
    struct event_patterns list = {0};
    char name[32];

    for (int i = 0; i < 300; i++) {
        int n = snprintf(name, sizeof(name), "type.%d", i);
        assert_int_equal(event_patterns_add(&list, name, (size_t)n), 0);
    }
    assert_int_equal(list.count, 300);
    assert_true(event_patterns_match(&list, "type.299", 8));
    assert_false(event_patterns_match(&list, "type.300", 8));
    event_patterns_clear(&list);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exact_pattern_matches_only_the_same_type),
        cmocka_unit_test(test_trailing_wildcard_matches_types_under_the_prefix),
        cmocka_unit_test(test_wildcard_without_dot_is_a_plain_prefix),
        cmocka_unit_test(test_star_alone_matches_every_type),
        cmocka_unit_test(test_type_is_compared_by_length_not_by_nul),
        cmocka_unit_test(test_valid_patterns_are_accepted),
        cmocka_unit_test(test_invalid_patterns_are_refused),
        cmocka_unit_test(test_pattern_length_limit_is_255_bytes),
        cmocka_unit_test(test_add_copies_and_refuses_duplicates_and_invalid),
        cmocka_unit_test(test_list_matches_when_any_pattern_matches),
        cmocka_unit_test(test_merge_appends_without_duplicates),
        cmocka_unit_test(test_many_patterns_grow_the_list),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
