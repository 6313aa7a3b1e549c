#include "publish_api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "auth/auth_store.h"
#include "bus/event_id.h"
#include "bus.h"
#include "core/clock.h"
#include "net/http_server.h"
#include "core/log.h"
#include "core/metrics.h"
#include "net/metrics_endpoint.h"
#include "auth/metrics_token.h"
#include "publish_body.h"

/* A publish waiting for the bus; freed when answered or cancelled. */
struct pending_publish {
    struct publish_api *api;
    struct http_exchange *ex;
    void *publish;    /* the bus engine's handle */
    uint64_t started; /* clock_now_ns() when handling began */
};

/* Seconds since started, a clock_now_ns() reading, to the nanosecond. */
static double seconds_since(uint64_t started)
{
    return (double)(clock_now_ns() - started) / 1e9;
}

/* Answers a publish and records how long it took. */
static void answer(struct publish_api *api, struct http_exchange *ex, uint64_t started, int status,
                   const char *code)
{
    metrics_histogram_observe(&api->latency, seconds_since(started));
    http_exchange_respond_code(ex, status, code);
}

/* A publish the bus took: 200 {"code":"OK"} with the event's id in an
 * Event-Id header. */
static void answer_accepted(struct publish_api *api, struct http_exchange *ex, uint64_t started,
                            const char *id)
{
    static const char body[] = "{\"code\":\"OK\"}";
    char header[sizeof "Event-Id: \r\n" + EVENT_ID_LEN];
    snprintf(header, sizeof header, "Event-Id: %s\r\n", id);
    metrics_histogram_observe(&api->latency, seconds_since(started));
    http_exchange_respond_full(ex, 200, header, "application/json", body, sizeof body - 1);
}

static void pending_done_cb(void *arg, int status, const char *id)
{
    struct pending_publish *pending = arg;
    struct publish_api *api = pending->api;
    api->counters.in_flight--;
    if (status == BUS_PUBLISH_OK) {
        api->counters.accepted++;
        answer_accepted(api, pending->ex, pending->started, id);
    } else {
        api->counters.unavailable++;
        log_warn("publish from %s: no broadcast daemon took the event: 503",
                 http_exchange_peer(pending->ex));
        answer(api, pending->ex, pending->started, 503, "BROADCAST_UNAVAILABLE");
    }
    free(pending);
}

/* The publisher's connection ended before the answer: the event still
 * completes on the bus, but nobody is told. */
static void pending_cancel_cb(void *arg)
{
    struct pending_publish *pending = arg;
    pending->api->counters.in_flight--;
    pending->api->bus->ops->cancel(pending->publish);
    free(pending);
}

/* Authenticates the request's Authorization header, within the failure
 * budget of its source (auth_store.h). */
static int authenticate(struct publish_api *api, struct http_exchange *ex,
                        struct auth_identity *identity)
{
    const struct http_header *authorization =
        http_request_header(http_exchange_head(ex), "Authorization");
    int rc = auth_store_authenticate(api->auth, authorization ? authorization->value : NULL,
                                     authorization ? authorization->value_len : 0,
                                     http_exchange_source(ex), identity);
    http_exchange_note_credential(ex, rc == AUTH_OK);
    return rc;
}

/* Answers a refused credential: 403, or 429 when its source has spent its
 * budget of failed verifications (the credential was not checked, so a
 * later try may succeed). */
static void refuse_credential(struct publish_api *api, struct http_exchange *ex, uint64_t started,
                              int rc, const char *when)
{
    const char *code = auth_result_code(rc);
    char body[64];
    int n;

    log_warn("publish from %s rejected%s: %s", http_exchange_peer(ex), when, code);
    if (rc == AUTH_TOO_MANY_FAILURES) {
        api->counters.too_many_auth_failures++;
        n = snprintf(body, sizeof body, "{\"code\":\"%s\"}", code);
        metrics_histogram_observe(&api->latency, seconds_since(started));
        http_exchange_respond_full(ex, 429, "Retry-After: 1\r\n", "application/json", body,
                                   (size_t)n);
        return;
    }
    if (rc == AUTH_UNRECOGNIZED_SCHEME)
        api->counters.unrecognized_scheme++;
    else if (rc == AUTH_TOKEN_EXPIRED)
        api->counters.token_expired++;
    else
        api->counters.unauthenticated++;
    answer(api, ex, started, 403, code);
}

static void handle_publish(struct publish_api *api, struct http_exchange *ex)
{
    struct publish_event event;
    struct auth_identity identity;
    struct pending_publish *pending;
    const char *body, *reason = NULL;
    size_t body_len;
    uint64_t started = clock_now_ns();
    int rc;

    /* Authentication comes before the body, as in the original service. */
    rc = authenticate(api, ex, &identity);
    if (rc != AUTH_OK) {
        refuse_credential(api, ex, started, rc, "");
        return;
    }
    body = http_exchange_body(ex, &body_len);
    rc = publish_body_parse(body, body_len, &event, &reason);
    if (rc == PUBLISH_BODY_NOMEM) {
        auth_identity_clear(&identity);
        answer(api, ex, started, 500, "INTERNAL_ERROR");
        return;
    }
    if (rc != PUBLISH_BODY_OK) {
        auth_identity_clear(&identity);
        api->counters.invalid_body++;
        log_info("publish from %s rejected: INVALID_BODY (%s)", http_exchange_peer(ex),
                 reason ? reason : "invalid");
        answer(api, ex, started, 400, "INVALID_BODY");
        return;
    }
    if (!auth_may_publish(&identity, event.type, event.type_len)) {
        api->counters.forbidden++;
        log_warn("publish from %s%s%s rejected: FORBIDDEN for this event type",
                 http_exchange_peer(ex), *identity.subject ? " as " : "", identity.subject);
        auth_identity_clear(&identity);
        publish_event_clear(&event);
        answer(api, ex, started, 403, "FORBIDDEN");
        return;
    }
    auth_identity_clear(&identity);
    pending = calloc(1, sizeof *pending);
    if (!pending) {
        publish_event_clear(&event);
        http_exchange_respond_code(ex, 500, "INTERNAL_ERROR");
        return;
    }
    pending->api = api;
    pending->ex = ex;
    pending->started = started;
    log_debug("publish from %s: event type of %zu bytes, message of %zu bytes",
              http_exchange_peer(ex), event.type_len, event.message_len);
    pending->publish = api->bus->ops->publish(api->bus->engine, &event, pending_done_cb, pending);
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
    if (api->bus->ops->available(api->bus->engine))
        http_exchange_respond_code(ex, 200, "OK");
    else
        http_exchange_respond_code(ex, 503, "BROADCAST_UNAVAILABLE");
}

