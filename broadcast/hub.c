#include "hub.h"

#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <malloc.h>

#include <event2/event.h>

#include "session.h"
#include "shared_frame.h"
#include "subscriptions.h"

uint64_t hub_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void arm_at(struct event *timer, uint64_t deadline_ms)
{
    uint64_t now = hub_now_ms(), delay = deadline_ms > now ? deadline_ms - now : 0;
    struct timeval tv = {(time_t)(delay / 1000), (suseconds_t)((delay % 1000) * 1000)};
    evtimer_add(timer, &tv);
}

static void init_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct hub *hub = arg;
    session_expire_init(hub, hub_now_ms());
    if (session_init_deadline(hub))
        arm_at(hub->init_timer, session_init_deadline(hub));
}

static void close_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct hub *hub = arg;
    session_expire_closing(hub, hub_now_ms());
    if (session_close_deadline(hub))
        arm_at(hub->close_timer, session_close_deadline(hub));
}

static void ping_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    session_ping_all(arg);
}

/* Hands freed heap back to the system after many sessions ended (a burst
 * of connections, slow consumers cut off): glibc keeps it otherwise, and
 * the daemon's RSS would stay at its peak. At most every few seconds. */
#define HUB_TRIM_PERIOD_MS 5000
#define HUB_TRIM_AFTER_SESSIONS 256

void hub_trim_heap(struct hub *hub)
{
    if (hub->sessions_ended > 0) {
        hub->sessions_ended = 0;
        malloc_trim(0);
    }
}

static void flush_cb(evutil_socket_t fd, short what, void *arg)
{
    session_flush_all(arg);
}

static void trim_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct hub *hub = arg;
    if (hub->sessions_ended >= HUB_TRIM_AFTER_SESSIONS)
        hub_trim_heap(hub);
}

int hub_init(struct hub *hub, struct event_base *base, const struct hub_limits *limits,
             struct auth_store *auth)
{
    struct timeval ping = {limits->ping_interval_ms / 1000, (limits->ping_interval_ms % 1000) * 1000};
    uint64_t seed = 0;

    memset(hub, 0, sizeof *hub);
    hub->base = base;
    hub->limits = *limits;
    hub->auth = auth;
    if (getrandom(&seed, sizeof seed, 0) != sizeof seed)
        seed = hub_now_ms() ^ (uint64_t)(uintptr_t)hub;
    hub->subs = subs_index_new(seed);
    hub->init_timer = evtimer_new(base, init_timer_cb, hub);
    hub->close_timer = evtimer_new(base, close_timer_cb, hub);
    hub->ping_timer = event_new(base, -1, EV_PERSIST, ping_timer_cb, hub);
    hub->trim_timer = event_new(base, -1, EV_PERSIST, trim_timer_cb, hub);
    hub->flush_event = event_new(base, -1, 0, flush_cb, hub);
    if (!hub->subs || !hub->init_timer || !hub->close_timer || !hub->ping_timer ||
        !hub->trim_timer || !hub->flush_event)
        return -1;
    event_add(hub->ping_timer, &ping);
    {
        struct timeval trim = {HUB_TRIM_PERIOD_MS / 1000, 0};
        event_add(hub->trim_timer, &trim);
    }
    return 0;
}

void hub_fanout(struct hub *hub, const uint8_t *type, size_t type_len, const uint8_t *message,
                size_t message_len)
{
    struct subs_topic *topic = subs_find(hub->subs, (const char *)type, type_len);
    struct shared_frame *frame;

    hub->counters.events_received++;
    if (!topic) {
        hub->counters.events_unrouted++;
        return;
    }
    frame = shared_frame_new_text(message, message_len);
    if (!frame)
        return;
    /* Closing a slow subscriber would change the list being walked, so it
     * is deferred until the walk is over. */
    for (struct subs_entry *e = subs_topic_first(topic); e; e = e->topic_next)
        session_deliver(e->session, frame);
    shared_frame_release(frame);
    session_close_deferred(hub);
}

void hub_recheck_sessions(struct hub *hub)
{
    session_recheck_all(hub);
}

uint64_t hub_backlog_bytes(const struct hub *hub)
{
    return session_backlog_all(hub);
}

void hub_close_all(struct hub *hub, uint16_t code, const char *reason)
{
    session_close_all(hub, code, reason);
}

void hub_free(struct hub *hub)
{
    while (hub->sessions)
        session_free(hub->sessions);
    subs_index_free(hub->subs);
    if (hub->init_timer)
        event_free(hub->init_timer);
    if (hub->close_timer)
        event_free(hub->close_timer);
    if (hub->ping_timer)
        event_free(hub->ping_timer);
    if (hub->trim_timer)
        event_free(hub->trim_timer);
    if (hub->flush_event)
        event_free(hub->flush_event);
    hub->subs = NULL;
    hub->init_timer = hub->close_timer = hub->ping_timer = hub->trim_timer = NULL;
    hub->flush_event = NULL;
}
