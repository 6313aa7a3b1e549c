/* Unit tests for common/auth/tokens.c: the tokens file rules and lookups. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "auth/tokens.h"

#define TOKEN_A "aaaaaaaaaaaaaaaa" /* exactly TOKENS_MIN_LEN */
#define TOKEN_B "bbbbbbbbbbbbbbbbbbbbbbbb"
#define TOKEN_C "0123456789abcdef0123456789abcdef"

static bool has(const struct tokens *set, const char *token)
{
    return tokens_contains(set, token, strlen(token));
}

static struct tokens *parse_text(const char *text, struct tokens_stats *stats)
{
    struct tokens *set = tokens_parse(text, strlen(text), stats);
    assert_non_null(set);
    return set;
}

static void test_lf_and_crlf_line_endings_both_accepted(void **state)
{
    struct tokens_stats stats;
    struct tokens *set = parse_text(TOKEN_A "\r\n" TOKEN_B "\n" TOKEN_C "\r\n", &stats);

    assert_int_equal(stats.accepted, 3);
    assert_int_equal(tokens_count(set), 3);
    assert_true(has(set, TOKEN_A));
    assert_true(has(set, TOKEN_B));
    assert_true(has(set, TOKEN_C));
    /* The CR is a line ending, not part of the token. */
    assert_false(has(set, TOKEN_A "\r"));
    tokens_free(set);
}

static void test_cr_only_line_endings_give_every_token_with_its_roles(void **state)
{
    struct tokens_stats stats;
    const char *roles;
    struct tokens *set = parse_text(TOKEN_A " reader\r" TOKEN_B "\r\r" TOKEN_C "\r", &stats);

    assert_int_equal(stats.accepted, 3);
    assert_true(has(set, TOKEN_A));
    assert_true(has(set, TOKEN_B));
    assert_true(has(set, TOKEN_C));
    assert_true(tokens_find(set, TOKEN_A, strlen(TOKEN_A), &roles));
    assert_string_equal(roles, "reader");
    tokens_free(set);
}

static void test_leading_and_trailing_blanks_are_trimmed(void **state)
{
    struct tokens_stats stats;
    struct tokens *set = parse_text("  \t" TOKEN_A " \t \n" TOKEN_B "   \r\n", &stats);

    assert_int_equal(stats.accepted, 2);
    assert_true(has(set, TOKEN_A));
    assert_true(has(set, TOKEN_B));
    assert_false(has(set, "  \t" TOKEN_A));
    tokens_free(set);
}

static void test_comments_and_blank_lines_are_ignored_without_counting(void **state)
{
    struct tokens_stats stats;
    struct tokens *set = parse_text("# a comment that is long enough to be a token\n"
                                    "\n"
                                    "   \t  \n"
                                    "\r\n"
                                    "   # indented comment also long enough\n" TOKEN_A "\n",
                                    &stats);

    assert_int_equal(stats.accepted, 1);
    assert_int_equal(stats.too_short, 0);
    assert_int_equal(stats.too_long, 0);
    assert_true(has(set, TOKEN_A));
    assert_false(has(set, "# a comment that is long enough to be a token"));
    assert_false(has(set, "#"));
    tokens_free(set);
}

static void test_hash_inside_a_token_is_part_of_it(void **state)
{
    struct tokens *set = parse_text("abc#defghijklmnopq\n", NULL);

    assert_true(has(set, "abc#defghijklmnopq"));
    tokens_free(set);
}

static void test_short_lines_are_ignored_and_counted(void **state)
{
    struct tokens_stats stats;
    struct tokens *set = parse_text("short\n"
                                    "aaaaaaaaaaaaaaa\n" /* 15 bytes: one under the minimum */
                                    "x\n" TOKEN_A "\n",
                                    &stats);

    assert_int_equal(stats.too_short, 3);
    assert_int_equal(stats.accepted, 1);
    assert_false(has(set, "short"));
    assert_false(has(set, "aaaaaaaaaaaaaaa"));
    assert_true(has(set, TOKEN_A));
    tokens_free(set);
}

static void test_long_lines_are_ignored_and_counted(void **state)
{
    size_t text_len = (TOKENS_MAX_LEN + 1) + 1 + TOKENS_MAX_LEN + 1;
    char *text = malloc(text_len);
    assert_non_null(text);
    memset(text, 'L', TOKENS_MAX_LEN + 1);
    text[TOKENS_MAX_LEN + 1] = '\n';
    memset(text + TOKENS_MAX_LEN + 2, 'M', TOKENS_MAX_LEN);
    text[text_len - 1] = '\n';

    struct tokens_stats stats;
    struct tokens *set = tokens_parse(text, text_len, &stats);
    assert_non_null(set);
    assert_int_equal(stats.too_long, 1);
    assert_int_equal(stats.accepted, 1);
    assert_true(tokens_contains(set, text + TOKENS_MAX_LEN + 2, TOKENS_MAX_LEN));
    assert_false(tokens_contains(set, text, TOKENS_MAX_LEN + 1));
    assert_false(tokens_contains(set, text, TOKENS_MAX_LEN));
    tokens_free(set);
    free(text);
}

