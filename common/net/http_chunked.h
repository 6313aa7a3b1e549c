/* Incremental decoder of the chunked transfer coding of a request body
 * (RFC 9112 §7.1):
 *
 *   chunked-body = *chunk last-chunk trailer-section CRLF
 *   chunk        = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
 *   last-chunk   = 1*("0") [ chunk-ext ] CRLF
 *
 * Pure: a state machine fed the bytes after the request head in slices of
 * any size, as they arrive. It says which bytes of each slice are data and
 * where the body ends; it keeps no pointer into what it is fed and
 * allocates nothing, so splitting the input anywhere gives the same result.
 *
 * Strict where a lenient reading could frame the message differently from
 * a proxy in front (request smuggling): every line of the body ends in
 * CRLF, and a bare LF or a CR without its LF is an error, although the head
 * accepts a bare LF (RFC 9112 §2.2 allows that for the head, not here).
 * Chunk extensions are ignored, but must be printable field text after a
 * ";". Trailer fields are ignored, but must be well-formed field lines.
 *
 * Limits: the decoded size (max_body), a chunk-size line (size and
 * extensions, HTTP_CHUNKED_MAX_LINE bytes before its CRLF), and the trailer
 * section (max_trailer bytes, counting every byte after the last chunk's
 * line up to and including the final CRLF). A chunk that would take the
 * decoded size past max_body is refused once its size line is complete,
 * before any of its data. Sizes of 2^63 and more are malformed.
 */
#ifndef EVS_HTTP_CHUNKED_H
#define EVS_HTTP_CHUNKED_H

#include <stddef.h>
#include <stdint.h>

#define HTTP_CHUNKED_MAX_LINE 4096

enum http_chunked_status {
    HTTP_CHUNKED_DONE = 0,       /* the body ended: *used stops right after its final CRLF */
    HTTP_CHUNKED_AGAIN = -1,     /* the body goes on: feed buf + *used, or the next bytes */
    HTTP_CHUNKED_BAD = -2,       /* malformed: 400, the connection cannot be framed */
    HTTP_CHUNKED_TOO_LARGE = -3, /* decoded size over max_body: 413 */
    HTTP_CHUNKED_TRAILER_TOO_LARGE = -4, /* trailer section over max_trailer: 431 */
};

/* The decoder's state; its fields are private to http_chunked.c. */
struct http_chunked_decoder {
    int state;
    uint64_t size;    /* the chunk size being read, then its data bytes still to come */
    uint64_t decoded; /* data bytes so far, at most max_body */
    uint64_t max_body;
    size_t line_len;    /* bytes of the current chunk-size line */
    size_t trailer_len; /* bytes of the trailer section so far */
    size_t max_trailer;
    int status;         /* the result once the body ended or failed */
    const char *reason; /* why it failed (a static string), or NULL */
};

/* Starts decoding a new body. */
void http_chunked_init(struct http_chunked_decoder *dec, uint64_t max_body, size_t max_trailer);

/* Decodes from buf[0..len) (len may be 0). *used is set to the bytes of buf
 * consumed, and *data / *data_len to the decoded bytes among them: a slice
 * of buf (borrowed), empty when this call decoded none. A call returns at
 * the end of a slice of data, so one call gives at most one slice; the
 * caller keeps feeding the rest of buf while it gets HTTP_CHUNKED_AGAIN.
 *
 * Returns:
 *   HTTP_CHUNKED_AGAIN  the body is not over: feed buf + *used when *used <
 *                       len, otherwise the next bytes that arrive.
 *   HTTP_CHUNKED_DONE   the body is complete (*data_len is 0); the bytes
 *                       after buf + *used belong to the next request. Later
 *                       calls return HTTP_CHUNKED_DONE and consume nothing.
 *   HTTP_CHUNKED_BAD, HTTP_CHUNKED_TOO_LARGE, HTTP_CHUNKED_TRAILER_TOO_LARGE
 *                       the body is refused: *used is the offset of the byte
 *                       that decided it, http_chunked_reason() says why, and
 *                       later calls return the same code. */
int http_chunked_feed(struct http_chunked_decoder *dec, const char *buf, size_t len, size_t *used,
                      const char **data, size_t *data_len);

/* Data bytes decoded so far. */
uint64_t http_chunked_decoded(const struct http_chunked_decoder *dec);

/* Why the body was refused ("chunk size is not hexadecimal", ...), or NULL
 * while it is not. */
const char *http_chunked_reason(const struct http_chunked_decoder *dec);

#endif
