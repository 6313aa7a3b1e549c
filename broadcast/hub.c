#include "hub.h"

#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <malloc.h>

#include <event2/event.h>

#include "net/conn_flush.h"
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

/* Hands freed heap back to the system once much has been freed (a burst of
 * connections ended, slow consumers let go with their backlogs): glibc
 * keeps it otherwise, and the daemon's RSS would stay at its peak.
 *
 * The trim is a timer, never a call made where a connection ends:
 * bufferevent_free only schedules the freeing of a connection's buffers
 * (libevent finalizes it later in the same loop pass), and a connection
 * may still be flushing after its session ended. A trim made there would
 * find the memory still allocated; a timer runs at the next pass at the
 * earliest, after every finalizer already scheduled. At most once a
 * second, except when the last session has left. */
#define HUB_TRIM_AFTER_SESSIONS 256
#define HUB_TRIM_AFTER_BYTES (4u << 20)
#define HUB_TRIM_MIN_INTERVAL_MS 1000

static void trim_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct hub *hub = arg;
    hub->sessions_ended = 0;
    hub->released_bytes = 0;
    hub->last_trim_ms = hub_now_ms();
    malloc_trim(0);
}

/* The next batch of a recheck pass runs after the loop has polled for I/O
 * again: a timer due at once, not an active event, which could run batch
 * after batch without a poll in between. */
static void recheck_schedule(struct hub *hub)
{
    struct timeval now = {0, 0};
    evtimer_add(hub->recheck_timer, &now);
}

static void recheck_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct hub *hub = arg;
    if (session_recheck_some(hub)) {
        recheck_schedule(hub);
        return;
    }
    hub->counters.recheck_passes++;
}

static void hub_trim_soon(struct hub *hub, bool at_once)
{
    uint64_t now = hub_now_ms(), earliest = hub->last_trim_ms + HUB_TRIM_MIN_INTERVAL_MS;
    uint64_t delay = at_once || earliest <= now ? 0 : earliest - now;
    struct timeval tv = {(time_t)(delay / 1000), (suseconds_t)(delay % 1000 * 1000)};
    if (at_once || !evtimer_pending(hub->trim_timer, NULL))
        evtimer_add(hub->trim_timer, &tv);
}

void hub_session_ended(struct hub *hub)
{
    hub->sessions_ended++;
    if (hub->counters.sessions_open == 0)
        hub_trim_soon(hub, true); /* the last client left: give the memory back now */
    else if (hub->sessions_ended >= HUB_TRIM_AFTER_SESSIONS)
        hub_trim_soon(hub, false);
}

/* Every client connection ends in conn_release, whoever held it last. */
static void hub_connection_released(void *arg, size_t unsent)
{
    struct hub *hub = arg;
    hub->released_bytes += unsent;
    if (hub->released_bytes >= HUB_TRIM_AFTER_BYTES)
        hub_trim_soon(hub, hub->counters.sessions_open == 0);
}

static void flush_cb(evutil_socket_t fd, short what, void *arg)
{
    session_flush_all(arg);
}

int hub_init(struct hub *hub, struct event_base *base, const struct hub_limits *limits,
             struct auth_store *auth)
{
    struct timeval ping = {limits->ping_interval_ms / 1000,
                           (limits->ping_interval_ms % 1000) * 1000};
    uint64_t seed = 0;

    memset(hub, 0, sizeof *hub);
    list_init(&hub->sessions);
    list_init(&hub->init_wait);
    list_init(&hub->closing);
    list_init(&hub->deferred);
    list_init(&hub->unflushed);
    hub->base = base;
    hub->limits = *limits;
    hub->auth = auth;
    if (getrandom(&seed, sizeof seed, 0) != sizeof seed)
        seed = hub_now_ms() ^ (uint64_t)(uintptr_t)hub;
    hub->subs = subs_index_new(seed);
    hub->init_timer = evtimer_new(base, init_timer_cb, hub);
    hub->close_timer = evtimer_new(base, close_timer_cb, hub);
    hub->ping_timer = event_new(base, -1, EV_PERSIST, ping_timer_cb, hub);
    hub->trim_timer = evtimer_new(base, trim_timer_cb, hub);
    hub->flush_event = event_new(base, -1, 0, flush_cb, hub);
    hub->recheck_timer = evtimer_new(base, recheck_timer_cb, hub);
    if (!hub->subs || !hub->init_timer || !hub->close_timer || !hub->ping_timer ||
        !hub->trim_timer || !hub->flush_event || !hub->recheck_timer)
        return -1;
    event_add(hub->ping_timer, &ping);
    hub->last_trim_ms = hub_now_ms();
    conn_set_release_hook(hub_connection_released, hub);
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

void hub_recheck_sessions(struct hub *hub, unsigned changed)
{
    hub->auth_changes++;
    for (unsigned i = 0; i < AUTH_SOURCE_COUNT; i++) {
        if (changed & (1u << i))
            hub->source_changed_at[i] = hub->auth_changes;
    }
    hub->recheck_cursor = list_front(&hub->sessions);
    recheck_schedule(hub);
}

bool hub_recheck_due(const struct hub *hub, unsigned depends_on, uint64_t checked_at)
{
    for (unsigned i = 0; i < AUTH_SOURCE_COUNT; i++) {
        if ((depends_on & (1u << i)) && hub->source_changed_at[i] > checked_at)
            return true;
    }
    return false;
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
    struct list_node *node;
    while ((node = list_front(&hub->sessions)))
        session_free(session_from_registry(node));
    conn_set_release_hook(NULL, NULL);
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
    if (hub->recheck_timer)
        event_free(hub->recheck_timer);
    hub->subs = NULL;
    hub->init_timer = hub->close_timer = hub->ping_timer = hub->trim_timer = NULL;
    hub->flush_event = hub->recheck_timer = NULL;
}
