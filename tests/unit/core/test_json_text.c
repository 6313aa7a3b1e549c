/* Unit tests for common/core/json_text.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/json_text.h"

#define UTF8_OK(lit) assert_true(json_utf8_valid(lit, sizeof(lit) - 1))
#define UTF8_BAD(lit) assert_false(json_utf8_valid(lit, sizeof(lit) - 1))

/* Finds name in the string literal doc; returns the result code and copies
 * the span into text (NUL-terminated) when found. */
static int member(const char *doc, const char *name, char *text, size_t cap)
{
    struct json_span span = {NULL, 0};
    int rc = json_object_member(doc, strlen(doc), name, &span);
    if (rc == 1) {
        assert_non_null(span.ptr);
        assert_true(span.ptr >= doc && span.ptr + span.len <= doc + strlen(doc));
        assert_true(span.len < cap);
        memcpy(text, span.ptr, span.len);
        text[span.len] = '\0';
    }
    return rc;
}

static void assert_member(const char *doc, const char *name, const char *expected)
{
    char text[256];
    assert_int_equal(member(doc, name, text, sizeof(text)), 1);
    assert_string_equal(text, expected);
}

/* Unescapes lit; returns the rc and leaves the NUL-terminated result in out. */
static int unescape(const char *lit, size_t len, char *out, size_t *out_len)
{
    char *buf = malloc(len ? len : 1);
    assert_non_null(buf);
    int rc = json_unescape_string(lit, len, buf, out_len);
    if (rc == 0) {
        assert_true(*out_len <= len);
        memcpy(out, buf, *out_len);
        out[*out_len] = '\0';
    }
    free(buf);
    return rc;
}

#define UNESCAPE_OK(lit, expected)                                                                 \
    do {                                                                                           \
        char got_[256];                                                                            \
        size_t got_len_ = 0;                                                                       \
        assert_int_equal(unescape(lit, sizeof(lit) - 1, got_, &got_len_), 0);                      \
        assert_int_equal(got_len_, sizeof(expected) - 1);                                          \
        assert_memory_equal(got_, expected, sizeof(expected) - 1);                                 \
    } while (0)

#define UNESCAPE_BAD(lit)                                                                          \
    do {                                                                                           \
        char got_[256];                                                                            \
        size_t got_len_ = 0;                                                                       \
        assert_int_equal(unescape(lit, sizeof(lit) - 1, got_, &got_len_), -1);                     \
    } while (0)

static void test_utf8_accepts_ascii_and_empty(void **state)
{
    UTF8_OK("");
    UTF8_OK("a");
    UTF8_OK("{\"event\":\"x\",\"data\":[1,2,3]} with a longer ASCII tail of text");
    assert_true(json_utf8_valid("a\0b", 3));
}

static void test_utf8_accepts_every_sequence_length(void **state)
{
    UTF8_OK("\xc2\x80");                 /* U+0080, smallest 2-byte */
    UTF8_OK("\xdf\xbf");                 /* U+07FF */
    UTF8_OK("\xe0\xa0\x80");             /* U+0800, smallest 3-byte */
    UTF8_OK("\xed\x9f\xbf");             /* U+D7FF, just below surrogates */
    UTF8_OK("\xee\x80\x80");             /* U+E000, just above surrogates */
    UTF8_OK("\xef\xbf\xbf");             /* U+FFFF */
    UTF8_OK("\xf0\x9f\x98\x80");         /* U+1F600 emoji */
    UTF8_OK("\xf4\x8f\xbf\xbf");         /* U+10FFFF, the last code point */
    UTF8_OK("caf\xc3\xa9 \xe2\x82\xac"); /* "café €" */
}

static void test_utf8_rejects_overlongs(void **state)
{
    UTF8_BAD("\xc0\x80");
    UTF8_BAD("\xc1\xbf");
    UTF8_BAD("\xe0\x80\x80");
    UTF8_BAD("\xe0\x9f\xbf");
    UTF8_BAD("\xf0\x80\x80\x80");
    UTF8_BAD("\xf0\x8f\xbf\xbf");
}

static void test_utf8_rejects_surrogates(void **state)
{
    UTF8_BAD("\xed\xa0\x80"); /* U+D800 */
    UTF8_BAD("\xed\xbf\xbf"); /* U+DFFF */
    UTF8_BAD("\xed\xa0\xbd\xed\xb8\x80");
}

