#include "ws_api.h"

#include <stdio.h>
#include <string.h>

#include <event2/buffer.h>

#include "auth/auth_store.h"
#include "bus_server.h"
#include "redis_reader.h"
#include "net/http_server.h"
#include "hub.h"
#include "core/log.h"
#include "core/metrics.h"
#include "net/metrics_endpoint.h"
#include "auth/metrics_token.h"
#include "ws_transport.h"
#include "shared_frame.h"
#include "subscriptions.h"
#include "ws_handshake.h"

static bool path_is(const struct http_request_head *head, const char *path)
{
    size_t len = http_request_path_len(head);
    return len == strlen(path) && memcmp(head->target, path, len) == 0;
}

static void write_metrics(struct ws_api *api, struct evbuffer *out)
{
    const struct hub_counters *c = &api->hub->counters;
    static const struct bus_server_counters no_bus_server;
    const struct bus_server_counters *bus =
        api->bus ? bus_server_counters(api->bus) : &no_bus_server;
    const struct http_server_stats *http = http_server_stats(api->http);
    struct history_stats history;

    metrics_single(out, "evs_broadcast_sessions", "gauge", "open WebSocket sessions",
                   c->sessions_open);
    metrics_single(out, "evs_broadcast_sessions_authenticated", "gauge",
                   "open sessions that have had a successful init", c->sessions_authenticated);
    metrics_single(out, "evs_broadcast_sessions_opened_total", "counter",
                   "WebSocket sessions started", c->sessions_opened);
    metrics_single(out, "evs_broadcast_handshake_connections", "gauge",
                   "connections still in the opening handshake",
                   http_server_connection_count(api->http));
    metrics_single(out, "evs_broadcast_connections_refused_total", "counter",
                   "connections refused over the connection cap", http->refused_connections);
    metrics_single(out, "evs_broadcast_subscriptions", "gauge",
                   "(session, event type) subscriptions", subs_index_entry_count(api->hub->subs));
    metrics_single(out, "evs_broadcast_event_types", "gauge",
                   "event types with at least one subscriber",
                   subs_index_topic_count(api->hub->subs));
    metrics_family(out, "evs_broadcast_inits_total", "counter", "init messages, by result");
    metrics_sample(out, "evs_broadcast_inits_total", "result=\"ok\"", c->init_ok);
    metrics_sample(out, "evs_broadcast_inits_total", "result=\"rejected\"", c->init_rejected);
    metrics_single(out, "evs_broadcast_events_total", "counter", "events received from the bus",
                   c->events_received);
    metrics_single(out, "evs_broadcast_events_unrouted_total", "counter",
                   "events that had no subscriber", c->events_unrouted);
    metrics_single(out, "evs_broadcast_deliveries_total", "counter",
                   "event frames queued to subscribers", c->deliveries);
    metrics_single(out, "evs_broadcast_delivered_bytes_total", "counter",
                   "bytes of event frames queued to subscribers", c->delivered_bytes);
    metrics_family(out, "evs_broadcast_closes_total", "counter",
                   "sessions closed by the server, by reason");
    metrics_sample(out, "evs_broadcast_closes_total", "reason=\"slow_consumer\"",
                   c->slow_consumer_closes);
    metrics_sample(out, "evs_broadcast_closes_total", "reason=\"init_timeout\"",
                   c->init_timeout_closes);
    metrics_sample(out, "evs_broadcast_closes_total", "reason=\"ping_timeout\"",
                   c->ping_timeout_closes);
    metrics_sample(out, "evs_broadcast_closes_total", "reason=\"message_too_big\"",
                   c->oversized_message_closes);
    metrics_sample(out, "evs_broadcast_closes_total", "reason=\"token_expired\"",
                   c->expired_closes);
    metrics_sample(out, "evs_broadcast_closes_total", "reason=\"revoked\"", c->revoked_closes);
    metrics_sample(out, "evs_broadcast_closes_total", "reason=\"init_rate\"", c->init_rate_closes);
    metrics_sample(out, "evs_broadcast_closes_total", "reason=\"auth_failures\"",
                   c->auth_failure_closes);
    metrics_sample(out, "evs_broadcast_closes_total", "reason=\"history_overrun\"",
                   c->replay_overrun_closes);
    metrics_single(out, "evs_broadcast_recheck_passes_total", "counter",
                   "passes over the live sessions after a credential change, finished",
                   c->recheck_passes);
    metrics_single(out, "evs_broadcast_rechecks_total", "counter",
                   "live sessions whose credential a recheck pass authenticated again",
                   c->rechecks);
    history_get_stats(api->hub->history, &history);
    metrics_single(out, "evs_broadcast_history_events", "gauge", "events kept for resumes",
                   history.events);
    metrics_single(out, "evs_broadcast_history_bytes", "gauge",
                   "memory the kept events hold, as HISTORY_BYTES counts it", history.bytes);
    metrics_single(out, "evs_broadcast_history_frame_bytes", "gauge",
                   "bytes of the kept events' frames, shared with live delivery",
                   history.frame_bytes);
    metrics_family(out, "evs_broadcast_history_evictions_total", "counter",
                   "events the history let go of, by the bound that made it");
    metrics_sample(out, "evs_broadcast_history_evictions_total", "bound=\"size\"",
                   history.evictions_count);
    metrics_sample(out, "evs_broadcast_history_evictions_total", "bound=\"bytes\"",
                   history.evictions_bytes);
    metrics_sample(out, "evs_broadcast_history_evictions_total", "bound=\"ttl\"",
                   history.evictions_age);
    metrics_family(out, "evs_broadcast_resumes_total", "counter",
                   "inits with \"since\" an id or \"oldest\", by answer");
    metrics_sample(out, "evs_broadcast_resumes_total", "result=\"resumed\"", c->resumes_replayed);
    metrics_sample(out, "evs_broadcast_resumes_total", "result=\"too_old\"", c->resumes_too_old);
    metrics_sample(out, "evs_broadcast_resumes_total", "result=\"unknown\"", c->resumes_unknown);
    metrics_sample(out, "evs_broadcast_resumes_total", "result=\"disabled\"", c->resumes_disabled);
    metrics_single(out, "evs_broadcast_resumes_held_total", "counter",
                   "resumes that waited for a listen daemon's history", c->resumes_held);
    metrics_single(out, "evs_broadcast_bus_history_frames_total", "counter",
                   "events listen daemons resent on connecting, kept or already held",
                   bus->history_frames);
    metrics_single(out, "evs_broadcast_history_loaded_total", "counter",
                   "events kept for resumes only, from a listen daemon's history",
                   c->history_loaded);
    metrics_single(out, "evs_broadcast_replayed_events_total", "counter",
                   "event frames queued by resumes", c->replayed_events);
    metrics_single(out, "evs_broadcast_resumes_replaying", "gauge",
                   "sessions whose resume is replaying", hub_replaying_count(api->hub));
    metrics_single(out, "evs_broadcast_backlog_bytes", "gauge",
                   "memory held by what is queued to subscribers and not yet sent (bytes, plus "
                   "the buffer of each frame referenced)",
                   hub_backlog_bytes(api->hub));
    metrics_single(out, "evs_broadcast_shared_frame_bytes", "gauge",
                   "bytes held by event frames still queued somewhere", shared_frame_live_bytes());
    auth_store_write_metrics(api->hub->auth, out, "evs_broadcast");
    if (api->redis) {
        struct redis_reader_stats r;
        redis_reader_get_stats(api->redis, &r);
        metrics_single(out, "evs_broadcast_bus_peers", "gauge",
                       "bus sources read from (Redis: 1 while its stream is read)",
                       redis_reader_reading(api->redis) ? 1 : 0);
        metrics_single(out, "evs_broadcast_redis_reads_total", "counter", "XREAD replies", r.reads);
        metrics_single(out, "evs_broadcast_redis_lag_events", "gauge",
                       "events on the stream not read yet (sampled each second)", r.lag);
        metrics_single(out, "evs_broadcast_redis_entries_total", "counter",
                       "stream entries delivered", r.entries);
        metrics_single(out, "evs_broadcast_redis_skipped_total", "counter",
                       "stream entries that were not events of ours", r.skipped);
        metrics_single(out, "evs_broadcast_redis_errors_total", "counter",
                       "error replies and replies of another shape", r.errors);
        metrics_single(out, "evs_broadcast_redis_resets_total", "counter",
                       "times the stream was found reset and read from its start", r.resets);
        metrics_single(out, "evs_broadcast_redis_reconnects_total", "counter",
                       "connections to Redis re-established after a loss",
                       r.conn.connects ? r.conn.connects - 1 : 0);
        metrics_single(out, "evs_broadcast_redis_failures_total", "counter",
                       "connection attempts that failed and connections lost", r.conn.failures);
        metrics_single(out, "evs_broadcast_redis_round_trips_total", "counter",
                       "replies from Redis", r.conn.round_trips);
        metrics_single(out, "evs_broadcast_redis_timeouts_total", "counter",
                       "connections dropped for a late reply", r.conn.timeouts);
        metrics_single(out, "evs_broadcast_redis_oversized_total", "counter",
                       "connections dropped for a reply over the size limit (an entry too "
                       "large, then skipped)",
                       r.conn.oversized);
        return;
    }
    metrics_single(out, "evs_broadcast_bus_peers", "gauge", "listen daemons connected",
                   bus->peers_connected);
    metrics_single(out, "evs_broadcast_bus_protocol_errors_total", "counter",
                   "bus peers dropped for breaking the protocol", bus->protocol_errors);
}

