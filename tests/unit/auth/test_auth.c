/* Unit tests for common/auth/auth.c: credential splitting and checking. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "auth/auth.h"
#include "auth/roles.h"

#define GOOD_TOKEN "0123456789abcdef0123"
#define OTHER_TOKEN "zyxwvutsrqponmlkjihg"

static int parse(const char *text, struct auth_credential *out)
{
    return auth_parse(text, strlen(text), out);
}

static int check(const struct tokens *set, const char *text)
{
    return auth_check(set, text, strlen(text));
}

static void assert_token(const struct auth_credential *c, const char *expected)
{
    assert_int_equal(c->scheme, AUTH_SCHEME_BASIC);
    assert_int_equal(c->token_len, strlen(expected));
    assert_memory_equal(c->token, expected, c->token_len);
}

static int make_set(void **state)
{
    const char text[] = GOOD_TOKEN "\n" OTHER_TOKEN "\n";
    *state = tokens_parse(text, sizeof(text) - 1, NULL);
    return *state == NULL ? -1 : 0;
}

static int free_set(void **state)
{
    tokens_free(*state);
    return 0;
}

static void test_basic_scheme_splits_token(void **state)
{
    struct auth_credential c;

    assert_int_equal(parse("Basic " GOOD_TOKEN, &c), AUTH_OK);
    assert_token(&c, GOOD_TOKEN);
}

static void test_scheme_is_case_insensitive(void **state)
{
    struct auth_credential c;

    assert_int_equal(parse("basic abc", &c), AUTH_OK);
    assert_token(&c, "abc");
    assert_int_equal(parse("BASIC abc", &c), AUTH_OK);
    assert_token(&c, "abc");
    assert_int_equal(parse("bAsIc abc", &c), AUTH_OK);
    assert_token(&c, "abc");
}

static void test_blanks_around_scheme_and_token_are_trimmed(void **state)
{
    struct auth_credential c;

    assert_int_equal(parse(" \tBasic \t  tok-en \t ", &c), AUTH_OK);
    assert_token(&c, "tok-en");
    assert_int_equal(parse("Basic\ttok", &c), AUTH_OK);
    assert_token(&c, "tok");
}

static void test_inner_blanks_stay_in_the_token(void **state)
{
    struct auth_credential c;

    assert_int_equal(parse("Basic ab cd ", &c), AUTH_OK);
    assert_token(&c, "ab cd");
}

static void test_token_points_into_the_given_text(void **state)
{
    const char *text = "Basic xyz";
    struct auth_credential c;

    assert_int_equal(auth_parse(text, strlen(text), &c), AUTH_OK);
    assert_ptr_equal(c.token, text + 6);
}

static void test_absent_or_empty_credential_is_unauthenticated(void **state)
{
    struct auth_credential c;

    assert_int_equal(auth_parse(NULL, 0, &c), AUTH_UNAUTHENTICATED);
    assert_int_equal(auth_parse(NULL, 5, &c), AUTH_UNAUTHENTICATED);
    assert_int_equal(parse("", &c), AUTH_UNAUTHENTICATED);
    assert_int_equal(parse("   \t ", &c), AUTH_UNAUTHENTICATED);
}

static void test_basic_without_token_is_unauthenticated(void **state)
{
    struct auth_credential c;

    assert_int_equal(parse("Basic", &c), AUTH_UNAUTHENTICATED);
    assert_int_equal(parse("Basic ", &c), AUTH_UNAUTHENTICATED);
    assert_int_equal(parse("basic \t  ", &c), AUTH_UNAUTHENTICATED);
}

static void test_other_scheme_is_unrecognized_even_without_token(void **state)
{
    struct auth_credential c;

    assert_int_equal(parse("Digest   ", &c), AUTH_UNRECOGNIZED_SCHEME);
    assert_int_equal(parse("Token " GOOD_TOKEN, &c), AUTH_UNRECOGNIZED_SCHEME);
    /* A bare token with no scheme is read as an unknown scheme. */
    assert_int_equal(parse(GOOD_TOKEN, &c), AUTH_UNRECOGNIZED_SCHEME);
}

