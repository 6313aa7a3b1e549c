/* Fuzz target for the HTTP request-head parser: every slice it returns must
 * lie inside the parsed head, the limits must hold, Authorization is there
 * at most once, the helpers must cope with whatever the parser accepted, a
 * proper prefix of an accepted head must be incomplete, and the body framing
 * decided from it must be consistent. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "net/http_request.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct http_request_head head;

static void check_inside(const char *p, size_t len, const char *base, size_t base_len)
{
    if (p < base || len > base_len || (size_t)(p - base) > base_len - len)
        abort();
}

static bool is_blank(char c)
{
    return c == ' ' || c == '\t';
}

/* Independent oracle: every Content-Length field, leading zeros aside, must
 * spell out exactly the number returned (catches a wrapped accumulator). */
static void check_content_length(uint64_t value)
{
    char text[24];
    int text_len = snprintf(text, sizeof(text), "%llu", (unsigned long long)value);

    for (size_t i = 0; i < head.header_count; i++) {
        const struct http_header *h = &head.headers[i];
        size_t skip = 0;

        if (h->name_len != 14 || strncasecmp(h->name, "content-length", 14) != 0)
            continue;
        while (skip + 1 < h->value_len && h->value[skip] == '0')
            skip++;
        if (h->value_len - skip != (size_t)text_len ||
            memcmp(h->value + skip, text, (size_t)text_len) != 0)
            abort();
    }
}

/* The body framing agrees with the fields it was decided from: chunked only
 * in HTTP/1.1 without Content-Length, a length only without
 * Transfer-Encoding, and a reason exactly for a refusal. */
static void check_framing(int cl, uint64_t content_length)
{
    struct http_body_framing framing;
    const char *reason;
    int rc = http_request_body_framing(&head, &framing, &reason);
    bool te = http_request_header(&head, "Transfer-Encoding") != NULL;

    if (rc != HTTP_PARSE_OK && rc != HTTP_PARSE_BAD && rc != HTTP_PARSE_UNSUPPORTED)
        abort();
    if ((rc == HTTP_PARSE_OK) != (reason == NULL))
        abort();
    if (rc == HTTP_PARSE_UNSUPPORTED && (!te || cl != 0 || head.version_minor != 1))
        abort();
    if (rc != HTTP_PARSE_OK)
        return;
    if (framing.chunked != te)
        abort();
    if (te && (cl != 0 || head.version_minor != 1 || framing.length != 0))
        abort();
    if (!te && (cl < 0 || framing.length != (cl == 1 ? content_length : 0)))
        abort();
}

static void check_head(const char *buf, size_t size, size_t max_head)
{
    uint64_t content_length = 0;

    if (head.head_len == 0 || head.head_len > size || head.head_len > max_head)
        abort();
    if (head.header_count > HTTP_MAX_HEADERS)
        abort();
    if (head.method_len == 0 || head.target_len == 0)
        abort();
    if (head.version_minor != 0 && head.version_minor != 1)
        abort();
    check_inside(head.method, head.method_len, buf, head.head_len);
    check_inside(head.target, head.target_len, buf, head.head_len);
    size_t authorizations = 0;
    for (size_t i = 0; i < head.header_count; i++) {
        const struct http_header *h = &head.headers[i];

        authorizations += h->name_len == 13 && strncasecmp(h->name, "authorization", 13) == 0;
        check_inside(h->name, h->name_len, buf, head.head_len);
        check_inside(h->value, h->value_len, buf, head.head_len);
        if (h->name_len == 0 || memchr(h->name, ':', h->name_len) != NULL)
            abort();
        if (memchr(h->value, '\r', h->value_len) || memchr(h->value, '\n', h->value_len))
            abort();
        if (h->value_len > 0 && (is_blank(h->value[0]) || is_blank(h->value[h->value_len - 1])))
            abort();
        (void)http_value_has_token(h->value, h->value_len, "upgrade");
        (void)http_value_has_token(h->value, h->value_len, "close");
        /* A header must be found by its own name (first match may differ). */
        char name[64];
        if (h->name_len < sizeof(name)) {
            memcpy(name, h->name, h->name_len);
            name[h->name_len] = '\0';
            if (http_request_header(&head, name) == NULL)
                abort();
        }
    }
    if (authorizations > 1) /* never repeated in an accepted head */
        abort();
    int cl = http_request_content_length(&head, &content_length);
    if (cl < -1 || cl > 1 || (cl == 1 && content_length > ((uint64_t)1 << 62)))
        abort();
    if (cl == 1)
        check_content_length(content_length);
    check_framing(cl, content_length);
    (void)http_request_keep_alive(&head);
    (void)http_request_method_is(&head, "GET");
    if (http_request_path_len(&head) > head.target_len)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *buf = (const char *)data;
    /* A small limit as well as a realistic one, so both size paths run. */
    const size_t limits[] = {8192, 64 + (size_t)(size ? data[size - 1] : 0)};

    for (size_t l = 0; l < sizeof(limits) / sizeof(limits[0]); l++) {
        int rc = http_request_parse(buf, size, limits[l], &head);

        if (rc != HTTP_PARSE_OK) {
            if (rc != HTTP_PARSE_AGAIN && rc != HTTP_PARSE_TOO_LARGE && rc != HTTP_PARSE_BAD &&
                rc != HTTP_PARSE_VERSION)
                abort();
            if (rc == HTTP_PARSE_AGAIN && size > limits[l])
                abort();
            continue;
        }
        check_head(buf, size, limits[l]);
        /* Stateless incremental use: the same head cut short is incomplete. */
        size_t head_len = head.head_len;
        size_t cut = size ? (size_t)data[0] * head_len / 256 : 0;
        if (http_request_parse(buf, head_len - 1, limits[l], &head) != HTTP_PARSE_AGAIN)
            abort();
        if (http_request_parse(buf, cut, limits[l], &head) != HTTP_PARSE_AGAIN)
            abort();
    }
    return 0;
}
