/* event-listen: takes events over HTTP (POST /event) and hands them to the
 * broadcast daemons over the bus. */
#include <stdio.h>
#include <string.h>

#include <event2/event.h>

#include "bus/bus_codec.h"
#include "bus_client.h"
#include "bus_redis.h"
#include "daemon/daemon.h"
#include "net/http_server.h"
#include "net/net.h"
#include "net/tls.h"
#include "publish_api.h"

#define SHUTDOWN_GRACE_MS 10000
#define DRAIN_CHECK_MS 50

struct listen_settings {
    uint16_t port;
    struct daemon_settings daemon;
    struct cfg_list bus_sockets;
    uint64_t bus_wait_ms;
    uint64_t redis_wait_replicas, redis_wait_ms;
    uint64_t bus_ack_timeout_ms;
    uint64_t max_body;
    uint64_t max_bodies;
    uint64_t max_head;
    uint64_t request_timeout_ms;
    uint64_t idle_timeout_ms;
    uint64_t max_connections;
};

static struct listen_settings settings;
/* The Redis engine's connection settings, when REDIS_URL is set. */
static struct redis_conn_config redis_config;
static char redis_password[REDIS_CONN_PASSWORD_MAX + 1];
static bool use_redis;

static const struct cfg_option options[] = {
    {"--port", "LISTEN_PORT", CFG_PORT, "8080", "TCP port for publishers", &settings.port, 0, 0},
    DAEMON_ADDRESS_OPTIONS(settings.daemon),
    DAEMON_TLS_OPTIONS(settings.daemon, "serve HTTPS instead of HTTP"),
    {"--bus", "BUS_SOCKET", CFG_LIST, "/run/event-server/bus.sock",
     "bus socket of a broadcast daemon; repeat (or separate with commas) for several",
     &settings.bus_sockets, 0, 0},
    {"--bus-wait-ms", "BUS_WAIT_MS", CFG_UINT, "5000",
     "how long a publish waits for a broadcast daemon before 503", &settings.bus_wait_ms, 0,
     3600000},
    {"--redis-wait-replicas", "REDIS_WAIT_REPLICAS", CFG_UINT, "0",
     "with REDIS_URL: a publish is 200 only once this many Redis replicas have it (WAIT, up to "
     "REDIS_WAIT_MS); fewer is 503",
     &settings.redis_wait_replicas, 0, 100},
    {"--redis-wait-ms", "REDIS_WAIT_MS", CFG_UINT, "1000",
     "how long REDIS_WAIT_REPLICAS waits for the replicas", &settings.redis_wait_ms, 1, 3000},
    {"--bus-ack-timeout-ms", "BUS_ACK_TIMEOUT_MS", CFG_UINT, "5000",
     "a broadcast daemon that leaves an event unacked this long is disconnected",
     &settings.bus_ack_timeout_ms, 100, 3600000},
    DAEMON_LOG_LEVEL_OPTION(settings.daemon),
    DAEMON_HISTORY_OPTIONS(settings.daemon),
    DAEMON_REDIS_OPTIONS(settings.daemon),
    {"--max-body-size", "MAX_BODY_SIZE", CFG_SIZE, "1M",
     "largest publish body accepted (bytes, decoded if chunked; k/M suffixes); larger gets 413",
     &settings.max_body, 64, BUS_MESSAGE_HARD_MAX - 1024},
    {"--max-bodies-size", "MAX_BODIES_SIZE", CFG_SIZE, "64M",
     "bytes of publish bodies held at once, all connections together (at least the body "
     "limit); a body that would pass it gets 503",
     &settings.max_bodies, 64, (uint64_t)1 << 40},
    {"--max-header-size", "MAX_HEADER_SIZE", CFG_SIZE, "16K",
     "largest request line plus headers (bytes), and of a chunked body's trailers; larger gets 431",
     &settings.max_head, 1024, 1024 * 1024},
    {"--request-timeout-ms", "REQUEST_TIMEOUT_MS", CFG_UINT, "30000",
     "time allowed for a whole request to arrive; slower gets 408", &settings.request_timeout_ms,
     100, 3600000},
    {"--idle-timeout-ms", "IDLE_TIMEOUT_MS", CFG_UINT, "60000",
     "keep-alive connections idle this long are closed", &settings.idle_timeout_ms, 100, 86400000},
    {"--max-connections", "MAX_CONNECTIONS", CFG_UINT, "0",
     "open connections allowed (0: the file limit minus a reserve)", &settings.max_connections, 0,
     10000000},
    METRICS_TOKEN_OPTIONS(settings.daemon.metrics),
};

