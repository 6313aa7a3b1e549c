/* One WebSocket subscriber: its wslay session, its subscriptions and its
 * share of the hub's timers.
 *
 * Life: session_start (after the opening handshake was checked) -> init
 * messages -> events -> close. Every client message is an init: a session
 * sending more than SESSION_INIT_BURST at once, or one every
 * SESSION_INIT_INTERVAL_MS on average, is closed with 1008, and so is one
 * whose credential was refused SESSION_FAILED_CREDENTIALS_MAX times in a
 * row (after that answer; the earlier refusals leave it open, as the
 * public contract says). See session.c for the figures. The session's output is the bufferevent's
 * output buffer; wslay's send callback appends to it and never blocks, so
 * wslay always writes whole frames and the shared event frames can be
 * interleaved with its own (pong, close, init replies) safely.
 */
#ifndef EVS_SESSION_H
#define EVS_SESSION_H

#include <stdbool.h>
#include <stdint.h>

#include "ws_handshake.h"

struct bufferevent;
struct hub;
struct list_node;
struct session;
struct shared_frame;

/* Takes ownership of bev, writes the 101 answer carrying accept, and starts
 * the session (any bytes already in bev's input are read as frames).
 * peer is copied; source is the peer's network (net_source_key), which its
 * credentials' failure budget is charged to. Returns 0, or -1 when out of
 * memory (bev is then freed). */
int session_start(struct hub *hub, struct bufferevent *bev, const char *accept, const char *peer,
                  uint64_t source);

/* Queues a shared event frame; it is written by session_flush_all, which
 * the hub's flush event runs once the current callback is over. When it
 * does not fit under the backlog limit the session is put on the hub's
 * deferred-close list instead. */
void session_deliver(struct session *session, struct shared_frame *frame);

/* Writes the queued deliveries of every session on hub->unflushed. */
void session_flush_all(struct hub *hub);

/* Starts a close with code and reason; the session ends when the peer
 * answers or after the close timeout. A code that fails the connection
 * (1002, 1007, 1009: RFC 6455 §7.1.7, see session.c) ends the session at
 * once instead, and the connection closes once the close frame is written.
 * Either way s may be freed on return. */
void session_close(struct session *session, uint16_t code, const char *reason);

/* Ends the session now, without a close handshake. */
void session_free(struct session *session);

/* The session whose node on hub->sessions is `node`. */
struct session *session_from_registry(struct list_node *node);

/* Hub timer work, each over the hub's lists (see hub.h). */
void session_expire_init(struct hub *hub, uint64_t now_ms);
void session_expire_closing(struct hub *hub, uint64_t now_ms);
void session_ping_all(struct hub *hub);
void session_close_deferred(struct hub *hub);
void session_close_all(struct hub *hub, uint16_t code, const char *reason);
/* A recheck pass does at most this much per loop pass, so that the loop
 * keeps serving in between: a JWT signature check costs up to about a
 * millisecond (RS256, ES256), and a pass may cover every session. */
#define SESSION_RECHECK_BATCH 256
#define SESSION_RECHECK_BUDGET_MS 5

/* Continues the hub's recheck pass (hub_recheck_sessions) from its cursor:
 * each live session due for a check (hub_recheck_due) is authenticated
 * again, and ended with {"type":"auth","code":"REVOKED"} (or TOKEN_EXPIRED)
 * and 1008 when it no longer passes or no longer allows one of its
 * subscriptions. Stops after SESSION_RECHECK_BATCH checks or
 * SESSION_RECHECK_BUDGET_MS; returns true when sessions remain for another
 * call. */
bool session_recheck_some(struct hub *hub);

/* Memory held by the unsent output of every session (see hub_backlog_bytes). */
uint64_t session_backlog_all(const struct hub *hub);

/* Next deadline on a FIFO (0 when empty). */
uint64_t session_init_deadline(const struct hub *hub);
uint64_t session_close_deadline(const struct hub *hub);

#endif
