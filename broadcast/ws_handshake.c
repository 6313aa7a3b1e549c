/* The WebSocket opening handshake, server side (RFC 6455 §4.2). */
#include "ws_handshake.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <mbedtls/base64.h>
#include <mbedtls/sha1.h>

/* RFC 6455 §1.3: the GUID appended to the key before hashing. */
static const char ws_guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

#define WS_KEY_MAX 64
#define WS_KEY_LEN 24 /* base64 of 16 bytes: 22 characters and "==" */
#define WS_NONCE_LEN 16

/* A field may be split over several lines (RFC 9110 §5.3), so every
 * occurrence of name is searched for token, not only the first. */
static bool header_has_token(const struct http_request_head *head, const char *name,
                             const char *token)
{
    size_t name_len = strlen(name);

    for (size_t i = 0; i < head->header_count; i++) {
        const struct http_header *h = &head->headers[i];
        if (h->name_len == name_len && strncasecmp(h->name, name, name_len) == 0 &&
            http_value_has_token(h->value, h->value_len, token))
            return true;
    }
    return false;
}

static size_t header_count(const struct http_request_head *head, const char *name)
{
    size_t name_len = strlen(name), n = 0;

    for (size_t i = 0; i < head->header_count; i++) {
        const struct http_header *h = &head->headers[i];
        if (h->name_len == name_len && strncasecmp(h->name, name, name_len) == 0)
            n++;
    }
    return n;
}

static bool base64_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
           c == '/';
}

/* §4.2.1 item 5: "a base64-encoded value that, when decoded, is 16 bytes in
 * length". The alphabet is checked first because mbedtls_base64_decode
 * skips line breaks and the blanks before them, which have no place in a key. */
static bool key_valid(const char *key, size_t len)
{
    unsigned char nonce[WS_NONCE_LEN + 3];
    size_t nonce_len = 0;
    int rc;

    if (len != WS_KEY_LEN || key[WS_KEY_LEN - 2] != '=' || key[WS_KEY_LEN - 1] != '=')
        return false;
    for (size_t i = 0; i < WS_KEY_LEN - 2; i++)
        if (!base64_char(key[i]))
            return false;
    rc = mbedtls_base64_decode(nonce, sizeof(nonce), &nonce_len, (const unsigned char *)key, len);
    return rc == 0 && nonce_len == WS_NONCE_LEN;
}

int ws_handshake_check(const struct http_request_head *head, char accept[WS_ACCEPT_LEN + 1],
                       const char **reason)
{
    const struct http_header *version, *key;
    const char *why;
    int status = WS_HANDSHAKE_BAD;

    /* Without "Upgrade: websocket" this is plain HTTP, which this port does
     * not serve: §4.2.2 suggests 426 so that the client can retry. */
    if (!header_has_token(head, "Upgrade", "websocket")) {
        why = "this port serves WebSocket only: send an Upgrade: websocket request";
        status = WS_HANDSHAKE_NOT_UPGRADE;
        goto fail;
    }
    /* §4.2.1 item 1. */
    if (head->method_len != 3 || memcmp(head->method, "GET", 3) != 0) {
        why = "method must be GET";
        goto fail;
    }
    if (head->version_minor != 1) {
        why = "HTTP/1.1 required";
        goto fail;
    }
    /* §4.2.1 item 4. */
    if (!header_has_token(head, "Connection", "upgrade")) {
        why = "Connection must include Upgrade";
        goto fail;
    }
    /* §4.2.1 item 6; §4.4 asks for the versions we speak in the answer,
     * whether the field is missing or wrong, so both share one reason. */
    version = http_request_header(head, "Sec-WebSocket-Version");
    if (!version || header_count(head, "Sec-WebSocket-Version") != 1 || version->value_len != 2 ||
        memcmp(version->value, "13", 2) != 0) {
        why = "unsupported Sec-WebSocket-Version; this server speaks 13";
        goto fail;
    }
    /* §11.3.1: the key must not appear more than once. */
    key = http_request_header(head, "Sec-WebSocket-Key");
    if (!key) {
        why = "missing Sec-WebSocket-Key";
        goto fail;
    }
    if (header_count(head, "Sec-WebSocket-Key") != 1) {
        why = "Sec-WebSocket-Key must appear once";
        goto fail;
    }
    if (!key_valid(key->value, key->value_len) ||
        ws_accept_key(key->value, key->value_len, accept) != 0) {
        why = "Sec-WebSocket-Key must be base64 of 16 bytes";
        goto fail;
    }
    return WS_HANDSHAKE_OK;

fail:
    if (reason)
        *reason = why;
    return status;
}

int ws_accept_key(const char *key, size_t len, char accept[WS_ACCEPT_LEN + 1])
{
    unsigned char input[WS_KEY_MAX + sizeof(ws_guid) - 1];
    unsigned char digest[20];
    size_t out_len = 0;

    if (len > WS_KEY_MAX)
        return -1;
    /* §4.2.2 item 5.4: base64(SHA-1(key + GUID)), the key as sent. */
    if (len > 0)
        memcpy(input, key, len);
    memcpy(input + len, ws_guid, sizeof(ws_guid) - 1);
    if (mbedtls_sha1_ret(input, len + sizeof(ws_guid) - 1, digest) != 0)
        return -1;
    if (mbedtls_base64_encode((unsigned char *)accept, WS_ACCEPT_LEN + 1, &out_len, digest,
                              sizeof(digest)) != 0 ||
        out_len != WS_ACCEPT_LEN)
        return -1;
    accept[WS_ACCEPT_LEN] = '\0';
    return 0;
}

size_t ws_handshake_response(char *out, size_t cap, const char *accept)
{
    int n = snprintf(out, cap,
                     "HTTP/1.1 101 Switching Protocols\r\n"
                     "Upgrade: websocket\r\n"
                     "Connection: Upgrade\r\n"
                     "Sec-WebSocket-Accept: %.*s\r\n"
                     "\r\n",
                     WS_ACCEPT_LEN, accept);

    if (n < 0 || (size_t)n >= cap)
        return 0;
    return (size_t)n;
}