static void test_utf8_rejects_code_points_above_10ffff(void **state)
{
    UTF8_BAD("\xf4\x90\x80\x80");
    UTF8_BAD("\xf5\x80\x80\x80");
    UTF8_BAD("\xf7\xbf\xbf\xbf");
    UTF8_BAD("\xf8\x88\x80\x80\x80");
    UTF8_BAD("\xff");
    UTF8_BAD("\xfe");
}

static void test_utf8_rejects_truncated_and_stray_bytes(void **state)
{
    UTF8_BAD("\xc3");
    UTF8_BAD("\xe2\x82");
    UTF8_BAD("\xf0\x9f\x98");
    UTF8_BAD("abc\xf0\x9f\x98");
    UTF8_BAD("\x80");
    UTF8_BAD("\xbf");
    UTF8_BAD("\xc3\x28");
    UTF8_BAD("\xe2\x28\xa1");
    UTF8_BAD("\xf0\x9f\x28\x80");
}

static void test_utf8_finds_bad_byte_at_every_offset_of_long_ascii(void **state)
{
    char buf[40];
    for (size_t pos = 0; pos < sizeof(buf); pos++) {
        memset(buf, 'x', sizeof(buf));
        buf[pos] = (char)0x80;
        assert_false(json_utf8_valid(buf, sizeof(buf)));
        /* A valid 2-byte sequence straddling the 8-byte blocks stays valid. */
        if (pos + 1 < sizeof(buf)) {
            buf[pos] = (char)0xc3;
            buf[pos + 1] = (char)0xa9;
            assert_true(json_utf8_valid(buf, sizeof(buf)));
        }
    }
}

static void test_utf8_checks_only_the_given_length(void **state)
{
    const char text[] = "ok\xc3\xa9";
    assert_true(json_utf8_valid(text, 2));
    assert_false(json_utf8_valid(text, 3));
    assert_true(json_utf8_valid(text, 4));
}

static void test_escape_uses_short_forms_and_u00xx(void **state)
{
    const char in[] = "a\"b\\c\n\r\t\b\f\x01\x1f\x7f/";
    char out[JSON_ESCAPED_MAX(sizeof(in) - 1)];
    size_t n = json_escape_string(out, in, sizeof(in) - 1);
    const char expected[] = "\"a\\\"b\\\\c\\n\\r\\t\\b\\f\\u0001\\u001f\x7f/\"";
    assert_int_equal(n, sizeof(expected) - 1);
    assert_memory_equal(out, expected, n);
}

static void test_escape_copies_utf8_and_escapes_nul(void **state)
{
    const char in[] = "\xe2\x82\xac\0x";
    char out[JSON_ESCAPED_MAX(sizeof(in) - 1)];
    size_t n = json_escape_string(out, in, sizeof(in) - 1);
    const char expected[] = "\"\xe2\x82\xac\\u0000x\"";
    assert_int_equal(n, sizeof(expected) - 1);
    assert_memory_equal(out, expected, n);
}

static void test_escape_of_empty_string_is_two_quotes(void **state)
{
    char out[JSON_ESCAPED_MAX(0)];
    assert_int_equal(json_escape_string(out, "", 0), 2);
    assert_memory_equal(out, "\"\"", 2);
}

static void test_escape_worst_case_fits_the_bound(void **state)
{
    char in[64];
    memset(in, 0x01, sizeof(in)); /* no short form: six bytes each */
    char out[JSON_ESCAPED_MAX(sizeof(in))];
    assert_int_equal(json_escape_string(out, in, sizeof(in)), JSON_ESCAPED_MAX(sizeof(in)));
}

static void test_escape_then_unescape_round_trips_every_byte(void **state)
{
    char in[256];
    for (size_t i = 0; i < sizeof(in); i++)
        in[i] = (char)i;
    char esc[JSON_ESCAPED_MAX(sizeof(in))];
    size_t n = json_escape_string(esc, in, sizeof(in));
    char back[sizeof(esc)];
    size_t back_len = 0;
    assert_int_equal(json_unescape_string(esc, n, back, &back_len), 0);
    assert_int_equal(back_len, sizeof(in));
    assert_memory_equal(back, in, sizeof(in));
}

