/* HTTP/1.x request-head parser (RFC 9112), shared by the listen daemon's
 * HTTP server and the broadcast daemon's WebSocket opening handshake.
 *
 * Pure: parses bytes already received and borrows pointers into them.
 * Strict where being lenient would be dangerous: the request line must be
 * "METHOD SP target SP HTTP/1.x" with a token method; header names must be
 * tokens; no blank before the colon (request smuggling); no obsolete line
 * folding; lines end in CRLF (a bare LF is accepted as the end of a line, as
 * RFC 9112 §2.2 allows); Authorization at most once (it is not a list, RFC
 * 9110 §11.6.2). Limits: max_head bytes for the whole head and
 * HTTP_MAX_HEADERS header fields.
 */
#ifndef EVS_HTTP_REQUEST_H
#define EVS_HTTP_REQUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HTTP_MAX_HEADERS 64

struct http_header {
    const char *name;
    size_t name_len;
    const char *value; /* leading and trailing blanks removed */
    size_t value_len;
};

struct http_request_head {
    const char *method;
    size_t method_len;
    const char *target;
    size_t target_len;
    int version_minor; /* 0 or 1 */
    struct http_header headers[HTTP_MAX_HEADERS];
    size_t header_count;
    size_t head_len; /* bytes up to and including the blank line */
};

enum http_parse_status {
    HTTP_PARSE_OK = 0,
    HTTP_PARSE_AGAIN = -1,       /* incomplete so far, and within the limits */
    HTTP_PARSE_TOO_LARGE = -2,   /* head over max_head bytes, or too many fields: 431 */
    HTTP_PARSE_BAD = -3,         /* malformed: 400 */
    HTTP_PARSE_VERSION = -4,     /* not HTTP/1.0 or HTTP/1.1: 505 */
    HTTP_PARSE_UNSUPPORTED = -5, /* a transfer coding other than chunked: 501 */
};

/* Parses the request head at the start of buf[0..len). */
int http_request_parse(const char *buf, size_t len, size_t max_head, struct http_request_head *out);

/* RFC 9110 §5.6.2: tchar, the characters of a token. */
bool http_is_tchar(unsigned char c);

/* RFC 9110 §5.5: the characters of field-content: VCHAR, obs-text, SP, HTAB. */
bool http_is_field_char(unsigned char c);

/* The first header called name (case-insensitive), or NULL. */
const struct http_header *http_request_header(const struct http_request_head *head,
                                              const char *name);

/* true when a comma-separated header value holds token (case-insensitive),
 * e.g. "keep-alive, Upgrade" holds "upgrade". */
bool http_value_has_token(const char *value, size_t len, const char *token);

/* How a request's body is framed (RFC 9112 §6.3). */
struct http_body_framing {
    bool chunked;    /* Transfer-Encoding: chunked (http_chunked.h decodes it) */
    uint64_t length; /* otherwise Content-Length, 0 when absent */
};

/* Decides the framing of the body from the head. Returns HTTP_PARSE_OK with
 * *out set, or, with *reason set to why (a static string):
 *   HTTP_PARSE_BAD          400: an invalid Content-Length, Content-Length
 *                           together with Transfer-Encoding (a request
 *                           smuggling attempt, RFC 9112 §6.3), Transfer-
 *                           Encoding in HTTP/1.0 (§6.1), an empty coding
 *                           list, or one whose last coding is not chunked
 *                           (the length cannot be known, §6.3);
 *   HTTP_PARSE_UNSUPPORTED  501: chunked last but after another coding
 *                           ("gzip, chunked"), or chunked twice.
 * Transfer codings are case-insensitive; every Transfer-Encoding field
 * counts, as they form one list. The connection cannot be reused after
 * either refusal: its next request cannot be found. */
int http_request_body_framing(const struct http_request_head *head, struct http_body_framing *out,
                              const char **reason);

/* Content-Length: returns 0 when absent, 1 with *out set, -1 when invalid
 * (not digits, too big, or several different values). */
int http_request_content_length(const struct http_request_head *head, uint64_t *out);

/* Whether the connection stays open after the answer: HTTP/1.1 unless
 * "Connection: close", HTTP/1.0 only with "Connection: keep-alive". */
bool http_request_keep_alive(const struct http_request_head *head);

/* true when the method equals m (case-sensitive, as methods are). */
bool http_request_method_is(const struct http_request_head *head, const char *m);

/* The target's path: up to '?' or '#'. */
size_t http_request_path_len(const struct http_request_head *head);

#endif
