/* Publish body validation and subscriber message construction.
 *
 * cJSON decides whether the body is JSON; json_object_member then finds the
 * raw text of "event" and "data", so the data reaches subscribers exactly as
 * the publisher wrote it.
 */
#include "publish_body.h"

#include "core/json_text.h"

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define MESSAGE_HEAD "{\"type\":\"event\",\"event\":"
#define MESSAGE_DATA ",\"data\":"
#define MESSAGE_TAIL "}"

static bool is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool is_hex(char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* Returns the length of the RFC 8259 section 6 number at s[0..len), which
 * must span the whole run of number characters, or 0 when it is malformed. */
static size_t number_length(const char *s, size_t len)
{
    size_t i = 0;

    if (i < len && s[i] == '-')
        i++;
    if (i < len && s[i] == '0') {
        i++;
    } else if (i < len && is_digit(s[i])) {
        while (i < len && is_digit(s[i]))
            i++;
    } else {
        return 0;
    }
    if (i < len && s[i] == '.') {
        size_t first = ++i;
        while (i < len && is_digit(s[i]))
            i++;
        if (i == first)
            return 0;
    }
    if (i < len && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < len && (s[i] == '+' || s[i] == '-'))
            i++;
        size_t first = i;
        while (i < len && is_digit(s[i]))
            i++;
        if (i == first)
            return 0;
    }
    /* cJSON would have consumed any further number characters as well. */
    if (i < len &&
        (is_digit(s[i]) || s[i] == '.' || s[i] == '+' || s[i] == '-' || s[i] == 'e' || s[i] == 'E'))
        return 0;
    return i;
}

/* s[i] is an opening quote. Returns the index past the closing quote, or 0
 * when the string holds a raw control character or a malformed escape
 * (RFC 8259 section 7). */
static size_t string_end(const char *s, size_t len, size_t i)
{
    for (i++; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"')
            return i + 1;
        if (c < 0x20)
            return 0;
        if (c != '\\')
            continue;
        if (++i >= len)
            return 0;
        if (s[i] == 'u') {
            if (len - i < 5 || !is_hex(s[i + 1]) || !is_hex(s[i + 2]) || !is_hex(s[i + 3]) ||
                !is_hex(s[i + 4]))
                return 0;
            i += 4;
        } else if (strchr("\"\\/bfnrt", s[i]) == NULL || s[i] == '\0') {
            return 0;
        }
    }
    return 0;
}

/* cJSON 1.7.15 accepts more than RFC 8259: any byte up to 0x20 as
 * whitespace, raw control characters and malformed \u escapes inside
 * strings, and numbers such as 01, 1. or -.5. The data is forwarded as
 * written, so such text would reach subscribers whose parsers refuse it.
 * This pass runs after cJSON accepted the structure and rejects those
 * tokens. */
static bool body_tokens_strict(const char *s, size_t len)
{
    size_t i = 0;

    while (i < len) {
        char c = s[i];
        if (c == '"') {
            i = string_end(s, len, i);
            if (i == 0)
                return false;
        } else if (c == '-' || is_digit(c)) {
            size_t n = number_length(s + i, len - i);
            if (n == 0)
                return false;
            i += n;
        } else if ((unsigned char)c < 0x20 && !is_blank(c)) {
            return false;
        } else {
            i++;
        }
    }
    return true;
}

/* Structural validation by cJSON: the whole body must be one object with
 * nothing but blanks after it. cJSON's nesting limit (CJSON_NESTING_LIMIT)
 * bounds its recursion; deeper bodies are refused. An allocation failure
 * inside cJSON is indistinguishable from bad input and is reported as
 * invalid. */
static int body_check_json(const char *body, size_t len, const char **why)
{
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(body, len, &end, 0);

    if (root == NULL) {
        *why = "not JSON";
        return PUBLISH_BODY_INVALID;
    }
    bool is_object = cJSON_IsObject(root);
    cJSON_Delete(root);
    for (size_t i = (size_t)(end - body); i < len; i++) {
        if (!is_blank(body[i])) {
            *why = "trailing data after JSON";
            return PUBLISH_BODY_INVALID;
        }
    }
    if (!body_tokens_strict(body, len)) {
        *why = "not JSON";
        return PUBLISH_BODY_INVALID;
    }
    if (!is_object) {
        *why = "not an object";
        return PUBLISH_BODY_INVALID;
    }
    return PUBLISH_BODY_OK;
}

