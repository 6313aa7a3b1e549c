/* The listen daemon's side of the UNIX-socket bus: hands each accepted
 * event to every connected broadcast daemon and reports when all of them
 * have acked it. The publish handler reaches it through bus.h
 * (bus_client_ops); the connections behind it are bus_link.h.
 *
 * Semantics (the publisher's 200 depends on them):
 *  - An event goes to every link that is ready (handshake done) at the
 *    moment it is published, and succeeds when each of them acks it.
 *  - If a link it was sent on fails before acking (disconnect, protocol
 *    error, no ack within ack_timeout_ms), the event fails: never a silent OK.
 *  - While no link is ready the event waits up to wait_ms for one, then fails.
 *  - The events that went out are kept, bounded like a broadcast daemon's
 *    history (bus/history_limits.h), and sent to each link that becomes
 *    ready, before anything else, as HISTORY frames followed by SYNC
 *    (bus_codec.h): a broadcast daemon that restarts holds the same history
 *    as the others, so its subscribers resume exactly.
 *  - An event's id (bus/event_id.h) is given when it first goes out on a
 *    link: the client's run, chosen when it is made, and the next number of
 *    that run. So numbers are consecutive in the order events go out, and
 *    an event that never went out takes none: a broadcast daemon that sees
 *    a number skipped knows it missed an event.
 */
#ifndef EVS_LISTEN_BUS_CLIENT_H
#define EVS_LISTEN_BUS_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "bus.h"
#include "bus/history_limits.h"
#include "publish_body.h"

struct event_base;
struct bus_client;
struct bus_client_publish;

struct bus_client_config {
    const char *const *paths; /* socket paths, one per broadcast daemon; copied */
    size_t path_count;
    unsigned wait_ms;              /* how long an event waits for a ready link */
    unsigned ack_timeout_ms;       /* a link that leaves an event unacked this long is dropped */
    struct history_limits history; /* of the events kept for links that connect later */
};

/* status: BUS_PUBLISH_OK or BUS_PUBLISH_UNAVAILABLE (bus.h); id: the
 * event's id (EVENT_ID_LEN characters, NUL-terminated, borrowed for the
 * call) when OK, else NULL. */
typedef bus_publish_done_fn bus_client_publish_done_fn;

struct bus_client_stats {
    size_t links;          /* configured */
    size_t ready;          /* handshake done */
    uint64_t reconnects;   /* successful handshakes after the first, all links */
    size_t in_flight;      /* events sent and not yet acked or failed */
    size_t waiting;        /* events waiting for a ready link */
    uint64_t run;          /* of this client's ids */
    uint64_t numbered;     /* events given an id so far: the last number */
    size_t history_events; /* kept for links that connect later */
    size_t history_bytes;
    uint64_t history_sent; /* HISTORY frames sent to links that became ready */
};

/* Starts connecting to every path at once. NULL when out of memory. */
struct bus_client *bus_client_new(struct event_base *base, const struct bus_client_config *config);
/* Fails every pending event (done is called with UNAVAILABLE) and frees. */
void bus_client_free(struct bus_client *bus);

/* Closes every link and fails every pending event (done with UNAVAILABLE);
 * later publishes fail too. For the end of a shutdown's grace period, so
 * that every publisher still gets an answer. */
void bus_client_abort(struct bus_client *bus);

/* Publishes event, taking ownership of its contents (*event is zeroed).
 * done(arg, status) is called exactly once, never from inside bus_client_publish,
 * unless bus_client_publish_cancel is called first. Returns NULL when out of memory
 * (event is then cleared and done is not called). */
struct bus_client_publish *bus_client_publish(struct bus_client *bus, struct publish_event *event,
                                              bus_client_publish_done_fn done, void *arg);

/* The caller no longer wants the result: done will not be called. The
 * event itself still completes on the links. */
void bus_client_publish_cancel(struct bus_client_publish *publish);

void bus_client_get_stats(const struct bus_client *bus, struct bus_client_stats *out);

/* true once every link has been tried at least once (start-up readiness). */
int bus_client_all_tried(const struct bus_client *bus);

/* This engine behind bus.h: engine is a struct bus_client *. */
extern const struct bus_ops bus_client_ops;

#endif
