/* event-broadcast: holds the WebSocket subscribers and fans out the events
 * that listen daemons send over the bus. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>

#include "bus/bus_codec.h"
#include "bus_server.h"
#include "redis_reader.h"
#include "daemon/daemon.h"
#include "hub.h"
#include "net/http_server.h"
#include "net/net.h"
#include "net/tls.h"
#include "ws_api.h"

#define SHUTDOWN_GRACE_MS 5000
#define DRAIN_CHECK_MS 20

struct broadcast_settings {
    uint16_t port;
    struct daemon_settings daemon;
    char *bus_socket;
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
    uint64_t metrics_port;
};

static struct broadcast_settings settings;

static const struct cfg_option options[] = {
    {"--port", "BROADCAST_PORT", CFG_PORT, "8081", "TCP port for WebSocket subscribers",
     &settings.port, 0, 0},
    DAEMON_ADDRESS_OPTIONS(settings.daemon),
    DAEMON_TLS_OPTIONS(settings.daemon, "serve WSS instead of WS"),
    {"--bus", "BUS_SOCKET", CFG_STRING, "/run/event-server/bus.sock",
     "bus socket this daemon owns; listen daemons connect to it", &settings.bus_socket, 0, 0},
    DAEMON_LOG_LEVEL_OPTION(settings.daemon),
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
    DAEMON_HISTORY_OPTIONS(settings.daemon),
    DAEMON_REDIS_OPTIONS(settings.daemon),
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
    METRICS_TOKEN_OPTIONS(settings.daemon.metrics),
};

static const struct cfg_program program = {
    "event-broadcast",
    "holds WebSocket subscribers and fans out the events listen daemons send over the bus",
    DAEMON_USAGE_NOTES,
};

/* The Redis engine's connection settings, when REDIS_URL is set. */
static struct redis_conn_config redis_config;
static char redis_password[REDIS_CONN_PASSWORD_MAX + 1];
static bool use_redis;

static int broadcast_check_settings(char *err, size_t err_len)
{
    int redis = daemon_redis_config(&settings.daemon, &redis_config, redis_password,
                                    sizeof redis_password, err, err_len);
    use_redis = redis == 1;
    return redis < 0 ? -1 : 0;
}

struct broadcast_daemon {
    struct daemon daemon;
    struct http_server *http;
    struct http_server *admin;
    struct bus_server *bus;     /* the UNIX bus, or NULL */
    struct redis_reader *redis; /* the Redis stream, or NULL */
    struct hub hub;
    struct ws_api api;
    struct http_server_limits limits;
    bool hub_ready;
    bool bus_socket_created;
    int tcp_fd;
};

static void broadcast_status_line(void *arg, char *buf, unsigned len)
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

/* An event from the Redis stream: fanned out as one from the UNIX bus is
 * (bus_server.c), the stream having ordered everything. */
static void on_redis_event(void *arg, const struct redis_reader_event *e)
{
    struct broadcast_daemon *d = arg;
    struct hub_event ev = {
        .type = (const uint8_t *)e->type,
        .type_len = e->type_len,
        .message = (const uint8_t *)e->message,
        .message_len = e->message_len,
        .id_offset = e->id_offset,
        .run = e->run,
        .number = e->number,
        .history_only = e->history_only,
    };
    hub_fanout(&d->hub, &ev);
}

/* The stream's past is in the history: resumes held meanwhile are answered. */
static void on_redis_loaded(void *arg)
{
    struct broadcast_daemon *d = arg;
    hub_bus_peer_synced(&d->hub);
}

static void broadcast_stop(struct daemon *daemon, int sig, void *arg)
{
    struct broadcast_daemon *d = arg;
    log_info("%s: closing %llu sessions (1001), then exiting", strsignal(sig),
             (unsigned long long)d->hub.counters.sessions_open);
    http_server_shutdown(d->http);
    if (d->admin)
        http_server_shutdown(d->admin);
    if (d->bus)
        bus_server_stop(d->bus);
    d->hub.stopping = true;
    hub_close_all(&d->hub, 1001, "server shutting down");
}

