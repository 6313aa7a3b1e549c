/* Unit tests for common/auth/roles.c: the roles file format, merging and errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "auth/roles.h"

static struct roles *parse_ok(const char *text)
{
    char err[128] = "untouched";
    struct roles *roles = roles_parse(text, strlen(text), err, sizeof(err));
    if (roles == NULL)
        fail_msg("unexpected error: %s", err);
    return roles;
}

/* Parses text that must be refused, and checks the reason. */
static void assert_refused(const char *text, const char *reason)
{
    char err[128] = "";
    struct roles *roles = roles_parse(text, strlen(text), err, sizeof(err));
    assert_null(roles);
    assert_string_equal(err, reason);
}

static const struct role_rights *find(const struct roles *roles, const char *name)
{
    return roles_find(roles, name, strlen(name));
}

static bool may(const struct event_patterns *list, const char *type)
{
    return event_patterns_match(list, type, strlen(type));
}

static void test_each_rights_form_grants_the_named_rights(void **state)
{
    struct roles *roles = parse_ok("orders-writer   publish            orders.*\n"
                                   "dashboard       subscribe          orders.*,payments.settled\n"
                                   "admin           publish,subscribe  *\n"
                                   "both-reversed\tsubscribe,publish\tx.y\n");
    assert_int_equal(roles_count(roles), 4);

    const struct role_rights *writer = find(roles, "orders-writer");
    assert_non_null(writer);
    assert_int_equal(writer->publish.count, 1);
    assert_int_equal(writer->subscribe.count, 0);
    assert_true(may(&writer->publish, "orders.created"));
    assert_false(may(&writer->publish, "payments.settled"));

    const struct role_rights *dashboard = find(roles, "dashboard");
    assert_non_null(dashboard);
    assert_int_equal(dashboard->publish.count, 0);
    assert_int_equal(dashboard->subscribe.count, 2);
    assert_true(may(&dashboard->subscribe, "orders.eu.created"));
    assert_true(may(&dashboard->subscribe, "payments.settled"));
    assert_false(may(&dashboard->subscribe, "payments.created"));

    const struct role_rights *admin = find(roles, "admin");
    assert_non_null(admin);
    assert_true(may(&admin->publish, "anything"));
    assert_true(may(&admin->subscribe, "anything"));

    const struct role_rights *reversed = find(roles, "both-reversed");
    assert_non_null(reversed);
    assert_true(may(&reversed->publish, "x.y"));
    assert_true(may(&reversed->subscribe, "x.y"));
    roles_free(roles);
}

static void test_repeated_role_lines_add_up_without_duplicates(void **state)
{
    struct roles *roles = parse_ok("ops publish orders.*\n"
                                   "other subscribe z\n"
                                   "ops subscribe payments.*\n"
                                   "ops publish payments.settled,orders.*\n"
                                   "ops publish,subscribe orders.*\n");
    assert_int_equal(roles_count(roles), 2);

    const struct role_rights *ops = find(roles, "ops");
    assert_non_null(ops);
    assert_int_equal(ops->publish.count, 2);
    assert_int_equal(ops->subscribe.count, 2);
    assert_true(may(&ops->publish, "orders.created"));
    assert_true(may(&ops->publish, "payments.settled"));
    assert_false(may(&ops->publish, "payments.created"));
    assert_true(may(&ops->subscribe, "payments.created"));
    assert_true(may(&ops->subscribe, "orders.created"));
    assert_non_null(find(roles, "other"));
    roles_free(roles);
}

static void test_comments_blank_lines_and_crlf_are_ignored(void **state)
{
    struct roles *roles = parse_ok("# roles for the test\r\n"
                                   "\r\n"
                                   "   \t \r\n"
                                   "  # indented comment publish x\n"
                                   "\n"
                                   "  reader \t subscribe \t a.*,b  \r\n"
                                   "writer publish c\r\n"
                                   "last publish d");
    assert_int_equal(roles_count(roles), 3);
    const struct role_rights *reader = find(roles, "reader");
    assert_non_null(reader);
    assert_true(may(&reader->subscribe, "b"));
    assert_false(may(&reader->subscribe, "b\r"));
    assert_true(may(&find(roles, "writer")->publish, "c"));
    assert_true(may(&find(roles, "last")->publish, "d"));
    roles_free(roles);
}

