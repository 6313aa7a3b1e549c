/* The life of a daemon, the same for event-listen and event-broadcast.
 *
 * daemon_run owns what every daemon has: its settings (with --help and
 * --version), logging, the signals, the auth store, the metrics token, the
 * TLS certificate, the service manager, the event loop and the shutdown
 * drain. A daemon's main.c describes only its own parts in a struct
 * daemon_spec: the options it adds, how its servers are built and stopped.
 *
 * This sits above common/core, common/auth and common/net (it wires them
 * together), so none of them may include it.
 *
 * Start-up, in order:
 *   1. the settings are parsed: --help or --version exits 0; a bad setting,
 *      spec->check failing, or a TLS certificate or key that cannot be used
 *      prints "<program>: <reason>" on stderr and exits 2;
 *   2. SIGPIPE is ignored, libevent logs through log.h, the file limit is
 *      raised, the event loop is created;
 *   3. SIGHUP, SIGTERM and SIGINT are caught from here on (a SIGHUP must
 *      never kill a daemon that is still starting); their callbacks run
 *      only inside the loop, once spec->start has returned;
 *   4. the metrics token and the auth store are opened (a file that cannot
 *      be used: "<program>: <reason>", exit 2);
 *   5. spec->start builds the daemon's own parts, the service manager is
 *      set up, spec->serve opens the daemon to clients and tells the
 *      service manager it is ready, at once or later from the loop; then
 *      the loop runs.
 *
 * Signals:
 *   SIGHUP: RELOADING=1, the auth store, the metrics token and the TLS
 *     certificate are re-read in that order, READY=1.
 *   first SIGTERM or SIGINT: STOPPING=1, spec->stop, then the loop runs on
 *     until no client connection is open (conn_open_count), at most
 *     spec->shutdown_grace_ms; exit 0.
 *   second SIGTERM or SIGINT: the loop ends at once; exit 0.
 *
 * Exit status: DAEMON_EXIT_OK after a clean shutdown, DAEMON_EXIT_FAILURE
 * on a runtime failure (spec->start or spec->serve failing, no event loop,
 * out of memory), DAEMON_EXIT_SETTINGS on a bad setting.
 */
#ifndef EVS_DAEMON_H
#define EVS_DAEMON_H

#include <stdbool.h>
#include <stddef.h>

#include "auth/auth_settings.h"
#include "auth/metrics_token.h"
#include "bus/history_limits.h"
#include "core/config.h"
#include "core/log.h"
#include "core/process.h"
#include "core/service_manager.h"

struct event;
struct event_base;
struct tls_server;

enum daemon_exit {
    DAEMON_EXIT_OK = 0,
    DAEMON_EXIT_FAILURE = 1,
    DAEMON_EXIT_SETTINGS = 2,
};

/* The text --help ends with (struct cfg_program's usage_notes). */
#define DAEMON_USAGE_NOTES                                                                         \
    "Every option can also be set by its environment variable; a flag beats the variable.\n"       \
    "Exit status: 0 after a clean shutdown, 1 on a runtime failure, 2 on a bad setting."

/* The settings every daemon takes; the targets of the options below. */
struct daemon_settings {
    char *bind;
    struct auth_settings auth;
    bool tls;
    char *cert_file;
    char *key_file;
    enum log_level log_level;
    struct metrics_token_settings metrics;
    uint64_t history_size, history_bytes, history_ttl_s;  /* DAEMON_HISTORY_OPTIONS */
    char *redis_url, *redis_password_file, *redis_stream; /* DAEMON_REDIS_OPTIONS */
};

/* The cfg_option entries for s (a struct daemon_settings lvalue), in three
 * blocks so that each daemon's --help keeps its own order. */
#define DAEMON_ADDRESS_OPTIONS(s)                                                                  \
    {"--bind",                                                                                     \
     "BIND_ADDRESS",                                                                               \
     CFG_STRING,                                                                                   \
     "",                                                                                           \
     "address to listen on (empty: all addresses)",                                                \
     &(s).bind,                                                                                    \
     0,                                                                                            \
     0},                                                                                           \
        AUTH_SETTINGS_OPTIONS((s).auth)

/* tls_help: what --tls does for this daemon ("serve HTTPS instead of HTTP"). */
#define DAEMON_TLS_OPTIONS(s, tls_help)                                                            \
    {"--tls", "HTTPS_ENABLE", CFG_BOOL, "false", tls_help, &(s).tls, 0, 0},                        \
        {"--cert",                                                                                 \
         "TLS_CERT_FILE",                                                                          \
         CFG_STRING,                                                                               \
         "/certs/cert.crt",                                                                        \
         "TLS certificate (chain) file",                                                           \
         &(s).cert_file,                                                                           \
         0,                                                                                        \
         0},                                                                                       \
    {                                                                                              \
        "--key", "TLS_KEY_FILE", CFG_STRING, "/certs/cert.key", "TLS private key file",            \
            &(s).key_file, 0, 0                                                                    \
    }

#define DAEMON_LOG_LEVEL_OPTION(s)                                                                 \
    {                                                                                              \
        "--log-level", "LOG_LEVEL", CFG_LOG_LEVEL, "info", "error, warn, info or debug",           \
            &(s).log_level, 0, 0                                                                   \
    }

/* The history bounds (bus/history_limits.h): the same settings on both
 * daemons, each keeping its own history of the events it carried. */
