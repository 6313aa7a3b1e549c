#include "core/process.h"

#include <signal.h>

#include <event2/event.h>

#include "core/log.h"
#include <sys/resource.h>

size_t process_raise_file_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return 1024;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    return rl.rlim_cur == RLIM_INFINITY ? (size_t)1 << 20 : (size_t)rl.rlim_cur;
}

size_t process_connection_cap(size_t requested, size_t file_limit, size_t reserve)
{
    if (requested)
        return requested;
    return file_limit > reserve * 2 ? file_limit - reserve : file_limit / 2;
}

void process_ignore_sigpipe(void)
{
    signal(SIGPIPE, SIG_IGN);
}

static void libevent_log_cb(int severity, const char *msg)
{
    switch (severity) {
    case EVENT_LOG_DEBUG:
        log_debug("libevent: %s", msg);
        break;
    case EVENT_LOG_MSG:
        log_info("libevent: %s", msg);
        break;
    case EVENT_LOG_WARN:
        log_warn("libevent: %s", msg);
        break;
    default:
        log_error("libevent: %s", msg);
        break;
    }
}

static void libevent_quiet_cb(int severity, const char *msg)
{
    (void)severity;
    (void)msg;
}

void process_route_libevent_logs(int quiet)
{
    event_set_log_callback(quiet ? libevent_quiet_cb : libevent_log_cb);
}

int process_signals_catch(struct process_signals *signals, struct event_base *base,
                          void (*reload)(int, short, void *), void (*stop)(int, short, void *),
                          void *arg)
{
    signals->hup = evsignal_new(base, SIGHUP, reload, arg);
    signals->term = evsignal_new(base, SIGTERM, stop, arg);
    signals->intr = evsignal_new(base, SIGINT, stop, arg);
    if (!signals->hup || !signals->term || !signals->intr || evsignal_add(signals->hup, NULL) < 0 ||
        evsignal_add(signals->term, NULL) < 0 || evsignal_add(signals->intr, NULL) < 0)
        return -1;
    return 0;
}

void process_signals_free(struct process_signals *signals)
{
    if (signals->hup)
        event_free(signals->hup);
    if (signals->term)
        event_free(signals->term);
    if (signals->intr)
        event_free(signals->intr);
    signals->hup = signals->term = signals->intr = NULL;
}