static void test_scheme_must_match_exactly(void **state)
{
    struct auth_credential c;

    assert_int_equal(parse("Basics abc", &c), AUTH_UNRECOGNIZED_SCHEME);
    assert_int_equal(parse("Basi abc", &c), AUTH_UNRECOGNIZED_SCHEME);
    assert_int_equal(parse("Basic:abc", &c), AUTH_UNRECOGNIZED_SCHEME);
    /* Only space and tab separate; a newline is part of the scheme. */
    assert_int_equal(parse("Basic\nabc", &c), AUTH_UNRECOGNIZED_SCHEME);
}

static void test_parse_reads_only_len_bytes(void **state)
{
    struct auth_credential c;
    const char text[] = "Basic abcdef";

    assert_int_equal(auth_parse(text, 9, &c), AUTH_OK);
    assert_token(&c, "abc");
    assert_int_equal(auth_parse(text, 3, &c), AUTH_UNRECOGNIZED_SCHEME);
    /* Not NUL-terminated: a NUL inside is just a byte. */
    const char with_nul[] = "Basic ab\0cd";
    assert_int_equal(auth_parse(with_nul, sizeof(with_nul) - 1, &c), AUTH_OK);
    assert_int_equal(c.token_len, 5);
}

static void test_check_accepts_a_known_token(void **state)
{
    assert_int_equal(check(*state, "Basic " GOOD_TOKEN), AUTH_OK);
    assert_int_equal(check(*state, "basic   " OTHER_TOKEN "  "), AUTH_OK);
}

static void test_check_rejects_an_unknown_token(void **state)
{
    assert_int_equal(check(*state, "Basic " GOOD_TOKEN "x"), AUTH_UNAUTHENTICATED);
    assert_int_equal(check(*state, "Basic 0123456789abcdef012"), AUTH_UNAUTHENTICATED);
    assert_int_equal(check(*state, "Basic " GOOD_TOKEN " extra"), AUTH_UNAUTHENTICATED);
}

static void test_check_passes_parse_failures_through(void **state)
{
    assert_int_equal(check(*state, "Bearer " GOOD_TOKEN), AUTH_UNRECOGNIZED_SCHEME);
    assert_int_equal(check(*state, "Basic"), AUTH_UNAUTHENTICATED);
    assert_int_equal(check(*state, ""), AUTH_UNAUTHENTICATED);
    assert_int_equal(auth_check(*state, NULL, 0), AUTH_UNAUTHENTICATED);
}

static void test_check_without_a_token_set_rejects_everything(void **state)
{
    assert_int_equal(check(NULL, "Basic " GOOD_TOKEN), AUTH_UNAUTHENTICATED);
    assert_int_equal(check(NULL, "Bearer " GOOD_TOKEN), AUTH_UNRECOGNIZED_SCHEME);
}

static void test_result_codes_are_the_wire_names(void **state)
{
    assert_string_equal(auth_result_code(AUTH_OK), "OK");
    assert_string_equal(auth_result_code(AUTH_UNAUTHENTICATED), "UNAUTHENTICATED");
    assert_string_equal(auth_result_code(AUTH_UNRECOGNIZED_SCHEME), "AUTH_UNRECOGNIZED_SCHEME");
    assert_string_equal(auth_result_code(AUTH_TOO_MANY_FAILURES), "TOO_MANY_AUTH_FAILURES");
    assert_string_equal(auth_result_code(-99), "UNAUTHENTICATED");
    assert_string_equal(auth_result_code(7), "UNAUTHENTICATED");
}

static void test_bearer_is_parsed_as_its_own_scheme(void **state)
{
    struct auth_credential c;

    assert_int_equal(parse("bearer " GOOD_TOKEN, &c), AUTH_OK);
    assert_int_equal(c.scheme, AUTH_SCHEME_BEARER);
    assert_int_equal(parse("Bearer", &c), AUTH_UNAUTHENTICATED);
}

static void test_check_refuses_bearer_as_unrecognized(void **state)
{
    struct tokens *set = tokens_parse(GOOD_TOKEN "\n", strlen(GOOD_TOKEN) + 1, NULL);
    const char *text = "Bearer " GOOD_TOKEN;
    assert_int_equal(auth_check(set, text, strlen(text)), AUTH_UNRECOGNIZED_SCHEME);
    tokens_free(set);
}

