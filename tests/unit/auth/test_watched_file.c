/* Unit tests for common/auth/watched_file.c: when a change is applied (settled
 * over polls, an empty file over a longer time), what is never read (a
 * FIFO, a directory, a file over the limit) and what reaches the owner.
 * The tests call watched_file_poll themselves, one call per poll of the
 * timer, on files in a temporary folder; the event loop never runs.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <event2/event.h>

#include "auth/watched_file.h"

#define CONTENT "tok-0123456789abcdef0123456789abcdef\ntok-fedcba9876543210fedcba9876543210\n"
#define OTHER "tok-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n"

/* What the owner was handed. */
struct recorder {
    unsigned loads;
    char *text; /* copy of the last text, NULL after an error */
    size_t len;
    int error;
    char reason[64]; /* "" for the first load */
};

struct fixture {
    char dir[64];
    char path[96];
    struct event_base *base;
    struct recorder rec;
    struct watched_file *file;
};

static void record(void *arg, struct watched_file *file, const char *text, size_t len, int error,
                   const char *reason)
{
    struct recorder *rec = arg;
    rec->loads++;
    free(rec->text);
    rec->text = text ? strndup(text, len) : NULL;
    rec->len = len;
    rec->error = error;
    snprintf(rec->reason, sizeof rec->reason, "%s", reason ? reason : "");
}

static int setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof *fx);
    assert_non_null(fx);
    snprintf(fx->dir, sizeof fx->dir, "/tmp/evs-watched-XXXXXX");
    assert_non_null(mkdtemp(fx->dir));
    snprintf(fx->path, sizeof fx->path, "%s/tokens", fx->dir);
    fx->base = event_base_new();
    assert_non_null(fx->base);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *fx = *state;
    char cmd[128];
    watched_file_free(fx->file);
    event_base_free(fx->base);
    free(fx->rec.text);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", fx->dir);
    assert_int_equal(system(cmd), 0);
    free(fx);
    return 0;
}

/* Writes text to path, creating or truncating it in one step, and sets its
 * mtime to mtime_s so that versions written within one clock tick still
 * differ. */
static void write_at(const char *path, const char *text, time_t mtime_s)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    struct timespec times[2] = {{mtime_s, 0}, {mtime_s, 0}};
    assert_int_equal(futimens(fd, times), 0);
    assert_int_equal(close(fd), 0);
}

/* Appends text to path without truncating it (the second step of an
 * in-place rewrite). */
static void append(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_APPEND);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    assert_int_equal(close(fd), 0);
}

static void truncate_to_zero(const char *path)
{
    int fd = open(path, O_WRONLY | O_TRUNC);
    assert_true(fd >= 0);
    assert_int_equal(close(fd), 0);
}

static void watch(struct fixture *fx, size_t max_bytes)
{
    fx->file = watched_file_new(fx->base, fx->path, max_bytes, record, &fx->rec);
    assert_non_null(fx->file);
}

static void poll_times(struct fixture *fx, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        watched_file_poll(fx->file);
}

/* Polls as often as a change (to anything but an empty file) needs to be
 * applied. */
static void settle(struct fixture *fx)
{
    poll_times(fx, WATCHED_FILE_SETTLE_POLLS);
}

static void assert_text(const struct recorder *rec, const char *text)
{
    assert_non_null(rec->text);
    assert_string_equal(rec->text, text);
    assert_int_equal(rec->len, strlen(text));
    assert_int_equal(rec->error, 0);
}

/* ---- when a change is applied ---- */

static void test_first_load_reads_the_file_at_once(void **state)
{
    struct fixture *fx = *state;
    write_at(fx->path, CONTENT, 1000);
    watch(fx, 1 << 20);
    assert_int_equal(fx->rec.loads, 1);
    assert_text(&fx->rec, CONTENT);
    assert_string_equal(fx->rec.reason, "");
}

