/* Unit tests for common/core/log.c: level names and the one-line record format. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/log.h"

#define CAPTURE_MAX 16384

struct capture {
    FILE *file;
    int saved_stderr;
    char text[CAPTURE_MAX];
    size_t len;
};

/* Points fd 2 at a temporary file so the records can be read back. */
static void capture_begin(struct capture *c)
{
    c->file = tmpfile();
    assert_non_null(c->file);
    c->saved_stderr = dup(STDERR_FILENO);
    assert_true(c->saved_stderr >= 0);
    assert_true(dup2(fileno(c->file), STDERR_FILENO) >= 0);
}

static void capture_end(struct capture *c)
{
    assert_true(dup2(c->saved_stderr, STDERR_FILENO) >= 0);
    close(c->saved_stderr);
    assert_int_equal(fseek(c->file, 0, SEEK_SET), 0);
    c->len = fread(c->text, 1, sizeof(c->text) - 1, c->file);
    c->text[c->len] = '\0';
    fclose(c->file);
}

static size_t count_newlines(const char *text, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        n += text[i] == '\n';
    return n;
}

/* The part of a record after "<timestamp> ". */
static const char *after_timestamp(const char *record)
{
    /* 2026-11-28T05:51:17.123Z */
    static const char shape[] = "dddd-dd-ddTdd:dd:dd.dddZ ";
    for (size_t i = 0; i < sizeof(shape) - 1; i++) {
        if (shape[i] == 'd') {
            if (record[i] < '0' || record[i] > '9')
                return NULL;
        } else if (record[i] != shape[i]) {
            return NULL;
        }
    }
    return record + sizeof(shape) - 1;
}

static int reset_logging(void **state)
{
    log_set_level(LOG_LEVEL_INFO);
    log_set_program(NULL);
    return 0;
}

static void test_level_parse_accepts_every_name_in_any_case(void **state)
{
    enum log_level level = LOG_LEVEL_INFO;

    assert_int_equal(log_level_parse("error", &level), 0);
    assert_int_equal(level, LOG_LEVEL_ERROR);
    assert_int_equal(log_level_parse("WARN", &level), 0);
    assert_int_equal(level, LOG_LEVEL_WARN);
    assert_int_equal(log_level_parse("Info", &level), 0);
    assert_int_equal(level, LOG_LEVEL_INFO);
    assert_int_equal(log_level_parse("dEbUg", &level), 0);
    assert_int_equal(level, LOG_LEVEL_DEBUG);
}

static void test_level_parse_rejects_other_text_and_leaves_output(void **state)
{
    enum log_level level = LOG_LEVEL_WARN;

    assert_int_equal(log_level_parse("", &level), -1);
    assert_int_equal(log_level_parse("warning", &level), -1);
    assert_int_equal(log_level_parse("info ", &level), -1);
    assert_int_equal(log_level_parse("3", &level), -1);
    assert_int_equal(log_level_parse(NULL, &level), -1);
    assert_int_equal(level, LOG_LEVEL_WARN);
}

static void test_level_name_round_trips_through_parse(void **state)
{
    for (int i = LOG_LEVEL_ERROR; i <= LOG_LEVEL_DEBUG; i++) {
        enum log_level level;
        assert_int_equal(log_level_parse(log_level_name((enum log_level)i), &level), 0);
        assert_int_equal(level, i);
    }
    assert_string_equal(log_level_name((enum log_level)42), "unknown");
}

/* Skips "<program>[<pid>]" checking the pid is this process's, and returns
 * the program name joined to what follows ("event-server warn: ..."). */
static const char *without_pid(const char *rest)
{
    static char joined[4096];
    char pid[32];
    const char *bracket = strchr(rest, '[');
    assert_non_null(bracket);
    snprintf(pid, sizeof pid, "[%ld]", (long)getpid());
    assert_memory_equal(bracket, pid, strlen(pid));
    snprintf(joined, sizeof joined, "%.*s%s", (int)(bracket - rest), rest, bracket + strlen(pid));
    return joined;
}

static void test_record_has_utc_timestamp_program_and_level(void **state)
{
    struct capture c;

    capture_begin(&c);
    log_warn("listening on %s:%d", "0.0.0.0", 8080);
    capture_end(&c);

    const char *rest = after_timestamp(c.text);
    assert_non_null(rest);
    assert_string_equal(without_pid(rest), "event-server warn: listening on 0.0.0.0:8080\n");
}

static void test_set_program_names_the_records(void **state)
{
    struct capture c;

    log_set_program("event-listen");
    capture_begin(&c);
    log_error("boom");
    capture_end(&c);

    const char *rest = after_timestamp(c.text);
    assert_non_null(rest);
    assert_string_equal(without_pid(rest), "event-listen error: boom\n");
}

