/* Ending a connection without losing what was queued on it.
 *
 * A bufferevent may sit on another one (the TLS filter over a socket):
 * then bytes written to it are first transformed into the underlying
 * bufferevent's output, and libevent reports "output empty" when the upper
 * buffer is empty, not when the underlying one reaches the kernel. Freeing
 * at that moment would cut off the end of an answer. These helpers look at
 * both layers.
 */
#ifndef EVS_CONN_FLUSH_H
#define EVS_CONN_FLUSH_H

#include <stddef.h>

struct bufferevent;

/* Client connections are counted from accept to their last close, whoever
 * holds them meanwhile (the HTTP server, a WebSocket session, or the flush
 * below), so that one cap bounds them all. */
void conn_track_open(void);
size_t conn_open_count(void);

/* Frees a client connection's bev at once (closing it) and counts it gone. */
void conn_release(struct bufferevent *bev);

/* Called after each conn_release with the bytes that were still queued on
 * the connection (all layers), so that the daemon can give the memory back
 * (see hub.h). libevent frees those buffers later in the same loop pass,
 * not inside bufferevent_free. One hook per process; NULL removes it. */
typedef void (*conn_release_hook_fn)(void *arg, size_t unsent);
void conn_set_release_hook(conn_release_hook_fn hook, void *arg);

/* Connections still flushing or lingering. */
size_t conn_flush_count(void);

/* Frees every connection still flushing (at exit, after the loop ended). */
void conn_flush_abort_all(void);

/* Bytes queued on bev and not yet handed to the kernel, all layers. */
size_t conn_output_pending(struct bufferevent *bev);

enum conn_close_mode {
    /* We end the connection: a TLS close_notify follows the last answer,
     * then the socket is shut down for writing and input is drained for a
     * moment before it closes (lingering close). */
    CONN_CLOSE_GRACEFUL,
    /* The peer has finished sending (EOF): close_notify, no lingering. */
    CONN_CLOSE_PEER_DONE,
    /* The connection failed (a TLS error, say): only what is already queued
     * (such as a TLS alert) is written, then it closes. */
    CONN_CLOSE_FAILED,
};

/* Takes ownership of bev (a tracked client connection): stops reading,
 * writes out everything queued, then releases it, as mode says. Gives up
 * after timeout_ms without completing, or on a write error. */
void conn_flush_and_close(struct bufferevent *bev, unsigned timeout_ms, enum conn_close_mode mode);

#endif