static void test_only_the_first_field_is_the_token(void **state)
{
    struct tokens_stats stats;
    struct tokens *set = parse_text(TOKEN_A " role1,role2\n" TOKEN_B "\tpublish subscribe\n"
                                            "short role-making-the-line-long-enough\n",
                                    &stats);

    assert_int_equal(stats.accepted, 2);
    assert_int_equal(stats.too_short, 1);
    assert_true(has(set, TOKEN_A));
    assert_true(has(set, TOKEN_B));
    assert_false(has(set, TOKEN_A " role1,role2"));
    assert_false(has(set, "role-making-the-line-long-enough"));
    tokens_free(set);
}

static void test_duplicates_are_counted_once(void **state)
{
    struct tokens_stats stats;
    struct tokens *set = parse_text(
        TOKEN_A "\n" TOKEN_B "\n" TOKEN_A "\r\n  " TOKEN_A " opts\n" TOKEN_B "\n", &stats);

    assert_int_equal(stats.accepted, 2);
    assert_int_equal(tokens_count(set), 2);
    assert_true(has(set, TOKEN_A));
    assert_true(has(set, TOKEN_B));
    tokens_free(set);
}

static void test_last_line_without_newline_is_read(void **state)
{
    struct tokens_stats stats;
    struct tokens *set = parse_text(TOKEN_A "\n" TOKEN_B, &stats);

    assert_int_equal(stats.accepted, 2);
    assert_true(has(set, TOKEN_B));
    tokens_free(set);

    set = parse_text(TOKEN_C "\r", &stats);
    assert_int_equal(stats.accepted, 1);
    assert_true(has(set, TOKEN_C));
    tokens_free(set);
}

static void test_empty_text_gives_an_empty_set(void **state)
{
    struct tokens_stats stats = {7, 7, 7};
    struct tokens *set = tokens_parse("", 0, &stats);

    assert_non_null(set);
    assert_int_equal(tokens_count(set), 0);
    assert_int_equal(stats.accepted, 0);
    assert_int_equal(stats.too_short, 0);
    assert_int_equal(stats.too_long, 0);
    assert_false(has(set, TOKEN_A));
    tokens_free(set);

    set = tokens_parse(NULL, 0, NULL);
    assert_non_null(set);
    assert_int_equal(tokens_count(set), 0);
    tokens_free(set);
}

static void test_parse_reads_only_len_bytes(void **state)
{
    const char text[] = TOKEN_A "\n" TOKEN_B "\n";
    struct tokens_stats stats;
    /* Cut inside TOKEN_B: the rest is a 4-byte line. */
    struct tokens *set = tokens_parse(text, strlen(TOKEN_A) + 1 + 4, &stats);

    assert_non_null(set);
    assert_int_equal(stats.accepted, 1);
    assert_int_equal(stats.too_short, 1);
    assert_false(has(set, TOKEN_B));
    tokens_free(set);
}

static void test_line_with_nul_byte_is_ignored_without_counting(void **state)
{
    const char text[] = TOKEN_A "\0" TOKEN_B "\n" TOKEN_C "\n";
    struct tokens_stats stats;
    struct tokens *set = tokens_parse(text, sizeof(text) - 1, &stats);

    assert_non_null(set);
    assert_int_equal(stats.accepted, 1);
    assert_int_equal(stats.too_short, 0);
    assert_int_equal(stats.too_long, 0);
    assert_false(has(set, TOKEN_A));
    assert_false(tokens_contains(set, text, strlen(TOKEN_A) + 1 + strlen(TOKEN_B)));
    assert_true(has(set, TOKEN_C));
    tokens_free(set);
}

static void test_contains_is_false_for_unknown_tokens(void **state)
{
    struct tokens *set = parse_text(TOKEN_A "\n" TOKEN_C "\n", NULL);

    assert_true(has(set, TOKEN_C));
    assert_false(has(set, TOKEN_B));
    assert_false(has(set, "ABCDEF0123456789abcdef0123456789"));
    assert_false(has(set, ""));
    assert_false(tokens_contains(set, NULL, 0));
    assert_false(tokens_contains(set, NULL, 20));
    tokens_free(set);
}

