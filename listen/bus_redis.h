/* The listen daemon's Redis engine behind bus.h (bus_redis_ops): each
 * event is appended to the Redis stream by redis_publisher.h on a
 * connection of its own, and the publisher's 200 comes once Redis has
 * taken it, with the id Redis gave.
 *
 *  - While the connection is not ready (Redis down, restarting, refusing
 *    the password) an event waits up to wait_ms, in order, then fails
 *    (503); the waiting ones go out in order as soon as it is ready.
 *  - An event sent whose reply does not come (the connection was lost, or
 *    Redis answered with an error) fails: never a 200 Redis did not confirm.
 *  - done is never called from inside publish: a publish that fails at
 *    once is answered from the loop.
 */
#ifndef EVS_LISTEN_BUS_REDIS_H
#define EVS_LISTEN_BUS_REDIS_H

#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>

#include "bus.h"
#include "bus/redis_conn.h"

struct bus_redis_config {
    struct redis_conn_config conn;
    const char *stream; /* copied */
    size_t max_len;     /* the stream's length, trimmed approximately: HISTORY_SIZE */
    unsigned wait_ms;   /* how long an event waits for a ready connection */
    unsigned wait_replicas, wait_replicas_ms; /* REDIS_WAIT_REPLICAS, REDIS_WAIT_MS */
};

struct bus_redis_stats {
    bool ready;
    size_t waiting;   /* events waiting for a ready connection */
    size_t in_flight; /* sent, reply not yet come */
    uint64_t accepted, refused, unavailable;
    uint64_t unreplicated; /* taken by Redis, fewer replicas than asked confirmed it (503) */
    struct redis_conn_stats conn;
};

struct bus_redis;

/* Starts connecting. NULL with the reason in err (a bad stream name, out of
 * memory). */
struct bus_redis *bus_redis_new(struct event_base *base, const struct bus_redis_config *config,
                                char *err, size_t err_len);

void bus_redis_get_stats(const struct bus_redis *bus, struct bus_redis_stats *out);

/* This engine behind bus.h: engine is a struct bus_redis *. */
extern const struct bus_ops bus_redis_ops;

#endif
