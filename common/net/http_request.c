/* HTTP/1.x request-head parser: see http_request.h for the contract.
 *
 * No state survives between calls: the caller hands the whole head received
 * so far each time. Only complete lines are judged, so every proper prefix of
 * a valid head is HTTP_PARSE_AGAIN; one pass over at most max_head bytes
 * keeps each call linear.
 */
#include "net/http_request.h"

#include <string.h>

/* RFC 9112 §2.2: a server SHOULD ignore at least one empty line before the
 * request line. A few cover sloppy clients; more is noise or an attack. */
#define HTTP_MAX_LEADING_EMPTY_LINES 4

/* Largest Content-Length accepted: far beyond any body we take, and small
 * enough that callers can add to it without overflow. */
#define HTTP_CONTENT_LENGTH_MAX ((uint64_t)1 << 62)

bool http_is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

bool http_is_field_char(unsigned char c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

static bool is_blank(unsigned char c)
{
    return c == ' ' || c == '\t';
}

static unsigned char ascii_lower(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + ('a' - 'A')) : c;
}

static bool ascii_case_equal(const char *a, const char *b, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (ascii_lower((unsigned char)a[i]) != ascii_lower((unsigned char)b[i]))
            return false;
    }
    return true;
}

static size_t token_len(const char *s, size_t len)
{
    size_t i = 0;

    while (i < len && http_is_tchar((unsigned char)s[i]))
        i++;
    return i;
}

/* RFC 9112 §2.3: HTTP-version = "HTTP" "/" DIGIT "." DIGIT, case-sensitive. */
static int parse_version(const char *s, size_t len, int *minor)
{
    if (len != 8 || memcmp(s, "HTTP/", 5) != 0 || s[6] != '.' || s[5] < '0' || s[5] > '9' ||
        s[7] < '0' || s[7] > '9')
        return HTTP_PARSE_BAD;
    if (s[5] != '1' || (s[7] != '0' && s[7] != '1'))
        return HTTP_PARSE_VERSION;
    *minor = s[7] - '0';
    return HTTP_PARSE_OK;
}

/* RFC 9112 §3: request-line = method SP request-target SP HTTP-version,
 * with exactly one SP between the parts. */
static int parse_request_line(const char *line, size_t len, struct http_request_head *out)
{
    size_t i = token_len(line, len);
    size_t target;

    if (i == 0 || i >= len || line[i] != ' ')
        return HTTP_PARSE_BAD;
    out->method = line;
    out->method_len = i;
    target = ++i;
    while (i < len && line[i] >= 0x21 && line[i] <= 0x7e)
        i++;
    if (i == target || i >= len || line[i] != ' ')
        return HTTP_PARSE_BAD;
    out->target = line + target;
    out->target_len = i - target;
    i++;
    return parse_version(line + i, len - i, &out->version_minor);
}

/* RFC 9112 §5: field-line = field-name ":" OWS field-value OWS. */
static int parse_header_line(const char *line, size_t len, struct http_header *h)
{
    size_t name_len = token_len(line, len);
    size_t start, end;

    /* A blank before the colon must be refused (RFC 9112 §5.1): proxies
     * disagree on it, which is how requests get smuggled. A leading blank is
     * obsolete line folding, refused as RFC 9112 §5.2 permits. */
    if (name_len == 0 || name_len >= len || line[name_len] != ':')
        return HTTP_PARSE_BAD;
    for (size_t i = name_len + 1; i < len; i++) {
        if (!http_is_field_char((unsigned char)line[i]))
            return HTTP_PARSE_BAD;
    }
    start = name_len + 1;
    end = len;
    while (start < end && is_blank((unsigned char)line[start]))
        start++;
    while (end > start && is_blank((unsigned char)line[end - 1]))
        end--;
    h->name = line;
    h->name_len = name_len;
    h->value = line + start;
    h->value_len = end - start;
    return HTTP_PARSE_OK;
}

/* RFC 9110 §11.6.2: Authorization carries one set of credentials, and it
 * is not a list field, so it may not be repeated (§5.3). Of two, a proxy
 * and this server might each read another one; the request is refused. */
static bool header_repeats_authorization(const struct http_request_head *head,
                                         const struct http_header *h)
{
    if (h->name_len != 13 || !ascii_case_equal(h->name, "authorization", 13))
        return false;
    for (size_t i = 0; i < head->header_count; i++) {
        const struct http_header *earlier = &head->headers[i];
        if (earlier != h && earlier->name_len == 13 &&
            ascii_case_equal(earlier->name, "authorization", 13))
            return true;
    }
    return false;
}

