#include "ws_api.h"

#include <stdio.h>
#include <string.h>

#include "http_server.h"
#include "hub.h"
#include "log.h"
#include "session.h"
#include "ws_handshake.h"

static bool path_is(const struct http_request_head *head, const char *path)
{
    size_t len = http_request_path_len(head);
    return len == strlen(path) && memcmp(head->target, path, len) == 0;
}

void ws_api_handle(struct http_exchange *ex, void *arg)
{
    struct hub *hub = arg;
    const struct http_request_head *head = http_exchange_head(ex);
    char accept[WS_ACCEPT_LEN + 1], peer[64], body[256];
    const char *reason = NULL;
    int rc = ws_handshake_check(head, accept, &reason);

    if (rc == WS_HANDSHAKE_OK) {
        struct bufferevent *bev;
        snprintf(peer, sizeof peer, "%s", http_exchange_peer(ex));
        bev = http_exchange_take_connection(ex);
        if (session_start(hub, bev, accept, peer) < 0)
            log_error("ws %s: out of memory starting a session", peer);
        return;
    }
    if (rc == WS_HANDSHAKE_NOT_UPGRADE) {
        if (path_is(head, "/healthz") && http_request_method_is(head, "GET")) {
            http_exchange_respond_code(ex, 200, "OK");
            return;
        }
        http_exchange_respond_full(ex, 426, "Upgrade: websocket\r\nConnection: Upgrade\r\n",
                                   "application/json", "{\"code\":\"UPGRADE_REQUIRED\"}", 27);
        return;
    }
    log_info("ws %s: bad handshake: %s", http_exchange_peer(ex), reason ? reason : "invalid");
    snprintf(body, sizeof body, "{\"code\":\"BAD_HANDSHAKE\",\"reason\":\"%s\"}",
             reason ? reason : "invalid WebSocket handshake");
    http_exchange_respond_full(ex, 400,
                               reason && strstr(reason, "Version") ? "Sec-WebSocket-Version: 13\r\n"
                                                                   : NULL,
                               "application/json", body, strlen(body));
}
