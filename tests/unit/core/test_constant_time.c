/* Unit tests for common/core/constant_time.c: equality of byte strings,
 * as 1 or 0 exactly. (Its timing is not asserted here: a unit test cannot
 * measure it reliably; the code has no branch on the bytes.) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/constant_time.h"

static void test_equal_bytes_give_one(void **state)
{
    unsigned char a[64], b[64];
    for (size_t i = 0; i < sizeof a; i++)
        a[i] = b[i] = (unsigned char)(i * 37 + 11);
    assert_int_equal(constant_time_equal(a, b, sizeof a), 1);
    assert_int_equal(constant_time_equal(a, a, sizeof a), 1);
}

static void test_any_single_differing_bit_gives_zero(void **state)
{
    unsigned char a[32], b[32];
    memset(a, 0xa5, sizeof a);
    for (size_t i = 0; i < sizeof a; i++) {
        for (int bit = 0; bit < 8; bit++) {
            memcpy(b, a, sizeof b);
            b[i] ^= (unsigned char)(1u << bit);
            assert_int_equal(constant_time_equal(a, b, sizeof a), 0);
            assert_int_equal(constant_time_equal(b, a, sizeof a), 0);
        }
    }
}

static void test_bytes_that_differ_everywhere_give_zero(void **state)
{
    unsigned char zeros[16] = {0}, ones[16];
    memset(ones, 0xff, sizeof ones);
    assert_int_equal(constant_time_equal(zeros, ones, sizeof zeros), 0);
}

static void test_only_the_first_len_bytes_count(void **state)
{
    const char *a = "secret-AAAA", *b = "secret-BBBB";
    assert_int_equal(constant_time_equal(a, b, 7), 1);
    assert_int_equal(constant_time_equal(a, b, 8), 0);
    assert_int_equal(constant_time_equal(a, b, 0), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_equal_bytes_give_one),
        cmocka_unit_test(test_any_single_differing_bit_gives_zero),
        cmocka_unit_test(test_bytes_that_differ_everywhere_give_zero),
        cmocka_unit_test(test_only_the_first_len_bytes_count),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