static void test_unchanged_file_is_never_read_again_by_polls(void **state)
{
    struct fixture *fx = *state;
    write_at(fx->path, CONTENT, 1000);
    watch(fx, 1 << 20);
    poll_times(fx, 20);
    assert_int_equal(fx->rec.loads, 1);
}

static void test_change_is_applied_once_polls_see_it_unchanged(void **state)
{
    struct fixture *fx = *state;
    write_at(fx->path, CONTENT, 1000);
    watch(fx, 1 << 20);
    write_at(fx->path, OTHER, 2000);
    poll_times(fx, WATCHED_FILE_SETTLE_POLLS - 1);
    assert_int_equal(fx->rec.loads, 1); /* seen once: maybe still being written */
    watched_file_poll(fx->file);
    assert_int_equal(fx->rec.loads, 2);
    assert_text(&fx->rec, OTHER);
    assert_string_equal(fx->rec.reason, "file changed");
    poll_times(fx, 10);
    assert_int_equal(fx->rec.loads, 2);
}

static void test_same_size_rewrite_is_noticed_by_its_times(void **state)
{
    struct fixture *fx = *state;
    const char *same_size =
        "tok-1123456789abcdef0123456789abcdef\ntok-fedcba9876543210fedcba9876543210\n";
    assert_int_equal(strlen(same_size), strlen(CONTENT));
    write_at(fx->path, CONTENT, 1000);
    watch(fx, 1 << 20);
    write_at(fx->path, same_size, 1001);
    settle(fx);
    assert_int_equal(fx->rec.loads, 2);
    assert_text(&fx->rec, same_size);
}

static void test_file_changing_at_every_poll_is_applied_only_once_it_holds_still(void **state)
{
    struct fixture *fx = *state;
    write_at(fx->path, CONTENT, 1000);
    watch(fx, 1 << 20);
    for (int i = 0; i < 10; i++) {
        char text[64];
        snprintf(text, sizeof text, "tok-%032d\n", i);
        write_at(fx->path, text, 2000 + i);
        watched_file_poll(fx->file);
    }
    assert_int_equal(fx->rec.loads, 1);
    poll_times(fx, WATCHED_FILE_SETTLE_POLLS - 1);
    assert_int_equal(fx->rec.loads, 2);
    assert_text(&fx->rec, "tok-00000000000000000000000000000009\n");
}

static void test_in_place_rewrite_caught_half_way_is_never_applied(void **state)
{
    struct fixture *fx = *state;
    write_at(fx->path, CONTENT, 1000);
    watch(fx, 1 << 20);
    /* `cat new > tokens`: truncate, then write in two pieces, a poll
     * landing after each step. */
    truncate_to_zero(fx->path);
    watched_file_poll(fx->file);
    append(fx->path, "tok-0123456789abcdef01");
    watched_file_poll(fx->file);
    append(fx->path, &CONTENT[strlen("tok-0123456789abcdef01")]);
    assert_int_equal(fx->rec.loads, 1);
    poll_times(fx, WATCHED_FILE_SETTLE_POLLS);
    assert_int_equal(fx->rec.loads, 2); /* only the whole file was handed over */
    assert_text(&fx->rec, CONTENT);
}

static void test_empty_file_is_applied_only_after_it_stays_empty_longer(void **state)
{
    struct fixture *fx = *state;
    write_at(fx->path, CONTENT, 1000);
    watch(fx, 1 << 20);
    truncate_to_zero(fx->path);
    poll_times(fx, WATCHED_FILE_EMPTY_SETTLE_POLLS - 1);
    assert_int_equal(fx->rec.loads, 1); /* longer than any other change waits */
    watched_file_poll(fx->file);
    assert_int_equal(fx->rec.loads, 2);
    assert_text(&fx->rec, "");
}

static void test_truncated_file_written_again_before_it_settles_never_applies_empty(void **state)
{
    struct fixture *fx = *state;
    write_at(fx->path, CONTENT, 1000);
    watch(fx, 1 << 20);
    truncate_to_zero(fx->path);
    poll_times(fx, WATCHED_FILE_EMPTY_SETTLE_POLLS - 1);
    append(fx->path, OTHER);
    poll_times(fx, WATCHED_FILE_SETTLE_POLLS);
    assert_int_equal(fx->rec.loads, 2);
    assert_text(&fx->rec, OTHER);
}

