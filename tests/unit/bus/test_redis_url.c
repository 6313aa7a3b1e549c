/* Unit tests for common/bus/redis_url.c: REDIS_URL as the Redis engine
 * takes it, and every way it is refused, with a reason that never repeats
 * the URL (it could hold a password). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "bus/redis_url.h"

static struct redis_url parse_ok(const char *text)
{
    struct redis_url u;
    char err[256] = "";
    if (redis_url_parse(text, &u, err, sizeof err) != 0)
        fail_msg("%s refused: %s", text, err);
    return u;
}

/* Refused, with a reason that contains want and not the URL's secret part. */
static void assert_refused(const char *text, const char *want)
{
    struct redis_url u;
    char err[256] = "";
    assert_int_equal(redis_url_parse(text, &u, err, sizeof err), -1);
    if (!strstr(err, want))
        fail_msg("%s: reason \"%s\" does not say \"%s\"", text, err, want);
    assert_non_null(strstr(err, "REDIS_URL"));
    assert_null(strstr(err, "secret"));
}

static void test_tcp_urls_with_their_defaults(void **state)
{
    struct redis_url u = parse_ok("redis://localhost");
    assert_int_equal(u.kind, REDIS_URL_TCP);
    assert_string_equal(u.host, "localhost");
    assert_int_equal(u.port, 6379);
    assert_int_equal(u.db, 0);
    assert_string_equal(u.user, "");

    u = parse_ok("redis://events@10.0.0.7:6380/3");
    assert_string_equal(u.user, "events");
    assert_string_equal(u.host, "10.0.0.7");
    assert_int_equal(u.port, 6380);
    assert_int_equal(u.db, 3);

    u = parse_ok("redis://[::1]:7000/0");
    assert_string_equal(u.host, "::1");
    assert_int_equal(u.port, 7000);
    u = parse_ok("redis://[fe80::1:2]");
    assert_string_equal(u.host, "fe80::1:2");
    assert_int_equal(u.port, 6379);

    u = parse_ok("redis://redis-1.internal.example/");
    assert_string_equal(u.host, "redis-1.internal.example");
    assert_int_equal(u.db, 0);
    u = parse_ok("redis://h:65535/1000000");
    assert_int_equal(u.port, 65535);
    assert_int_equal(u.db, 1000000);
}

static void test_unix_urls(void **state)
{
    struct redis_url u = parse_ok("unix:/run/redis/redis-server.sock");
    assert_int_equal(u.kind, REDIS_URL_UNIX);
    assert_string_equal(u.path, "/run/redis/redis-server.sock");
    assert_int_equal(u.db, 0);
    u = parse_ok("unix:/tmp/r.sock?db=12");
    assert_string_equal(u.path, "/tmp/r.sock");
    assert_int_equal(u.db, 12);

    char longest[5 + REDIS_URL_PATH_MAX + 1];
    memcpy(longest, "unix:/", 6);
    memset(longest + 6, 'p', REDIS_URL_PATH_MAX - 1);
    longest[5 + REDIS_URL_PATH_MAX] = '\0';
    u = parse_ok(longest);
    assert_int_equal(strlen(u.path), REDIS_URL_PATH_MAX);
}

static void test_a_password_is_never_taken_from_the_url(void **state)
{
    assert_refused("redis://user:secret@host", "REDIS_PASSWORD_FILE");
    assert_refused("redis://:secret@host:6379/0", "REDIS_PASSWORD_FILE");
    assert_refused("redis://u:secret@host?x=1", "REDIS_PASSWORD_FILE");
    /* Other errors do not echo the URL either. */
    assert_refused("http://u:secret@host", "must be redis://");
    assert_refused("rediss://u:secret@host", "TLS");
}

static void test_bad_hosts_ports_and_databases(void **state)
{
    assert_refused("redis://", "host");
    assert_refused("redis://:6379", "host");
    assert_refused("redis://-bad.example", "host");
    assert_refused("redis://bad-.example", "host");
    assert_refused("redis://a..b", "host");
    assert_refused("redis://under_score", "host");
    assert_refused("redis://h:0", "port");
    assert_refused("redis://h:65536", "port");
    assert_refused("redis://h:", "port");
    assert_refused("redis://h:12ab", "port");
    assert_refused("redis://h:0080", "port");
    assert_refused("redis://h/db", "database");
    assert_refused("redis://h/1000001", "database");
    assert_refused("redis://h/1/2", "database");
    assert_refused("redis://h/-1", "database");
    assert_refused("redis://[::1", "IPv6");
    assert_refused("redis://[]", "IPv6");
    assert_refused("redis://[zz::1]", "IPv6");
    assert_refused("redis://[::1]x", "']'");
    assert_refused("redis://h?db=1", "query");
    assert_refused("redis://h#frag", "query");
    assert_refused("redis://bad user@h", "space");
    assert_refused("redis://us/er@h", "database"); /* "@" after the path is not a user */
    assert_refused("redis://@h", "user");
}

static void test_bad_unix_urls(void **state)
{
    assert_refused("unix:", "absolute");
    assert_refused("unix:relative.sock", "absolute");
    assert_refused("unix:/tmp/r.sock?database=1", "?db=N");
    assert_refused("unix:/tmp/r.sock?db=", "?db=N");
    assert_refused("unix:/tmp/r.sock?db=1&x=2", "?db=N");
    assert_refused("unix:/tmp/r#sock", "'#'");

    char too_long[5 + REDIS_URL_PATH_MAX + 2];
    memcpy(too_long, "unix:/", 6);
    memset(too_long + 6, 'p', REDIS_URL_PATH_MAX);
    too_long[5 + REDIS_URL_PATH_MAX + 1] = '\0';
    assert_refused(too_long, "over");
}

static void test_anything_else_is_refused_with_the_forms(void **state)
{
    char huge[REDIS_URL_MAX + 16];
    assert_refused("", "must be redis://");
    assert_refused("localhost:6379", "must be redis://");
    assert_refused("REDIS://h", "must be redis://");
    assert_refused("redis://h\x01", "outside ASCII");
    assert_refused("redis://h\xc3\xa9", "outside ASCII");
    memcpy(huge, "redis://", 8);
    memset(huge + 8, 'a', sizeof huge - 9);
    huge[sizeof huge - 1] = '\0';
    assert_refused(huge, "over");
}

static void test_format_writes_what_was_parsed(void **state)
{
    char out[REDIS_URL_MAX];
    struct redis_url u = parse_ok("redis://events@[::1]:7000/2");
    redis_url_format(&u, out, sizeof out);
    assert_string_equal(out, "redis://events@[::1]:7000/2");
    u = parse_ok("redis://h");
    redis_url_format(&u, out, sizeof out);
    assert_string_equal(out, "redis://h:6379/0");
    u = parse_ok("unix:/tmp/r.sock");
    redis_url_format(&u, out, sizeof out);
    assert_string_equal(out, "unix:/tmp/r.sock?db=0");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tcp_urls_with_their_defaults),
        cmocka_unit_test(test_unix_urls),
        cmocka_unit_test(test_a_password_is_never_taken_from_the_url),
        cmocka_unit_test(test_bad_hosts_ports_and_databases),
        cmocka_unit_test(test_bad_unix_urls),
        cmocka_unit_test(test_anything_else_is_refused_with_the_forms),
        cmocka_unit_test(test_format_writes_what_was_parsed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