static void write_metrics(struct publish_api *api, struct evbuffer *out)
{
    const struct http_server_stats *http = http_server_stats(api->http);
    const struct publish_api_counters *c = &api->counters;
    metrics_family(out, "evs_listen_publishes_total", "counter", "POST /event answers, by code");
    metrics_sample(out, "evs_listen_publishes_total", "code=\"OK\"", c->accepted);
    metrics_sample(out, "evs_listen_publishes_total", "code=\"UNAUTHENTICATED\"",
                   c->unauthenticated);
    metrics_sample(out, "evs_listen_publishes_total", "code=\"AUTH_UNRECOGNIZED_SCHEME\"",
                   c->unrecognized_scheme);
    metrics_sample(out, "evs_listen_publishes_total", "code=\"INVALID_BODY\"", c->invalid_body);
    metrics_sample(out, "evs_listen_publishes_total", "code=\"TOKEN_EXPIRED\"", c->token_expired);
    metrics_sample(out, "evs_listen_publishes_total", "code=\"FORBIDDEN\"", c->forbidden);
    metrics_sample(out, "evs_listen_publishes_total", "code=\"BROADCAST_UNAVAILABLE\"",
                   c->unavailable);
    metrics_sample(out, "evs_listen_publishes_total", "code=\"TOO_MANY_AUTH_FAILURES\"",
                   c->too_many_auth_failures);
    metrics_family(out, "evs_listen_http_rejected_total", "counter",
                   "requests answered with an error before reaching the API, by code");
    metrics_sample(out, "evs_listen_http_rejected_total", "code=\"BODY_TOO_LARGE\"",
                   http->body_too_large);
    metrics_sample(out, "evs_listen_http_rejected_total", "code=\"BAD_REQUEST\"",
                   http->bad_request);
    metrics_sample(out, "evs_listen_http_rejected_total", "code=\"REQUEST_TIMEOUT\"",
                   http->request_timeout);
    metrics_sample(out, "evs_listen_http_rejected_total", "code=\"HEADERS_TOO_LARGE\"",
                   http->headers_too_large);
    metrics_sample(out, "evs_listen_http_rejected_total", "code=\"UNSUPPORTED_TRANSFER_ENCODING\"",
                   http->unsupported_transfer_encoding);
    metrics_sample(out, "evs_listen_http_rejected_total", "code=\"HTTP_VERSION_NOT_SUPPORTED\"",
                   http->version_not_supported);
    metrics_sample(out, "evs_listen_http_rejected_total", "code=\"SERVER_BUSY\"",
                   http->server_busy);
    metrics_single(out, "evs_listen_body_bytes", "gauge",
                   "bytes of request bodies held now (against MAX_BODIES_SIZE)",
                   http_server_body_bytes(api->http));
    auth_store_write_metrics(api->auth, out, "evs_listen");
    metrics_single(out, "evs_listen_publishes_in_flight", "gauge", "publishes waiting for the bus",
                   c->in_flight);
    metrics_write_histogram(out, "evs_listen_publish_duration_seconds",
                            "time from a whole POST /event to its answer", &api->latency);
    metrics_single(out, "evs_listen_connections", "gauge", "open HTTP connections",
                   http_server_connection_count(api->http));
    metrics_single(out, "evs_listen_connections_accepted_total", "counter",
                   "HTTP connections accepted", http->accepted_connections);
    metrics_single(out, "evs_listen_connections_refused_total", "counter",
                   "HTTP connections refused over the connection cap", http->refused_connections);
    api->bus->ops->write_metrics(api->bus->engine, out);
}

static void write_metrics_cb(void *arg, struct evbuffer *out)
{
    write_metrics(arg, out);
}

static void handle_metrics(struct publish_api *api, struct http_exchange *ex)
{
    metrics_endpoint_serve(ex, metrics_token_get(api->metrics_token), write_metrics_cb, api);
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
    if (path_is(head, "/metrics")) {
        if (http_request_method_is(head, "GET"))
            handle_metrics(api, ex);
        else
            http_exchange_respond_full(ex, 405, "Allow: GET\r\n", "application/json",
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

void publish_api_check_head(struct http_exchange *ex, void *arg)
{
    struct publish_api *api = arg;
    const struct http_request_head *head = http_exchange_head(ex);
    struct auth_identity identity;
    uint64_t started = clock_now_ns();
    int rc;

    if (!path_is(head, "/event") || !http_request_method_is(head, "POST")) {
        publish_api_handle(ex, arg); /* 404, 405, or a GET with a body: no body needed */
        return;
    }
    rc = authenticate(api, ex, &identity);
    auth_identity_clear(&identity);
    if (rc != AUTH_OK)
        refuse_credential(api, ex, started, rc, " before its body");
}
