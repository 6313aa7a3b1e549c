/* event-broadcast: holds the WebSocket subscribers and fans out the events
 * that listen daemons send over the bus. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>

#include "bus_server.h"
#include "core/config.h"
#include "net/conn_flush.h"
#include "net/http_server.h"
#include "hub.h"
#include "core/log.h"
#include "auth/metrics_token.h"
#include "net/net.h"
#include "core/process.h"
#include "core/service_manager.h"
#include "net/tls.h"
#include "auth/auth_settings.h"
#include "ws_api.h"

#define SHUTDOWN_GRACE_MS 5000

struct broadcast_settings {
    uint16_t port;
    char *bind;
    struct auth_settings auth;
    bool tls;
    char *cert_file;
    char *key_file;
    char *bus_socket;
    enum log_level log_level;
    uint64_t max_message;
    uint64_t max_backlog;
    uint64_t init_timeout_ms;
    uint64_t ping_interval_ms;
    uint64_t close_timeout_ms;
    uint64_t max_subscriptions;
    uint64_t max_connections;
    uint64_t max_head;
    uint64_t handshake_timeout_ms;
    bool reuse_port;
    struct metrics_token_settings metrics;
    uint64_t metrics_port;
};

static struct broadcast_settings settings;

static const struct cfg_option options[] = {
    {"--port", "BROADCAST_PORT", CFG_PORT, "8081", "TCP port for WebSocket subscribers",
     &settings.port, 0, 0},
    {"--bind", "BIND_ADDRESS", CFG_STRING, "", "address to listen on (empty: all addresses)",
     &settings.bind, 0, 0},
    AUTH_SETTINGS_OPTIONS(settings.auth),
    {"--tls", "HTTPS_ENABLE", CFG_BOOL, "false", "serve WSS instead of WS", &settings.tls, 0, 0},
    {"--cert", "TLS_CERT_FILE", CFG_STRING, "/certs/cert.crt", "TLS certificate (chain) file",
     &settings.cert_file, 0, 0},
    {"--key", "TLS_KEY_FILE", CFG_STRING, "/certs/cert.key", "TLS private key file",
     &settings.key_file, 0, 0},
    {"--bus", "BUS_SOCKET", CFG_STRING, "/run/event-server/bus.sock",
     "bus socket this daemon owns; listen daemons connect to it", &settings.bus_socket, 0, 0},
    {"--log-level", "LOG_LEVEL", CFG_LOG_LEVEL, "info", "error, warn, info or debug",
     &settings.log_level, 0, 0},
    {"--max-message-size", "MAX_MESSAGE_SIZE", CFG_SIZE, "64K",
     "largest message a subscriber may send (bytes); larger closes with 1009",
     &settings.max_message, 256, 16 * 1024 * 1024},
    {"--max-backlog", "MAX_BACKLOG", CFG_SIZE, "8M",
     "memory a subscriber's unsent data may hold (its bytes, plus 1 KiB per frame shared by "
     "reference) before it is closed with 1013",
     &settings.max_backlog, 4096, (uint64_t)4 * 1024 * 1024 * 1024},
    {"--init-timeout-ms", "INIT_TIMEOUT_MS", CFG_UINT, "10000",
     "time a new connection has for a successful init before close 1008", &settings.init_timeout_ms,
     100, 3600000},
    {"--ping-interval-ms", "PING_INTERVAL_MS", CFG_UINT, "30000",
     "ping period; a subscriber that has not answered by the next ping is dropped",
     &settings.ping_interval_ms, 100, 3600000},
    {"--close-timeout-ms", "CLOSE_TIMEOUT_MS", CFG_UINT, "5000",
     "time a peer has to finish a close handshake", &settings.close_timeout_ms, 10, 600000},
    {"--max-subscriptions", "MAX_SUBSCRIPTIONS", CFG_UINT, "1024",
     "event types one subscriber may subscribe to", &settings.max_subscriptions, 1, 1000000},
    {"--max-connections", "MAX_CONNECTIONS", CFG_UINT, "0",
     "open connections allowed (0: the file limit minus a reserve)", &settings.max_connections, 0,
     10000000},
    {"--max-header-size", "MAX_HEADER_SIZE", CFG_SIZE, "16K",
     "largest handshake request line plus headers (bytes)", &settings.max_head, 1024, 1024 * 1024},
    {"--handshake-timeout-ms", "HANDSHAKE_TIMEOUT_MS", CFG_UINT, "10000",
     "time allowed for the opening handshake to arrive", &settings.handshake_timeout_ms, 100,
     3600000},
    {"--reuse-port", "REUSE_PORT", CFG_BOOL, "false",
     "share the port with other broadcast daemons (SO_REUSEPORT)", &settings.reuse_port, 0, 0},
    {"--metrics-port", "METRICS_PORT", CFG_UINT, "0",
     "also serve /healthz and /metrics of this process alone on this port (0: off)",
     &settings.metrics_port, 0, 65535},
    METRICS_TOKEN_OPTIONS(settings.metrics),
};

static const struct cfg_program program = {
    "event-broadcast",
    "holds WebSocket subscribers and fans out the events listen daemons send over the bus",
    "Every option can also be set by its environment variable; a flag beats the variable.\n"
    "Exit status: 0 after a clean shutdown, 1 on a runtime failure, 2 on a bad setting.",
};

struct broadcast_daemon {
    struct event_base *base;
    struct http_server *http;
    struct http_server *admin;
    struct auth_store *auth;
    struct metrics_token *metrics_token;
    struct tls_server *tls;
    struct bus_server *bus;
    struct hub hub;
    struct ws_api api;
    struct service_manager *manager;
    bool hub_ready;
    struct process_signals signals;
    struct event *drain_timer;
    bool stopping;
    bool bus_socket_created;
};

static void status_line(void *arg, char *buf, unsigned len)
{
    struct broadcast_daemon *d = arg;
    snprintf(buf, len, "%llu sessions (%llu subscribed), %llu events, %llu deliveries",
             (unsigned long long)d->hub.counters.sessions_open,
             (unsigned long long)d->hub.counters.sessions_authenticated,
             (unsigned long long)d->hub.counters.events_received,
             (unsigned long long)d->hub.counters.deliveries);
}

/* libevent keeps a small record for every descriptor number it has ever
 * watched and never frees it; allocated one by one as connections arrive,
 * those records end up spread over the heap between the connections' own
 * allocations and keep it from being returned to the system after a burst.
 * Creating them all at start, together, keeps them out of the way: an
 * event added on a descriptor number that is not open fails in the
 * backend, after the record was made. About 50 bytes a descriptor. */