static void test_unescape_decodes_every_escape(void **state)
{
    UNESCAPE_OK("\"\"", "");
    UNESCAPE_OK("\"plain\"", "plain");
    UNESCAPE_OK("\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"", "\"\\/\b\f\n\r\t");
    UNESCAPE_OK("\"d\\u0061ta\"", "data");
    UNESCAPE_OK("\"\\u00e9\\u00E9\"", "\xc3\xa9\xc3\xa9");
    UNESCAPE_OK("\"\\u20ac\"", "\xe2\x82\xac");
    UNESCAPE_OK("\"\\u0000\"", "\0");
    UNESCAPE_OK("\"\\uffff\"", "\xef\xbf\xbf");
}

static void test_unescape_joins_surrogate_pairs(void **state)
{
    UNESCAPE_OK("\"\\ud83d\\ude00\"", "\xf0\x9f\x98\x80");
    UNESCAPE_OK("\"\\uD800\\uDC00\"", "\xf0\x90\x80\x80");
    UNESCAPE_OK("\"\\udbff\\udfff\"", "\xf4\x8f\xbf\xbf");
}

static void test_unescape_rejects_lone_surrogates(void **state)
{
    UNESCAPE_BAD("\"\\ud800\"");
    UNESCAPE_BAD("\"\\udc00\"");
    UNESCAPE_BAD("\"\\ud800x\"");
    UNESCAPE_BAD("\"\\ud800\\u0041\"");
    UNESCAPE_BAD("\"\\ud800\\ud800\"");
    UNESCAPE_BAD("\"\\ude00\\ud83d\"");
    UNESCAPE_BAD("\"\\ud800\\n\"");
}

static void test_unescape_rejects_malformed_literals(void **state)
{
    UNESCAPE_BAD("");
    UNESCAPE_BAD("\"");
    UNESCAPE_BAD("abc");
    UNESCAPE_BAD("\"abc");
    UNESCAPE_BAD("abc\"");
    UNESCAPE_BAD("\"\\\"");      /* the closing quote is escaped */
    UNESCAPE_BAD("\"a\"b\"");    /* a raw quote inside */
    UNESCAPE_BAD("\"\\x\"");     /* unknown escape */
    UNESCAPE_BAD("\"\\'\"");     /* not a JSON escape */
    UNESCAPE_BAD("\"\\u12\"");   /* short \u */
    UNESCAPE_BAD("\"\\u00zz\""); /* not hex */
    UNESCAPE_BAD("\"\\u\"");
    UNESCAPE_BAD("\"a\nb\""); /* raw control character */
    UNESCAPE_BAD("\"a\tb\"");
    UNESCAPE_BAD("\"\x1f\"");
    char nul_inside[] = {'"', 'a', '\0', '"'};
    char out[8];
    size_t n;
    assert_int_equal(json_unescape_string(nul_inside, sizeof(nul_inside), out, &n), -1);
}

static void test_unescape_copies_raw_utf8_and_del(void **state)
{
    UNESCAPE_OK("\"\xf0\x9f\x98\x80 \x7f\"", "\xf0\x9f\x98\x80 \x7f");
}

static void test_member_finds_each_kind_of_value_verbatim(void **state)
{
    const char *doc = "{\"s\":\"a\\\"}{b\",\"n\":12345678901234567890,"
                      "\"f\":0.1000000000000000055511151231257827,\"e\":-1.5E+3,"
                      "\"o\":{\"x\":[1,{\"y\":\"]}\"}]},\"a\":[ 1 , \"[\" ],"
                      "\"t\":true,\"F\":false,\"z\":null,\"empty\":{},\"ea\":[]}";
    assert_member(doc, "s", "\"a\\\"}{b\"");
    assert_member(doc, "n", "12345678901234567890");
    assert_member(doc, "f", "0.1000000000000000055511151231257827");
    assert_member(doc, "e", "-1.5E+3");
    assert_member(doc, "o", "{\"x\":[1,{\"y\":\"]}\"}]}");
    assert_member(doc, "a", "[ 1 , \"[\" ]");
    assert_member(doc, "t", "true");
    assert_member(doc, "F", "false");
    assert_member(doc, "z", "null");
    assert_member(doc, "empty", "{}");
    assert_member(doc, "ea", "[]");
}

