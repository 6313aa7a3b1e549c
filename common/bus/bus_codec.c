/* Bus frame codec: see bus_codec.h for the wire format.
 *
 * The decoder checks the header one byte position at a time, in the order
 * the bytes arrive (the kind, whether this side receives it, and body_len
 * are judged as soon as byte 4 is there, then flags, then reserved), so a
 * prefix of a frame never yields a verdict the whole frame would contradict:
 * it is either BUS_AGAIN or the same error.
 */
#include "bus/bus_codec.h"

#include <string.h>

#define BUS_OFF_KIND 4
#define BUS_OFF_FLAGS 5
#define BUS_OFF_RESERVED 6
/* An EVENT body: seq, run, number, type_len, then the type and the message. */
#define BUS_EVENT_FIXED (8 + 8 + 8 + 1)
#define BUS_EVENT_BODY_MIN (BUS_EVENT_FIXED + 1 + 1)

static uint16_t get_u16(const uint8_t *p)
{
    return (uint16_t)((uint16_t)p[0] << 8 | p[1]);
}

static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t get_u64(const uint8_t *p)
{
    return (uint64_t)get_u32(p) << 32 | get_u32(p + 4);
}

static void put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static void put_u64(uint8_t *p, uint64_t v)
{
    put_u32(p, (uint32_t)(v >> 32));
    put_u32(p + 4, (uint32_t)v);
}

static void put_header(uint8_t *p, uint32_t body_len, enum bus_kind kind)
{
    put_u32(p, body_len);
    p[BUS_OFF_KIND] = (uint8_t)kind;
    p[BUS_OFF_FLAGS] = 0;
    put_u16(p + BUS_OFF_RESERVED, 0);
}

/* Judges the kind, then body_len against it. An unknown kind is BUS_ERR_KIND
 * and a known one this side never receives BUS_ERR_NOT_ALLOWED, whatever
 * body_len says. */
static int check_kind_and_body_len(uint32_t body_len, uint8_t kind, const struct bus_decoder *dec,
                                   size_t max_message)
{
    if (kind < BUS_KIND_HELLO || kind > BUS_KIND_SYNC)
        return BUS_ERR_KIND;
    if (!(dec->allowed_kinds & BUS_KIND_BIT(kind)))
        return BUS_ERR_NOT_ALLOWED;
    switch (kind) {
    case BUS_KIND_HELLO:
    case BUS_KIND_ACK:
        return body_len == 8 ? BUS_OK : BUS_ERR_MALFORMED;
    case BUS_KIND_SYNC:
        return body_len == 16 ? BUS_OK : BUS_ERR_MALFORMED;
    case BUS_KIND_EVENT:
    case BUS_KIND_HISTORY:
        if (body_len < BUS_EVENT_BODY_MIN)
            return BUS_ERR_MALFORMED;
        /* Upper bound for the longest type; the exact message bound is
         * checked once type_len is known. Both sides are well below 2^32
         * plus max_message, so the sum cannot wrap. */
        if (body_len > BUS_EVENT_FIXED + BUS_TYPE_MAX + (uint64_t)max_message)
            return BUS_ERR_TOO_LARGE;
        return BUS_OK;
    default:
        return BUS_ERR_KIND;
    }
}

/* Validates whatever part of the 8-byte header is present. */
static int check_header(const uint8_t *buf, size_t len, const struct bus_decoder *dec,
                        size_t max_message)
{
    int rc;

    if (len <= BUS_OFF_KIND)
        return BUS_AGAIN;
    rc = check_kind_and_body_len(get_u32(buf), buf[BUS_OFF_KIND], dec, max_message);
    if (rc != BUS_OK)
        return rc;
    if (len <= BUS_OFF_FLAGS)
        return BUS_AGAIN;
    if (buf[BUS_OFF_FLAGS] != 0)
        return BUS_ERR_MALFORMED;
    for (size_t i = BUS_OFF_RESERVED; i < BUS_HEADER_LEN; i++) {
        if (len <= i)
            return BUS_AGAIN;
        if (buf[i] != 0)
            return BUS_ERR_MALFORMED;
    }
    return BUS_OK;
}

static int decode_hello(const uint8_t *body, struct bus_frame *out)
{
    if (get_u32(body) != BUS_MAGIC || get_u16(body + 4) != BUS_PROTOCOL_VERSION)
        return BUS_ERR_VERSION;
    if (get_u16(body + 6) != 0)
        return BUS_ERR_MALFORMED;
    out->version = BUS_PROTOCOL_VERSION;
    return BUS_OK;
}

static int decode_event(const uint8_t *body, size_t body_len, size_t max_message,
                        struct bus_frame *out)
{
    size_t type_len = body[BUS_EVENT_FIXED - 1];

    /* body_len >= BUS_EVENT_BODY_MIN, so BUS_EVENT_FIXED + type_len cannot
     * wrap and the subtraction below is guarded by the comparison before it. */
    if (type_len == 0 || BUS_EVENT_FIXED + type_len >= body_len)
        return BUS_ERR_MALFORMED;
    out->seq = get_u64(body);
    out->run = get_u64(body + 8);
    out->number = get_u64(body + 16);
    if (out->run == 0 || out->number == 0)
        return BUS_ERR_MALFORMED;
    out->type = body + BUS_EVENT_FIXED;
    out->type_len = type_len;
    out->message = body + BUS_EVENT_FIXED + type_len;
    out->message_len = body_len - BUS_EVENT_FIXED - type_len;
    if (out->message_len > max_message)
        return BUS_ERR_TOO_LARGE;
    return BUS_OK;
}