static void test_file_renamed_over_is_applied_after_settling(void **state)
{
    struct fixture *fx = *state;
    char tmp[128];
    write_at(fx->path, CONTENT, 1000);
    watch(fx, 1 << 20);
    snprintf(tmp, sizeof tmp, "%s/tokens.new", fx->dir);
    write_at(tmp, OTHER, 1000); /* the same mtime: the inode tells it apart */
    assert_int_equal(rename(tmp, fx->path), 0);
    settle(fx);
    assert_int_equal(fx->rec.loads, 2);
    assert_text(&fx->rec, OTHER);
}

static void test_file_that_disappears_is_reported_enoent_and_coming_back_is_read(void **state)
{
    struct fixture *fx = *state;
    write_at(fx->path, CONTENT, 1000);
    watch(fx, 1 << 20);
    assert_int_equal(unlink(fx->path), 0);
    settle(fx);
    assert_int_equal(fx->rec.loads, 2);
    assert_null(fx->rec.text);
    assert_int_equal(fx->rec.error, ENOENT);
    poll_times(fx, 10);
    assert_int_equal(fx->rec.loads, 2); /* reported once */
    write_at(fx->path, OTHER, 3000);
    settle(fx);
    assert_int_equal(fx->rec.loads, 3);
    assert_text(&fx->rec, OTHER);
}

static void test_missing_file_at_start_is_reported_at_once(void **state)
{
    struct fixture *fx = *state;
    watch(fx, 1 << 20);
    assert_int_equal(fx->rec.loads, 1);
    assert_null(fx->rec.text);
    assert_int_equal(fx->rec.error, ENOENT);
    assert_string_equal(watched_file_error_text(fx->file, ENOENT), strerror(ENOENT));
}

static void test_reload_reads_at_once_changed_or_not(void **state)
{
    struct fixture *fx = *state;
    write_at(fx->path, CONTENT, 1000);
    watch(fx, 1 << 20);
    watched_file_reload(fx->file, "SIGHUP");
    assert_int_equal(fx->rec.loads, 2);
    assert_text(&fx->rec, CONTENT);
    assert_string_equal(fx->rec.reason, "SIGHUP");
    write_at(fx->path, OTHER, 2000);
    watched_file_reload(fx->file, "SIGHUP");
    assert_int_equal(fx->rec.loads, 3);
    assert_text(&fx->rec, OTHER);
    /* What the reload read is the current version: no poll reads it again. */
    poll_times(fx, 10);
    assert_int_equal(fx->rec.loads, 3);
}

/* ---- what is never read ---- */

static void test_fifo_at_start_is_refused_without_blocking(void **state)
{
    struct fixture *fx = *state;
    assert_int_equal(mkfifo(fx->path, 0600), 0);
    alarm(10); /* a blocking open would hang here: the alarm ends the test */
    watch(fx, 1 << 20);
    alarm(0);
    assert_int_equal(fx->rec.loads, 1);
    assert_null(fx->rec.text);
    assert_int_equal(fx->rec.error, EINVAL);
    assert_string_equal(watched_file_error_text(fx->file, EINVAL), "not a regular file: a FIFO");
}

static void test_fifo_renamed_over_the_file_is_refused_without_blocking(void **state)
{
    struct fixture *fx = *state;
    char fifo[128];
    write_at(fx->path, CONTENT, 1000);
    watch(fx, 1 << 20);
    snprintf(fifo, sizeof fifo, "%s/fifo", fx->dir);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    assert_int_equal(rename(fifo, fx->path), 0);
    alarm(10);
    settle(fx);
    poll_times(fx, 10); /* reported once */
    watched_file_reload(fx->file, "SIGHUP");
    alarm(0);
    assert_int_equal(fx->rec.loads, 3);
    assert_null(fx->rec.text);
    assert_int_equal(fx->rec.error, EINVAL);
    assert_string_equal(watched_file_error_text(fx->file, EINVAL), "not a regular file: a FIFO");
}