static const struct cfg_program program = {
    "event-listen",
    "takes events over HTTP (POST /event) and hands them to the broadcast daemons",
    DAEMON_USAGE_NOTES,
};

struct listen_daemon {
    struct daemon daemon;
    struct http_server *http;
    struct bus bus;
    struct publish_api api;
    struct event *ready_timer, *abort_timer;
    int http_fd;
    size_t max_connections;
};

static int listen_check_settings(char *err, size_t err_len)
{
    int redis;
    if (settings.max_bodies < settings.max_body) {
        snprintf(err, err_len, "--max-bodies-size (%llu) is below --max-body-size (%llu)",
                 (unsigned long long)settings.max_bodies, (unsigned long long)settings.max_body);
        return -1;
    }
    redis = daemon_redis_config(&settings.daemon, &redis_config, redis_password,
                                sizeof redis_password, err, err_len);
    use_redis = redis == 1;
    return redis < 0 ? -1 : 0;
}

/* The bus engine the settings name: Redis with REDIS_URL, else the UNIX bus. */
static int start_bus(struct listen_daemon *d, struct event_base *base)
{
    char err[256];
    if (use_redis) {
        struct bus_redis_config config = {.conn = redis_config,
                                          .stream = settings.daemon.redis_stream,
                                          .max_len = (size_t)settings.daemon.history_size,
                                          .wait_ms = (unsigned)settings.bus_wait_ms,
                                          .wait_replicas = (unsigned)settings.redis_wait_replicas,
                                          .wait_replicas_ms = (unsigned)settings.redis_wait_ms};
        if (config.max_len == 0)
            config.max_len = 1;
        d->bus.ops = &bus_redis_ops;
        d->bus.engine = bus_redis_new(base, &config, err, sizeof err);
        if (!d->bus.engine) {
            log_error("%s", err);
            return -1;
        }
        return 0;
    } else {
        struct bus_client_config config;
        config.paths = (const char *const *)settings.bus_sockets.items;
        config.path_count = settings.bus_sockets.count;
        config.wait_ms = (unsigned)settings.bus_wait_ms;
        config.ack_timeout_ms = (unsigned)settings.bus_ack_timeout_ms;
        config.history = daemon_history_limits(&settings.daemon);
        d->bus.ops = &bus_client_ops;
        d->bus.engine = bus_client_new(base, &config);
    }
    if (!d->bus.engine) {
        log_error("out of memory during start-up");
        return -1;
    }
    return 0;
}

static void listen_status_line(void *arg, char *buf, unsigned len)
{
    struct listen_daemon *d = arg;
    char bus[160];
    d->bus.ops->status(d->bus.engine, bus, sizeof bus);
    snprintf(buf, len, "%s, %llu publishes in flight, %llu accepted", bus,
             (unsigned long long)d->api.counters.in_flight,
             (unsigned long long)d->api.counters.accepted);
}

/* Ready once every bus socket has been tried, so that a publish right after
 * start-up finds the broadcast daemons that were there. */
static void ready_check_cb(evutil_socket_t fd, short what, void *arg)
{
    struct listen_daemon *d = arg;
    struct timeval tick = {0, 10 * 1000};
    if (!d->bus.ops->all_tried(d->bus.engine)) {
        evtimer_add(d->ready_timer, &tick);
        return;
    }
    service_manager_ready(d->daemon.manager);
}

/* The grace period is almost over: publishes still waiting for the bus are
 * answered 503 now, so that none is left without an answer at exit. */
static void abort_bus_cb(evutil_socket_t fd, short what, void *arg)
{
    struct listen_daemon *d = arg;
    log_warn("shutdown grace ending: answering %llu publishes still in flight with 503",
             (unsigned long long)d->api.counters.in_flight);
    d->bus.ops->abort(d->bus.engine);
}

