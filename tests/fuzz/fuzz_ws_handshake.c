/* Request bytes -> http_request_parse -> ws_handshake_check, with the
 * invariants of an accepted handshake checked against the parsed head. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "net/http_request.h"
#include "ws_handshake.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct http_request_head head;
    char accept[WS_ACCEPT_LEN + 1], expected[WS_ACCEPT_LEN + 1], response[256];
    const char *reason = NULL;
    const struct http_header *key;
    int status;

    if (http_request_parse((const char *)data, size, 8192, &head) != HTTP_PARSE_OK)
        return 0;
    if (head.head_len > size)
        abort();

    memset(accept, 0, sizeof(accept));
    status = ws_handshake_check(&head, accept, &reason);
    if (status != WS_HANDSHAKE_OK) {
        if ((status != WS_HANDSHAKE_NOT_UPGRADE && status != WS_HANDSHAKE_BAD) || !reason ||
            reason[0] == '\0')
            abort();
        return 0;
    }

    /* Accepted: the rules of RFC 6455 §4.2.1 must hold for what was parsed. */
    if (head.method_len != 3 || memcmp(head.method, "GET", 3) != 0 || head.version_minor != 1)
        abort();
    key = http_request_header(&head, "Sec-WebSocket-Key");
    if (!key || key->value_len != 24)
        abort();
    if (ws_accept_key(key->value, key->value_len, expected) != 0 ||
        strlen(accept) != WS_ACCEPT_LEN || memcmp(accept, expected, sizeof(expected)) != 0)
        abort();
    if (ws_handshake_response(response, sizeof(response), accept) == 0)
        abort();
    return 0;
}
