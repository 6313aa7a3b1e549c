/* Unit tests for listen/sent_history.c: the listen daemon's bounded record
 * of the events it sent, for broadcast daemons that connect later. Each
 * bound evicts the oldest entries, and every entry that goes is released
 * exactly once, to its owner. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "sent_history.h"

#define OWNERS 300

/* releases[i]: how often the owner of the entry numbered i was released. */
static int releases[OWNERS + 1];

static void release(void *owner)
{
    releases[(int *)owner - releases]++;
}

static int setup(void **state)
{
    memset(releases, 0, sizeof releases);
    return 0;
}

static bool append(struct sent_history *h, uint64_t number, uint64_t at_ms, size_t message_len)
{
    static const char message[4096];
    struct sent_entry e = {number, at_ms, "t", 1, message, message_len, &releases[number]};
    return sent_history_append(h, &e);
}

/* The numbers retained, oldest first, must be first..last. */
static void assert_holds(const struct sent_history *h, uint64_t first, uint64_t last)
{
    assert_int_equal(sent_history_count(h), last - first + 1);
    for (uint64_t n = first; n <= last; n++)
        assert_int_equal(sent_history_at(h, n - first)->number, n);
    assert_null(sent_history_at(h, last - first + 1));
}

static void test_the_count_bound_evicts_the_oldest_and_releases_each_once(void **state)
{
    const struct history_limits limits = {100, 1 << 30, 60000};
    struct sent_history *h = sent_history_new(&limits, release);
    assert_non_null(h);
    for (uint64_t n = 1; n <= 250; n++) /* past the ring's first sizes, around it */
        assert_true(append(h, n, 0, 10));
    assert_holds(h, 151, 250);
    for (int n = 1; n <= 150; n++)
        assert_int_equal(releases[n], 1);
    for (int n = 151; n <= 250; n++)
        assert_int_equal(releases[n], 0);
    sent_history_free(h);
    for (int n = 1; n <= 250; n++)
        assert_int_equal(releases[n], 1);
}

static void test_the_byte_bound_counts_the_message_type_and_entry(void **state)
{
    const size_t cost = sizeof(struct sent_entry) + 1 + 1000;
    const struct history_limits limits = {1000, 3 * cost, 60000};
    struct sent_history *h = sent_history_new(&limits, release);
    assert_non_null(h);
    for (uint64_t n = 1; n <= 3; n++)
        assert_true(append(h, n, 0, 1000));
    assert_int_equal(sent_history_bytes(h), 3 * cost);
    assert_holds(h, 1, 3);
    assert_true(append(h, 4, 0, 1000)); /* a fourth would pass the bound: the oldest goes */
    assert_holds(h, 2, 4);
    assert_int_equal(releases[1], 1);
    /* An entry over the bound by itself is not kept, and costs nothing. */
    assert_false(append(h, 5, 0, 4096));
    assert_holds(h, 2, 4);
    assert_int_equal(releases[5], 0);
    sent_history_free(h);
}

static void test_the_ttl_evicts_by_age_and_names_the_next_expiry(void **state)
{
    const struct history_limits limits = {1000, 1 << 30, 1000};
    struct sent_history *h = sent_history_new(&limits, release);
    assert_non_null(h);
    assert_int_equal(sent_history_expire(h, 5000), 0); /* empty: nothing to arm */
    assert_true(append(h, 1, 100, 1));
    assert_true(append(h, 2, 600, 1));
    assert_int_equal(sent_history_expire(h, 1099), 1100);
    assert_holds(h, 1, 2);
    assert_int_equal(sent_history_expire(h, 1100), 1600);
    assert_holds(h, 2, 2);
    assert_int_equal(releases[1], 1);
    assert_int_equal(sent_history_expire(h, 9000), 0);
    assert_int_equal(sent_history_count(h), 0);
    assert_int_equal(sent_history_bytes(h), 0);
    assert_int_equal(releases[2], 1);
    sent_history_free(h);
}

static void test_history_off_keeps_nothing(void **state)
{
    const struct history_limits off = {0, 1 << 30, 60000};
    struct sent_history *h = sent_history_new(&off, release);
    assert_non_null(h);
    assert_false(append(h, 1, 0, 1));
    assert_int_equal(sent_history_count(h), 0);
    sent_history_free(h);
    assert_int_equal(releases[1], 0); /* the caller kept it */
    sent_history_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_the_count_bound_evicts_the_oldest_and_releases_each_once,
                               setup),
        cmocka_unit_test_setup(test_the_byte_bound_counts_the_message_type_and_entry, setup),
        cmocka_unit_test_setup(test_the_ttl_evicts_by_age_and_names_the_next_expiry, setup),
        cmocka_unit_test_setup(test_history_off_keeps_nothing, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
