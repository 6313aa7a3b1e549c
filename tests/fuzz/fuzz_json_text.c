/* Fuzz target for common/core/json_text.c. The member scanner is only specified
 * for documents cJSON accepted with an object at the top, so it runs on
 * those; the string and UTF-8 helpers run on arbitrary bytes. */
#include <cjson/cJSON.h>
#include <ctype.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/json_text.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_span(const char *doc, size_t len, const struct json_span *span)
{
    if (span->ptr == NULL || span->ptr < doc || span->len == 0 || span->len > len ||
        (size_t)(span->ptr - doc) > len - span->len)
        abort();
}

/* The last member of root called name, compared as cJSON compares keys. */
static cJSON *last_member(const cJSON *root, const char *name)
{
    cJSON *last = NULL;
    for (cJSON *child = root->child; child != NULL; child = child->next) {
        if (child->string != NULL && strcmp(child->string, name) == 0)
            last = child;
    }
    return last;
}

/* True when every \u escape has four hex digits and is not \u0000: cJSON
 * takes bad hex as 0, and a 0 cuts its copy of a key short, so its keys can
 * then differ from the decoded ones. */
static bool escapes_plain(const char *doc, size_t len)
{
    for (size_t i = 0; i + 1 < len; i++) {
        if (doc[i] != '\\')
            continue;
        if (doc[i + 1] == 'u') {
            if (len - i < 6 || !isxdigit((unsigned char)doc[i + 2]) ||
                !isxdigit((unsigned char)doc[i + 3]) || !isxdigit((unsigned char)doc[i + 4]) ||
                !isxdigit((unsigned char)doc[i + 5]) || memcmp(doc + i + 2, "0000", 4) == 0)
                return false;
        }
        i++;
    }
    return true;
}

/* True when the text has no control byte but the RFC 8259 blanks and no
 * byte order mark: then the scanner must understand it. */
static bool blanks_plain(const char *doc, size_t len)
{
    if (len >= 3 && memcmp(doc, "\xef\xbb\xbf", 3) == 0)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)doc[i];
        if (c < 0x20 && c != ' ' && c != '\t' && c != '\n' && c != '\r')
            return false;
    }
    return true;
}

static void check_member(const char *doc, size_t len, const cJSON *root, const char *name)
{
    struct json_span span;
    int rc = json_object_member(doc, len, name, &span);
    if (rc < -1 || rc > 1)
        abort();
    if (rc == -1 && blanks_plain(doc, len))
        abort();
    /* A raw NUL also cuts cJSON's copy of a key short. */
    bool comparable = blanks_plain(doc, len) && escapes_plain(doc, len);
    cJSON *expected = comparable ? last_member(root, name) : NULL;
    if (rc == 0 && expected != NULL)
        abort();
    if (rc != 1)
        return;
    check_span(doc, len, &span);
    /* The span is one JSON value with no blanks around it. */
    char first = span.ptr[0], final = span.ptr[span.len - 1];
    if (first == ' ' || first == '\t' || first == '\n' || first == '\r' || final == ' ' ||
        final == '\t' || final == '\n' || final == '\r')
        abort();
    if (first == '"' && (span.len < 2 || final != '"'))
        abort();
    if (first == '{' && final != '}')
        abort();
    if (first == '[' && final != ']')
        abort();
    const char *end = NULL;
    cJSON *value = cJSON_ParseWithLengthOpts(span.ptr, span.len, &end, 0);
    if (value == NULL || end != span.ptr + span.len)
        abort();
    if (comparable) {
        if (expected == NULL)
            abort();
        /* Compared as printed: cJSON_Compare looks duplicate keys up by
         * name and never finds inf or nan equal to itself. */
        char *want = cJSON_PrintUnformatted(expected);
        char *got = cJSON_PrintUnformatted(value);
        if (want != NULL && got != NULL && strcmp(want, got) != 0)
            abort();
        cJSON_free(want);
        cJSON_free(got);
    }
    cJSON_Delete(value);
}

static void check_unescape(const char *s, size_t len)
{
    char *out = malloc(len ? len : 1);
    if (out == NULL)
        return;
    size_t out_len = (size_t)-1;
    if (json_unescape_string(s, len, out, &out_len) == 0) {
        if (out_len > len - 2)
            abort();
        /* Re-escaping and decoding again gives the same bytes. */
        char *esc = malloc(JSON_ESCAPED_MAX(out_len));
        char *back = malloc(JSON_ESCAPED_MAX(out_len));
        if (esc != NULL && back != NULL) {
            size_t esc_len = json_escape_string(esc, out, out_len);
            if (esc_len > JSON_ESCAPED_MAX(out_len))
                abort();
            size_t back_len = 0;
            if (json_unescape_string(esc, esc_len, back, &back_len) != 0 || back_len != out_len ||
                memcmp(back, out, out_len) != 0)
                abort();
            /* Valid UTF-8 in, valid UTF-8 out: escapes only add ASCII. */
            if (json_utf8_valid(out, out_len) != json_utf8_valid(esc, esc_len))
                abort();
        }
        free(esc);
        free(back);
    }
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *doc = malloc(size ? size : 1);
    if (doc == NULL)
        return 0;
    memcpy(doc, data, size);

    (void)json_utf8_valid(doc, size);
    check_unescape(doc, size);

    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(doc, size, &end, 0);
    if (root != NULL && cJSON_IsObject(root)) {
        /* Scan only the text cJSON consumed: it ignores what follows. */
        size_t len = (size_t)(end - doc);
        check_member(doc, len, root, "data");
        check_member(doc, len, root, "event");
        check_member(doc, len, root, "a");
        check_member(doc, len, root, "");
    }
    cJSON_Delete(root);
    free(doc);
    return 0;
}
