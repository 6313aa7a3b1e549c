/* Unit tests for common/core/byte_budget.c: the shared budget of body bytes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "core/byte_budget.h"

static void test_reservations_fit_up_to_the_limit_and_not_beyond(void **state)
{
    struct byte_budget b = {.limit = 100};
    assert_true(byte_budget_reserve(&b, 60));
    assert_true(byte_budget_reserve(&b, 40));
    assert_int_equal(b.used, 100);
    assert_false(byte_budget_reserve(&b, 1));
    assert_true(byte_budget_reserve(&b, 0));
    assert_int_equal(b.used, 100); /* a refusal takes nothing */
    byte_budget_release(&b, 60);
    assert_true(byte_budget_reserve(&b, 50));
    assert_false(byte_budget_reserve(&b, 11));
    assert_int_equal(b.used, 90);
}

static void test_reserving_in_steps_is_bounded_like_at_once(void **state)
{
    struct byte_budget b = {.limit = 1000};
    int steps = 0;
    while (byte_budget_reserve(&b, 64))
        steps++;
    assert_int_equal(steps, 15);
    assert_int_equal(b.used, 960);
    byte_budget_release(&b, 960);
    assert_int_equal(b.used, 0);
}

static void test_huge_reservations_do_not_wrap_and_zero_means_no_limit(void **state)
{
    struct byte_budget b = {.limit = 100};
    assert_true(byte_budget_reserve(&b, 10));
    assert_false(byte_budget_reserve(&b, UINT64_MAX));
    assert_false(byte_budget_reserve(&b, UINT64_MAX - 5));
    assert_int_equal(b.used, 10);
    byte_budget_release(&b, 1000); /* more than held: never below zero */
    assert_int_equal(b.used, 0);
    struct byte_budget open = {.limit = 0};
    assert_true(byte_budget_reserve(&open, UINT64_C(1) << 40));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reservations_fit_up_to_the_limit_and_not_beyond),
        cmocka_unit_test(test_reserving_in_steps_is_bounded_like_at_once),
        cmocka_unit_test(test_huge_reservations_do_not_wrap_and_zero_means_no_limit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