int bus_decoder_next(const struct bus_decoder *dec, const uint8_t *buf, size_t len,
                     struct bus_frame *out, size_t *frame_len)
{
    struct bus_frame frame = {0};
    size_t max_message = dec->max_message;
    uint32_t body_len;
    int rc;

    if (max_message > BUS_MESSAGE_HARD_MAX)
        max_message = BUS_MESSAGE_HARD_MAX;
    rc = check_header(buf, len, dec, max_message);
    if (rc == BUS_AGAIN && len < BUS_HEADER_LEN)
        *frame_len = BUS_HEADER_LEN;
    if (rc != BUS_OK)
        return rc;
    body_len = get_u32(buf);
    /* body_len was bounded by check_header, so this cannot overflow. */
    if (len - BUS_HEADER_LEN < body_len) {
        *frame_len = BUS_HEADER_LEN + (size_t)body_len;
        return BUS_AGAIN;
    }

    frame.kind = (enum bus_kind)buf[BUS_OFF_KIND];
    switch (frame.kind) {
    case BUS_KIND_HELLO:
        rc = decode_hello(buf + BUS_HEADER_LEN, &frame);
        break;
    case BUS_KIND_ACK:
        frame.seq = get_u64(buf + BUS_HEADER_LEN);
        break;
    case BUS_KIND_SYNC:
        frame.run = get_u64(buf + BUS_HEADER_LEN);
        frame.number = get_u64(buf + BUS_HEADER_LEN + 8);
        if (frame.run == 0)
            return BUS_ERR_MALFORMED;
        break;
    case BUS_KIND_EVENT:
    case BUS_KIND_HISTORY:
        rc = decode_event(buf + BUS_HEADER_LEN, body_len, max_message, &frame);
        break;
    default:
        return BUS_ERR_KIND; /* unreachable: check_header refused it */
    }
    if (rc != BUS_OK)
        return rc;
    *out = frame;
    *frame_len = BUS_HEADER_LEN + (size_t)body_len;
    return BUS_OK;
}

int bus_decoder_finish(const struct bus_decoder *dec, const uint8_t *buf, size_t len)
{
    struct bus_frame frame;
    size_t frame_len;
    int rc;

    if (len == 0)
        return BUS_OK;
    rc = bus_decoder_next(dec, buf, len, &frame, &frame_len);
    return rc == BUS_AGAIN ? BUS_ERR_TRUNCATED : rc;
}

size_t bus_encode_hello(uint8_t out[BUS_HELLO_FRAME_LEN])
{
    put_header(out, 8, BUS_KIND_HELLO);
    put_u32(out + BUS_HEADER_LEN, BUS_MAGIC);
    put_u16(out + BUS_HEADER_LEN + 4, BUS_PROTOCOL_VERSION);
    put_u16(out + BUS_HEADER_LEN + 6, 0);
    return BUS_HELLO_FRAME_LEN;
}

size_t bus_encode_ack(uint8_t out[BUS_ACK_FRAME_LEN], uint64_t seq)
{
    put_header(out, 8, BUS_KIND_ACK);
    put_u64(out + BUS_HEADER_LEN, seq);
    return BUS_ACK_FRAME_LEN;
}

size_t bus_encode_sync(uint8_t out[BUS_SYNC_FRAME_LEN], uint64_t run, uint64_t number)
{
    if (run == 0)
        return 0;
    put_header(out, 16, BUS_KIND_SYNC);
    put_u64(out + BUS_HEADER_LEN, run);
    put_u64(out + BUS_HEADER_LEN + 8, number);
    return BUS_SYNC_FRAME_LEN;
}

size_t bus_encode_event_head(uint8_t out[BUS_EVENT_HEAD_MAX], enum bus_kind kind, uint64_t seq,
                             uint64_t run, uint64_t number, const char *type, size_t type_len,
                             size_t message_len)
{
    uint8_t *body = out + BUS_HEADER_LEN;
    if ((kind != BUS_KIND_EVENT && kind != BUS_KIND_HISTORY) || run == 0 || number == 0 ||
        type_len == 0 || type_len > BUS_TYPE_MAX || message_len == 0 ||
        message_len > BUS_MESSAGE_HARD_MAX)
        return 0;
    put_header(out, (uint32_t)(BUS_EVENT_FIXED + type_len + message_len), kind);
    put_u64(body, seq);
    put_u64(body + 8, run);
    put_u64(body + 16, number);
    body[BUS_EVENT_FIXED - 1] = (uint8_t)type_len;
    memcpy(body + BUS_EVENT_FIXED, type, type_len);
    return BUS_HEADER_LEN + BUS_EVENT_FIXED + type_len;
}

const char *bus_status_text(int status)
{
    switch (status) {
    case BUS_OK:
        return "ok";
    case BUS_AGAIN:
        return "incomplete frame";
    case BUS_ERR_TOO_LARGE:
        return "frame body over the size limit";
    case BUS_ERR_KIND:
        return "unknown frame kind";
    case BUS_ERR_MALFORMED:
        return "malformed frame";
    case BUS_ERR_VERSION:
        return "peer speaks another bus protocol or version";
    case BUS_ERR_NOT_ALLOWED:
        return "frame kind not sent in this direction";
    case BUS_ERR_TRUNCATED:
        return "stream ended inside a frame";
    default:
        return "unknown bus status";
    }
}
