/* event-listen: takes events over HTTP (POST /event) and hands them to the
 * broadcast daemons over the bus. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "bus_client.h"
#include "bus/bus_codec.h"
#include "core/config.h"
#include "net/conn_flush.h"
#include "net/http_server.h"
#include "core/log.h"
#include "auth/metrics_token.h"
#include "net/net.h"
#include "core/process.h"
#include "core/service_manager.h"
#include "publish_api.h"
#include "net/tls.h"
#include "auth/auth_settings.h"

#define SHUTDOWN_GRACE_MS 10000

struct listen_settings {
    uint16_t port;
    char *bind;
    struct auth_settings auth;
    bool tls;
    char *cert_file;
    char *key_file;
    struct cfg_list bus_sockets;
    uint64_t bus_wait_ms;
    uint64_t bus_ack_timeout_ms;
    enum log_level log_level;
    uint64_t max_body;
    uint64_t max_bodies;
    uint64_t max_head;
    uint64_t request_timeout_ms;
    uint64_t idle_timeout_ms;
    uint64_t max_connections;
    struct metrics_token_settings metrics;
};

static struct listen_settings settings;

static const struct cfg_option options[] = {
    {"--port", "LISTEN_PORT", CFG_PORT, "8080", "TCP port for publishers", &settings.port, 0, 0},
    {"--bind", "BIND_ADDRESS", CFG_STRING, "", "address to listen on (empty: all addresses)",
     &settings.bind, 0, 0},
    AUTH_SETTINGS_OPTIONS(settings.auth),
    {"--tls", "HTTPS_ENABLE", CFG_BOOL, "false", "serve HTTPS instead of HTTP", &settings.tls, 0,
     0},
    {"--cert", "TLS_CERT_FILE", CFG_STRING, "/certs/cert.crt", "TLS certificate (chain) file",
     &settings.cert_file, 0, 0},
    {"--key", "TLS_KEY_FILE", CFG_STRING, "/certs/cert.key", "TLS private key file",
     &settings.key_file, 0, 0},
    {"--bus", "BUS_SOCKET", CFG_LIST, "/run/event-server/bus.sock",
     "bus socket of a broadcast daemon; repeat (or separate with commas) for several",
     &settings.bus_sockets, 0, 0},
    {"--bus-wait-ms", "BUS_WAIT_MS", CFG_UINT, "5000",
     "how long a publish waits for a broadcast daemon before 503", &settings.bus_wait_ms, 0,
     3600000},
    {"--bus-ack-timeout-ms", "BUS_ACK_TIMEOUT_MS", CFG_UINT, "5000",
     "a broadcast daemon that leaves an event unacked this long is disconnected",
     &settings.bus_ack_timeout_ms, 100, 3600000},
    {"--log-level", "LOG_LEVEL", CFG_LOG_LEVEL, "info", "error, warn, info or debug",
     &settings.log_level, 0, 0},
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
    METRICS_TOKEN_OPTIONS(settings.metrics),
};

static const struct cfg_program program = {
    "event-listen",
    "takes events over HTTP (POST /event) and hands them to the broadcast daemons",
    "Every option can also be set by its environment variable; a flag beats the variable.\n"
    "Exit status: 0 after a clean shutdown, 1 on a runtime failure, 2 on a bad setting.",
};

struct listen_daemon {
    struct event_base *base;
    struct http_server *http;
    struct auth_store *auth;
    struct metrics_token *metrics_token;
    struct tls_server *tls;
    struct bus_client *bus;
    struct publish_api api;
    struct process_signals signals;
    struct event *drain_timer, *ready_timer, *abort_timer;
    struct service_manager *manager;
    bool stopping;
};

static void status_line(void *arg, char *buf, unsigned len)
{
    struct listen_daemon *d = arg;
    struct bus_client_stats bus;
    bus_client_get_stats(d->bus, &bus);
    snprintf(buf, len,
             "%zu/%zu broadcast daemons connected, %llu publishes in flight, %llu accepted",
             bus.ready, bus.links, (unsigned long long)d->api.counters.in_flight,
             (unsigned long long)d->api.counters.accepted);
}

/* Ready once every bus socket has been tried, so that a publish right after
 * start-up finds the broadcast daemons that were there. */
