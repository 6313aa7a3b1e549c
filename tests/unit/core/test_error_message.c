/* Unit tests for common/core/error_message.c: a reason formatted into the
 * caller's buffer, bounded and terminated. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/error_message.h"

static void test_formats_like_printf(void **state)
{
    char err[64];
    error_message_format(err, sizeof err, "line %d: %s", 12, "bad value");
    assert_string_equal(err, "line 12: bad value");
}

static void test_a_long_reason_is_truncated_and_terminated(void **state)
{
    char err[8];
    memset(err, 'x', sizeof err);
    error_message_format(err, sizeof err, "%s", "a reason longer than the buffer");
    assert_string_equal(err, "a reaso");
}

static void test_no_buffer_is_left_alone(void **state)
{
    char err[4] = "old";
    error_message_format(NULL, 16, "%s", "ignored"); /* must not crash */
    error_message_format(err, 0, "%s", "ignored");
    assert_string_equal(err, "old");
}

/* A function with a format of its own, as callers write them. */
static void __attribute__((format(printf, 3, 4)))
wrapper(char *err, size_t err_len, const char *format, ...)
{
    va_list ap;
    va_start(ap, format);
    error_message_vformat(err, err_len, format, ap);
    va_end(ap);
}

static void test_vformat_takes_the_callers_arguments(void **state)
{
    char err[32];
    wrapper(err, sizeof err, "%s=%u", "limit", 42u);
    assert_string_equal(err, "limit=42");
    wrapper(err, 4, "%s", "truncated");
    assert_string_equal(err, "tru");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_formats_like_printf),
        cmocka_unit_test(test_a_long_reason_is_truncated_and_terminated),
        cmocka_unit_test(test_no_buffer_is_left_alone),
        cmocka_unit_test(test_vformat_takes_the_callers_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
