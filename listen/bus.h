/* The bus as the publish handler (publish_api.c) and the daemon (main.c)
 * see it: an engine behind a table of operations, so that neither knows
 * which one carries the events. Today's engine is the UNIX-socket bus
 * (bus_client.h, bus_client_engine); the Redis stream is the next.
 *
 * What every engine promises the publisher (its 200 depends on it):
 *  - done(arg, status, id) is called exactly once per publish, never from
 *    inside publish, unless cancel was called first;
 *  - BUS_PUBLISH_OK only for an event the engine has handed over (every
 *    connected broadcast daemon acked it, or Redis took it), with its id
 *    (EVENT_ID_LEN characters, borrowed for the call); anything else is
 *    BUS_PUBLISH_UNAVAILABLE with id NULL, answered 503 — never a 200 that
 *    was not handed over;
 *  - an event waits a bounded time (BUS_WAIT_MS) for the engine to be able
 *    to take it.
 */
#ifndef EVS_LISTEN_BUS_H
#define EVS_LISTEN_BUS_H

#include <stdbool.h>
#include <stddef.h>

#include "publish_body.h"

struct evbuffer;

enum bus_publish_status {
    BUS_PUBLISH_OK = 0,
    BUS_PUBLISH_UNAVAILABLE = -1,
};

typedef void (*bus_publish_done_fn)(void *arg, int status, const char *id);

struct bus_ops {
    /* Takes ownership of event's contents (*event is zeroed). Returns the
     * publish's handle, or NULL when out of memory (done is not called). */
    void *(*publish)(void *engine, struct publish_event *event, bus_publish_done_fn done,
                     void *arg);
    /* The caller no longer wants the result: done will not be called. */
    void (*cancel)(void *publish);
    /* Fails every pending publish (done with UNAVAILABLE), and every later one. */
    void (*abort)(void *engine);
    /* Start-up readiness: every destination tried once. */
    bool (*all_tried)(const void *engine);
    /* /healthz: whether a publish now could be handed over. */
    bool (*available)(const void *engine);
    /* Its /metrics families (evs_listen_bus_*, evs_listen_history_*, ...). */
    void (*write_metrics)(const void *engine, struct evbuffer *out);
    /* One line for the status report (SIGUSR1 and the service manager). */
    void (*status)(const void *engine, char *buf, size_t len);
    void (*free)(void *engine);
};

struct bus {
    const struct bus_ops *ops;
    void *engine;
};

#endif