static void ready_check_cb(evutil_socket_t fd, short what, void *arg)
{
    struct listen_daemon *d = arg;
    struct timeval tick = {0, 10 * 1000};
    if (!bus_client_all_tried(d->bus)) {
        evtimer_add(d->ready_timer, &tick);
        return;
    }
    service_manager_ready(d->manager);
}

static void on_sighup(evutil_socket_t sig, short what, void *arg)
{
    struct listen_daemon *d = arg;
    service_manager_reloading(d->manager);
    auth_store_reload(d->auth, "SIGHUP");
    metrics_token_reload(d->metrics_token, "SIGHUP");
    if (d->tls) {
        char err[512];
        if (tls_server_reload(d->tls, err, sizeof err) < 0)
            log_warn("TLS reload failed, keeping the previous certificate: %s", err);
        else
            log_info("TLS certificate and key reloaded");
    }
    service_manager_ready(d->manager);
}

/* Checks whether the drain is complete; exits the loop when it is. */
static void drain_check_cb(evutil_socket_t fd, short what, void *arg)
{
    struct listen_daemon *d = arg;
    struct timeval tick = {0, 50 * 1000};
    if (conn_open_count() == 0) {
        event_base_loopexit(d->base, NULL);
        return;
    }
    evtimer_add(d->drain_timer, &tick);
}

/* The grace period is almost over: publishes still waiting for the bus are
 * answered 503 now, so that none is left without an answer at exit. */
static void abort_bus_cb(evutil_socket_t fd, short what, void *arg)
{
    struct listen_daemon *d = arg;
    log_warn("shutdown grace ending: answering %llu publishes still in flight with 503",
             (unsigned long long)d->api.counters.in_flight);
    bus_client_abort(d->bus);
}

static void on_stop_signal(evutil_socket_t sig, short what, void *arg)
{
    struct listen_daemon *d = arg;
    struct timeval grace = {SHUTDOWN_GRACE_MS / 1000, 0};
    struct timeval abort_at = {(SHUTDOWN_GRACE_MS - 1000) / 1000, 0};
    if (d->stopping) {
        log_warn("second stop signal: exiting now");
        event_base_loopbreak(d->base);
        return;
    }
    d->stopping = true;
    service_manager_stopping(d->manager);
    log_info("%s: finishing requests in progress, then exiting", strsignal((int)sig));
    http_server_shutdown(d->http);
    d->abort_timer = evtimer_new(d->base, abort_bus_cb, d);
    if (d->abort_timer)
        evtimer_add(d->abort_timer, &abort_at);
    event_base_loopexit(d->base, &grace);
    drain_check_cb(-1, 0, d);
}

