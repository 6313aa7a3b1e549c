/* Server-to-client WebSocket frame headers (RFC 6455 §5.2). Server frames
 * are never masked, so one encoded frame is valid for every subscriber: this
 * is what lets an event be encoded once and shared. Pure. */
#ifndef EVS_WS_FRAME_H
#define EVS_WS_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WS_FRAME_HEADER_MAX 10
#define WS_OPCODE_TEXT 0x1

/* Writes the header of a final, unmasked frame with opcode and payload_len.
 * Returns its length (2, 4 or 10). */
size_t ws_frame_header_encode(uint8_t out[WS_FRAME_HEADER_MAX], uint8_t opcode,
                              uint64_t payload_len);

/* Follows the frame boundaries of the client's byte stream (RFC 6455
 * §5.2) without keeping the bytes: whether the stream is between frames and
 * whether a fragmented data message is still open (§5.4). The session uses
 * it to know when wslay holds no partial state, so that an idle session can
 * drop its wslay context.
 *
 * It also judges each frame on its header alone, before any of its payload
 * is read, by the rules that wslay does not apply or applies only once the
 * payload comes: a control frame must be final and carry at most 125 bytes
 * (§5.5), a close frame's body is empty or at least its 2-byte code
 * (§5.5.1), and no frame may announce more than max_payload bytes. The first
 * frame that breaks one sets failure (with the close code that fails the
 * connection, §7.4.1) and the tracker stops there: it consumes nothing
 * more, and frame_offset is where that frame began in the stream.
 *
 * Zero-initialised means "at the start", with no payload limit. */
struct ws_frame_tracker {
    uint8_t header[14];
    uint8_t header_len; /* header bytes of the current frame seen so far */
    uint64_t payload_left;
    uint64_t payload_len;  /* of the frame in progress (valid while in_payload, or refused) */
    uint64_t max_payload;  /* set by the owner; 0: no limit */
    uint64_t offset;       /* bytes of the stream consumed */
    uint64_t frame_offset; /* stream offset of the current frame's first byte */
    bool in_payload;
    bool fragmented;            /* a data message began without FIN and has not ended */
    bool close_seen;            /* a whole close frame has gone by */
    uint16_t failure;           /* 0, or 1002 / 1009: the stream broke a rule above */
    const char *failure_reason; /* static text for failure ("control frame over 125 bytes") */
};

void ws_frame_tracker_feed(struct ws_frame_tracker *tracker, const uint8_t *data, size_t len);

/* true between frames, with no fragmented message open. */
bool ws_frame_tracker_idle(const struct ws_frame_tracker *tracker);

#endif
