/* The WebSocket opening handshake, server side (RFC 6455 §4.2).
 *
 * Works on a parsed request head (common/net/http_request.h); pure.
 * Accepted on any path: method GET, HTTP/1.1, "Upgrade" holding the token
 * "websocket", "Connection" holding the token "upgrade" (both compared
 * case-insensitively, in comma-separated lists, since browsers send
 * "keep-alive, Upgrade"), "Sec-WebSocket-Version: 13", and a
 * "Sec-WebSocket-Key" that is base64 of exactly 16 bytes (§4.2.1 item 5).
 */
#ifndef EVS_WS_HANDSHAKE_H
#define EVS_WS_HANDSHAKE_H

#include <stddef.h>
#include "net/http_request.h"

#define WS_ACCEPT_LEN 28 /* base64 of a SHA-1 digest */

enum ws_handshake_status {
    WS_HANDSHAKE_OK = 0,
    WS_HANDSHAKE_NOT_UPGRADE = -1, /* a plain request without "Upgrade": answer 426 */
    WS_HANDSHAKE_BAD = -2,         /* an upgrade request that is wrong: answer 400 with reason */
};

/* Checks head. On WS_HANDSHAKE_OK writes the Sec-WebSocket-Accept value
 * (WS_ACCEPT_LEN chars plus a NUL) to accept. Otherwise *reason (when not
 * NULL) is a short static text for the answer body, e.g. "missing
 * Sec-WebSocket-Key". For a bad version the 400 answer should carry
 * "Sec-WebSocket-Version: 13" (RFC 6455 §4.4); *reason says so. */
int ws_handshake_check(const struct http_request_head *head, char accept[WS_ACCEPT_LEN + 1],
                       const char **reason);

/* Sec-WebSocket-Accept for key[0..len): base64(SHA-1(key + GUID)).
 * Returns 0, or -1 when len is over 64. */
int ws_accept_key(const char *key, size_t len, char accept[WS_ACCEPT_LEN + 1]);

/* Writes the 101 answer for accept into out (cap bytes).
 * Returns its length, or 0 when cap is too small (256 is always enough). */
size_t ws_handshake_response(char *out, size_t cap, const char *accept);

#endif