int main(int argc, char **argv)
{
    struct listen_daemon d;
    struct http_server_limits limits;
    struct bus_client_config bus_config;
    char err[512];
    size_t file_limit;
    int fd, status = 1;
    enum cfg_status rc;

    memset(&d, 0, sizeof d);
    log_set_program("event-listen");
    rc = cfg_parse(&program, options, sizeof options / sizeof options[0], argc, argv, NULL, err,
                   sizeof err);
    if (rc == CFG_EXIT)
        return 0;
    if (rc == CFG_ERROR) {
        fprintf(stderr, "event-listen: %s\n", err);
        return 2;
    }
    log_set_level(settings.log_level);
    if (settings.max_bodies < settings.max_body) {
        fprintf(stderr, "event-listen: --max-bodies-size (%llu) is below --max-body-size (%llu)\n",
                (unsigned long long)settings.max_bodies, (unsigned long long)settings.max_body);
        cfg_free(options, sizeof options / sizeof options[0]);
        return 2;
    }
    if (settings.tls) {
        /* Certificate problems are settings problems: exit 2. */
        d.tls = tls_server_new(settings.cert_file, settings.key_file, err, sizeof err);
        if (!d.tls) {
            fprintf(stderr, "event-listen: %s\n", err);
            cfg_free(options, sizeof options / sizeof options[0]);
            return 2;
        }
    }
    process_ignore_sigpipe();
    process_route_libevent_logs(0);
    file_limit = process_raise_file_limit();

    d.base = event_base_new();
    if (!d.base) {
        fprintf(stderr, "event-listen: cannot create the event loop\n");
        goto out;
    }
    /* Signals are caught from here on (a SIGHUP must never kill a daemon
     * that is still starting); their callbacks only run inside the loop,
     * once everything below exists. */
    d.drain_timer = evtimer_new(d.base, drain_check_cb, &d);
    if (!d.drain_timer ||
        process_signals_catch(&d.signals, d.base, on_sighup, on_stop_signal, &d) < 0) {
        log_error("out of memory during start-up");
        goto out;
    }
    d.metrics_token = metrics_token_open(d.base, &settings.metrics, err, sizeof err);
    if (!d.metrics_token) {
        fprintf(stderr, "event-listen: %s\n", err);
        status = 2;
        goto out;
    }
    d.auth = auth_settings_open(d.base, &settings.auth, err, sizeof err);
    if (!d.auth) {
        fprintf(stderr, "event-listen: %s\n", err);
        status = 2;
        goto out;
    }
    fd = service_manager_take_socket("http");
    if (fd < 0)
        fd = net_listen_tcp(settings.bind, settings.port, false, 1024, err, sizeof err);
    if (fd < 0) {
        log_error("%s", err);
        goto out;
    }
    limits.max_head = (size_t)settings.max_head;
    limits.max_body = settings.max_body;
    limits.max_bodies = settings.max_bodies;
    limits.request_timeout_ms = (unsigned)settings.request_timeout_ms;
    limits.idle_timeout_ms = (unsigned)settings.idle_timeout_ms;
    limits.write_timeout_ms = (unsigned)settings.request_timeout_ms;
    limits.max_connections = process_connection_cap((size_t)settings.max_connections, file_limit,
                                                    64 + settings.bus_sockets.count);
    bus_config.paths = (const char *const *)settings.bus_sockets.items;
    bus_config.path_count = settings.bus_sockets.count;
    bus_config.wait_ms = (unsigned)settings.bus_wait_ms;
    bus_config.ack_timeout_ms = (unsigned)settings.bus_ack_timeout_ms;
    d.bus = bus_client_new(d.base, &bus_config);
    d.api.auth = d.auth;
    d.api.bus = d.bus;
    d.api.metrics_token = d.metrics_token;
    d.http = http_server_new(d.base, &limits, publish_api_handle, &d.api);
    d.api.http = d.http;
    d.manager = service_manager_new(d.base, status_line, &d);
    d.ready_timer = evtimer_new(d.base, ready_check_cb, &d);
    if (!d.bus || !d.http || !d.manager || !d.ready_timer ||
        http_server_add_listener(d.http, fd) < 0) {
        log_error("out of memory during start-up");
        goto out;
    }
    http_server_set_head_check(d.http, publish_api_check_head);
    if (d.tls)
        http_server_set_bev_factory(d.http, tls_server_wrap, d.tls);

    log_info("listening for publishers on %s port %u (max %zu connections, body limit %llu "
             "bytes, %llu for all bodies); %zu bus socket(s)",
             *settings.bind ? settings.bind : "all addresses", (unsigned)net_local_port(fd),
             limits.max_connections, (unsigned long long)settings.max_body,
             (unsigned long long)settings.max_bodies, settings.bus_sockets.count);
    ready_check_cb(-1, 0, &d);
    event_base_dispatch(d.base);
    log_info("stopped");
    status = 0;
out:
    http_server_free(d.http);
    bus_client_free(d.bus);
    auth_store_free(d.auth);
    metrics_token_free(d.metrics_token);
    tls_server_free(d.tls);
    service_manager_free(d.manager);
    if (d.ready_timer)
        event_free(d.ready_timer);
    if (d.abort_timer)
        event_free(d.abort_timer);
    process_signals_free(&d.signals);
    if (d.drain_timer)
        event_free(d.drain_timer);
    conn_flush_abort_all();
    if (d.base)
        event_base_free(d.base);
    cfg_free(options, sizeof options / sizeof options[0]);
    return status;
}
