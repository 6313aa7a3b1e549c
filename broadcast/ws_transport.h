/* The WebSocket transport: one subscriber (subscriber.h) per upgraded
 * connection, its frames read through wslay and written directly.
 *
 * Life: ws_transport_start (after the opening handshake was checked) ->
 * init messages (init_handler.h) -> events -> close. The subscriber's
 * output is the bufferevent's output buffer; wslay's send callback appends
 * to it and never blocks, so wslay always writes whole frames and the
 * shared event frames can be interleaved with its own (pong, close, init
 * replies) safely.
 */
#ifndef EVS_WS_TRANSPORT_H
#define EVS_WS_TRANSPORT_H

#include <stdint.h>

struct bufferevent;
struct hub;

/* Takes ownership of bev, writes the 101 answer carrying accept, and starts
 * the subscriber (any bytes already in bev's input are read as frames).
 * peer is copied; source is the peer's network (net_source_key), which its
 * credentials' failure budget is charged to. Returns 0, or -1 when out of
 * memory (bev is then freed). */
int ws_transport_start(struct hub *hub, struct bufferevent *bev, const char *accept,
                       const char *peer, uint64_t source);

#endif