static void test_refused_public_key_checks_never_hold_back_basic_tokens(void **state)
{
    struct auth_sources sources = {.tokens = *state};
    struct jwt_cost cost = {.public_key_refused = true, true, true};
    struct auth_identity identity;
    const char *good = "Basic " GOOD_TOKEN, *bad = "Basic nope-nope-nope-nope";

    assert_int_equal(auth_authenticate_bounded(&sources, good, strlen(good), 0, &cost, &identity),
                     AUTH_OK);
    assert_false(cost.public_key_checked);
    assert_false(cost.public_key_failed);
    auth_identity_clear(&identity);
    assert_int_equal(auth_authenticate_bounded(&sources, bad, strlen(bad), 0, &cost, &identity),
                     AUTH_UNAUTHENTICATED);
    assert_false(cost.public_key_failed);
}

/* What a recheck after a reload relies on: a Basic identity depends on the
 * tokens file, and on the roles file only when its line names roles. */
static void test_basic_identity_depends_on_the_tokens_file_and_its_roles(void **state)
{
    const char tokens_text[] = GOOD_TOKEN "\n" OTHER_TOKEN " readers\n";
    const char roles_text[] = "readers subscribe orders.*\n";
    char err[128];
    struct auth_sources sources;
    struct auth_identity identity;
    const char plain[] = "Basic " GOOD_TOKEN, with_roles[] = "Basic " OTHER_TOKEN;

    memset(&sources, 0, sizeof sources);
    sources.tokens = tokens_parse(tokens_text, sizeof(tokens_text) - 1, NULL);
    sources.roles = roles_parse(roles_text, sizeof(roles_text) - 1, err, sizeof err);
    assert_non_null(sources.tokens);
    assert_non_null(sources.roles);
    assert_int_equal(auth_authenticate(&sources, plain, strlen(plain), 0, &identity), AUTH_OK);
    assert_int_equal(identity.depends_on, AUTH_SOURCE_TOKENS);
    auth_identity_clear(&identity);
    assert_int_equal(auth_authenticate(&sources, with_roles, strlen(with_roles), 0, &identity),
                     AUTH_OK);
    assert_int_equal(identity.depends_on, AUTH_SOURCE_TOKENS | AUTH_SOURCE_ROLES);
    auth_identity_clear(&identity);
    tokens_free((struct tokens *)sources.tokens);
    roles_free((struct roles *)sources.roles);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basic_scheme_splits_token),
        cmocka_unit_test(test_scheme_is_case_insensitive),
        cmocka_unit_test(test_blanks_around_scheme_and_token_are_trimmed),
        cmocka_unit_test(test_inner_blanks_stay_in_the_token),
        cmocka_unit_test(test_token_points_into_the_given_text),
        cmocka_unit_test(test_absent_or_empty_credential_is_unauthenticated),
        cmocka_unit_test(test_basic_without_token_is_unauthenticated),
        cmocka_unit_test(test_other_scheme_is_unrecognized_even_without_token),
        cmocka_unit_test(test_bearer_is_parsed_as_its_own_scheme),
        cmocka_unit_test(test_check_refuses_bearer_as_unrecognized),
        cmocka_unit_test(test_scheme_must_match_exactly),
        cmocka_unit_test(test_parse_reads_only_len_bytes),
        cmocka_unit_test_setup_teardown(test_check_accepts_a_known_token, make_set, free_set),
        cmocka_unit_test_setup_teardown(test_check_rejects_an_unknown_token, make_set, free_set),
        cmocka_unit_test_setup_teardown(test_check_passes_parse_failures_through, make_set,
                                        free_set),
        cmocka_unit_test(test_check_without_a_token_set_rejects_everything),
        cmocka_unit_test(test_result_codes_are_the_wire_names),
        cmocka_unit_test_setup_teardown(test_refused_public_key_checks_never_hold_back_basic_tokens,
                                        make_set, free_set),
        cmocka_unit_test(test_basic_identity_depends_on_the_tokens_file_and_its_roles),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