static int broadcast_start(struct daemon *daemon, void *arg)
{
    struct broadcast_daemon *d = arg;
    struct http_server_limits *limits = &d->limits;
    struct hub_limits hub_limits;
    char err[512];
    int bus_fd;

    {
        /* Before any socket is bound, so that a daemon that accepts is
         * fully set up. Bounded: beyond 64k descriptors the up-front cost
         * (~3 MiB) would outweigh the benefit. */
        size_t cap =
            process_connection_cap((size_t)settings.max_connections, daemon->file_limit, 64);
        reserve_descriptor_records(daemon->base, cap + 64 < 65536 ? cap + 64 : 65536);
    }
    /* Sockets passed by the service manager outlive a restart of this
     * daemon, so that listen daemons reconnect into a socket kept open. */
    bus_fd = use_redis ? -1 : service_manager_take_socket("bus");
    if (bus_fd < 0 && !use_redis) {
        ensure_socket_folder(settings.bus_socket);
        bus_fd = net_listen_unix(settings.bus_socket, 64, err, sizeof err);
        if (bus_fd < 0) {
            log_error("%s", err);
            return -1;
        }
        d->bus_socket_created = true;
    }
    d->tcp_fd = service_manager_take_socket("ws");
    if (d->tcp_fd < 0)
        d->tcp_fd = net_listen_tcp(settings.daemon.bind, settings.port, settings.reuse_port, 4096,
                                   err, sizeof err);
    if (d->tcp_fd < 0) {
        log_error("%s", err);
        return -1;
    }
    hub_limits.max_message = (size_t)settings.max_message;
    hub_limits.max_backlog = (size_t)settings.max_backlog;
    hub_limits.init_timeout_ms = (unsigned)settings.init_timeout_ms;
    hub_limits.ping_interval_ms = (unsigned)settings.ping_interval_ms;
    hub_limits.close_timeout_ms = (unsigned)settings.close_timeout_ms;
    hub_limits.max_subscriptions = (size_t)settings.max_subscriptions;
    hub_limits.history = daemon_history_limits(&settings.daemon);
    limits->max_head = (size_t)settings.max_head;
    limits->max_body = 0; /* a handshake has no body */
    limits->max_bodies = 0;
    limits->request_timeout_ms = (unsigned)settings.handshake_timeout_ms;
    limits->idle_timeout_ms = (unsigned)settings.handshake_timeout_ms;
    limits->write_timeout_ms = (unsigned)settings.handshake_timeout_ms;
    limits->max_connections =
        process_connection_cap((size_t)settings.max_connections, daemon->file_limit, 64);

    if (hub_init(&d->hub, daemon->base, &hub_limits, daemon->auth) < 0) {
        log_error("out of memory during start-up");
        return -1;
    }
    d->hub_ready = true;
    auth_store_set_change_callback(daemon->auth, on_credentials_changed, d);
    if (use_redis) {
        struct redis_reader_config config = {.conn = redis_config,
                                             .stream = settings.daemon.redis_stream,
                                             .block_ms = 5000,
                                             .count = 1000,
                                             .max_message = BUS_MESSAGE_HARD_MAX,
                                             .load_history = history_enabled(d->hub.history),
                                             .on_loaded = on_redis_loaded};
        d->redis = redis_reader_new(daemon->base, &config, on_redis_event, d, err, sizeof err);
        if (!d->redis) {
            log_error("%s", err);
            return -1;
        }
        /* Inits wait (HUB_RESUME_HELD) until the stream's end and past are
         * read: an event answered after an init is then live for it. */
        hub_bus_peer_greeted(&d->hub);
        hub_bus_start_pending(&d->hub);
    } else {
        d->bus = bus_server_new(daemon->base, bus_fd, &d->hub);
    }
    d->http = http_server_new(daemon->base, limits, ws_api_handle, &d->api);
    d->api.hub = &d->hub;
    d->api.bus = d->bus;
    d->api.redis = d->redis;
    d->api.http = d->http;
    d->api.metrics_token = daemon->metrics_token;
    if ((!d->bus && !d->redis) || !d->http) {
        log_error("out of memory during start-up");
        return -1;
    }
    return 0;
}

static int broadcast_serve(struct daemon *daemon, void *arg)
{
    struct broadcast_daemon *d = arg;
    char err[512];
    if (settings.metrics_port) {
        int admin_fd = net_listen_tcp(settings.daemon.bind, (uint16_t)settings.metrics_port, false,
                                      64, err, sizeof err);
        if (admin_fd < 0) {
            log_error("%s", err);
            return -1;
        }
        d->admin = http_server_new(daemon->base, &d->limits, ws_api_handle_admin, &d->api);
        if (!d->admin || http_server_add_listener(d->admin, admin_fd) < 0) {
            log_error("out of memory during start-up");
            return -1;
        }
    }
    if (http_server_add_listener(d->http, d->tcp_fd) < 0) {
        log_error("out of memory during start-up");
        return -1;
    }
    if (daemon->tls)
        http_server_set_bev_factory(d->http, tls_server_wrap, daemon->tls);

    log_info("listening for subscribers on %s port %u (max %zu connections); bus: %s %s",
             *settings.daemon.bind ? settings.daemon.bind : "all addresses",
             (unsigned)net_local_port(d->tcp_fd), d->limits.max_connections,
             use_redis ? "Redis stream" : "socket",
             use_redis ? settings.daemon.redis_stream : settings.bus_socket);
    service_manager_ready(daemon->manager);
    return 0;
}

static void broadcast_teardown(void *arg)
{
    struct broadcast_daemon *d = arg;
    http_server_free(d->http);
    http_server_free(d->admin);
    bus_server_free(d->bus);
    redis_reader_free(d->redis);
    if (d->hub_ready)
        hub_free(&d->hub);
    if (d->bus_socket_created)
        unlink(settings.bus_socket);
}

int main(int argc, char **argv)
{
    static const struct daemon_spec spec = {
        DAEMON_SPEC_SETTINGS(program, options, settings.daemon),
        .shutdown_grace_ms = SHUTDOWN_GRACE_MS,
        .drain_check_ms = DRAIN_CHECK_MS,
        .check = broadcast_check_settings,
        .start = broadcast_start,
        .serve = broadcast_serve,
        .stop = broadcast_stop,
        .teardown = broadcast_teardown,
        .status = broadcast_status_line,
    };
    struct broadcast_daemon d = {.tcp_fd = -1};
    return daemon_run(&d.daemon, &spec, &d, argc, argv);
}