static void listen_stop(struct daemon *daemon, int sig, void *arg)
{
    struct listen_daemon *d = arg;
    struct timeval abort_at = {(SHUTDOWN_GRACE_MS - 1000) / 1000, 0};
    log_info("%s: finishing requests in progress, then exiting", strsignal(sig));
    http_server_shutdown(d->http);
    d->abort_timer = evtimer_new(daemon->base, abort_bus_cb, d);
    if (d->abort_timer)
        evtimer_add(d->abort_timer, &abort_at);
}

static int listen_start(struct daemon *daemon, void *arg)
{
    struct listen_daemon *d = arg;
    struct http_server_limits limits;
    char err[512];

    d->http_fd = service_manager_take_socket("http");
    if (d->http_fd < 0)
        d->http_fd =
            net_listen_tcp(settings.daemon.bind, settings.port, false, 1024, err, sizeof err);
    if (d->http_fd < 0) {
        log_error("%s", err);
        return -1;
    }
    limits.max_head = (size_t)settings.max_head;
    limits.max_body = settings.max_body;
    limits.max_bodies = settings.max_bodies;
    limits.request_timeout_ms = (unsigned)settings.request_timeout_ms;
    limits.idle_timeout_ms = (unsigned)settings.idle_timeout_ms;
    limits.write_timeout_ms = (unsigned)settings.request_timeout_ms;
    limits.max_connections = process_connection_cap(
        (size_t)settings.max_connections, daemon->file_limit, 64 + settings.bus_sockets.count);
    d->max_connections = limits.max_connections;
    if (start_bus(d, daemon->base) < 0)
        return -1;
    d->api.auth = daemon->auth;
    d->api.bus = &d->bus;
    d->api.metrics_token = daemon->metrics_token;
    d->http = http_server_new(daemon->base, &limits, publish_api_handle, &d->api);
    d->api.http = d->http;
    if (!d->bus.engine || !d->http) {
        log_error("out of memory during start-up");
        return -1;
    }
    return 0;
}

static int listen_serve(struct daemon *daemon, void *arg)
{
    struct listen_daemon *d = arg;
    d->ready_timer = evtimer_new(daemon->base, ready_check_cb, d);
    if (!d->ready_timer || http_server_add_listener(d->http, d->http_fd) < 0) {
        log_error("out of memory during start-up");
        return -1;
    }
    http_server_set_head_check(d->http, publish_api_check_head);
    if (daemon->tls)
        http_server_set_bev_factory(d->http, tls_server_wrap, daemon->tls);

    {
        char bus[200];
        d->bus.ops->status(d->bus.engine, bus, sizeof bus);
        log_info("listening for publishers on %s port %u (max %zu connections, body limit %llu "
                 "bytes, %llu for all bodies); bus: %s",
                 *settings.daemon.bind ? settings.daemon.bind : "all addresses",
                 (unsigned)net_local_port(d->http_fd), d->max_connections,
                 (unsigned long long)settings.max_body, (unsigned long long)settings.max_bodies,
                 use_redis ? bus : "UNIX sockets");
    }
    ready_check_cb(-1, 0, d);
    return 0;
}

static void listen_teardown(void *arg)
{
    struct listen_daemon *d = arg;
    http_server_free(d->http);
    if (d->bus.engine)
        d->bus.ops->free(d->bus.engine);
    if (d->ready_timer)
        event_free(d->ready_timer);
    if (d->abort_timer)
        event_free(d->abort_timer);
}

int main(int argc, char **argv)
{
    static const struct daemon_spec spec = {
        DAEMON_SPEC_SETTINGS(program, options, settings.daemon),
        .shutdown_grace_ms = SHUTDOWN_GRACE_MS,
        .drain_check_ms = DRAIN_CHECK_MS,
        .check = listen_check_settings,
        .start = listen_start,
        .serve = listen_serve,
        .stop = listen_stop,
        .teardown = listen_teardown,
        .status = listen_status_line,
    };
    struct listen_daemon d = {.http_fd = -1};
    return daemon_run(&d.daemon, &spec, &d, argc, argv);
}