static void test_cr_only_line_endings_separate_grants_and_number_errors(void **state)
{
    struct roles *roles = parse_ok("# roles\rreader subscribe a.*\rwriter publish b\r");
    assert_int_equal(roles_count(roles), 2);
    assert_true(may(&find(roles, "reader")->subscribe, "a.x"));
    assert_true(may(&find(roles, "writer")->publish, "b"));
    roles_free(roles);
    assert_refused("x publish a\r\rbad/name publish x\r", "line 3: bad role name 'bad/name'");
}

static void test_empty_file_gives_an_empty_set(void **state)
{
    char err[64] = "";
    struct roles *roles = roles_parse("", 0, err, sizeof(err));
    assert_non_null(roles);
    assert_int_equal(roles_count(roles), 0);
    assert_null(find(roles, "admin"));
    roles_free(roles);

    roles = roles_parse(NULL, 0, err, sizeof(err));
    assert_non_null(roles);
    roles_free(roles);

    roles = parse_ok("# only comments\n\n");
    assert_int_equal(roles_count(roles), 0);
    roles_free(roles);

    roles = roles_new_empty();
    assert_non_null(roles);
    assert_int_equal(roles_count(roles), 0);
    assert_null(find(roles, "x"));
    roles_free(roles);
    roles_free(NULL);
    assert_int_equal(roles_count(NULL), 0);
    assert_null(find(NULL, "x"));
}

static void test_find_matches_whole_names_only(void **state)
{
    struct roles *roles = parse_ok("alpha publish a\n"
                                   "alphabet publish b\n"
                                   "Alpha publish c\n"
                                   "beta subscribe d\n");
    assert_true(may(&find(roles, "alpha")->publish, "a"));
    assert_true(may(&find(roles, "alphabet")->publish, "b"));
    assert_true(may(&find(roles, "Alpha")->publish, "c"));
    assert_non_null(find(roles, "beta"));
    assert_null(find(roles, "alph"));
    assert_null(find(roles, "alphabets"));
    assert_null(find(roles, "ALPHA"));
    assert_null(find(roles, "gamma"));
    assert_null(find(roles, ""));
    /* Only len bytes of the name count. */
    assert_non_null(roles_find(roles, "alphabet", 5));
    roles_free(roles);
}

static void test_unknown_right_is_refused_with_its_line(void **state)
{
    assert_refused("a publish x\n# c\nb pub x\n", "line 3: unknown right 'pub'");
    assert_refused("a publish,delete x\n", "line 1: unknown right 'delete'");
    assert_refused("a publish, x\n", "line 1: unknown right ''");
    assert_refused("a ,publish x\n", "line 1: unknown right ''");
    assert_refused("a Publish x\n", "line 1: unknown right 'Publish'");
}

static void test_missing_patterns_are_refused_with_its_line(void **state)
{
    assert_refused("\n\na publish\n", "line 3: missing patterns");
    assert_refused("a publish   \r\n", "line 1: missing patterns");
    assert_refused("ok publish x\nlonely\n", "line 2: missing rights and patterns");
}

static void test_bad_role_name_is_refused_with_its_line(void **state)
{
    assert_refused("x publish a\nbad/name publish x\n", "line 2: bad role name 'bad/name'");
    assert_refused("r\xc3\xb4le publish x\n", "line 1: bad role name 'r??le'");
    assert_refused("a\vb publish x\n", "line 1: bad role name 'a?b'");

    char line[200];
    memset(line, 'r', ROLE_NAME_MAX);
    strcpy(line + ROLE_NAME_MAX, " publish x\n");
    struct roles *roles = parse_ok(line);
    assert_int_equal(roles_count(roles), 1);
    roles_free(roles);

    memset(line, 'r', ROLE_NAME_MAX + 1);
    strcpy(line + ROLE_NAME_MAX + 1, " publish x\n");
    char err[128];
    assert_null(roles_parse(line, strlen(line), err, sizeof(err)));
    /* The quote of a long field is bounded. */
    assert_string_equal(err, "line 1: bad role name 'rrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrr'");
}

static void test_bad_pattern_is_refused_with_its_line(void **state)
{
    assert_refused("a publish x\na subscribe orders.*.x\n", "line 2: bad pattern 'orders.*.x'");
    assert_refused("a publish x,,y\n", "line 1: bad pattern ''");
    assert_refused("a publish x,\n", "line 1: bad pattern ''");
    assert_refused("a publish a**\n", "line 1: bad pattern 'a**'");
    assert_refused("a publish x\x01y\n", "line 1: bad pattern 'x?y'");

    char text[400];
    memcpy(text, "a publish ", 10);
    memset(text + 10, 'p', EVENT_PATTERN_MAX + 1);
    strcpy(text + 10 + EVENT_PATTERN_MAX + 1, "\n");
    char err[128];
    assert_null(roles_parse(text, strlen(text), err, sizeof(err)));
    assert_memory_equal(err, "line 1: bad pattern 'ppp", 24);
}