static void test_member_trims_blanks_around_the_value(void **state)
{
    assert_member(" \r\n\t{ \"data\" \n:\t [1,\n 2] \r\n} \n", "data", "[1,\n 2]");
    assert_member("{\"data\" : 7 }", "data", "7");
    assert_member("{\"data\":\"x\"\n}", "data", "\"x\"");
}

static void test_member_matches_escaped_key(void **state)
{
    assert_member("{\"d\\u0061ta\":1}", "data", "1");
    assert_member("{\"\\u0064\\u0061\\u0074\\u0061\":2}", "data", "2");
    assert_member("{\"a\\\"b\":3}", "a\"b", "3");
    assert_member("{\"\\ud83d\\ude00\":4}", "\xf0\x9f\x98\x80", "4");
    assert_member("{\"\\u00e9\":5}", "\xc3\xa9", "5");
    char text[16];
    assert_int_equal(member("{\"d\\u0061t\":1}", "data", text, sizeof(text)), 0);
    assert_int_equal(member("{\"d\\u0061tax\":1}", "data", text, sizeof(text)), 0);
    /* A backslash spelled raw in name is not the escaped key. */
    assert_int_equal(member("{\"a\\\\b\":1}", "a\\\\b", text, sizeof(text)), 0);
    assert_member("{\"a\\\\b\":1}", "a\\b", "1");
}

static void test_member_matches_long_escaped_key(void **state)
{
    /* 300 escaped 'k' characters: longer than any fixed key buffer. */
    char doc[2048];
    char name[301];
    size_t n = 0;
    doc[n++] = '{';
    doc[n++] = '"';
    for (int i = 0; i < 300; i++) {
        memcpy(doc + n, "\\u006b", 6);
        n += 6;
        name[i] = 'k';
    }
    name[300] = '\0';
    memcpy(doc + n, "\":true}", 8);
    assert_member(doc, name, "true");
    name[299] = '\0';
    char text[16];
    assert_int_equal(member(doc, name, text, sizeof(text)), 0);
}

static void test_member_last_duplicate_wins(void **state)
{
    assert_member("{\"data\":1,\"data\":2}", "data", "2");
    assert_member("{\"data\":1,\"x\":0,\"d\\u0061ta\":\"three\"}", "data", "\"three\"");
    assert_member("{\"data\":{\"a\":1},\"data\":[2],\"other\":3}", "data", "[2]");
}

static void test_member_ignores_nested_keys(void **state)
{
    char text[64];
    assert_int_equal(member("{\"outer\":{\"data\":1}}", "data", text, sizeof(text)), 0);
    assert_int_equal(member("{\"a\":{\"b\":{\"data\":1}}}", "data", text, sizeof(text)), 0);
    assert_int_equal(member("{\"a\":[{\"data\":1}]}", "data", text, sizeof(text)), 0);
    assert_int_equal(member("{\"a\":\"\\\"data\\\":1\"}", "data", text, sizeof(text)), 0);
    assert_member("{\"a\":{\"data\":1},\"data\":2}", "data", "2");
    assert_member("{\"a\":\"{\\\"data\\\":\",\"data\":\"}\"}", "data", "\"}\"");
}

static void test_member_absent_or_empty_object_returns_zero(void **state)
{
    char text[16];
    assert_int_equal(member("{}", "data", text, sizeof(text)), 0);
    assert_int_equal(member(" { } ", "data", text, sizeof(text)), 0);
    assert_int_equal(member("{\"event\":\"x\"}", "data", text, sizeof(text)), 0);
    assert_int_equal(member("{\"Data\":1}", "data", text, sizeof(text)), 0);
    assert_int_equal(member("{\"\":1}", "data", text, sizeof(text)), 0);
    assert_member("{\"\":1}", "", "1");
}

static void test_member_rejects_non_object_top_level(void **state)
{
    char text[16];
    assert_int_equal(member("", "data", text, sizeof(text)), -1);
    assert_int_equal(member("   ", "data", text, sizeof(text)), -1);
    assert_int_equal(member("[{\"data\":1}]", "data", text, sizeof(text)), -1);
    assert_int_equal(member("\"data\"", "data", text, sizeof(text)), -1);
    assert_int_equal(member("1", "data", text, sizeof(text)), -1);
    assert_int_equal(member("\f{\"data\":1}", "data", text, sizeof(text)), -1);
}

