/* Unit tests for common/core/text_lines.c: the line rules of the tokens, roles
 * and secrets files. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/text_lines.h"

#define MAX_LINES 16

struct read_lines {
    size_t count;
    char text[MAX_LINES][64];
    size_t number[MAX_LINES];
};

/* Every line of text[0..len), copied out so that tests compare strings. */
static struct read_lines read_all(const char *text, size_t len)
{
    struct read_lines got;
    struct text_lines lines;
    struct text_line line;
    memset(&got, 0, sizeof got);
    text_lines_init(&lines, text, len);
    while (text_lines_next(&lines, &line)) {
        assert_true(got.count < MAX_LINES);
        assert_true(line.len > 0 && line.len < sizeof got.text[0]);
        assert_true(line.text >= text && line.text + line.len <= text + len);
        memcpy(got.text[got.count], line.text, line.len);
        got.number[got.count++] = line.number;
    }
    return got;
}

static struct read_lines read_string(const char *text)
{
    return read_all(text, strlen(text));
}

static void assert_lines(const struct read_lines *got, size_t count, const char *const *texts,
                         const size_t *numbers)
{
    assert_int_equal(got->count, count);
    for (size_t i = 0; i < count; i++) {
        assert_string_equal(got->text[i], texts[i]);
        assert_int_equal(got->number[i], numbers[i]);
    }
}

static void test_lf_crlf_and_cr_each_end_a_line(void **state)
{
    static const char *const texts[] = {"one", "two", "three", "four"};
    static const size_t numbers[] = {1, 2, 3, 4};
    struct read_lines got = read_string("one\ntwo\r\nthree\rfour");
    assert_lines(&got, 4, texts, numbers);
}

static void test_a_file_with_only_cr_endings_gives_every_line(void **state)
{
    static const char *const texts[] = {"alpha", "beta", "gamma"};
    static const size_t numbers[] = {1, 2, 3};
    struct read_lines got = read_string("alpha\rbeta\rgamma\r");
    assert_lines(&got, 3, texts, numbers);
}

static void test_crlf_is_one_ending_but_lf_cr_and_cr_cr_are_two(void **state)
{
    static const char *const texts[] = {"a", "b", "c", "d"};
    /* a CRLF b LF CR c CR CR d: the empty lines count for the numbers. */
    static const size_t numbers[] = {1, 2, 4, 6};
    struct read_lines got = read_string("a\r\nb\n\rc\r\rd\r\n");
    assert_lines(&got, 4, texts, numbers);
}

static void test_blanks_around_the_content_are_trimmed_but_not_inside(void **state)
{
    static const char *const texts[] = {"x y", "z\t w"};
    static const size_t numbers[] = {1, 2};
    struct read_lines got = read_string(" \tx y \t\r\n\tz\t w  \r");
    assert_lines(&got, 2, texts, numbers);
}

static void test_blank_lines_and_comments_are_skipped_but_counted(void **state)
{
    static const char *const texts[] = {"kept", "also # not a comment"};
    static const size_t numbers[] = {3, 6};
    struct read_lines got = read_string("# first\r  \t \rkept\n\n   # indented\r\n"
                                        "also # not a comment\n#last");
    assert_lines(&got, 2, texts, numbers);
}

static void test_last_line_without_ending_is_read(void **state)
{
    static const char *const texts[] = {"first", "last"};
    static const size_t numbers[] = {1, 2};
    struct read_lines got = read_string("first\r\nlast");
    assert_lines(&got, 2, texts, numbers);
}

static void test_other_control_bytes_stay_in_the_content(void **state)
{
    struct read_lines got = read_all("a\0b\vc\fd\n", 8);
    assert_int_equal(got.count, 1);
    assert_memory_equal(got.text[0], "a\0b\vc\fd", 7);
}

static void test_empty_and_null_text_have_no_lines(void **state)
{
    struct text_lines lines;
    struct text_line line = {"untouched", 9, 42};
    text_lines_init(&lines, NULL, 0);
    assert_false(text_lines_next(&lines, &line));
    assert_int_equal(line.number, 42);
    text_lines_init(&lines, "", 0);
    assert_false(text_lines_next(&lines, &line));
    text_lines_init(&lines, "\r\n\r\n \n\r", 7);
    assert_false(text_lines_next(&lines, &line));
    assert_false(text_lines_next(&lines, &line)); /* stays at the end */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lf_crlf_and_cr_each_end_a_line),
        cmocka_unit_test(test_a_file_with_only_cr_endings_gives_every_line),
        cmocka_unit_test(test_crlf_is_one_ending_but_lf_cr_and_cr_cr_are_two),
        cmocka_unit_test(test_blanks_around_the_content_are_trimmed_but_not_inside),
        cmocka_unit_test(test_blank_lines_and_comments_are_skipped_but_counted),
        cmocka_unit_test(test_last_line_without_ending_is_read),
        cmocka_unit_test(test_other_control_bytes_stay_in_the_content),
        cmocka_unit_test(test_empty_and_null_text_have_no_lines),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
