#include "core/service_manager.h"

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#ifdef HAVE_LIBSYSTEMD
#include <systemd/sd-daemon.h>
#endif

#include "core/log.h"

#define STATUS_PERIOD_MS 5000
#define MAX_INHERITED 16

struct service_manager {
    service_status_fn status_fn;
    void *arg;
    struct event *watchdog;
    struct event *status;
    bool active; /* a manager listens on NOTIFY_SOCKET */
};

static void send_state(struct service_manager *sm, const char *state)
{
#ifdef HAVE_LIBSYSTEMD
    char status[256] = "";
    if (!sm->active)
        return;
    if (sm->status_fn)
        sm->status_fn(sm->arg, status, sizeof status);
    sd_notifyf(0, "%s%sSTATUS=%s", state, *state ? "\n" : "", status);
#else
    (void)sm;
    (void)state;
#endif
}

static void watchdog_cb(evutil_socket_t fd, short what, void *arg)
{
    send_state(arg, "WATCHDOG=1");
}

static void status_cb(evutil_socket_t fd, short what, void *arg)
{
    send_state(arg, "");
}

struct service_manager *service_manager_new(struct event_base *base, service_status_fn status_fn,
                                            void *arg)
{
    struct service_manager *sm = calloc(1, sizeof *sm);
    if (!sm)
        return NULL;
    sm->status_fn = status_fn;
    sm->arg = arg;
#ifdef HAVE_LIBSYSTEMD
    {
        uint64_t usec = 0;
        const char *socket_path = getenv("NOTIFY_SOCKET");
        sm->active = socket_path && *socket_path;
        if (sd_watchdog_enabled(0, &usec) > 0 && usec > 0) {
            struct timeval tv = {(time_t)(usec / 2 / 1000000), (suseconds_t)(usec / 2 % 1000000)};
            sm->watchdog = event_new(base, -1, EV_PERSIST, watchdog_cb, sm);
            if (sm->watchdog)
                event_add(sm->watchdog, &tv);
            log_info("systemd watchdog: pinging every %llu ms",
                     (unsigned long long)(usec / 2 / 1000));
        }
        if (sm->active) {
            struct timeval tv = {STATUS_PERIOD_MS / 1000, 0};
            sm->status = event_new(base, -1, EV_PERSIST, status_cb, sm);
            if (sm->status)
                event_add(sm->status, &tv);
        }
    }
#else
    (void)base;
#endif
    return sm;
}

void service_manager_free(struct service_manager *sm)
{
    if (!sm)
        return;
    if (sm->watchdog)
        event_free(sm->watchdog);
    if (sm->status)
        event_free(sm->status);
    free(sm);
}

void service_manager_ready(struct service_manager *sm)
{
    send_state(sm, "READY=1");
}

void service_manager_reloading(struct service_manager *sm)
{
    send_state(sm, "RELOADING=1");
}

void service_manager_stopping(struct service_manager *sm)
{
    send_state(sm, "STOPPING=1");
}

int service_manager_take_socket(const char *name)
{
#ifdef HAVE_LIBSYSTEMD
    /* Read once: the environment is cleared after the first call so that
     * child processes never see sockets meant for this one. */
    static bool loaded;
    static int count;
    static char *names[MAX_INHERITED];
    static bool taken[MAX_INHERITED];
    if (!loaded) {
        char **list = NULL;
        int n = sd_listen_fds_with_names(1, &list);
        loaded = true;
        count = n > 0 ? (n > MAX_INHERITED ? MAX_INHERITED : n) : 0;
        for (int i = 0; list && list[i]; i++) {
            if (i < count)
                names[i] = list[i];
            else
                free(list[i]);
        }
        free(list);
    }
    for (int i = 0; i < count; i++) {
        if (!taken[i] && names[i] && strcmp(names[i], name) == 0) {
            int fd = SD_LISTEN_FDS_START + i;
            int flags = fcntl(fd, F_GETFL);
            taken[i] = true;
            if (flags >= 0)
                fcntl(fd, F_SETFL, flags | O_NONBLOCK);
            fcntl(fd, F_SETFD, FD_CLOEXEC);
            log_info("using the socket '%s' passed by the service manager", name);
            return fd;
        }
    }
#else
    (void)name;
#endif
    return -1;
}
