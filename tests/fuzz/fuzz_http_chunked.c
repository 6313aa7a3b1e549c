/* Fuzz target for the chunked body decoder. The first byte picks a mode:
 *
 *   even: the rest is a body as a client might send it. Fed whole, fed cut
 *         at two places picked by the input, and fed a byte at a time, it
 *         must give the same answer, stop at the same byte and decode the
 *         same data; slices must lie inside what was consumed; the decoded
 *         size must stay within the limit; a body that ended must end the
 *         same way when fed alone, and be incomplete one byte short.
 *   odd:  the rest is data. It is encoded in chunks sized by the input, with
 *         extensions and trailers, and decoding must give it back exactly.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/http_chunked.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_INPUT 65536

struct outcome {
    int status;
    size_t end;
    size_t decoded;
    uint8_t body[MAX_INPUT];
};

static struct outcome whole, split, bytewise, again;
/* At most 12 bytes of size line and 2 of CRLF around each byte of data. */
static uint8_t encoded[15 * MAX_INPUT + 4096];

/* Feeds buf[0..len) cut at the ncuts sorted offsets in cuts, or, with step,
 * in pieces of step bytes. */
static void decode(const uint8_t *buf, size_t len, const size_t *cuts, size_t ncuts, size_t step,
                   uint64_t max_body, size_t max_trailer, struct outcome *out)
{
    struct http_chunked_decoder dec;
    size_t start = 0;

    http_chunked_init(&dec, max_body, max_trailer);
    out->status = HTTP_CHUNKED_AGAIN;
    out->decoded = 0;
    out->end = 0;
    if (step)
        ncuts = len / step;
    for (size_t piece = 0; piece <= ncuts && out->status == HTTP_CHUNKED_AGAIN; piece++) {
        size_t stop = piece < ncuts ? (step ? (piece + 1) * step : cuts[piece]) : len;
        size_t pos = start;

        do {
            const char *slice;
            size_t used, slice_len;
            const char *at = (const char *)buf + pos;

            out->status = http_chunked_feed(&dec, at, stop - pos, &used, &slice, &slice_len);
            if (used > stop - pos)
                abort();
            if (slice_len > 0) {
                if (slice < at || slice + slice_len > at + used)
                    abort();
                if (out->status != HTTP_CHUNKED_AGAIN)
                    abort();
                memcpy(out->body + out->decoded, slice, slice_len);
                out->decoded += slice_len;
            }
            pos += used;
        } while (out->status == HTTP_CHUNKED_AGAIN && pos < stop);
        out->end = pos;
        start = stop;
    }
    if (out->status > HTTP_CHUNKED_DONE || out->status < HTTP_CHUNKED_TRAILER_TOO_LARGE)
        abort();
    if (http_chunked_decoded(&dec) != out->decoded || out->decoded > max_body)
        abort();
    if ((http_chunked_reason(&dec) != NULL) !=
        (out->status != HTTP_CHUNKED_AGAIN && out->status != HTTP_CHUNKED_DONE))
        abort();
    if (out->status == HTTP_CHUNKED_AGAIN && out->end != len)
        abort();
}

static void same(const struct outcome *a, const struct outcome *b)
{
    if (a->status != b->status || a->end != b->end || a->decoded != b->decoded ||
        memcmp(a->body, b->body, a->decoded) != 0)
        abort();
}

static void check_body(const uint8_t *buf, size_t len, uint64_t max_body, size_t max_trailer,
                       uint8_t knob)
{
    size_t cuts[2] = {len * (knob & 0x0f) / 15, len * (knob >> 4) / 15};

    if (cuts[0] > cuts[1]) {
        size_t t = cuts[0];
        cuts[0] = cuts[1];
        cuts[1] = t;
    }
    decode(buf, len, NULL, 0, 0, max_body, max_trailer, &whole);
    decode(buf, len, cuts, 2, 0, max_body, max_trailer, &split);
    same(&whole, &split);
    decode(buf, len, NULL, 0, 1, max_body, max_trailer, &bytewise);
    same(&whole, &bytewise);
    if (whole.status == HTTP_CHUNKED_DONE) {
        decode(buf, whole.end, NULL, 0, 0, max_body, max_trailer, &again);
        same(&whole, &again);
        decode(buf, whole.end - 1, NULL, 0, 0, max_body, max_trailer, &again);
        if (again.status != HTTP_CHUNKED_AGAIN)
            abort();
    }
}

/* Encodes data in chunks whose sizes come from the data itself, with an
 * extension on some size lines and a trailer, then decodes it. */
static void check_round_trip(const uint8_t *data, size_t size)
{
    size_t len = 0, pos = 0, n = 0;

    while (pos < size) {
        size_t chunk = 1 + data[pos] % 64;

        if (chunk > size - pos)
            chunk = size - pos;
        len +=
            (size_t)sprintf((char *)encoded + len, n % 3 ? "%zx\r\n" : "%zX;ext=\"v\"\r\n", chunk);
        memcpy(encoded + len, data + pos, chunk);
        len += chunk;
        memcpy(encoded + len, "\r\n", 2);
        len += 2;
        pos += chunk;
        n++;
    }
    len += (size_t)sprintf((char *)encoded + len, "0\r\nX-Sum: %zu\r\n\r\n", n);
    check_body(encoded, len, size, 64, size ? data[0] : 0);
    if (whole.status != HTTP_CHUNKED_DONE || whole.end != len || whole.decoded != size ||
        memcmp(whole.body, data, size) != 0)
        abort();
    /* One byte less of limit is refused as too large. */
    if (size > 0) {
        decode(encoded, len, NULL, 0, 0, size - 1, 64, &again);
        if (again.status != HTTP_CHUNKED_TOO_LARGE)
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2 || size > MAX_INPUT)
        return 0;
    if (data[0] & 1) {
        check_round_trip(data + 1, size - 1);
        return 0;
    }
    /* Limits from the input too, small enough to be reached. */
    check_body(data + 2, size - 2, data[0] & 0x80 ? (uint64_t)1 << 62 : (uint64_t)data[0] * 4,
               2 + data[1] % 64, data[1]);
    return 0;
}