static void reserve_descriptor_records(struct event_base *base, size_t count)
{
    struct event *ev = event_new(base, -1, 0, NULL, NULL);
    int first = 64;
    if (!ev)
        return;
    process_route_libevent_logs(1); /* every add below fails, on purpose */
    for (size_t i = 0; i < count; i++) {
        int fd = first + (int)i;
        if (fcntl(fd, F_GETFD) != -1)
            continue; /* open: its record will come when it is used */
        event_assign(ev, base, fd, EV_READ, NULL, NULL);
        if (event_add(ev, NULL) == 0)
            event_del(ev);
    }
    process_route_libevent_logs(0);
    event_free(ev);
}

static void on_credentials_changed(void *arg, unsigned sources)
{
    struct broadcast_daemon *d = arg;
    hub_recheck_sessions(&d->hub, sources);
}

static void on_sighup(evutil_socket_t sig, short what, void *arg)
{
    struct broadcast_daemon *d = arg;
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

static void drain_check_cb(evutil_socket_t fd, short what, void *arg)
{
    struct broadcast_daemon *d = arg;
    struct timeval tick = {0, 20 * 1000};
    if (conn_open_count() == 0) {
        event_base_loopexit(d->base, NULL);
        return;
    }
    evtimer_add(d->drain_timer, &tick);
}

static void on_stop_signal(evutil_socket_t sig, short what, void *arg)
{
    struct broadcast_daemon *d = arg;
    struct timeval grace = {SHUTDOWN_GRACE_MS / 1000, 0};
    if (d->stopping) {
        log_warn("second stop signal: exiting now");
        event_base_loopbreak(d->base);
        return;
    }
    d->stopping = true;
    service_manager_stopping(d->manager);
    log_info("%s: closing %llu sessions (1001), then exiting", strsignal((int)sig),
             (unsigned long long)d->hub.counters.sessions_open);
    http_server_shutdown(d->http);
    if (d->admin)
        http_server_shutdown(d->admin);
    bus_server_stop(d->bus);
    d->hub.stopping = true;
    hub_close_all(&d->hub, 1001, "server shutting down");
    event_base_loopexit(d->base, &grace);
    drain_check_cb(-1, 0, d);
}

/* Creates the bus socket's folder when it is missing (one level, 0755). */
static void ensure_socket_folder(const char *path)
{
    char folder[512];
    char *slash;
    snprintf(folder, sizeof folder, "%s", path);
    slash = strrchr(folder, '/');
    if (!slash || slash == folder)
        return;
    *slash = '\0';
    if (mkdir(folder, 0755) < 0 && errno != EEXIST)
        log_warn("cannot create %s: %s", folder, strerror(errno));
}

int main(int argc, char **argv)
{
    struct broadcast_daemon d;
    struct http_server_limits limits;
    struct hub_limits hub_limits;
    char err[512];
    size_t file_limit;
    int tcp_fd, bus_fd, status = 1;
    enum cfg_status rc;

    memset(&d, 0, sizeof d);
    log_set_program("event-broadcast");
    rc = cfg_parse(&program, options, sizeof options / sizeof options[0], argc, argv, NULL, err,
                   sizeof err);
    if (rc == CFG_EXIT)
        return 0;
    if (rc == CFG_ERROR) {
        fprintf(stderr, "event-broadcast: %s\n", err);
        return 2;
    }
    log_set_level(settings.log_level);
    if (settings.tls) {
        /* Certificate problems are settings problems: exit 2. */
        d.tls = tls_server_new(settings.cert_file, settings.key_file, err, sizeof err);
        if (!d.tls) {
            fprintf(stderr, "event-broadcast: %s\n", err);
            cfg_free(options, sizeof options / sizeof options[0]);
            return 2;
        }
    }
    process_ignore_sigpipe();
    process_route_libevent_logs(0);
    file_limit = process_raise_file_limit();

    d.base = event_base_new();
    if (!d.base) {
        fprintf(stderr, "event-broadcast: cannot create the event loop\n");
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
        fprintf(stderr, "event-broadcast: %s\n", err);
        status = 2;
        goto out;
    }
    d.auth = auth_settings_open(d.base, &settings.auth, err, sizeof err);
    if (!d.auth) {
        fprintf(stderr, "event-broadcast: %s\n", err);
        status = 2;
        goto out;
    }
    {
        /* Before any socket is bound, so that a daemon that accepts is
         * fully set up. Bounded: beyond 64k descriptors the up-front cost
         * (~3 MiB) would outweigh the benefit. */
        size_t cap = process_connection_cap((size_t)settings.max_connections, file_limit, 64);
        reserve_descriptor_records(d.base, cap + 64 < 65536 ? cap + 64 : 65536);
    }
    /* Sockets passed by the service manager outlive a restart of this
     * daemon, so that listen daemons reconnect into a socket kept open. */
    bus_fd = service_manager_take_socket("bus");
    if (bus_fd < 0) {
        ensure_socket_folder(settings.bus_socket);
        bus_fd = net_listen_unix(settings.bus_socket, 64, err, sizeof err);
        if (bus_fd < 0) {
            log_error("%s", err);
            goto out;
        }
        d.bus_socket_created = true;
    }
    tcp_fd = service_manager_take_socket("ws");
    if (tcp_fd < 0)
        tcp_fd = net_listen_tcp(settings.bind, settings.port, settings.reuse_port, 4096, err,
                                sizeof err);
    if (tcp_fd < 0) {
        log_error("%s", err);
        goto out;
    }
    hub_limits.max_message = (size_t)settings.max_message;
    hub_limits.max_backlog = (size_t)settings.max_backlog;
    hub_limits.init_timeout_ms = (unsigned)settings.init_timeout_ms;
    hub_limits.ping_interval_ms = (unsigned)settings.ping_interval_ms;
    hub_limits.close_timeout_ms = (unsigned)settings.close_timeout_ms;
    hub_limits.max_subscriptions = (size_t)settings.max_subscriptions;
    limits.max_head = (size_t)settings.max_head;
    limits.max_body = 0; /* a handshake has no body */
    limits.max_bodies = 0;
    limits.request_timeout_ms = (unsigned)settings.handshake_timeout_ms;
    limits.idle_timeout_ms = (unsigned)settings.handshake_timeout_ms;
    limits.write_timeout_ms = (unsigned)settings.handshake_timeout_ms;
    limits.max_connections =
        process_connection_cap((size_t)settings.max_connections, file_limit, 64);

    if (hub_init(&d.hub, d.base, &hub_limits, d.auth) < 0) {
        log_error("out of memory during start-up");
        goto out;
    }
    d.hub_ready = true;
    auth_store_set_change_callback(d.auth, on_credentials_changed, &d);
    d.bus = bus_server_new(d.base, bus_fd, &d.hub);
    d.http = http_server_new(d.base, &limits, ws_api_handle, &d.api);
    d.api.hub = &d.hub;
    d.api.bus = d.bus;
    d.api.http = d.http;
    d.api.metrics_token = d.metrics_token;
    d.manager = service_manager_new(d.base, status_line, &d);
    if (settings.metrics_port) {
        int admin_fd = net_listen_tcp(settings.bind, (uint16_t)settings.metrics_port, false, 64,
                                      err, sizeof err);
        if (admin_fd < 0) {
            log_error("%s", err);
            goto out;
        }
        d.admin = http_server_new(d.base, &limits, ws_api_handle_admin, &d.api);
        if (!d.admin || http_server_add_listener(d.admin, admin_fd) < 0) {
            log_error("out of memory during start-up");
            goto out;
        }
    }
    if (!d.bus || !d.http || !d.manager || http_server_add_listener(d.http, tcp_fd) < 0) {
        log_error("out of memory during start-up");
        goto out;
    }
    if (d.tls)
        http_server_set_bev_factory(d.http, tls_server_wrap, d.tls);

    log_info("listening for subscribers on %s port %u (max %zu connections); bus socket %s",
             *settings.bind ? settings.bind : "all addresses", (unsigned)net_local_port(tcp_fd),
             limits.max_connections, settings.bus_socket);
    service_manager_ready(d.manager);
    event_base_dispatch(d.base);
    log_info("stopped");
    status = 0;
out:
    http_server_free(d.http);
    http_server_free(d.admin);
    bus_server_free(d.bus);
    if (d.hub_ready)
        hub_free(&d.hub);
    auth_store_free(d.auth);
    metrics_token_free(d.metrics_token);
    tls_server_free(d.tls);
    service_manager_free(d.manager);
    process_signals_free(&d.signals);
    if (d.drain_timer)
        event_free(d.drain_timer);
    conn_flush_abort_all();
    if (d.base)
        event_base_free(d.base);
    if (d.bus_socket_created)
        unlink(settings.bus_socket);
    cfg_free(options, sizeof options / sizeof options[0]);
    return status;
}
