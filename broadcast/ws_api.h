/* The broadcast daemon's HTTP side: every request that carries a valid
 * WebSocket opening handshake (any path) becomes a session; GET /healthz
 * answers 200; any other request gets 426 (it should upgrade), and a broken
 * handshake gets 400 with the reason. Answers are JSON {"code": ...}.
 */
#ifndef EVS_WS_API_H
#define EVS_WS_API_H

struct http_exchange;

/* The http_server handler; arg is the struct hub *. */
void ws_api_handle(struct http_exchange *ex, void *arg);

#endif