static void test_too_many_fields_are_refused_with_its_line(void **state)
{
    assert_refused("a publish x\n\nb publish x y\n", "line 3: too many fields");
    assert_refused("a publish x # trailing comment\n", "line 1: too many fields");
}

static void test_an_error_refuses_the_whole_file(void **state)
{
    char err[128] = "";
    const char *text = "good publish x\nbad pub x\nalso-good subscribe y\n";
    assert_null(roles_parse(text, strlen(text), err, sizeof(err)));
    assert_string_equal(err, "line 2: unknown right 'pub'");
    /* A too small or absent error buffer is not written past. */
    char small[8];
    memset(small, 'z', sizeof(small));
    assert_null(roles_parse(text, strlen(text), small, 5));
    assert_string_equal(small, "line");
    assert_int_equal(small[5], 'z');
    assert_null(roles_parse(text, strlen(text), NULL, 0));
}

static void test_oversized_file_is_refused(void **state)
{
    size_t len = ROLES_FILE_MAX_BYTES + 1;
    char *text = malloc(len);
    assert_non_null(text);
    memset(text, '\n', len);
    char err[128] = "";
    assert_null(roles_parse(text, len, err, sizeof(err)));
    assert_non_null(strstr(err, "larger than"));
    /* At the limit it is read. */
    struct roles *roles = roles_parse(text, len - 1, err, sizeof(err));
    assert_non_null(roles);
    roles_free(roles);
    free(text);
}

static void test_many_roles_are_all_found(void **state)
{
    size_t cap = 2000 * 40;
    char *text = malloc(cap);
    assert_non_null(text);
    size_t len = 0;
    /* Written in reverse order so that the sort does real work. */
    for (int i = 1999; i >= 0; i--)
        len += (size_t)snprintf(text + len, cap - len, "role%d publish t.%d\n", i, i);
    len += (size_t)snprintf(text + len, cap - len, "role7 subscribe s.*\n");
    char err[128];
    struct roles *roles = roles_parse(text, len, err, sizeof(err));
    assert_non_null(roles);
    assert_int_equal(roles_count(roles), 2000);
    for (int i = 0; i < 2000; i++) {
        char name[32], type[32];
        snprintf(name, sizeof(name), "role%d", i);
        snprintf(type, sizeof(type), "t.%d", i);
        const struct role_rights *rights = find(roles, name);
        assert_non_null(rights);
        assert_true(may(&rights->publish, type));
        assert_int_equal(rights->publish.count, 1);
    }
    assert_true(may(&find(roles, "role7")->subscribe, "s.x"));
    assert_int_equal(find(roles, "role8")->subscribe.count, 0);
    roles_free(roles);
    free(text);
}

static void test_role_name_validity(void **state)
{
    assert_true(role_name_valid("orders-writer", 13));
    assert_true(role_name_valid("A_b.c-9", 7));
    assert_false(role_name_valid("", 0));
    assert_false(role_name_valid(NULL, 0));
    assert_false(role_name_valid("a b", 3));
    assert_false(role_name_valid("a,b", 3));
    assert_false(role_name_valid("a*", 2));
    assert_false(role_name_valid("a\0b", 3));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_each_rights_form_grants_the_named_rights),
        cmocka_unit_test(test_repeated_role_lines_add_up_without_duplicates),
        cmocka_unit_test(test_comments_blank_lines_and_crlf_are_ignored),
        cmocka_unit_test(test_cr_only_line_endings_separate_grants_and_number_errors),
        cmocka_unit_test(test_empty_file_gives_an_empty_set),
        cmocka_unit_test(test_find_matches_whole_names_only),
        cmocka_unit_test(test_unknown_right_is_refused_with_its_line),
        cmocka_unit_test(test_missing_patterns_are_refused_with_its_line),
        cmocka_unit_test(test_bad_role_name_is_refused_with_its_line),
        cmocka_unit_test(test_bad_pattern_is_refused_with_its_line),
        cmocka_unit_test(test_too_many_fields_are_refused_with_its_line),
        cmocka_unit_test(test_an_error_refuses_the_whole_file),
        cmocka_unit_test(test_oversized_file_is_refused),
        cmocka_unit_test(test_many_roles_are_all_found),
        cmocka_unit_test(test_role_name_validity),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
