/* Server-to-client WebSocket frame headers (RFC 6455 §5.2). */
#include "ws_frame.h"

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