static void test_cr_and_lf_in_message_stay_on_one_line(void **state)
{
    struct capture c;

    capture_begin(&c);
    log_info("bad type '%s'", "a\r\nFAKE 2026-01-01 error: injected\n");
    capture_end(&c);

    assert_int_equal(count_newlines(c.text, c.len), 1);
    assert_int_equal(c.text[c.len - 1], '\n');
    const char *rest = after_timestamp(c.text);
    assert_non_null(rest);
    assert_string_equal(without_pid(rest), "event-server info: bad type "
                                           "'a\\x0d\\x0aFAKE 2026-01-01 error: injected\\x0a'\n");
}

static void test_other_control_bytes_are_escaped_and_high_bytes_kept(void **state)
{
    struct capture c;

    capture_begin(&c);
    log_info("%s", "\x1b[31m\x7f\t\xc3\xa9");
    capture_end(&c);

    const char *rest = after_timestamp(c.text);
    assert_non_null(rest);
    assert_string_equal(without_pid(rest), "event-server info: \\x1b[31m\\x7f\\x09\xc3\xa9\n");
}

static void test_records_below_the_level_are_dropped(void **state)
{
    struct capture c;

    log_set_level(LOG_LEVEL_WARN);
    assert_false(log_enabled(LOG_LEVEL_INFO));
    assert_true(log_enabled(LOG_LEVEL_ERROR));
    capture_begin(&c);
    log_info("hidden");
    log_debug("hidden too");
    log_warn("shown");
    capture_end(&c);

    assert_int_equal(count_newlines(c.text, c.len), 1);
    assert_non_null(strstr(c.text, "warn: shown\n"));
    assert_null(strstr(c.text, "hidden"));
}

static int side_effects;

static int count_side_effect(void)
{
    return ++side_effects;
}

static void test_log_debug_does_not_evaluate_arguments_when_disabled(void **state)
{
    struct capture c;

    side_effects = 0;
    capture_begin(&c);
    log_debug("%d", count_side_effect());
    capture_end(&c);
    assert_int_equal(side_effects, 0);
    assert_int_equal(c.len, 0);

    log_set_level(LOG_LEVEL_DEBUG);
    capture_begin(&c);
    log_debug("%d", count_side_effect());
    capture_end(&c);
    assert_int_equal(side_effects, 1);
    assert_non_null(strstr(c.text, "debug: 1\n"));
}

static void test_long_message_is_truncated_with_ellipsis_on_one_line(void **state)
{
    struct capture c;
    char *big = malloc(10000);
    assert_non_null(big);
    memset(big, 'a', 9999);
    big[9999] = '\0';

    capture_begin(&c);
    log_info("%s", big);
    capture_end(&c);
    free(big);

    assert_int_equal(count_newlines(c.text, c.len), 1);
    assert_true(c.len <= 4096);
    assert_true(c.len > 2000);
    assert_memory_equal(c.text + c.len - 4, "...\n", 4);
}

static void test_message_of_control_bytes_is_truncated_within_pipe_buf(void **state)
{
    struct capture c;
    char big[3000];
    memset(big, '\n', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';

    capture_begin(&c);
    log_info("%s", big);
    capture_end(&c);

    assert_int_equal(count_newlines(c.text, c.len), 1);
    assert_true(c.len <= 4096);
    assert_memory_equal(c.text + c.len - 8, "\\x0a...\n", 8);
}

static void test_log_write_preserves_errno(void **state)
{
    struct capture c;

    capture_begin(&c);
    errno = ECONNRESET;
    log_error("peer gone");
    assert_int_equal(errno, ECONNRESET);
    capture_end(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_level_parse_accepts_every_name_in_any_case, reset_logging),
        cmocka_unit_test_setup(test_level_parse_rejects_other_text_and_leaves_output,
                               reset_logging),
        cmocka_unit_test_setup(test_level_name_round_trips_through_parse, reset_logging),
        cmocka_unit_test_setup(test_record_has_utc_timestamp_program_and_level, reset_logging),
        cmocka_unit_test_setup(test_set_program_names_the_records, reset_logging),
        cmocka_unit_test_setup(test_cr_and_lf_in_message_stay_on_one_line, reset_logging),
        cmocka_unit_test_setup(test_other_control_bytes_are_escaped_and_high_bytes_kept,
                               reset_logging),
        cmocka_unit_test_setup(test_records_below_the_level_are_dropped, reset_logging),
        cmocka_unit_test_setup(test_log_debug_does_not_evaluate_arguments_when_disabled,
                               reset_logging),
        cmocka_unit_test_setup(test_long_message_is_truncated_with_ellipsis_on_one_line,
                               reset_logging),
        cmocka_unit_test_setup(test_message_of_control_bytes_is_truncated_within_pipe_buf,
                               reset_logging),
        cmocka_unit_test_setup(test_log_write_preserves_errno, reset_logging),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