static void test_directory_at_the_path_is_refused(void **state)
{
    struct fixture *fx = *state;
    assert_int_equal(mkdir(fx->path, 0700), 0);
    watch(fx, 1 << 20);
    assert_int_equal(fx->rec.error, EINVAL);
    assert_string_equal(watched_file_error_text(fx->file, EINVAL),
                        "not a regular file: a directory");
}

static void test_file_over_the_limit_is_refused_without_being_read(void **state)
{
    struct fixture *fx = *state;
    /* A sparse 4 GiB file: reading it would take seconds and the memory. */
    int fd = open(fx->path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, (off_t)4 << 30), 0);
    assert_int_equal(close(fd), 0);
    watch(fx, 16u << 20);
    assert_int_equal(fx->rec.loads, 1);
    assert_null(fx->rec.text);
    assert_int_equal(fx->rec.error, EFBIG);
    assert_string_equal(watched_file_error_text(fx->file, EFBIG), "larger than 16 MiB");
}

static void test_file_of_exactly_the_limit_is_read_and_one_byte_more_is_refused(void **state)
{
    struct fixture *fx = *state;
    char limit[65];
    memset(limit, 'x', 64);
    limit[64] = '\0';
    write_at(fx->path, limit, 1000);
    watch(fx, 64);
    assert_text(&fx->rec, limit);
    append(fx->path, "y");
    settle(fx);
    assert_int_equal(fx->rec.loads, 2);
    assert_int_equal(fx->rec.error, EFBIG);
    assert_string_equal(watched_file_error_text(fx->file, EFBIG), "larger than 64 bytes");
}

static void test_unreadable_file_is_reported_eacces(void **state)
{
    struct fixture *fx = *state;
    if (geteuid() == 0)
        skip(); /* root reads it anyway */
    write_at(fx->path, CONTENT, 1000);
    watch(fx, 1 << 20);
    assert_int_equal(chmod(fx->path, 0), 0);
    settle(fx);
    assert_int_equal(fx->rec.loads, 2);
    assert_int_equal(fx->rec.error, EACCES);
}

static void test_world_readable_mode_is_reported(void **state)
{
    struct fixture *fx = *state;
    write_at(fx->path, CONTENT, 1000);
    watch(fx, 1 << 20);
    assert_false(watched_file_world_readable(fx->file));
    assert_int_equal(chmod(fx->path, 0644), 0);
    settle(fx); /* a mode change is a change */
    assert_int_equal(fx->rec.loads, 2);
    assert_true(watched_file_world_readable(fx->file));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
        T(test_first_load_reads_the_file_at_once),
        T(test_unchanged_file_is_never_read_again_by_polls),
        T(test_change_is_applied_once_polls_see_it_unchanged),
        T(test_same_size_rewrite_is_noticed_by_its_times),
        T(test_file_changing_at_every_poll_is_applied_only_once_it_holds_still),
        T(test_in_place_rewrite_caught_half_way_is_never_applied),
        T(test_empty_file_is_applied_only_after_it_stays_empty_longer),
        T(test_truncated_file_written_again_before_it_settles_never_applies_empty),
        T(test_file_renamed_over_is_applied_after_settling),
        T(test_file_that_disappears_is_reported_enoent_and_coming_back_is_read),
        T(test_missing_file_at_start_is_reported_at_once),
        T(test_reload_reads_at_once_changed_or_not),
        T(test_fifo_at_start_is_refused_without_blocking),
        T(test_fifo_renamed_over_the_file_is_refused_without_blocking),
        T(test_directory_at_the_path_is_refused),
        T(test_file_over_the_limit_is_refused_without_being_read),
        T(test_file_of_exactly_the_limit_is_read_and_one_byte_more_is_refused),
        T(test_unreadable_file_is_reported_eacces),
        T(test_world_readable_mode_is_reported),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
