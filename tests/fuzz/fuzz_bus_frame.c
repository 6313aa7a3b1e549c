/* Fuzz target for the bus frame decoder: the input is decoded as a stream of
 * frames, every decoded slice must lie inside the frame it came from and
 * re-encode to the same bytes, and a prefix of the input must never decode
 * to something the whole input contradicts. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bus/bus_codec.h"

#define FUZZ_MAX_MESSAGE 4096

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_inside(const uint8_t *p, size_t len, const uint8_t *base, size_t base_len)
{
    if (p < base || len > base_len || (size_t)(p - base) > base_len - len)
        abort();
}

/* The decoded frame must be exactly what the encoders produce for it. */
static void check_frame(const uint8_t *frame, size_t frame_len, const struct bus_frame *f)
{
    uint8_t expect[BUS_EVENT_HEAD_MAX];
    size_t n;

    if (frame_len < BUS_HEADER_LEN)
        abort();
    switch (f->kind) {
    case BUS_KIND_HELLO:
        if (f->version != BUS_PROTOCOL_VERSION)
            abort();
        n = bus_encode_hello(expect);
        break;
    case BUS_KIND_ACK:
        n = bus_encode_ack(expect, f->seq);
        break;
    case BUS_KIND_EVENT:
        check_inside(f->type, f->type_len, frame, frame_len);
        check_inside(f->message, f->message_len, frame, frame_len);
        if (f->type_len == 0 || f->type_len > BUS_TYPE_MAX || f->message_len == 0 ||
            f->message_len > FUZZ_MAX_MESSAGE)
            abort();
        if (f->message != f->type + f->type_len || f->message + f->message_len != frame + frame_len)
            abort();
        n = bus_encode_event_head(expect, f->seq, (const char *)f->type, f->type_len,
                                  f->message_len);
        if (n == 0 || n + f->message_len != frame_len)
            abort();
        break;
    default:
        abort();
    }
    if (f->kind != BUS_KIND_EVENT && n != frame_len)
        abort();
    if (memcmp(expect, frame, n) != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct bus_frame f, g;
    size_t off = 0;
    size_t frame_len, prefix_frame_len;
    int whole, prefix;

    while (off < size) {
        int rc = bus_frame_decode(data + off, size - off, FUZZ_MAX_MESSAGE, &f, &frame_len);

        if (rc != BUS_OK) {
            if (rc != BUS_AGAIN && rc != BUS_ERR_TOO_LARGE && rc != BUS_ERR_KIND &&
                rc != BUS_ERR_MALFORMED && rc != BUS_ERR_VERSION)
                abort();
            if (bus_status_text(rc) == NULL)
                abort();
            break;
        }
        if (frame_len == 0 || frame_len > size - off)
            abort();
        check_frame(data + off, frame_len, &f);
        off += frame_len;
    }

    if (size == 0)
        return 0;
    /* The same bytes arriving in two reads: the first read sees a prefix. */
    size_t split = (size_t)data[0] * size / 256;
    whole = bus_frame_decode(data, size, FUZZ_MAX_MESSAGE, &f, &frame_len);
    prefix = bus_frame_decode(data, split, FUZZ_MAX_MESSAGE, &g, &prefix_frame_len);
    if (prefix != BUS_AGAIN && prefix != whole)
        abort();
    if (prefix == BUS_OK && (prefix_frame_len > split || prefix_frame_len != frame_len))
        abort();
    return 0;
}
