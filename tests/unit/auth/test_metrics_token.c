/* Unit tests for common/auth/metrics_token.c: what a metrics token file may hold. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "auth/metrics_token.h"

static void assert_token(const char *text, size_t len, const char *expected)
{
    size_t start = 99, token_len = 99;
    const char *reason = NULL;
    assert_int_equal(metrics_token_parse(text, len, &start, &token_len, &reason), 0);
    assert_null(reason);
    assert_int_equal(token_len, strlen(expected));
    assert_memory_equal(text + start, expected, token_len);
}

static void assert_refused(const char *text, size_t len, const char *expected_reason)
{
    size_t start = 99, token_len = 99;
    const char *reason = NULL;
    assert_int_equal(metrics_token_parse(text, len, &start, &token_len, &reason), -1);
    assert_string_equal(reason, expected_reason);
    assert_int_equal(start, 99); /* untouched */
    assert_int_equal(token_len, 99);
}

static void test_trailing_line_end_is_dropped_whichever_it_is(void **state)
{
    (void)state;
    assert_token("s3cret-token", 12, "s3cret-token");
    assert_token("s3cret-token\n", 13, "s3cret-token");
    assert_token("s3cret-token\r\n", 14, "s3cret-token");
    assert_token("s3cret-token\r", 13, "s3cret-token");
    assert_token("s3cret-token\n\n", 14, "s3cret-token");
}

static void test_blanks_around_the_token_are_dropped_but_kept_inside(void **state)
{
    (void)state;
    assert_token("  tok en \t\n", 11, "tok en");
    assert_token("\ntoken", 6, "token");
}

static void test_empty_file_is_refused(void **state)
{
    (void)state;
    assert_refused("", 0, "is empty");
    assert_refused(NULL, 0, "is empty");
    assert_refused("\n", 1, "is empty");
    assert_refused(" \t\r\n  \n", 7, "is empty");
}

static void test_more_than_one_line_is_refused(void **state)
{
    (void)state;
    assert_refused("first\nsecond\n", 13, "holds more than one line");
    assert_refused("first\rsecond", 12, "holds more than one line");
    assert_refused("first\r\n\r\nsecond", 15, "holds more than one line");
}

static void test_control_characters_are_refused(void **state)
{
    (void)state;
    assert_refused("tok\0en", 6, "holds a control character");
    assert_refused("tok\ten", 6, "holds a control character");
    assert_refused("tok\x1b[0men", 10, "holds a control character");
    assert_refused("tok\x7f", 4, "holds a control character");
    assert_token("t\xc3\xb6ken", 6, "t\xc3\xb6ken"); /* bytes over 0x7f are kept */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_trailing_line_end_is_dropped_whichever_it_is),
        cmocka_unit_test(test_blanks_around_the_token_are_dropped_but_kept_inside),
        cmocka_unit_test(test_empty_file_is_refused),
        cmocka_unit_test(test_more_than_one_line_is_refused),
        cmocka_unit_test(test_control_characters_are_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
