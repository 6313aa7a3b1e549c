/* Chunked body decoder: see http_chunked.h for the contract.
 *
 * One state per position in the grammar; each byte moves the machine on,
 * except chunk data, which is handed back a slice at a time without being
 * looked at. Nothing is buffered: a chunk-size line is judged byte by byte
 * (the size accumulates as its digits arrive), so a line split across two
 * feeds costs nothing extra.
 */
#include "net/http_chunked.h"

#include <stdbool.h>

#include "net/http_request.h"

enum chunked_state {
    ST_SIZE_FIRST,    /* the first byte of a chunk-size line: a hex digit */
    ST_SIZE,          /* more hex digits, or what ends the size */
    ST_EXT_BWS,       /* blanks after the size: only a ";" may follow them */
    ST_EXT,           /* after a ";": extension text, ignored, up to the CR */
    ST_SIZE_LF,       /* the LF ending a chunk-size line */
    ST_DATA,          /* chunk data */
    ST_DATA_CR,       /* the CRLF after chunk data */
    ST_DATA_LF,       /* its LF */
    ST_TRAILER_START, /* the start of a trailer field line, or the final CRLF */
    ST_TRAILER_NAME,  /* a trailer field name, up to its ":" */
    ST_TRAILER_VALUE, /* a trailer field value, ignored, up to the CR */
    ST_TRAILER_LF,    /* the LF ending a trailer field line */
    ST_FINAL_LF,      /* the LF of the final CRLF */
    ST_OVER,          /* done or refused: status says which */
};

/* Sizes stay below 2^63: a digit more once the size reaches 2^59 would
 * pass it. */
#define CHUNK_SIZE_SHIFT_LIMIT ((uint64_t)1 << 59)

static const char REASON_BARE_LF[] = "bare LF in the chunked body (lines end in CRLF)";
static const char REASON_CR_WITHOUT_LF[] = "CR without LF in the chunked body";
static const char REASON_TRAILER[] = "malformed trailer field";

void http_chunked_init(struct http_chunked_decoder *dec, uint64_t max_body, size_t max_trailer)
{
    dec->state = ST_SIZE_FIRST;
    dec->size = 0;
    dec->decoded = 0;
    dec->max_body = max_body;
    dec->line_len = 0;
    dec->trailer_len = 0;
    dec->max_trailer = max_trailer;
    dec->status = HTTP_CHUNKED_AGAIN;
    dec->reason = NULL;
}

