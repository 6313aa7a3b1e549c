#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "subscriptions.h"

struct fake_session {
    int id;
    struct subs_session_list subs;
};

static int add(struct subs_index *index, struct fake_session *s, const char *type)
{
    return subs_add(index, &s->subs, s, type, strlen(type));
}

static struct subs_topic *find(const struct subs_index *index, const char *type)
{
    return subs_find(index, type, strlen(type));
}

/* Every entry of the topic, checked for consistent links in both directions. */
static size_t topic_sessions(const struct subs_topic *topic, struct fake_session **out, size_t cap)
{
    size_t n = 0;
    const struct subs_entry *prev = NULL;

    for (struct subs_entry *e = subs_topic_first(topic); e; e = e->topic_next) {
        assert_ptr_equal(e->topic, topic);
        assert_ptr_equal(e->topic_prev, prev);
        assert_true(n < cap);
        out[n++] = e->session;
        prev = e;
    }
    assert_int_equal(n, subs_topic_count(topic));
    return n;
}

static void test_subs_add_then_find_returns_topic_with_session(void **state)
{
    struct subs_index *index = subs_index_new(42);
    struct fake_session a = {.id = 1};
    struct fake_session *got[4];

    assert_non_null(index);
    assert_null(find(index, "news"));
    assert_int_equal(add(index, &a, "news"), 1);
    struct subs_topic *t = find(index, "news");
    assert_non_null(t);
    assert_int_equal(topic_sessions(t, got, 4), 1);
    assert_ptr_equal(got[0], &a);
    assert_int_equal(a.subs.count, 1);
    assert_ptr_equal(a.subs.head->session, &a);
    assert_null(find(index, "new"));
    assert_null(find(index, "newsx"));
    assert_null(find(index, "NEWS"));
    assert_int_equal(subs_index_topic_count(index), 1);
    assert_int_equal(subs_index_entry_count(index), 1);
    subs_remove_all(index, &a.subs);
    subs_index_free(index);
}

static void test_subs_duplicate_add_returns_zero_and_adds_nothing(void **state)
{
    struct subs_index *index = subs_index_new(1);
    struct fake_session a = {.id = 1};

    assert_int_equal(add(index, &a, "news"), 1);
    assert_int_equal(add(index, &a, "news"), 0);
    assert_int_equal(add(index, &a, "sport"), 1);
    assert_int_equal(add(index, &a, "sport"), 0);
    assert_int_equal(a.subs.count, 2);
    assert_int_equal(subs_topic_count(find(index, "news")), 1);
    assert_int_equal(subs_index_entry_count(index), 2);
    assert_int_equal(subs_index_topic_count(index), 2);
    subs_remove_all(index, &a.subs);
    subs_index_free(index);
}

static void test_subs_types_are_compared_as_bytes(void **state)
{
    struct subs_index *index = subs_index_new(7);
    struct fake_session a = {.id = 1};
    static const char with_nul[] = {'a', '\0', 'b'};

    assert_int_equal(subs_add(index, &a.subs, &a, with_nul, 3), 1);
    assert_int_equal(subs_add(index, &a.subs, &a, with_nul, 1), 1);
    assert_int_equal(subs_add(index, &a.subs, &a, with_nul, 2), 1);
    assert_int_equal(subs_add(index, &a.subs, &a, "", 0), 1);
    assert_int_equal(subs_add(index, &a.subs, &a, with_nul, 3), 0);
    assert_int_equal(subs_index_topic_count(index), 4);
    assert_non_null(subs_find(index, "a\0b", 3));
    assert_non_null(subs_find(index, "a\0", 2));
    assert_non_null(subs_find(index, "", 0));
    assert_null(subs_find(index, "a\0c", 3));
    subs_remove_all(index, &a.subs);
    assert_int_equal(subs_index_topic_count(index), 0);
    subs_index_free(index);
}

