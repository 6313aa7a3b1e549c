/* Unit tests for common/auth/jwt_cache.c: the cache of verified tokens. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "auth/jwt_cache.h"

static void digest_of(const char *token, unsigned char digest[JWT_CACHE_DIGEST_LEN])
{
    assert_int_equal(jwt_cache_digest(token, strlen(token), digest), 0);
}

static void test_inserted_digest_is_found_and_others_are_not(void **state)
{
    struct jwt_cache *cache = jwt_cache_new(64);
    unsigned char a[JWT_CACHE_DIGEST_LEN], b[JWT_CACHE_DIGEST_LEN];
    assert_non_null(cache);
    digest_of("header.claims.signature", a);
    digest_of("header.claims.signaturf", b);
    assert_false(jwt_cache_contains(cache, a));
    jwt_cache_insert(cache, a);
    jwt_cache_insert(cache, a); /* once only */
    assert_int_equal(jwt_cache_count(cache), 1);
    assert_true(jwt_cache_contains(cache, a));
    assert_false(jwt_cache_contains(cache, b));
    jwt_cache_free(cache);
    jwt_cache_free(NULL);
}

static void test_invalidate_forgets_every_entry(void **state)
{
    struct jwt_cache *cache = jwt_cache_new(64);
    unsigned char d[JWT_CACHE_DIGEST_LEN];
    char token[32];
    for (int i = 0; i < 20; i++) {
        snprintf(token, sizeof token, "token-%d", i);
        digest_of(token, d);
        jwt_cache_insert(cache, d);
    }
    assert_true(jwt_cache_count(cache) > 0);
    jwt_cache_invalidate(cache);
    assert_int_equal(jwt_cache_count(cache), 0);
    for (int i = 0; i < 20; i++) {
        snprintf(token, sizeof token, "token-%d", i);
        digest_of(token, d);
        assert_false(jwt_cache_contains(cache, d));
    }
    jwt_cache_free(cache);
}

static void test_cache_holds_at_most_its_capacity_and_keeps_recent_entries(void **state)
{
    /* Capacity 4: one set, every digest competes for it. */
    struct jwt_cache *cache = jwt_cache_new(4);
    unsigned char keep[JWT_CACHE_DIGEST_LEN], d[JWT_CACHE_DIGEST_LEN];
    char token[32];
    digest_of("kept-in-use", keep);
    jwt_cache_insert(cache, keep);
    for (int i = 0; i < 1000; i++) {
        snprintf(token, sizeof token, "token-%d", i);
        digest_of(token, d);
        jwt_cache_insert(cache, d);
        assert_true(jwt_cache_contains(cache, keep)); /* used between every insert */
        assert_true(jwt_cache_count(cache) <= 4);
    }
    assert_int_equal(jwt_cache_count(cache), 4);
    jwt_cache_free(cache);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_inserted_digest_is_found_and_others_are_not),
        cmocka_unit_test(test_invalidate_forgets_every_entry),
        cmocka_unit_test(test_cache_holds_at_most_its_capacity_and_keeps_recent_entries),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