int http_request_parse(const char *buf, size_t len, size_t max_head, struct http_request_head *out)
{
    size_t limit = len < max_head ? len : max_head;
    size_t pos = 0;
    size_t leading_empty = 0;
    bool have_request_line = false;
    int rc;

    out->header_count = 0;
    out->head_len = 0;
    while (pos < limit) {
        const char *line = buf + pos;
        const char *lf = memchr(line, '\n', limit - pos);
        size_t line_len, next;

        if (lf == NULL)
            break;
        line_len = (size_t)(lf - line);
        next = pos + line_len + 1;
        /* CRLF ends a line; a bare LF is accepted too (RFC 9112 §2.2). Any
         * other CR is a control character and refused below. */
        if (line_len > 0 && line[line_len - 1] == '\r')
            line_len--;

        if (!have_request_line) {
            if (line_len == 0) {
                if (++leading_empty > HTTP_MAX_LEADING_EMPTY_LINES)
                    return HTTP_PARSE_BAD;
                pos = next;
                continue;
            }
            rc = parse_request_line(line, line_len, out);
            if (rc != HTTP_PARSE_OK)
                return rc;
            have_request_line = true;
        } else if (line_len == 0) {
            out->head_len = next;
            return HTTP_PARSE_OK;
        } else {
            if (out->header_count == HTTP_MAX_HEADERS)
                return HTTP_PARSE_TOO_LARGE;
            rc = parse_header_line(line, line_len, &out->headers[out->header_count]);
            if (rc != HTTP_PARSE_OK)
                return rc;
            if (header_repeats_authorization(out, &out->headers[out->header_count]))
                return HTTP_PARSE_BAD;
            out->header_count++;
        }
        pos = next;
    }
    /* No end within max_head bytes: more bytes than the limit means the
     * head can never fit. */
    return len > max_head ? HTTP_PARSE_TOO_LARGE : HTTP_PARSE_AGAIN;
}

const struct http_header *http_request_header(const struct http_request_head *head,
                                              const char *name)
{
    size_t name_len = strlen(name);

    for (size_t i = 0; i < head->header_count; i++) {
        const struct http_header *h = &head->headers[i];

        if (h->name_len == name_len && ascii_case_equal(h->name, name, name_len))
            return h;
    }
    return NULL;
}

bool http_value_has_token(const char *value, size_t len, const char *token)
{
    size_t token_length = strlen(token);
    size_t pos = 0;

    /* An empty value or token holds nothing; also keeps value + pos away
     * from a NULL value. */
    if (token_length == 0 || len == 0)
        return false;
    while (pos <= len) {
        const char *comma = memchr(value + pos, ',', len - pos);
        size_t end = comma != NULL ? (size_t)(comma - value) : len;
        size_t start = pos;
        size_t stop = end;

        while (start < stop && is_blank((unsigned char)value[start]))
            start++;
        while (stop > start && is_blank((unsigned char)value[stop - 1]))
            stop--;
        if (stop - start == token_length && ascii_case_equal(value + start, token, token_length))
            return true;
        pos = end + 1;
    }
    return false;
}

/* Content-Length = 1*DIGIT (RFC 9110 §8.6). A list such as "5, 5" is
 * refused rather than collapsed: nothing legitimate sends it to us. */
static int parse_content_length(const char *s, size_t len, uint64_t *out)
{
    uint64_t v = 0;

    if (len == 0)
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        /* Checked before multiplying so that v * 10 + 9 cannot wrap: a
         * wrapped length would be a request-smuggling vector. */
        if (v > HTTP_CONTENT_LENGTH_MAX / 10)
            return -1;
        v = v * 10 + (uint64_t)(s[i] - '0');
        if (v > HTTP_CONTENT_LENGTH_MAX)
            return -1;
    }
    *out = v;
    return 0;
}

int http_request_content_length(const struct http_request_head *head, uint64_t *out)
{
    bool found = false;
    uint64_t value = 0;

    /* RFC 9112 §6.3: differing Content-Length fields make the framing
     * ambiguous; the message must be refused. */
    for (size_t i = 0; i < head->header_count; i++) {
        const struct http_header *h = &head->headers[i];
        uint64_t v;

        if (h->name_len != 14 || !ascii_case_equal(h->name, "content-length", 14))
            continue;
        if (parse_content_length(h->value, h->value_len, &v) != 0)
            return -1;
        if (found && v != value)
            return -1;
        found = true;
        value = v;
    }
    if (!found)
        return 0;
    *out = value;
    return 1;
}