static int hex_value(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static bool is_blank(unsigned char c)
{
    return c == ' ' || c == '\t';
}

static int refuse(struct http_chunked_decoder *dec, int status, const char *reason)
{
    dec->state = ST_OVER;
    dec->status = status;
    dec->reason = reason;
    return status;
}

/* A byte that does not fit where it stands: a bare LF gets its own reason,
 * since it is the one a lenient client is likely to send. */
static int refuse_byte(struct http_chunked_decoder *dec, unsigned char c, const char *reason)
{
    return refuse(dec, HTTP_CHUNKED_BAD, c == '\n' ? REASON_BARE_LF : reason);
}

/* The CRLF of a chunk-size line is in: the chunk's data follows, or, after
 * the last chunk, the trailer section. */
static int end_size_line(struct http_chunked_decoder *dec)
{
    dec->line_len = 0;
    if (dec->size == 0) {
        dec->state = ST_TRAILER_START;
        dec->trailer_len = 0;
        return HTTP_CHUNKED_AGAIN;
    }
    /* decoded never exceeds max_body, so the subtraction cannot wrap. */
    if (dec->size > dec->max_body - dec->decoded)
        return refuse(dec, HTTP_CHUNKED_TOO_LARGE, "chunked body over the size limit");
    dec->state = ST_DATA;
    return HTTP_CHUNKED_AGAIN;
}

/* One byte of a chunk-size line (RFC 9112 §7.1, §7.1.1):
 *   chunk-size [ BWS ";" ext-text ] CRLF */
static int size_line_byte(struct http_chunked_decoder *dec, unsigned char c)
{
    int digit = hex_value(c);

    if (c != '\r' && ++dec->line_len > HTTP_CHUNKED_MAX_LINE)
        return refuse(dec, HTTP_CHUNKED_BAD, "chunk-size line too long");
    switch (dec->state) {
    case ST_SIZE_FIRST:
        if (digit < 0)
            return refuse_byte(dec, c,
                               c == '\r' || c == ';' || is_blank(c)
                                   ? "chunk size missing"
                                   : "chunk size is not hexadecimal");
        dec->size = (uint64_t)digit;
        dec->state = ST_SIZE;
        return HTTP_CHUNKED_AGAIN;
    case ST_SIZE:
        if (digit >= 0) {
            if (dec->size >= CHUNK_SIZE_SHIFT_LIMIT)
                return refuse(dec, HTTP_CHUNKED_BAD, "chunk size of 2^63 or more");
            dec->size = dec->size * 16 + (uint64_t)digit;
        } else if (c == ';') {
            dec->state = ST_EXT;
        } else if (is_blank(c)) {
            dec->state = ST_EXT_BWS;
        } else if (c == '\r') {
            dec->state = ST_SIZE_LF;
        } else {
            return refuse_byte(dec, c, "chunk size is not hexadecimal");
        }
        return HTTP_CHUNKED_AGAIN;
    case ST_EXT_BWS:
        if (c == ';')
            dec->state = ST_EXT;
        else if (!is_blank(c))
            return refuse_byte(dec, c, "blank after the chunk size without an extension");
        return HTTP_CHUNKED_AGAIN;
    default: /* ST_EXT: the text is ignored, but no control character ends it early */
        if (c == '\r')
            dec->state = ST_SIZE_LF;
        else if (!http_is_field_char(c))
            return refuse_byte(dec, c, "control character in a chunk extension");
        return HTTP_CHUNKED_AGAIN;
    }
}

/* One byte of the trailer section (RFC 9112 §7.1.2): field lines, each
 * "name:value" CRLF, then CRLF. The fields are not kept. */
static int trailer_byte(struct http_chunked_decoder *dec, unsigned char c)
{
    if (++dec->trailer_len > dec->max_trailer)
        return refuse(dec, HTTP_CHUNKED_TRAILER_TOO_LARGE, "trailer section over the size limit");
    switch (dec->state) {
    case ST_TRAILER_START:
        if (c == '\r')
            dec->state = ST_FINAL_LF;
        else if (http_is_tchar(c))
            dec->state = ST_TRAILER_NAME;
        else /* a blank here would be obsolete line folding */
            return refuse_byte(dec, c, REASON_TRAILER);
        return HTTP_CHUNKED_AGAIN;
    case ST_TRAILER_NAME:
        if (c == ':')
            dec->state = ST_TRAILER_VALUE;
        else if (!http_is_tchar(c))
            return refuse_byte(dec, c, REASON_TRAILER);
        return HTTP_CHUNKED_AGAIN;
    case ST_TRAILER_VALUE:
        if (c == '\r')
            dec->state = ST_TRAILER_LF;
        else if (!http_is_field_char(c))
            return refuse_byte(dec, c, REASON_TRAILER);
        return HTTP_CHUNKED_AGAIN;
    case ST_TRAILER_LF:
        if (c != '\n')
            return refuse(dec, HTTP_CHUNKED_BAD, REASON_CR_WITHOUT_LF);
        dec->state = ST_TRAILER_START;
        return HTTP_CHUNKED_AGAIN;
    default: /* ST_FINAL_LF */
        if (c != '\n')
            return refuse(dec, HTTP_CHUNKED_BAD, REASON_CR_WITHOUT_LF);
        dec->state = ST_OVER;
        dec->status = HTTP_CHUNKED_DONE;
        return HTTP_CHUNKED_DONE;
    }
}

int http_chunked_feed(struct http_chunked_decoder *dec, const char *buf, size_t len, size_t *used,
                      const char **data, size_t *data_len)
{
    size_t i = 0;
    int rc = HTTP_CHUNKED_AGAIN;

    *data = buf;
    *data_len = 0;
    if (dec->state == ST_OVER) {
        *used = 0;
        return dec->status;
    }
    for (; i < len; i++) {
        unsigned char c = (unsigned char)buf[i];

        switch (dec->state) {
        case ST_DATA: {
            size_t n = len - i;

            if (n > dec->size)
                n = (size_t)dec->size;
            dec->size -= n;
            dec->decoded += n;
            if (dec->size == 0)
                dec->state = ST_DATA_CR;
            *data = buf + i;
            *data_len = n;
            *used = i + n;
            return HTTP_CHUNKED_AGAIN;
        }
        case ST_SIZE_FIRST:
        case ST_SIZE:
        case ST_EXT_BWS:
        case ST_EXT:
            rc = size_line_byte(dec, c);
            break;
        case ST_SIZE_LF:
            rc = c == '\n' ? end_size_line(dec)
                           : refuse(dec, HTTP_CHUNKED_BAD, REASON_CR_WITHOUT_LF);
            break;
        case ST_DATA_CR:
            if (c == '\r')
                dec->state = ST_DATA_LF;
            else
                rc = refuse_byte(dec, c, "chunk data not followed by CRLF");
            break;
        case ST_DATA_LF:
            if (c == '\n')
                dec->state = ST_SIZE_FIRST;
            else
                rc = refuse(dec, HTTP_CHUNKED_BAD, "chunk data not followed by CRLF");
            break;
        default:
            rc = trailer_byte(dec, c);
            break;
        }
        if (rc != HTTP_CHUNKED_AGAIN) {
            /* DONE: the final LF is consumed; a refusal: the byte is not. */
            *used = rc == HTTP_CHUNKED_DONE ? i + 1 : i;
            return rc;
        }
    }
    *used = len;
    return HTTP_CHUNKED_AGAIN;
}

uint64_t http_chunked_decoded(const struct http_chunked_decoder *dec)
{
    return dec->decoded;
}

const char *http_chunked_reason(const struct http_chunked_decoder *dec)
{
    return dec->reason;
}
