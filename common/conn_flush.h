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

/* Bytes queued on bev and not yet handed to the kernel, all layers. */
size_t conn_output_pending(struct bufferevent *bev);

/* Takes ownership of bev: stops reading, writes out everything queued, then
 * frees it (closing the socket). Gives up and frees after timeout_ms
 * without completing, or on a write error. */
void conn_flush_and_close(struct bufferevent *bev, unsigned timeout_ms);

#endif