/* Reads the transfer-coding list of every Transfer-Encoding field: how
 * many codings, how many of them are exactly "chunked", and whether the
 * last one is. Empty list elements are skipped (RFC 9110 §5.6.1). */
static void scan_transfer_codings(const struct http_request_head *head, size_t *codings,
                                  size_t *chunked, bool *last_chunked)
{
    *codings = 0;
    *chunked = 0;
    *last_chunked = false;
    for (size_t i = 0; i < head->header_count; i++) {
        const struct http_header *h = &head->headers[i];
        size_t pos = 0;

        if (h->name_len != 17 || !ascii_case_equal(h->name, "transfer-encoding", 17))
            continue;
        while (pos < h->value_len) {
            const char *comma = memchr(h->value + pos, ',', h->value_len - pos);
            size_t end = comma != NULL ? (size_t)(comma - h->value) : h->value_len;
            size_t start = pos, stop = end;

            while (start < stop && is_blank((unsigned char)h->value[start]))
                start++;
            while (stop > start && is_blank((unsigned char)h->value[stop - 1]))
                stop--;
            pos = end + 1;
            if (start == stop)
                continue;
            (*codings)++;
            /* "chunked" takes no parameters: "chunked;x=1" is another coding. */
            *last_chunked = stop - start == 7 && ascii_case_equal(h->value + start, "chunked", 7);
            if (*last_chunked)
                (*chunked)++;
        }
    }
}

int http_request_body_framing(const struct http_request_head *head, struct http_body_framing *out,
                              const char **reason)
{
    size_t codings, chunked;
    bool last_chunked;

    out->chunked = false;
    out->length = 0;
    *reason = NULL;
    if (http_request_header(head, "Transfer-Encoding") == NULL) {
        if (http_request_content_length(head, &out->length) < 0) {
            *reason = "invalid Content-Length";
            return HTTP_PARSE_BAD;
        }
        return HTTP_PARSE_OK;
    }
    /* RFC 9112 §6.3: Transfer-Encoding would override Content-Length, but a
     * request with both is how requests get smuggled past a proxy that
     * believes the other one. */
    if (http_request_header(head, "Content-Length") != NULL) {
        *reason = "both Content-Length and Transfer-Encoding";
        return HTTP_PARSE_BAD;
    }
    if (head->version_minor == 0) {
        *reason = "Transfer-Encoding in an HTTP/1.0 request";
        return HTTP_PARSE_BAD;
    }
    scan_transfer_codings(head, &codings, &chunked, &last_chunked);
    if (codings == 0) {
        *reason = "empty Transfer-Encoding";
        return HTTP_PARSE_BAD;
    }
    if (!last_chunked) {
        *reason = "the last transfer coding is not chunked";
        return HTTP_PARSE_BAD;
    }
    if (codings > 1) {
        *reason = chunked > 1 ? "chunked applied twice" : "a transfer coding other than chunked";
        return HTTP_PARSE_UNSUPPORTED;
    }
    out->chunked = true;
    return HTTP_PARSE_OK;
}

bool http_request_keep_alive(const struct http_request_head *head)
{
    bool keep_alive = false;

    /* RFC 9112 §9.3: "close" ends the connection in any version; HTTP/1.0
     * persists only when the client asked for keep-alive. Every Connection
     * field counts, as they form one list (RFC 9110 §5.3). */
    for (size_t i = 0; i < head->header_count; i++) {
        const struct http_header *h = &head->headers[i];

        if (h->name_len != 10 || !ascii_case_equal(h->name, "connection", 10))
            continue;
        if (http_value_has_token(h->value, h->value_len, "close"))
            return false;
        if (http_value_has_token(h->value, h->value_len, "keep-alive"))
            keep_alive = true;
    }
    return head->version_minor >= 1 || keep_alive;
}

bool http_request_method_is(const struct http_request_head *head, const char *m)
{
    size_t m_len = strlen(m);

    return head->method_len == m_len && memcmp(head->method, m, m_len) == 0;
}

size_t http_request_path_len(const struct http_request_head *head)
{
    size_t i = 0;

    while (i < head->target_len && head->target[i] != '?' && head->target[i] != '#')
        i++;
    return i;
}
