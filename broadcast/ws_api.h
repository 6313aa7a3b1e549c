/* The broadcast daemon's HTTP side: every request that carries a valid
 * WebSocket opening handshake (any path) becomes a session; GET /healthz
 * answers 200; any other request gets 426 (it should upgrade), and a broken
 * handshake gets 400 with the reason. Answers are JSON {"code": ...}.
 * GET /metrics is served too (below).
 */
#ifndef EVS_WS_API_H
#define EVS_WS_API_H

struct http_exchange;
struct http_server;
struct hub;
struct bus_server;
struct redis_reader;
struct metrics_token;

struct ws_api {
    struct hub *hub;                           /* borrowed */
    struct bus_server *bus;                    /* borrowed, for its counters; NULL with Redis */
    struct redis_reader *redis;                /* borrowed; NULL on the UNIX bus */
    struct http_server *http;                  /* borrowed, for its counters */
    const struct metrics_token *metrics_token; /* borrowed; NULL or none set: open */
};

/* The http_server handler; arg is a struct ws_api *. GET /metrics gives
 * the Prometheus text (with a metrics token set, only for "Authorization:
 * Bearer <token>"). */
void ws_api_handle(struct http_exchange *ex, void *arg);

/* The handler of the optional admin port (METRICS_PORT): GET /healthz and
 * GET /metrics of this process only, which matters when several broadcast
 * daemons share the WebSocket port and a scrape there could reach any. */
void ws_api_handle_admin(struct http_exchange *ex, void *arg);

#endif