static void test_subs_iteration_follows_subscription_order(void **state)
{
    struct subs_index *index = subs_index_new(3);
    struct fake_session s[5];
    struct fake_session *got[5];

    for (int i = 0; i < 5; i++) {
        s[i] = (struct fake_session){.id = i};
        assert_int_equal(add(index, &s[i], "news"), 1);
    }
    assert_int_equal(topic_sessions(find(index, "news"), got, 5), 5);
    for (int i = 0; i < 5; i++)
        assert_ptr_equal(got[i], &s[i]);

    /* Dropping one from the middle keeps the others' order; a newcomer goes last. */
    subs_remove_all(index, &s[2].subs);
    assert_int_equal(add(index, &s[2], "news"), 1);
    assert_int_equal(topic_sessions(find(index, "news"), got, 5), 5);
    assert_ptr_equal(got[0], &s[0]);
    assert_ptr_equal(got[1], &s[1]);
    assert_ptr_equal(got[2], &s[3]);
    assert_ptr_equal(got[3], &s[4]);
    assert_ptr_equal(got[4], &s[2]);
    for (int i = 0; i < 5; i++)
        subs_remove_all(index, &s[i].subs);
    subs_index_free(index);
}

static void test_subs_remove_all_keeps_other_sessions_and_frees_empty_topics(void **state)
{
    struct subs_index *index = subs_index_new(99);
    struct fake_session a = {.id = 1}, b = {.id = 2};
    struct fake_session *got[2];

    assert_int_equal(add(index, &a, "news"), 1);
    assert_int_equal(add(index, &a, "only-a"), 1);
    assert_int_equal(add(index, &b, "news"), 1);
    assert_int_equal(add(index, &b, "only-b"), 1);
    assert_int_equal(subs_index_topic_count(index), 3);
    assert_int_equal(subs_index_entry_count(index), 4);

    subs_remove_all(index, &a.subs);
    assert_null(a.subs.head);
    assert_int_equal(a.subs.count, 0);
    assert_null(find(index, "only-a"));
    assert_int_equal(topic_sessions(find(index, "news"), got, 2), 1);
    assert_ptr_equal(got[0], &b);
    assert_int_equal(topic_sessions(find(index, "only-b"), got, 2), 1);
    assert_int_equal(b.subs.count, 2);
    assert_int_equal(subs_index_topic_count(index), 2);
    assert_int_equal(subs_index_entry_count(index), 2);

    /* Removing an empty list is harmless; the session may subscribe again. */
    subs_remove_all(index, &a.subs);
    assert_int_equal(add(index, &a, "only-a"), 1);
    assert_int_equal(subs_index_topic_count(index), 3);

    subs_remove_all(index, &a.subs);
    subs_remove_all(index, &b.subs);
    assert_int_equal(subs_index_topic_count(index), 0);
    assert_int_equal(subs_index_entry_count(index), 0);
    assert_null(find(index, "news"));
    subs_index_free(index);
}

static void test_subs_ten_thousand_types_survive_resizes(void **state)
{
    enum { TYPES = 10000 };
    struct subs_index *index = subs_index_new(0x0123456789abcdefULL);
    struct fake_session a = {.id = 1}, b = {.id = 2};
    char type[32];

    for (int i = 0; i < TYPES; i++) {
        snprintf(type, sizeof(type), "type-%d", i);
        assert_int_equal(add(index, &a, type), 1);
        if (i % 2 == 0)
            assert_int_equal(add(index, &b, type), 1);
    }
    assert_int_equal(subs_index_topic_count(index), TYPES);
    assert_int_equal(subs_index_entry_count(index), TYPES + TYPES / 2);
    for (int i = 0; i < TYPES; i++) {
        snprintf(type, sizeof(type), "type-%d", i);
        struct subs_topic *t = find(index, type);
        assert_non_null(t);
        assert_int_equal(subs_topic_count(t), i % 2 == 0 ? 2 : 1);
        assert_ptr_equal(subs_topic_first(t)->session, &a);
    }
    snprintf(type, sizeof(type), "type-%d", TYPES);
    assert_null(find(index, type));

    subs_remove_all(index, &a.subs);
    assert_int_equal(subs_index_topic_count(index), TYPES / 2);
    for (int i = 0; i < TYPES; i++) {
        snprintf(type, sizeof(type), "type-%d", i);
        struct subs_topic *t = find(index, type);
        if (i % 2 == 0)
            assert_ptr_equal(subs_topic_first(t)->session, &b);
        else
            assert_null(t);
    }
    subs_remove_all(index, &b.subs);
    assert_int_equal(subs_index_topic_count(index), 0);
    subs_index_free(index);
}

