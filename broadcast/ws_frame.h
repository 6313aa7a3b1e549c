/* Server-to-client WebSocket frame headers (RFC 6455 §5.2). Server frames
 * are never masked, so one encoded frame is valid for every subscriber: this
 * is what lets an event be encoded once and shared. Pure. */
#ifndef EVS_WS_FRAME_H
#define EVS_WS_FRAME_H

#include <stddef.h>
#include <stdint.h>

#define WS_FRAME_HEADER_MAX 10
#define WS_OPCODE_TEXT 0x1

/* Writes the header of a final, unmasked frame with opcode and payload_len.
 * Returns its length (2, 4 or 10). */
size_t ws_frame_header_encode(uint8_t out[WS_FRAME_HEADER_MAX], uint8_t opcode,
                              uint64_t payload_len);

#endif
