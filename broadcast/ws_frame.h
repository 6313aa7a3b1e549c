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
 * drop its wslay context. Zero-initialised means "at the start". */
struct ws_frame_tracker {
    uint8_t header[14];
    uint8_t header_len;  /* header bytes of the current frame seen so far */
    uint64_t payload_left;
    uint64_t payload_len; /* of the frame in progress (valid while in_payload) */
    bool in_payload;
    bool fragmented;     /* a data message began without FIN and has not ended */
    bool close_seen;     /* a whole close frame has gone by */
};

void ws_frame_tracker_feed(struct ws_frame_tracker *tracker, const uint8_t *data, size_t len);

/* true between frames, with no fragmented message open. */
bool ws_frame_tracker_idle(const struct ws_frame_tracker *tracker);

#endif
