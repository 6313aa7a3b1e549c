/* One bus connection from the listen daemon to one broadcast daemon over a
 * UNIX stream socket (frames: common/bus/bus_codec.h).
 *
 * It connects, sends HELLO, waits for the peer's HELLO, and is then ready to
 * carry events. Each event sent is reported back exactly once: acked when
 * the peer's cumulative ACK covers its sequence number, or failed when the
 * connection ends first. A lost connection is re-established with backoff
 * (BUS_LINK_BACKOFF_MIN_MS doubling to BUS_LINK_BACKOFF_MAX_MS). A peer that
 * sends garbage, a wrong version, or leaves an event unacked for
 * ack_timeout_ms is disconnected with a log line.
 */
#ifndef EVS_BUS_LINK_H
#define EVS_BUS_LINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bus/bus_codec.h"

#define BUS_LINK_BACKOFF_MIN_MS 50
#define BUS_LINK_BACKOFF_MAX_MS 1000

struct event_base;
struct bus_link;

struct bus_link_events {
    void (*ready)(void *arg, struct bus_link *link); /* handshake done */
    void (*acked)(void *arg, void *item);
    void (*failed)(void *arg, void *item);
    void (*tried)(void *arg, struct bus_link *link); /* first connection attempt ended */
};

/* path is copied; events and arg are borrowed for the link's life. */
struct bus_link *bus_link_new(struct event_base *base, const char *path, unsigned ack_timeout_ms,
                              const struct bus_link_events *events, void *arg);

/* Closes the connection; every event in flight is reported failed. NULL: no-op. */
void bus_link_free(struct bus_link *link);

bool bus_link_is_ready(const struct bus_link *link);
const char *bus_link_path(const struct bus_link *link);
unsigned long bus_link_in_flight(const struct bus_link *link);

/* Sends an event, whose id is run and number (both non-zero), on a ready
 * link, as kind BUS_KIND_EVENT, or BUS_KIND_HISTORY for one sent before
 * the connection began. message is not copied: it is referenced until
 * release(release_arg) is called (once the bytes are written or the
 * connection is gone). item comes back through acked or failed, unless it
 * is NULL. Returns 0, or -1 when the link is not ready or memory ran out
 * (then neither release nor the item callbacks are called). */
int bus_link_send(struct bus_link *link, enum bus_kind kind, uint64_t run, uint64_t number,
                  const char *type, size_t type_len, const char *message, size_t message_len,
                  void (*release)(void *arg), void *release_arg, void *item);

/* Sends SYNC (bus_codec.h) on a ready link. Returns 0, or -1 when the link
 * is not ready or memory ran out. */
int bus_link_send_sync(struct bus_link *link, uint64_t run, uint64_t number);

#endif
