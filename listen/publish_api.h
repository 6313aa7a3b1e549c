/* The listen daemon's HTTP API: routes requests, authenticates and
 * validates publishes, and answers once the bus has delivered them.
 *
 *   POST /event   publish (the public contract; 200, 400, 403, 413, 503;
 *                 403 FORBIDDEN when the credential may not publish that type;
 *                 429 TOO_MANY_AUTH_FAILURES when its source has spent its
 *                 budget of failed JWT verifications, auth_store.h)
 *   GET  /healthz 200 while a broadcast daemon is connected, else 503
 *   GET  /metrics Prometheus text; with a metrics token set, only for
 *                 "Authorization: Bearer <metrics_token>"
 *   anything else 404, or 405 for another method on a known path
 */
#ifndef EVS_PUBLISH_API_H
#define EVS_PUBLISH_API_H

#include <stdint.h>

#include "core/metrics.h"

struct http_exchange;
struct http_server;
struct auth_store;
struct bus;
struct metrics_token;

struct publish_api_counters {
    uint64_t accepted; /* answered 200 */
    uint64_t unauthenticated;
    uint64_t unrecognized_scheme;
    uint64_t invalid_body;
    uint64_t token_expired;
    uint64_t forbidden;
    uint64_t unavailable;            /* answered 503 */
    uint64_t too_many_auth_failures; /* answered 429: the source's failure budget is spent */
    uint64_t in_flight;              /* publishes waiting for the bus */
};

struct publish_api {
    struct auth_store *auth;                   /* borrowed */
    const struct bus *bus;                     /* borrowed */
    struct http_server *http;                  /* borrowed, for its counters */
    const struct metrics_token *metrics_token; /* borrowed; NULL or none set: open */
    struct publish_api_counters counters;
    struct metrics_histogram latency; /* POST /event, arrival of the whole request to answer */
};

/* The http_server handler; arg is a struct publish_api *. */
void publish_api_handle(struct http_exchange *ex, void *arg);

/* The http_server head check: refuses a request from its head alone (wrong
 * path or method, failed authentication), so that nobody can make the
 * daemon read a body it would refuse anyway. */
void publish_api_check_head(struct http_exchange *ex, void *arg);

#endif