/* Decodes the "event" member into a fresh NUL-terminated buffer. */
static int body_decode_type(const char *body, size_t len, struct publish_event *out,
                            const char **why)
{
    struct json_span span;
    int found = json_object_member(body, len, "event", &span);

    if (found < 0) {
        *why = "not an object";
        return PUBLISH_BODY_INVALID;
    }
    if (found == 0) {
        *why = "event missing";
        return PUBLISH_BODY_INVALID;
    }
    if (span.len < 2 || span.ptr[0] != '"') {
        *why = "event not a string";
        return PUBLISH_BODY_INVALID;
    }
    out->type = malloc(span.len + 1);
    if (out->type == NULL) {
        *why = "out of memory";
        return PUBLISH_BODY_NOMEM;
    }
    if (json_unescape_string(span.ptr, span.len, out->type, &out->type_len) != 0) {
        *why = "event not a string";
        return PUBLISH_BODY_INVALID;
    }
    out->type[out->type_len] = '\0';
    if (out->type_len == 0) {
        *why = "event empty";
        return PUBLISH_BODY_INVALID;
    }
    if (out->type_len > PUBLISH_TYPE_MAX) {
        *why = "event too long";
        return PUBLISH_BODY_INVALID;
    }
    if (memchr(out->type, '\0', out->type_len) != NULL) {
        *why = "event contains NUL";
        return PUBLISH_BODY_INVALID;
    }
    return PUBLISH_BODY_OK;
}

static int body_build_message(const char *body, size_t len, struct publish_event *out,
                              const char **why)
{
    struct json_span data;
    int has_data = json_object_member(body, len, "data", &data);

    if (has_data < 0) {
        *why = "not an object";
        return PUBLISH_BODY_INVALID;
    }
    size_t cap = sizeof(MESSAGE_HEAD) - 1 + JSON_ESCAPED_MAX(out->type_len) + sizeof(MESSAGE_TAIL);
    if (has_data)
        cap += sizeof(MESSAGE_DATA) - 1 + data.len;
    char *msg = malloc(cap);
    if (msg == NULL) {
        *why = "out of memory";
        return PUBLISH_BODY_NOMEM;
    }

    size_t n = sizeof(MESSAGE_HEAD) - 1;
    memcpy(msg, MESSAGE_HEAD, n);
    n += json_escape_string(msg + n, out->type, out->type_len);
    if (has_data) {
        memcpy(msg + n, MESSAGE_DATA, sizeof(MESSAGE_DATA) - 1);
        n += sizeof(MESSAGE_DATA) - 1;
        memcpy(msg + n, data.ptr, data.len);
        n += data.len;
    }
    memcpy(msg + n, MESSAGE_TAIL, sizeof(MESSAGE_TAIL));
    n += sizeof(MESSAGE_TAIL) - 1;

    out->message = msg;
    out->message_len = n;
    return PUBLISH_BODY_OK;
}

int publish_body_parse(const char *body, size_t len, struct publish_event *out, const char **reason)
{
    const char *why = "ok";
    int rc;

    memset(out, 0, sizeof(*out));
    if (len == 0) {
        why = "empty body";
        rc = PUBLISH_BODY_INVALID;
        goto done;
    }
    if (!json_utf8_valid(body, len)) {
        why = "not UTF-8";
        rc = PUBLISH_BODY_INVALID;
        goto done;
    }
    /* RFC 8259 section 8.1 lets a parser ignore a byte order mark; cJSON
     * does, so the member scanner must start after it too. */
    if (len >= 3 && memcmp(body, "\xef\xbb\xbf", 3) == 0) {
        body += 3;
        len -= 3;
    }
    rc = body_check_json(body, len, &why);
    if (rc != PUBLISH_BODY_OK)
        goto done;
    rc = body_decode_type(body, len, out, &why);
    if (rc != PUBLISH_BODY_OK)
        goto done;
    rc = body_build_message(body, len, out, &why);

done:
    if (rc != PUBLISH_BODY_OK)
        publish_event_clear(out);
    if (reason != NULL)
        *reason = why;
    return rc;
}

void publish_event_clear(struct publish_event *event)
{
    if (event == NULL)
        return;
    free(event->type);
    free(event->message);
    memset(event, 0, sizeof(*event));
}
