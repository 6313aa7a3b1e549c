#include "daemon/daemon.h"

#include <errno.h>
#include <sys/stat.h>

#include <stdio.h>
#include <string.h>

#include <event2/event.h>

#include "auth/auth_store.h"
#include "bus/redis_conn.h"
#include "bus/redis_stream.h"
#include "net/conn_flush.h"
#include "net/tls.h"

static struct timeval timeval_from_ms(unsigned ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    return tv;
}

static void on_sighup(evutil_socket_t sig, short what, void *arg)
{
    struct daemon *d = arg;
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

/* Ends the loop once the drain is complete, else looks again later. */
static void drain_check_cb(evutil_socket_t fd, short what, void *arg)
{
    struct daemon *d = arg;
    struct timeval tick = timeval_from_ms(d->spec->drain_check_ms);
    if (conn_open_count() == 0) {
        event_base_loopexit(d->base, NULL);
        return;
    }
    evtimer_add(d->drain_timer, &tick);
}

static void on_stop_signal(evutil_socket_t sig, short what, void *arg)
{
    struct daemon *d = arg;
    struct timeval grace = timeval_from_ms(d->spec->shutdown_grace_ms);
    if (d->stopping) {
        log_warn("second stop signal: exiting now");
        event_base_loopbreak(d->base);
        return;
    }
    d->stopping = true;
    service_manager_stopping(d->manager);
    d->spec->stop(d, (int)sig, d->arg);
    event_base_loopexit(d->base, &grace);
    drain_check_cb(-1, 0, d);
}

int daemon_run(struct daemon *d, const struct daemon_spec *spec, void *arg, int argc, char **argv)
{
    const struct daemon_settings *s = spec->settings;
    const char *name = spec->program->name;
    char err[512];
    bool started = false;
    int status = DAEMON_EXIT_FAILURE;
    enum cfg_status rc;

    memset(d, 0, sizeof *d);
    d->spec = spec;
    d->arg = arg;
    log_set_program(name);
    rc = cfg_parse(spec->program, spec->options, spec->option_count, argc, argv, NULL, err,
                   sizeof err);
    if (rc == CFG_EXIT)
        return DAEMON_EXIT_OK;
    if (rc == CFG_ERROR) {
        fprintf(stderr, "%s: %s\n", name, err);
        return DAEMON_EXIT_SETTINGS;
    }
    log_set_level(s->log_level);
    if (spec->check && spec->check(err, sizeof err) < 0) {
        fprintf(stderr, "%s: %s\n", name, err);
        cfg_free(spec->options, spec->option_count);
        return DAEMON_EXIT_SETTINGS;
    }
    if (s->tls) {
        /* Certificate problems are settings problems: exit 2. */
        d->tls = tls_server_new(s->cert_file, s->key_file, err, sizeof err);
        if (!d->tls) {
            fprintf(stderr, "%s: %s\n", name, err);
            cfg_free(spec->options, spec->option_count);
            return DAEMON_EXIT_SETTINGS;
        }
    }
    process_ignore_sigpipe();
    process_route_libevent_logs(0);
    d->file_limit = process_raise_file_limit();

    d->base = event_base_new();
    if (!d->base) {
        fprintf(stderr, "%s: cannot create the event loop\n", name);
        goto out;
    }
    d->drain_timer = evtimer_new(d->base, drain_check_cb, d);
    if (!d->drain_timer ||
        process_signals_catch(&d->signals, d->base, on_sighup, on_stop_signal, d) < 0) {
        log_error("out of memory during start-up");
        goto out;
    }
    d->metrics_token = metrics_token_open(d->base, &s->metrics, err, sizeof err);
    if (!d->metrics_token) {
        fprintf(stderr, "%s: %s\n", name, err);
        status = DAEMON_EXIT_SETTINGS;
        goto out;
    }
    d->auth = auth_settings_open(d->base, &s->auth, err, sizeof err);
    if (!d->auth) {
        fprintf(stderr, "%s: %s\n", name, err);
        status = DAEMON_EXIT_SETTINGS;
        goto out;
    }
    started = true;
    if (spec->start(d, arg) < 0)
        goto out;
    d->manager = service_manager_new(d->base, spec->status, arg);
    if (!d->manager) {
        log_error("out of memory during start-up");
        goto out;
    }
    if (spec->serve(d, arg) < 0)
        goto out;
    event_base_dispatch(d->base);
    log_info("stopped");
    status = DAEMON_EXIT_OK;
out:
    if (started)
        spec->teardown(arg);
    auth_store_free(d->auth);
    metrics_token_free(d->metrics_token);
    tls_server_free(d->tls);
    service_manager_free(d->manager);
    process_signals_free(&d->signals);
    if (d->drain_timer)
        event_free(d->drain_timer);
    conn_flush_abort_all();
    if (d->base)
        event_base_free(d->base);
    cfg_free(spec->options, spec->option_count);
    return status;
}

int daemon_redis_config(const struct daemon_settings *s, struct redis_conn_config *config,
                        char *password, size_t password_size, char *err, size_t err_len)
{
    const char *file = s->redis_password_file;
    memset(config, 0, sizeof *config);
    password[0] = '\0';
    if (!s->redis_url || !*s->redis_url)
        return 0;
    if (redis_url_parse(s->redis_url, &config->url, err, err_len) < 0 ||
        redis_stream_check(s->redis_stream, err, err_len) < 0)
        return -1;
    if (file && *file) {
        struct stat st;
        size_t len;
        FILE *f = fopen(file, "r");
        if (!f) {
            snprintf(err, err_len, "REDIS_PASSWORD_FILE %s: %s", file, strerror(errno));
            return -1;
        }
        len = fread(password, 1, password_size - 1, f);
        if (fstat(fileno(f), &st) == 0 && (st.st_mode & S_IROTH))
            log_warn("REDIS_PASSWORD_FILE %s is readable by other users", file);
        if (!feof(f) && fgetc(f) != EOF) {
            fclose(f);
            snprintf(err, err_len, "REDIS_PASSWORD_FILE %s: over %zu bytes", file,
                     password_size - 1);
            return -1;
        }
        fclose(f);
        password[len] = '\0';
        while (len > 0 && (password[len - 1] == '\n' || password[len - 1] == '\r'))
            password[--len] = '\0';
        if (len == 0 || strpbrk(password, "\r\n")) {
            snprintf(err, err_len, "REDIS_PASSWORD_FILE %s: one line, not empty", file);
            return -1;
        }
        config->password = password;
    }
    config->connect_timeout_ms = 5000;
    config->reply_timeout_ms = 5000;
    return 1;
}

struct history_limits daemon_history_limits(const struct daemon_settings *s)
{
    struct history_limits limits;
    limits.max_events = (size_t)s->history_size;
    limits.max_bytes = (size_t)s->history_bytes;
    limits.ttl_ms = s->history_ttl_s * 1000;
    return limits;
}
