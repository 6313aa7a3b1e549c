/* Unit tests for common/core/rate_limit.c: token buckets alone and per key. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "core/rate_limit.h"

#define T0 UINT64_C(1000000) /* any monotonic clock: it need not start at 0 */

static const struct rate_limit five_then_one_per_100ms = {100, 5};

static void test_bucket_allows_its_burst_at_once_then_one_per_interval(void **state)
{
    struct rate_bucket b = {0};
    for (int i = 0; i < 5; i++)
        assert_true(rate_bucket_take(&b, &five_then_one_per_100ms, T0));
    assert_false(rate_bucket_take(&b, &five_then_one_per_100ms, T0));
    assert_false(rate_bucket_take(&b, &five_then_one_per_100ms, T0 + 99));
    assert_true(rate_bucket_take(&b, &five_then_one_per_100ms, T0 + 100));
    assert_false(rate_bucket_take(&b, &five_then_one_per_100ms, T0 + 150));
    assert_true(rate_bucket_take(&b, &five_then_one_per_100ms, T0 + 200));
    /* Left alone for its whole window, it is full again: five at once. */
    for (int i = 0; i < 5; i++)
        assert_true(rate_bucket_take(&b, &five_then_one_per_100ms, T0 + 10000));
    assert_false(rate_bucket_allows(&b, &five_then_one_per_100ms, T0 + 10000));
}

static void test_charging_past_the_burst_keeps_the_bucket_empty_longer(void **state)
{
    struct rate_bucket b = {0};
    for (int i = 0; i < 15; i++)
        rate_bucket_charge(&b, &five_then_one_per_100ms, T0);
    /* 15 counted where 5 fit: the next one fits 11 intervals later, where
     * after exactly 5 it would have fitted after one. */
    assert_false(rate_bucket_allows(&b, &five_then_one_per_100ms, T0 + 1099));
    assert_true(rate_bucket_allows(&b, &five_then_one_per_100ms, T0 + 1100));
}

static void test_burst_of_one_is_one_per_interval(void **state)
{
    const struct rate_limit one = {1000, 1};
    struct rate_bucket b = {0};
    assert_true(rate_bucket_take(&b, &one, T0));
    assert_false(rate_bucket_take(&b, &one, T0 + 999));
    assert_true(rate_bucket_take(&b, &one, T0 + 1000));
}

static void test_table_keeps_one_bucket_per_key(void **state)
{
    struct rate_table *t = rate_table_new(64, &five_then_one_per_100ms, 7);
    assert_non_null(t);
    assert_true(rate_table_allows(t, 42, T0)); /* never seen: full */
    for (int i = 0; i < 5; i++)
        rate_table_charge(t, 42, T0);
    assert_false(rate_table_allows(t, 42, T0));
    assert_true(rate_table_allows(t, 43, T0));
    assert_int_equal(rate_table_tracked(t, T0), 1);
    assert_true(rate_table_allows(t, 42, T0 + 100));
    /* Full again after its window: no longer tracked. */
    assert_int_equal(rate_table_tracked(t, T0 + 500), 0);
    rate_table_free(t);
    rate_table_free(NULL);
}

static void test_table_is_bounded_and_evicts_the_bucket_nearest_to_full(void **state)
{
    /* One set of four slots: every key competes for it. */
    struct rate_table *t = rate_table_new(4, &five_then_one_per_100ms, 1);
    assert_non_null(t);
    for (int i = 0; i < 50; i++)
        rate_table_charge(t, 1, T0); /* an exhausted key */
    for (uint64_t key = 100; key < 1100; key++)
        rate_table_charge(t, key, T0); /* a thousand others, charged once each */
    assert_true(rate_table_tracked(t, T0) <= 4);
    /* The churn evicted the keys nearest to full, never the exhausted one. */
    assert_false(rate_table_allows(t, 1, T0 + 1000));
    assert_true(rate_table_allows(t, 1, T0 + 4600));
    rate_table_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bucket_allows_its_burst_at_once_then_one_per_interval),
        cmocka_unit_test(test_charging_past_the_burst_keeps_the_bucket_empty_longer),
        cmocka_unit_test(test_burst_of_one_is_one_per_interval),
        cmocka_unit_test(test_table_keeps_one_bucket_per_key),
        cmocka_unit_test(test_table_is_bounded_and_evicts_the_bucket_nearest_to_full),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