static void test_member_never_reads_past_truncated_documents(void **state)
{
    const char *full = "{\"data\":{\"k\":[1,\"\\\"}\"]},\"e\":\"v\"}";
    size_t len = strlen(full);
    /* Every proper prefix, copied to an exact-size heap block so that the
     * sanitizer catches any read past its end. */
    for (size_t cut = 0; cut < len; cut++) {
        char *copy = malloc(cut ? cut : 1);
        assert_non_null(copy);
        memcpy(copy, full, cut);
        struct json_span span;
        assert_int_equal(json_object_member(copy, cut, "data", &span), -1);
        free(copy);
    }
    struct json_span span;
    assert_int_equal(json_object_member(full, len, "e", &span), 1);
    assert_int_equal(span.len, 3);
}

static void test_member_rejects_malformed_separators(void **state)
{
    char text[16];
    assert_int_equal(member("{\"a\" 1}", "a", text, sizeof(text)), -1);
    assert_int_equal(member("{\"a\":1 \"b\":2}", "a", text, sizeof(text)), -1);
    assert_int_equal(member("{\"a\":1,}", "a", text, sizeof(text)), -1);
    assert_int_equal(member("{a:1}", "a", text, sizeof(text)), -1);
    assert_int_equal(member("{\"a\":}", "a", text, sizeof(text)), -1);
    assert_int_equal(member("{\"a\":1\f}", "a", text, sizeof(text)), -1);
}

static void test_member_leaves_value_untouched_when_not_found(void **state)
{
    struct json_span span = {(const char *)&span, 42};
    const char *doc = "{\"a\":1}";
    assert_int_equal(json_object_member(doc, strlen(doc), "b", &span), 0);
    assert_ptr_equal(span.ptr, (const char *)&span);
    assert_int_equal(span.len, 42);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_utf8_accepts_ascii_and_empty),
        cmocka_unit_test(test_utf8_accepts_every_sequence_length),
        cmocka_unit_test(test_utf8_rejects_overlongs),
        cmocka_unit_test(test_utf8_rejects_surrogates),
        cmocka_unit_test(test_utf8_rejects_code_points_above_10ffff),
        cmocka_unit_test(test_utf8_rejects_truncated_and_stray_bytes),
        cmocka_unit_test(test_utf8_finds_bad_byte_at_every_offset_of_long_ascii),
        cmocka_unit_test(test_utf8_checks_only_the_given_length),
        cmocka_unit_test(test_escape_uses_short_forms_and_u00xx),
        cmocka_unit_test(test_escape_copies_utf8_and_escapes_nul),
        cmocka_unit_test(test_escape_of_empty_string_is_two_quotes),
        cmocka_unit_test(test_escape_worst_case_fits_the_bound),
        cmocka_unit_test(test_escape_then_unescape_round_trips_every_byte),
        cmocka_unit_test(test_unescape_decodes_every_escape),
        cmocka_unit_test(test_unescape_joins_surrogate_pairs),
        cmocka_unit_test(test_unescape_rejects_lone_surrogates),
        cmocka_unit_test(test_unescape_rejects_malformed_literals),
        cmocka_unit_test(test_unescape_copies_raw_utf8_and_del),
        cmocka_unit_test(test_member_finds_each_kind_of_value_verbatim),
        cmocka_unit_test(test_member_trims_blanks_around_the_value),
        cmocka_unit_test(test_member_matches_escaped_key),
        cmocka_unit_test(test_member_matches_long_escaped_key),
        cmocka_unit_test(test_member_last_duplicate_wins),
        cmocka_unit_test(test_member_ignores_nested_keys),
        cmocka_unit_test(test_member_absent_or_empty_object_returns_zero),
        cmocka_unit_test(test_member_rejects_non_object_top_level),
        cmocka_unit_test(test_member_never_reads_past_truncated_documents),
        cmocka_unit_test(test_member_rejects_malformed_separators),
        cmocka_unit_test(test_member_leaves_value_untouched_when_not_found),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