static void write_metrics_cb(void *arg, struct evbuffer *out)
{
    write_metrics(arg, out);
}

static void handle_metrics(struct ws_api *api, struct http_exchange *ex)
{
    metrics_endpoint_serve(ex, metrics_token_get(api->metrics_token), write_metrics_cb, api);
}

void ws_api_handle_admin(struct http_exchange *ex, void *arg)
{
    struct ws_api *api = arg;
    const struct http_request_head *head = http_exchange_head(ex);
    if (path_is(head, "/healthz") && http_request_method_is(head, "GET"))
        http_exchange_respond_code(ex, 200, "OK");
    else if (path_is(head, "/metrics") && http_request_method_is(head, "GET"))
        handle_metrics(api, ex);
    else
        http_exchange_respond_code(ex, 404, "NOT_FOUND");
}

void ws_api_handle(struct http_exchange *ex, void *arg)
{
    struct ws_api *api = arg;
    struct hub *hub = api->hub;
    const struct http_request_head *head = http_exchange_head(ex);
    char accept[WS_ACCEPT_LEN + 1], peer[64], body[256];
    const char *reason = NULL;
    int rc = ws_handshake_check(head, accept, &reason);

    if (rc == WS_HANDSHAKE_OK && hub->stopping) {
        /* Shutting down: every session has been told 1001 already. */
        http_exchange_respond_full(ex, 503, "Retry-After: 1\r\n", "application/json",
                                   "{\"code\":\"SHUTTING_DOWN\"}", 25);
        return;
    }
    if (rc == WS_HANDSHAKE_OK) {
        struct bufferevent *bev;
        uint64_t source = http_exchange_source(ex);
        snprintf(peer, sizeof peer, "%s", http_exchange_peer(ex));
        bev = http_exchange_take_connection(ex); /* ex is gone */
        if (ws_transport_start(hub, bev, accept, peer, source) < 0)
            log_error("ws %s: out of memory starting a session", peer);
        return;
    }
    if (rc == WS_HANDSHAKE_NOT_UPGRADE) {
        if (path_is(head, "/healthz") && http_request_method_is(head, "GET")) {
            http_exchange_respond_code(ex, 200, "OK");
            return;
        }
        if (path_is(head, "/metrics") && http_request_method_is(head, "GET")) {
            handle_metrics(api, ex);
            return;
        }
        http_exchange_respond_full(ex, 426, "Upgrade: websocket\r\nConnection: Upgrade\r\n",
                                   "application/json", "{\"code\":\"UPGRADE_REQUIRED\"}", 27);
        return;
    }
    log_info("ws %s: bad handshake: %s", http_exchange_peer(ex), reason ? reason : "invalid");
    snprintf(body, sizeof body, "{\"code\":\"BAD_HANDSHAKE\",\"reason\":\"%s\"}",
             reason ? reason : "invalid WebSocket handshake");
    http_exchange_respond_full(
        ex, 400, reason && strstr(reason, "Version") ? "Sec-WebSocket-Version: 13\r\n" : NULL,
        "application/json", body, strlen(body));
}