static void test_subs_many_sessions_on_one_type(void **state)
{
    enum { SESSIONS = 5000 };
    struct subs_index *index = subs_index_new(5);
    struct fake_session *s = calloc(SESSIONS, sizeof(*s));

    assert_non_null(s);
    for (int i = 0; i < SESSIONS; i++) {
        s[i].id = i;
        assert_int_equal(add(index, &s[i], "hot"), 1);
    }
    struct subs_topic *t = find(index, "hot");
    assert_int_equal(subs_topic_count(t), SESSIONS);
    int i = 0;
    for (struct subs_entry *e = subs_topic_first(t); e; e = e->topic_next, i++)
        assert_ptr_equal(e->session, &s[i]);
    assert_int_equal(i, SESSIONS);

    /* Remove every other session, then the rest; the topic lives until the last. */
    for (i = 0; i < SESSIONS; i += 2)
        subs_remove_all(index, &s[i].subs);
    t = find(index, "hot");
    assert_int_equal(subs_topic_count(t), SESSIONS / 2);
    i = 1;
    for (struct subs_entry *e = subs_topic_first(t); e; e = e->topic_next, i += 2)
        assert_ptr_equal(e->session, &s[i]);
    for (i = SESSIONS - 1; i > 0; i -= 2) {
        assert_non_null(find(index, "hot"));
        subs_remove_all(index, &s[i].subs);
    }
    assert_null(find(index, "hot"));
    assert_int_equal(subs_index_entry_count(index), 0);
    subs_index_free(index);
    free(s);
}

static void test_subs_index_free_releases_remaining_entries(void **state)
{
    /* Run under ASan: a leak of a topic or entry fails the test. */
    struct subs_index *index = subs_index_new(11);
    struct fake_session a = {.id = 1}, b = {.id = 2};

    assert_int_equal(add(index, &a, "x"), 1);
    assert_int_equal(add(index, &b, "x"), 1);
    assert_int_equal(add(index, &b, "y"), 1);
    subs_index_free(index);
    subs_index_free(NULL);
}

static void test_subs_seed_does_not_change_results(void **state)
{
    struct subs_index *a = subs_index_new(0), *b = subs_index_new(UINT64_MAX);
    struct fake_session sa = {.id = 1}, sb = {.id = 2};
    char type[16];

    for (int i = 0; i < 200; i++) {
        snprintf(type, sizeof(type), "%d", i);
        assert_int_equal(add(a, &sa, type), 1);
        assert_int_equal(add(b, &sb, type), 1);
    }
    for (int i = 0; i < 200; i++) {
        snprintf(type, sizeof(type), "%d", i);
        assert_non_null(find(a, type));
        assert_non_null(find(b, type));
    }
    subs_remove_all(a, &sa.subs);
    subs_remove_all(b, &sb.subs);
    subs_index_free(a);
    subs_index_free(b);
}

/* The session's types, most recent first (its list is built by prepending). */
static size_t session_types(const struct fake_session *s, const char **out, size_t cap)
{
    size_t n = 0, len;
    for (const struct subs_entry *e = s->subs.head; e; e = e->session_next) {
        assert_true(n < cap);
        out[n++] = subs_topic_type(e->topic, &len);
    }
    assert_int_equal(n, s->subs.count);
    return n;
}

static int add_all(struct subs_index *index, struct fake_session *s, char **types, size_t count)
{
    size_t lens[64];
    assert_true(count <= 64);
    for (size_t i = 0; i < count; i++)
        lens[i] = strlen(types[i]);
    return subs_add_all(index, &s->subs, s, types, lens, count);
}

static size_t count_missing(struct subs_index *index, struct fake_session *s, char **types,
                            size_t count)
{
    size_t lens[64];
    for (size_t i = 0; i < count; i++)
        lens[i] = strlen(types[i]);
    return subs_count_missing(index, &s->subs, types, lens, count);
}

static void test_subs_add_all_skips_held_and_repeated_types_in_order(void **state)
{
    struct subs_index *index = subs_index_new(5);
    struct fake_session a = {.id = 1}, x = {.id = 2};
    char *types[] = {"a", "b", "a", "c", "b", "d", "c"};
    const char *got[8];
    struct fake_session *subscribers[4];

    assert_int_equal(add(index, &x, "a"), 1);
    assert_int_equal(add(index, &a, "b"), 1);
    assert_int_equal(add_all(index, &a, types, 7), 3);
    assert_int_equal(session_types(&a, got, 8), 4);
    assert_string_equal(got[0], "d");
    assert_string_equal(got[1], "c");
    assert_string_equal(got[2], "a");
    assert_string_equal(got[3], "b");
    /* Each topic lists its subscribers once, in subscription order. */
    assert_int_equal(topic_sessions(find(index, "a"), subscribers, 4), 2);
    assert_ptr_equal(subscribers[0], &x);
    assert_ptr_equal(subscribers[1], &a);
    assert_int_equal(topic_sessions(find(index, "c"), subscribers, 4), 1);
    assert_int_equal(subs_index_entry_count(index), 5);
    /* Adding them all again adds nothing; an empty call neither. */
    assert_int_equal(add_all(index, &a, types, 7), 0);
    assert_int_equal(add_all(index, &a, types, 0), 0);
    assert_int_equal(a.subs.count, 4);
    /* The single add agrees. */
    assert_int_equal(add(index, &a, "c"), 0);
    assert_int_equal(add(index, &x, "c"), 1);
    subs_remove_all(index, &a.subs);
    subs_remove_all(index, &x.subs);
    assert_int_equal(subs_index_topic_count(index), 0);
    subs_index_free(index);
}