static void test_prefix_or_suffix_of_a_token_is_not_accepted(void **state)
{
    struct tokens *set = parse_text(TOKEN_C "\n", NULL);
    const char *c = TOKEN_C;
    size_t n = strlen(c);

    assert_true(tokens_contains(set, c, n));
    assert_false(tokens_contains(set, c, n - 1));     /* prefix */
    assert_false(tokens_contains(set, c + 1, n - 1)); /* suffix */
    assert_false(has(set, TOKEN_C "0"));              /* extension */
    assert_false(has(set, "x" TOKEN_C));
    tokens_free(set);
}

static void test_null_and_empty_sets_contain_nothing(void **state)
{
    assert_false(has(NULL, TOKEN_A));
    assert_int_equal(tokens_count(NULL), 0);
    tokens_free(NULL);

    struct tokens *empty = tokens_new_empty();
    assert_non_null(empty);
    assert_int_equal(tokens_count(empty), 0);
    assert_false(has(empty, TOKEN_A));
    tokens_free(empty);
}

static void test_many_tokens_all_found(void **state)
{
    enum { N = 500 };
    char *text = malloc(N * 33 + 1);
    assert_non_null(text);
    size_t len = 0;
    for (int i = 0; i < N; i++) {
        len += (size_t)snprintf(text + len, 34, "token-%026d\n", i);
    }
    struct tokens_stats stats;
    struct tokens *set = tokens_parse(text, len, &stats);
    assert_non_null(set);
    assert_int_equal(stats.accepted, N);
    for (int i = 0; i < N; i++)
        assert_true(tokens_contains(set, text + (size_t)i * 33, 32));
    assert_false(has(set, "token-00000000000000000000000500"));
    tokens_free(set);
    free(text);
}

static void test_find_returns_the_roles_field_of_the_matching_line(void **state)
{
    (void)state;
    const char *roles = "unset";
    struct tokens *set =
        parse_text(TOKEN_A " writer,reader extra\n" TOKEN_B "\n" TOKEN_C "\tadmin\r\n", NULL);
    assert_true(tokens_find(set, TOKEN_A, strlen(TOKEN_A), &roles));
    assert_string_equal(roles, "writer,reader");
    assert_true(tokens_find(set, TOKEN_B, strlen(TOKEN_B), &roles));
    assert_null(roles);
    assert_true(tokens_find(set, TOKEN_C, strlen(TOKEN_C), &roles));
    assert_string_equal(roles, "admin");
    roles = "unset";
    assert_false(tokens_find(set, "not-a-token-at-all-xx", 21, &roles));
    assert_null(roles);
    tokens_free(set);
}

static void test_repeated_token_keeps_the_roles_of_its_first_line(void **state)
{
    (void)state;
    const char *roles = NULL;
    struct tokens *set = parse_text(TOKEN_B "\n" TOKEN_A " first\n" TOKEN_A " second\n", NULL);
    assert_int_equal(tokens_count(set), 2);
    assert_true(tokens_find(set, TOKEN_A, strlen(TOKEN_A), &roles));
    assert_string_equal(roles, "first");
    tokens_free(set);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lf_and_crlf_line_endings_both_accepted),
        cmocka_unit_test(test_cr_only_line_endings_give_every_token_with_its_roles),
        cmocka_unit_test(test_leading_and_trailing_blanks_are_trimmed),
        cmocka_unit_test(test_comments_and_blank_lines_are_ignored_without_counting),
        cmocka_unit_test(test_hash_inside_a_token_is_part_of_it),
        cmocka_unit_test(test_short_lines_are_ignored_and_counted),
        cmocka_unit_test(test_long_lines_are_ignored_and_counted),
        cmocka_unit_test(test_only_the_first_field_is_the_token),
        cmocka_unit_test(test_find_returns_the_roles_field_of_the_matching_line),
        cmocka_unit_test(test_repeated_token_keeps_the_roles_of_its_first_line),
        cmocka_unit_test(test_duplicates_are_counted_once),
        cmocka_unit_test(test_last_line_without_newline_is_read),
        cmocka_unit_test(test_empty_text_gives_an_empty_set),
        cmocka_unit_test(test_parse_reads_only_len_bytes),
        cmocka_unit_test(test_line_with_nul_byte_is_ignored_without_counting),
        cmocka_unit_test(test_contains_is_false_for_unknown_tokens),
        cmocka_unit_test(test_prefix_or_suffix_of_a_token_is_not_accepted),
        cmocka_unit_test(test_null_and_empty_sets_contain_nothing),
        cmocka_unit_test(test_many_tokens_all_found),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
