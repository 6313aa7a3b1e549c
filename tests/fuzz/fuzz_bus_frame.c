/* Fuzz target for the bus decoder (bus_decoder_next): the first byte picks the
 * receiving side (from a listen daemon, from a broadcast daemon, or every
 * kind) and where the stream is split; the rest is the stream. It is decoded
 * whole, in two pieces, and a byte at a time, as a daemon keeping the bytes
 * not yet consumed would; all three must yield the same frames and end with
 * the same status. Every frame must lie inside the stream, be of a kind the
 * side receives and re-encode to the same bytes; an error must come no later
 * than the bytes that prove it, so a refused frame is never buffered whole. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bus/bus_codec.h"

#define FUZZ_MAX_MESSAGE 4096
/* Pending bytes up to this many are copied to a buffer of their exact size,
 * so that a read past them is caught; longer ones are decoded in place. */
#define FUZZ_COPY_MAX 512

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const struct bus_decoder decoders[] = {
    {BUS_KINDS_FROM_LISTEN, FUZZ_MAX_MESSAGE},
    {BUS_KINDS_FROM_BROADCAST, 0},
    {BUS_KINDS_FROM_LISTEN | BUS_KINDS_FROM_BROADCAST, FUZZ_MAX_MESSAGE},
};

/* How a stream ended up: the offset where each frame ended, and the status
 * after the last byte was fed (BUS_AGAIN, or the error that ended it) with
 * the bytes that had been fed by then. */
struct run {
    size_t *ends;
    size_t count;
    int status;
    size_t fed;
};

static uint32_t get_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void check_inside(const uint8_t *p, size_t len, const uint8_t *base, size_t base_len)
{
    if (p < base || len > base_len || (size_t)(p - base) > base_len - len)
        abort();
}

/* The decoded frame must be exactly what the encoders produce for it. */
static void check_frame(const struct bus_decoder *dec, const uint8_t *frame, size_t frame_len,
                        const struct bus_frame *f)
{
    uint8_t expect[BUS_EVENT_HEAD_MAX];
    size_t n;

    if (frame_len < BUS_HEADER_LEN || !(dec->allowed_kinds & BUS_KIND_BIT(f->kind)))
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
    case BUS_KIND_SYNC:
        if (f->run == 0)
            abort();
        n = bus_encode_sync(expect, f->run, f->number);
        break;
    case BUS_KIND_EVENT:
    case BUS_KIND_HISTORY:
        check_inside(f->type, f->type_len, frame, frame_len);
        check_inside(f->message, f->message_len, frame, frame_len);
        if (f->type_len == 0 || f->type_len > BUS_TYPE_MAX || f->message_len == 0 ||
            f->message_len > dec->max_message)
            abort();
        if (f->message != f->type + f->type_len || f->message + f->message_len != frame + frame_len)
            abort();
        if (f->run == 0 || f->number == 0)
            abort();
        n = bus_encode_event_head(expect, f->kind, f->seq, f->run, f->number, (const char *)f->type,
                                  f->type_len, f->message_len);
        if (n == 0 || n + f->message_len != frame_len)
            abort();
        break;
    default:
        abort();
    }
    if (f->kind != BUS_KIND_EVENT && f->kind != BUS_KIND_HISTORY && n != frame_len)
        abort();
    if (memcmp(expect, frame, n) != 0)
        abort();
}

/* Takes every whole frame off data[*consumed..fed). */
static void take_frames(const struct bus_decoder *dec, const uint8_t *data, size_t *consumed,
                        size_t fed, struct run *r)
{
    while (r->status == BUS_AGAIN) {
        size_t len = fed - *consumed, frame_len = 0;
        const uint8_t *buf = data + *consumed;
        uint8_t *copy = NULL;
        struct bus_frame f;

        if (len > 0 && len <= FUZZ_COPY_MAX) {
            copy = malloc(len);
            if (!copy)
                abort();
            memcpy(copy, buf, len);
            buf = copy;
        }
        r->status = bus_decoder_next(dec, buf, len, &f, &frame_len);
        r->fed = fed;
        if (r->status == BUS_OK) {
            if (frame_len == 0 || frame_len > len)
                abort();
            check_frame(dec, buf, frame_len, &f);
            r->ends[r->count++] = *consumed + frame_len;
            *consumed += frame_len;
            r->status = BUS_AGAIN;
        } else if (r->status == BUS_AGAIN) {
            /* It names the bytes it needs: the header, then the frame. */
            if (frame_len <= len ||
                frame_len != (len < BUS_HEADER_LEN ? BUS_HEADER_LEN
                                                   : BUS_HEADER_LEN + (size_t)get_be32(buf)))
                abort();
            free(copy);
            return;
        } else if (bus_status_text(r->status) == NULL) {
            abort();
        }
        free(copy);
    }
}

/* Feeds data[0..size) in a first piece of `first` bytes, then pieces of
 * `step` bytes, stopping at the first error. */
static void run_stream(const struct bus_decoder *dec, const uint8_t *data, size_t size,
                       size_t first, size_t step, struct run *r)
{
    size_t consumed = 0, fed = 0;

    r->count = 0;
    r->status = BUS_AGAIN;
    r->fed = 0;
    fed = first;
    take_frames(dec, data, &consumed, fed, r);
    while (r->status == BUS_AGAIN && fed < size) {
        fed = size - fed < step ? size : fed + step;
        take_frames(dec, data, &consumed, fed, r);
    }
}

static void check_same(const struct run *a, const struct run *b)
{
    if (a->count != b->count || a->status != b->status)
        abort();
    if (a->count > 0 && memcmp(a->ends, b->ends, a->count * sizeof(a->ends[0])) != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const struct bus_decoder *dec;
    struct run whole, split, bytes;
    size_t last_end;

    if (size == 0)
        return 0;
    dec = &decoders[data[0] % 3];
    size_t cut = (size_t)data[0] * size / 256;
    data++;
    size--;
    if (cut > size)
        cut = size;

    /* At most one frame per 16 bytes (the shortest frame). */
    whole.ends = malloc((size / BUS_HEADER_LEN + 1) * sizeof(size_t));
    split.ends = malloc((size / BUS_HEADER_LEN + 1) * sizeof(size_t));
    bytes.ends = malloc((size / BUS_HEADER_LEN + 1) * sizeof(size_t));
    if (!whole.ends || !split.ends || !bytes.ends)
        abort();

    run_stream(dec, data, size, size, size, &whole);
    run_stream(dec, data, size, cut, size, &split);
    run_stream(dec, data, size, 0, 1, &bytes);
    check_same(&whole, &split);
    check_same(&whole, &bytes);

    last_end = whole.count > 0 ? whole.ends[whole.count - 1] : 0;
    if (bytes.status != BUS_AGAIN) {
        /* Fed a byte at a time, an error is seen as soon as the bytes prove
         * it: a kind with its kind byte, and no frame is ever buffered past
         * the longest one the limits allow. */
        size_t seen = bytes.fed - last_end;
        if ((bytes.status == BUS_ERR_KIND || bytes.status == BUS_ERR_NOT_ALLOWED) && seen != 5)
            abort();
        if (seen > BUS_EVENT_HEAD_MAX + dec->max_message)
            abort();
    } else {
        /* The stream ends here: what is left over is a truncated frame. */
        if (bus_decoder_finish(dec, data + last_end, size - last_end) !=
            (last_end == size ? BUS_OK : BUS_ERR_TRUNCATED))
            abort();
    }

    free(whole.ends);
    free(split.ends);
    free(bytes.ends);
    return 0;
}
