/* Server-to-client WebSocket frame headers (RFC 6455 §5.2). */
#include "ws_frame.h"

#include <string.h>

size_t ws_frame_header_encode(uint8_t out[WS_FRAME_HEADER_MAX], uint8_t opcode,
                              uint64_t payload_len)
{
    /* FIN set, RSV1-3 clear (no extension is negotiated), opcode in the low nibble. */
    out[0] = (uint8_t)(0x80 | (opcode & 0x0f));

    /* The MASK bit stays clear: §5.1 forbids masking server-to-client frames.
     * §5.2 requires the minimal length encoding. */
    if (payload_len <= 125) {
        out[1] = (uint8_t)payload_len;
        return 2;
    }
    if (payload_len <= 0xffff) {
        out[1] = 126;
        out[2] = (uint8_t)(payload_len >> 8);
        out[3] = (uint8_t)payload_len;
        return 4;
    }
    /* §5.2: the most significant bit of the 64-bit length must be 0. No
     * payload we hold in memory comes near 2^63 bytes, so masking it off only
     * guards against a caller bug producing an invalid frame. */
    payload_len &= UINT64_C(0x7fffffffffffffff);
    out[1] = 127;
    for (int i = 0; i < 8; i++)
        out[2 + i] = (uint8_t)(payload_len >> (56 - 8 * i));
    return 10;
}

/* Header length once its first two bytes are known (§5.2): 2, plus 2 or 8
 * for an extended length, plus 4 for a masking key. */
static size_t tracker_header_need(const struct ws_frame_tracker *t)
{
    size_t need = 2;
    uint8_t len7;
    if (t->header_len < 2)
        return 2;
    len7 = t->header[1] & 0x7f;
    need += len7 == 126 ? 2 : len7 == 127 ? 8 : 0;
    need += (t->header[1] & 0x80) ? 4 : 0;
    return need;
}

static void tracker_frame_end(struct ws_frame_tracker *t)
{
    uint8_t opcode = t->header[0] & 0x0f;
    bool fin = (t->header[0] & 0x80) != 0;
    /* Data frames (continuation 0, text 1, binary 2) open or close a
     * message; control frames (8 and up) may come in between. */
    if (opcode < 8)
        t->fragmented = !fin;
    if (opcode == 0x8)
        t->close_seen = true;
    t->header_len = 0;
    t->in_payload = false;
}

/* The rules a frame can be judged by on its header (ws_frame.h); sets
 * t->failure when it breaks one. */
static void tracker_judge(struct ws_frame_tracker *t, uint64_t payload)
{
    uint8_t opcode = t->header[0] & 0x0f;
    bool fin = (t->header[0] & 0x80) != 0;
    const char *reason = NULL;
    uint16_t code = 1002; /* protocol error */

    /* Control frames have opcodes 8 and up (§5.5). */
    if ((opcode & 0x8) && !fin)
        reason = "fragmented control frame";
    else if ((opcode & 0x8) && payload > 125)
        reason = "control frame over 125 bytes";
    else if (opcode == 0x8 && payload == 1)
        reason = "close frame with a 1-byte body";
    else if (t->max_payload != 0 && payload > t->max_payload) {
        reason = "message too big";
        code = 1009;
    }
    if (reason != NULL) {
        t->failure = code;
        t->failure_reason = reason;
    }
}

void ws_frame_tracker_feed(struct ws_frame_tracker *t, const uint8_t *data, size_t len)
{
    while (len > 0 && t->failure == 0) {
        if (t->in_payload) {
            uint64_t n = len < t->payload_left ? len : t->payload_left;
            t->payload_left -= n;
            t->offset += n;
            data += n;
            len -= (size_t)n;
            if (t->payload_left == 0)
                tracker_frame_end(t);
            continue;
        }
        if (t->header_len == 0)
            t->frame_offset = t->offset;
        size_t need = tracker_header_need(t);
        size_t take = need - t->header_len;
        if (take > len)
            take = len;
        memcpy(t->header + t->header_len, data, take);
        t->header_len += (uint8_t)take;
        t->offset += take;
        data += take;
        len -= take;
        if (t->header_len < 2 || t->header_len < tracker_header_need(t))
            continue;
        uint8_t len7 = t->header[1] & 0x7f;
        uint64_t payload = len7;
        if (len7 == 126)
            payload = (uint64_t)t->header[2] << 8 | t->header[3];
        else if (len7 == 127) {
            payload = 0;
            for (int i = 0; i < 8; i++)
                payload = payload << 8 | t->header[2 + i];
        }
        t->payload_len = payload;
        tracker_judge(t, payload);
        if (t->failure != 0)
            return;
        t->payload_left = payload;
        if (payload == 0)
            tracker_frame_end(t);
        else
            t->in_payload = true;
    }
}

bool ws_frame_tracker_idle(const struct ws_frame_tracker *t)
{
    return !t->in_payload && t->header_len == 0 && !t->fragmented;
}
