#include "publish_api.h"

#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "bus.h"
#include "http_server.h"
#include "log.h"
#include "publish_body.h"
#include "token_store.h"

/* A publish waiting for the bus; freed when answered or cancelled. */
struct pending_publish {
    struct publish_api *api;
    struct http_exchange *ex;
    struct bus_publish *publish;
};

static void pending_done_cb(void *arg, int status)
{
    struct pending_publish *pending = arg;
    struct publish_api *api = pending->api;
    api->counters.in_flight--;
    if (status == BUS_PUBLISH_OK) {
        api->counters.accepted++;
        http_exchange_respond_code(pending->ex, 200, "OK");
    } else {
        api->counters.unavailable++;
        log_warn("publish from %s: no broadcast daemon took the event: 503",
                 http_exchange_peer(pending->ex));
        http_exchange_respond_code(pending->ex, 503, "BROADCAST_UNAVAILABLE");
    }
    free(pending);
}

/* The publisher's connection ended before the answer: the event still
 * completes on the bus, but nobody is told. */
static void pending_cancel_cb(void *arg)
{
    struct pending_publish *pending = arg;
    pending->api->counters.in_flight--;
    bus_publish_cancel(pending->publish);
    free(pending);
}

static void handle_publish(struct publish_api *api, struct http_exchange *ex)
{
    const struct http_request_head *head = http_exchange_head(ex);
    const struct http_header *authorization = http_request_header(head, "Authorization");
    struct publish_event event;
    struct pending_publish *pending;
    const char *body, *reason = NULL;
    size_t body_len;
    int rc;

    /* Authentication comes before the body, as in the original service. */
    rc = auth_check(token_store_tokens(api->tokens), authorization ? authorization->value : NULL,
                    authorization ? authorization->value_len : 0);
    if (rc != AUTH_OK) {
        if (rc == AUTH_UNRECOGNIZED_SCHEME)
            api->counters.unrecognized_scheme++;
        else
            api->counters.unauthenticated++;
        log_warn("publish from %s rejected: %s", http_exchange_peer(ex), auth_result_code(rc));
        http_exchange_respond_code(ex, 403, auth_result_code(rc));
        return;
    }
    body = http_exchange_body(ex, &body_len);
    rc = publish_body_parse(body, body_len, &event, &reason);
    if (rc == PUBLISH_BODY_NOMEM) {
        http_exchange_respond_code(ex, 500, "INTERNAL_ERROR");
        return;
    }
    if (rc != PUBLISH_BODY_OK) {
        api->counters.invalid_body++;
        log_info("publish from %s rejected: INVALID_BODY (%s)", http_exchange_peer(ex),
                 reason ? reason : "invalid");
        http_exchange_respond_code(ex, 400, "INVALID_BODY");
        return;
    }
    pending = calloc(1, sizeof *pending);
    if (!pending) {
        publish_event_clear(&event);
        http_exchange_respond_code(ex, 500, "INTERNAL_ERROR");
        return;
    }
    pending->api = api;
    pending->ex = ex;
    log_debug("publish from %s: event type of %zu bytes, message of %zu bytes",
              http_exchange_peer(ex), event.type_len, event.message_len);
    pending->publish = bus_publish(api->bus, &event, pending_done_cb, pending);
    if (!pending->publish) {
        free(pending);
        http_exchange_respond_code(ex, 500, "INTERNAL_ERROR");
        return;
    }
    api->counters.in_flight++;
    http_exchange_set_cancel(ex, pending_cancel_cb, pending);
}

static void handle_healthz(struct publish_api *api, struct http_exchange *ex)
{
    struct bus_stats stats;
    bus_get_stats(api->bus, &stats);
    if (stats.ready > 0)
        http_exchange_respond_code(ex, 200, "OK");
    else
        http_exchange_respond_code(ex, 503, "BROADCAST_UNAVAILABLE");
}

static bool path_is(const struct http_request_head *head, const char *path)
{
    size_t len = http_request_path_len(head);
    return len == strlen(path) && memcmp(head->target, path, len) == 0;
}

void publish_api_handle(struct http_exchange *ex, void *arg)
{
    struct publish_api *api = arg;
    const struct http_request_head *head = http_exchange_head(ex);

    if (path_is(head, "/event")) {
        if (http_request_method_is(head, "POST"))
            handle_publish(api, ex);
        else
            http_exchange_respond_full(ex, 405, "Allow: POST\r\n", "application/json",
                                       "{\"code\":\"METHOD_NOT_ALLOWED\"}", 29);
        return;
    }
    if (path_is(head, "/healthz")) {
        if (http_request_method_is(head, "GET"))
            handle_healthz(api, ex);
        else
            http_exchange_respond_full(ex, 405, "Allow: GET\r\n", "application/json",
                                       "{\"code\":\"METHOD_NOT_ALLOWED\"}", 29);
        return;
    }
    http_exchange_respond_code(ex, 404, "NOT_FOUND");
}
