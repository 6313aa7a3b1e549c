/* Unit tests for common/bus/redis_reply.c: hiredis's reader with the
 * engine's bounded object functions builds the replies hiredis's own
 * would, and refuses those over the bounds. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "bus/redis_reply.h"

/* The one reply the bytes hold, read as redis_conn.c reads them; NULL
 * when the reader refuses them. */
static redisReply *read_reply(const char *bytes, size_t len)
{
    redisReader *reader = redisReaderCreate();
    void *reply = NULL;
    assert_non_null(reader);
    reader->fn = &redis_reply_bounded;
    assert_int_equal(redisReaderFeed(reader, bytes, len), REDIS_OK);
    if (redisReaderGetReply(reader, &reply) != REDIS_OK)
        reply = NULL;
    redisReaderFree(reader);
    return reply;
}

static void test_null_replies_are_nil_whatever_announced_them(void **state)
{
    /* XREAD BLOCK answers *-1 when it ran out with nothing new; GET a
     * missing key, $-1. Both are REDIS_REPLY_NIL, as hiredis makes them. */
    static const char *nulls[] = {"*-1\r\n", "$-1\r\n"};
    (void)state;
    for (size_t i = 0; i < sizeof nulls / sizeof *nulls; i++) {
        redisReply *r = read_reply(nulls[i], strlen(nulls[i]));
        assert_non_null(r);
        if (r->type != REDIS_REPLY_NIL)
            fail_msg("%.3s...: type %d, not REDIS_REPLY_NIL", nulls[i], r->type);
        assert_null(r->str);
        assert_int_equal(r->elements, 0);
        freeReplyObject(r);
    }
}

static void test_a_nil_inside_an_array_is_nil(void **state)
{
    static const char bytes[] = "*2\r\n$-1\r\n*-1\r\n";
    redisReply *r = read_reply(bytes, sizeof bytes - 1);
    (void)state;
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    assert_int_equal(r->elements, 2);
    assert_int_equal(r->element[0]->type, REDIS_REPLY_NIL);
    assert_int_equal(r->element[1]->type, REDIS_REPLY_NIL);
    freeReplyObject(r);
}

static void test_strings_arrays_and_integers_keep_their_types(void **state)
{
    static const char bytes[] = "*3\r\n$3\r\nabc\r\n:42\r\n+OK\r\n";
    redisReply *r = read_reply(bytes, sizeof bytes - 1);
    (void)state;
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    assert_int_equal(r->elements, 3);
    assert_int_equal(r->element[0]->type, REDIS_REPLY_STRING);
    assert_string_equal(r->element[0]->str, "abc");
    assert_int_equal(r->element[1]->type, REDIS_REPLY_INTEGER);
    assert_int_equal(r->element[1]->integer, 42);
    assert_true(redis_reply_is_status(r->element[2], "OK"));
    freeReplyObject(r);
}

static void test_an_array_over_the_bound_is_refused(void **state)
{
    char bytes[32];
    int n = snprintf(bytes, sizeof bytes, "*%d\r\n", REDIS_REPLY_ELEMENTS_MAX + 1);
    (void)state;
    assert_null(read_reply(bytes, (size_t)n));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_null_replies_are_nil_whatever_announced_them),
        cmocka_unit_test(test_a_nil_inside_an_array_is_nil),
        cmocka_unit_test(test_strings_arrays_and_integers_keep_their_types),
        cmocka_unit_test(test_an_array_over_the_bound_is_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