static void test_subs_count_missing_counts_what_add_all_would_add(void **state)
{
    struct subs_index *index = subs_index_new(9);
    struct fake_session a = {.id = 1}, x = {.id = 2};
    char *held[] = {"a", "b"};
    char *asked[] = {"a", "c", "b", "d", "c"};
    char *absent_twice[] = {"zz", "zz"};

    assert_int_equal(add_all(index, &a, held, 2), 2);
    assert_int_equal(add(index, &x, "c"), 1);
    /* "c" exists (x holds it) and counts once; "d" exists nowhere. */
    assert_int_equal(count_missing(index, &a, asked, 5), 2);
    assert_int_equal(count_missing(index, &a, held, 2), 0);
    /* A type nobody holds counts each time it is repeated: never fewer
     * than would be added. */
    assert_int_equal(count_missing(index, &a, absent_twice, 2), 2);
    assert_int_equal(add_all(index, &a, absent_twice, 2), 1);
    /* Counting changes nothing. */
    assert_int_equal(a.subs.count, 3);
    assert_int_equal(add_all(index, &a, asked, 5), 2);
    assert_int_equal(count_missing(index, &a, asked, 5), 0);
    subs_remove_all(index, &a.subs);
    subs_remove_all(index, &x.subs);
    subs_index_free(index);
}

static void test_subs_re_adding_1024_held_types_adds_none_and_keeps_each_once(void **state)
{
    struct subs_index *index = subs_index_new(3);
    struct fake_session a = {.id = 1};
    static char names[1024][16];
    char *types[1024];
    size_t lens[1024];

    for (int i = 0; i < 1024; i++) {
        snprintf(names[i], sizeof(names[i]), "type.%04d", i);
        types[i] = names[i];
        lens[i] = strlen(names[i]);
    }
    assert_int_equal(subs_add_all(index, &a.subs, &a, types, lens, 1024), 1024);
    for (int round = 0; round < 100; round++) {
        assert_int_equal(subs_count_missing(index, &a.subs, types, lens, 1024), 0);
        assert_int_equal(subs_add_all(index, &a.subs, &a, types, lens, 1024), 0);
    }
    assert_int_equal(a.subs.count, 1024);
    assert_int_equal(subs_index_entry_count(index), 1024);
    assert_int_equal(subs_index_topic_count(index), 1024);
    for (int i = 0; i < 1024; i++)
        assert_int_equal(subs_topic_count(subs_find(index, types[i], lens[i])), 1);
    subs_remove_all(index, &a.subs);
    subs_index_free(index);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_subs_add_then_find_returns_topic_with_session),
        cmocka_unit_test(test_subs_duplicate_add_returns_zero_and_adds_nothing),
        cmocka_unit_test(test_subs_types_are_compared_as_bytes),
        cmocka_unit_test(test_subs_iteration_follows_subscription_order),
        cmocka_unit_test(test_subs_remove_all_keeps_other_sessions_and_frees_empty_topics),
        cmocka_unit_test(test_subs_ten_thousand_types_survive_resizes),
        cmocka_unit_test(test_subs_many_sessions_on_one_type),
        cmocka_unit_test(test_subs_index_free_releases_remaining_entries),
        cmocka_unit_test(test_subs_seed_does_not_change_results),
        cmocka_unit_test(test_subs_add_all_skips_held_and_repeated_types_in_order),
        cmocka_unit_test(test_subs_count_missing_counts_what_add_all_would_add),
        cmocka_unit_test(test_subs_re_adding_1024_held_types_adds_none_and_keeps_each_once),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