#define DAEMON_HISTORY_OPTIONS(s)                                                                  \
    {"--history-size",                                                                             \
     "HISTORY_SIZE",                                                                               \
     CFG_UINT,                                                                                     \
     "10000",                                                                                      \
     "recent events kept, so that subscribers resume exactly (init \"since\"); 0: none",           \
     &(s).history_size,                                                                            \
     0,                                                                                            \
     10000000},                                                                                    \
        {"--history-bytes",                                                                        \
         "HISTORY_BYTES",                                                                          \
         CFG_SIZE,                                                                                 \
         "64M",                                                                                    \
         "memory the kept events may hold (their messages, plus about 100 bytes each)",            \
         &(s).history_bytes,                                                                       \
         4096,                                                                                     \
         (uint64_t)64 * 1024 * 1024 * 1024},                                                       \
    {                                                                                              \
        "--history-ttl-s", "HISTORY_TTL_S", CFG_UINT, "3600", "seconds an event is kept",          \
            &(s).history_ttl_s, 1, 30 * 24 * 3600                                                  \
    }

/* The history bounds s holds. */
struct history_limits daemon_history_limits(const struct daemon_settings *s);

/* The Redis engine (bus/redis_conn.h): the same settings on both daemons. */
#define DAEMON_REDIS_OPTIONS(s)                                                                    \
    {"--redis-url",                                                                                \
     "REDIS_URL",                                                                                  \
     CFG_STRING,                                                                                   \
     "",                                                                                           \
     "redis://[user@]host[:port][/db] or unix:/path[?db=N]: the bus is that Redis's stream "       \
     "(empty: the UNIX bus)",                                                                      \
     &(s).redis_url,                                                                               \
     0,                                                                                            \
     0},                                                                                           \
        {"--redis-password-file",                                                                  \
         "REDIS_PASSWORD_FILE",                                                                    \
         CFG_STRING,                                                                               \
         "",                                                                                       \
         "file holding the Redis password, one line (empty: no AUTH)",                             \
         &(s).redis_password_file,                                                                 \
         0,                                                                                        \
         0},                                                                                       \
    {                                                                                              \
        "--redis-stream", "REDIS_STREAM", CFG_STRING, "event-server:events",                       \
            "the Redis stream the events go through", &(s).redis_stream, 0, 0                      \
    }

/* Fills config from s's Redis settings, reading the password file (at most
 * REDIS_CONN_PASSWORD_MAX bytes, one line; a warning when other users may
 * read it). Returns 1 when REDIS_URL is set, 0 when it is not (the UNIX
 * bus), or -1 with the reason in err. */
struct redis_conn_config;
int daemon_redis_config(const struct daemon_settings *s, struct redis_conn_config *config,
                        char *password, size_t password_size, char *err, size_t err_len);

/* What daemon_run sets up for the daemon's own parts to use (the service
 * manager from spec->serve on). Everything is owned by daemon_run and
 * freed after spec->teardown has run. */
struct daemon {
    struct event_base *base;
    struct auth_store *auth;
    struct metrics_token *metrics_token;
    struct tls_server *tls; /* NULL without --tls */
    struct service_manager *manager;
    size_t file_limit; /* the soft RLIMIT_NOFILE, raised */

    /* private to daemon.c */
    const struct daemon_spec *spec;
    void *arg;
    struct process_signals signals;
    struct event *drain_timer;
    bool stopping;
};

struct daemon_spec {
    const struct cfg_program *program; /* its name prefixes log lines and errors */
    const struct cfg_option *options;
    size_t option_count;
    const struct daemon_settings *settings; /* within the options' targets */
    unsigned shutdown_grace_ms;             /* how long the drain may take */
    unsigned drain_check_ms;                /* how often it looks again */

    /* Optional: checks the parsed settings against each other. Returns 0,
     * or -1 with a one-line reason in err (a bad setting: exit 2). */
    int (*check)(char *err, size_t err_len);

    /* Builds the daemon's own parts on d->base: its sockets and servers,
     * before the service manager exists. Returns 0, or -1 after logging
     * why (exit 1). */
    int (*start)(struct daemon *d, void *arg);

    /* Opens them to clients once d->manager exists, and gets
     * service_manager_ready called, now or later from the loop. Returns 0,
     * or -1 after logging why (exit 1). */
    int (*serve)(struct daemon *d, void *arg);

    /* The first SIGTERM or SIGINT, after STOPPING=1: stops taking work and
     * starts closing the daemon's connections. Logs what it does. */
    void (*stop)(struct daemon *d, int sig, void *arg);

    /* Frees the daemon's own parts, whatever start and serve got done:
     * runs once start has been called, before the common parts are freed. */
    void (*teardown)(void *arg);

    /* The service manager's status line (service_manager.h). */
    service_status_fn status;
};

/* The fields of a struct daemon_spec that name the daemon's settings: its
 * --help head (a struct cfg_program), its option table (an array, counted
 * here) and its struct daemon_settings within the options' targets. */
#define DAEMON_SPEC_SETTINGS(program_, options_, settings_)                                        \
    .program = &(program_), .options = (options_),                                                 \
    .option_count = sizeof(options_) / sizeof(options_)[0], .settings = &(settings_)

/* Runs the daemon described by spec from its command line to its exit, and
 * returns the exit status (enum daemon_exit). d is the caller's storage
 * for the common parts (zeroed here); arg is passed to every hook. d, spec
 * and arg are borrowed until daemon_run returns. */
int daemon_run(struct daemon *d, const struct daemon_spec *spec, void *arg, int argc, char **argv);

#endif
