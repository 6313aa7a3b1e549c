#include "hub.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <malloc.h>

#include <event2/bufferevent.h>
#include <event2/event.h>

#include "auth/auth_store.h"
#include "core/clock.h"
#include "core/log.h"
#include "net/conn_flush.h"
#include "net/conn_write.h"
#include "shared_frame.h"
#include "subscriber.h"
#include "subscriptions.h"

/* RFC 6455 §7.4.1 status codes the hub closes with; a transport without
 * close codes maps them to its own way of ending. */
#define CLOSE_POLICY 1008
#define CLOSE_TRY_AGAIN_LATER 1013

/* --- lists ---------------------------------------------------------------- */

static struct subscriber *subscriber_of_registry(struct list_node *node)
{
    return list_entry(node, struct subscriber, registry_node);
}

/* The node after sub's on hub->sessions, or NULL after the last. */
static struct list_node *registry_after(const struct subscriber *sub)
{
    struct list_node *next = sub->registry_node.next;
    return next == &sub->hub->sessions ? NULL : next;
}

/* The subscriber waiting on the deadline list node `node`, or NULL. */
static struct subscriber *subscriber_of_deadline(struct list_node *node)
{
    return node ? list_entry(node, struct subscriber, deadline_node) : NULL;
}

/* Puts sub on a deadline list, due in delay_ms: deadlines are the same
 * length for every subscriber of a list, so the list stays in deadline
 * order, and only a new first entry re-arms the list's timer. */
static void deadline_push(struct list_node *list, struct event *timer, struct subscriber *sub,
                          unsigned delay_ms)
{
    sub->deadline_ms = clock_now_ms() + delay_ms;
    list_push_back(list, &sub->deadline_node);
    if (list_front(list) == &sub->deadline_node)
        clock_arm_at(timer, sub->deadline_ms);
}

static void deadline_remove(struct subscriber *sub)
{
    if (list_is_linked(&sub->deadline_node))
        list_unlink(&sub->deadline_node);
}

/* Next deadline on a list (0 when empty). */
static uint64_t deadline_first(const struct list_node *list)
{
    const struct subscriber *sub = subscriber_of_deadline(list_front(list));
    return sub ? sub->deadline_ms : 0;
}

/* --- the sweeps ----------------------------------------------------------- */

static void init_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct hub *hub = arg;
    uint64_t now = clock_now_ms();
    struct subscriber *sub;
    while ((sub = subscriber_of_deadline(list_front(&hub->init_wait))) && sub->deadline_ms <= now) {
        deadline_remove(sub);
        hub->counters.init_timeout_closes++;
        log_info("%s %s: no successful init within %u ms: closing (1008)", sub->ops->name,
                 sub->peer, hub->limits.init_timeout_ms);
        hub_close_subscriber(sub, CLOSE_POLICY, "no successful init in time");
    }
    if (deadline_first(&hub->init_wait))
        clock_arm_at(hub->init_timer, deadline_first(&hub->init_wait));
}

static void close_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct hub *hub = arg;
    uint64_t now = clock_now_ms();
    struct subscriber *sub;
    while ((sub = subscriber_of_deadline(list_front(&hub->closing))) && sub->deadline_ms <= now) {
        log_debug("%s %s: close not completed in time: dropped", sub->ops->name, sub->peer);
        hub_free_subscriber(sub);
    }
    if (deadline_first(&hub->closing))
        clock_arm_at(hub->close_timer, deadline_first(&hub->closing));
}

/* Visits each subscriber once per ping interval: one that left the last
 * ping unanswered is dropped, the others are pinged. */
static void ping_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct hub *hub = arg;
    struct list_node *node, *next;
    list_for_each_safe(node, next, &hub->sessions)
    {
        struct subscriber *sub = subscriber_of_registry(node);
        if (sub->state == SUBSCRIBER_CLOSING)
            continue;
        if (sub->state == SUBSCRIBER_PINGED) {
            hub->counters.ping_timeout_closes++;
            log_info("%s %s: no pong within %u ms: dropped", sub->ops->name, sub->peer,
                     hub->limits.ping_interval_ms);
            hub_free_subscriber(sub);
            continue;
        }
        sub->state = SUBSCRIBER_PINGED;
        sub->ops->ping(sub);
    }
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
    hub->last_trim_ms = clock_now_ms();
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

static bool recheck_some(struct hub *hub);

static void recheck_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct hub *hub = arg;
    if (recheck_some(hub)) {
        recheck_schedule(hub);
        return;
    }
    hub->counters.recheck_passes++;
}

static void hub_trim_soon(struct hub *hub, bool at_once)
{
    if (at_once)
        clock_arm_at(hub->trim_timer, 0);
    else if (!evtimer_pending(hub->trim_timer, NULL))
        clock_arm_at(hub->trim_timer, hub->last_trim_ms + HUB_TRIM_MIN_INTERVAL_MS);
}

/* Counts a subscriber gone. Freed heap is handed back to the system
 * (malloc_trim) once many ended or their connections let go of much unsent
 * data, and when the last one has left. */
static void hub_session_ended(struct hub *hub)
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

/* Writes the queued deliveries of every subscriber on hub->unflushed. */
static void flush_cb(evutil_socket_t fd, short what, void *arg)
{
    struct hub *hub = arg;
    struct list_node *node;
    while ((node = list_pop_front(&hub->unflushed)))
        conn_write_flush(list_entry(node, struct subscriber, unflushed_node)->bev);
}

/* --- a subscriber's life ------------------------------------------------- */

void hub_add_subscriber(struct hub *hub, struct subscriber *sub)
{
    sub->hub = hub;
    sub->state = SUBSCRIBER_OPEN;
    /* Newest first: the order of the sweeps and the recheck pass. */
    list_insert_before(hub->sessions.next, &sub->registry_node);
    hub->counters.sessions_opened++;
    hub->counters.sessions_open++;
    deadline_push(&hub->init_wait, hub->init_timer, sub, hub->limits.init_timeout_ms);
}

void hub_subscriber_authenticated(struct subscriber *sub)
{
    sub->hub->counters.sessions_authenticated++;
    deadline_remove(sub);
}

void hub_free_subscriber(struct subscriber *sub)
{
    struct hub *hub = sub->hub;
    if (list_is_linked(&sub->deferred_node))
        list_unlink(&sub->deferred_node);
    subs_remove_all(hub->subs, &sub->subs);
    deadline_remove(sub);
    if (list_is_linked(&sub->unflushed_node))
        list_unlink(&sub->unflushed_node);
    if (hub->recheck_cursor == &sub->registry_node)
        hub->recheck_cursor = registry_after(sub);
    list_unlink(&sub->registry_node);
    hub->counters.sessions_open--;
    if (sub->credential)
        hub->counters.sessions_authenticated--;
    if (sub->expiry)
        event_free(sub->expiry);
    free(sub->credential);
    if (sub->bev)
        conn_release(sub->bev); /* releases the shared frames still queued */
    /* The output may outlive the subscriber (conn_flush_and_close): the
     * tally stays until the output is done with its references. */
    shared_frame_tally_release(sub->frames_referenced);
    log_debug("%s %s: session ended", sub->ops->name, sub->peer);
    sub->ops->destroy(sub);
    hub_session_ended(hub);
}

/* The server closes the TCP connection first (RFC 6455 §7.1.1), once what
 * it wrote is on the wire. */
void hub_end_subscriber(struct subscriber *sub)
{
    struct bufferevent *bev = sub->bev;
    unsigned timeout_ms = sub->hub->limits.close_timeout_ms;
    sub->bev = NULL;
    hub_free_subscriber(sub);
    conn_flush_and_close(bev, timeout_ms, CONN_CLOSE_GRACEFUL);
}

/* sub stops receiving: its subscriptions end now, whatever the peer does
 * next, and so does its init deadline. */
static void subscriber_stop(struct subscriber *sub)
{
    deadline_remove(sub);
    subs_remove_all(sub->hub->subs, &sub->subs);
    sub->state = SUBSCRIBER_CLOSING;
}

void hub_subscriber_closing(struct subscriber *sub)
{
    struct hub *hub = sub->hub;
    if (sub->state == SUBSCRIBER_CLOSING)
        return;
    subscriber_stop(sub);
    deadline_push(&hub->closing, hub->close_timer, sub, hub->limits.close_timeout_ms);
}

void hub_close_subscriber(struct subscriber *sub, uint16_t code, const char *reason)
{
    struct hub *hub = sub->hub;
    if (sub->state == SUBSCRIBER_CLOSING)
        return;
    subscriber_stop(sub);
    if (sub->ops->close(sub, code, reason))
        deadline_push(&hub->closing, hub->close_timer, sub, hub->limits.close_timeout_ms);
}

void hub_end_credential(struct subscriber *sub, enum hub_credential_end why)
{
    bool revoked = why == HUB_CREDENTIAL_REVOKED;
    char json[64];
    int len = snprintf(json, sizeof json, "{\"type\":\"auth\",\"code\":\"%s\"}",
                       revoked ? "REVOKED" : "TOKEN_EXPIRED");
    if (!sub->ops->notify(sub, json, (size_t)len))
        return;
    log_info("%s %s: credential %s: closing (1008)", sub->ops->name, sub->peer,
             revoked ? "revoked" : "expired");
    hub_close_subscriber(sub, CLOSE_POLICY, revoked ? "revoked" : "token expired");
}

/* --- delivery ------------------------------------------------------------- */

/* Queues a shared event frame to sub; it is written by flush_cb, which the
 * hub's flush event runs once the current callback is over. When it does
 * not fit under the backlog limit sub is put on hub->deferred instead. */
static void deliver(struct subscriber *sub, struct shared_frame *frame)
{
    struct hub *hub = sub->hub;
    if (sub->state == SUBSCRIBER_CLOSING || list_is_linked(&sub->deferred_node))
        return;
    if (subscriber_append(sub, frame, hub->limits.max_backlog) < 0) {
        /* Newest first, as the sweep has always closed them. */
        list_insert_before(hub->deferred.next, &sub->deferred_node);
        return;
    }
    hub->counters.deliveries++;
    hub->counters.delivered_bytes += frame->len;
    if (!list_is_linked(&sub->unflushed_node)) {
        if (list_is_empty(&hub->unflushed))
            event_active(hub->flush_event, EV_TIMEOUT, 0);
        list_insert_before(hub->unflushed.next, &sub->unflushed_node);
    }
}

/* Closes the subscribers a fan-out found over their backlog limit. */
static void close_deferred(struct hub *hub)
{
    struct list_node *node;
    while ((node = list_pop_front(&hub->deferred))) {
        struct subscriber *sub = list_entry(node, struct subscriber, deferred_node);
        hub->counters.slow_consumer_closes++;
        log_warn("%s %s: slow consumer, over %zu bytes unsent: closing (1013)", sub->ops->name,
                 sub->peer, hub->limits.max_backlog);
        hub_close_subscriber(sub, CLOSE_TRY_AGAIN_LATER, "slow consumer");
    }
}

/* --- the recheck pass ----------------------------------------------------- */

/* Continues the pass from its cursor: each live subscriber due for a check
 * (hub_recheck_due) is authenticated again, and ended with
 * {"type":"auth","code":"REVOKED"} (or TOKEN_EXPIRED) and 1008 when it no
 * longer passes or no longer allows one of its subscriptions. Stops after
 * HUB_RECHECK_BATCH checks or HUB_RECHECK_BUDGET_MS; returns true when
 * subscribers remain for another call. */
static bool recheck_some(struct hub *hub)
{
    const struct auth_sources *sources = auth_store_sources(hub->auth);
    int64_t now = (int64_t)time(NULL);
    uint64_t started_ms = clock_now_ms();
    unsigned checked = 0;
    bool visited = false;
    while (hub->recheck_cursor) {
        struct subscriber *sub;
        struct auth_identity identity;
        int rc;
        if (checked >= HUB_RECHECK_BATCH ||
            (visited && clock_now_ms() - started_ms >= HUB_RECHECK_BUDGET_MS))
            return true;
        visited = true;
        sub = subscriber_of_registry(hub->recheck_cursor);
        hub->recheck_cursor = registry_after(sub);
        /* A verified signature does not change with the tokens file, nor a
         * token's line with the keys: only what the change touched is
         * checked again. */
        if (!sub->credential || sub->state == SUBSCRIBER_CLOSING ||
            !hub_recheck_due(hub, sub->depends_on, sub->auth_checked))
            continue;
        sub->auth_checked = hub->auth_changes;
        checked++;
        hub->counters.rechecks++;
        rc = auth_authenticate(sources, sub->credential, sub->credential_len, now, &identity);
        if (rc == AUTH_OK && subscriber_subscriptions_allowed(sub, &identity)) {
            sub->depends_on = identity.depends_on;
            auth_identity_clear(&identity);
            continue;
        }
        auth_identity_clear(&identity);
        if (rc == AUTH_TOKEN_EXPIRED) {
            hub->counters.expired_closes++;
            hub_end_credential(sub, HUB_CREDENTIAL_EXPIRED); /* may free sub, never the cursor */
        } else {
            hub->counters.revoked_closes++;
            hub_end_credential(sub, HUB_CREDENTIAL_REVOKED);
        }
    }
    return false;
}

/* --- the hub -------------------------------------------------------------- */

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
        seed = clock_now_ms() ^ (uint64_t)(uintptr_t)hub;
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
    hub->last_trim_ms = clock_now_ms();
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
        deliver(e->session, frame);
    shared_frame_release(frame);
    close_deferred(hub);
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
    uint64_t total = 0;
    for (const struct list_node *node = hub->sessions.next; node != &hub->sessions;
         node = node->next) {
        const struct subscriber *sub = list_entry(node, struct subscriber, registry_node);
        if (sub->bev)
            total += subscriber_backlog(sub);
    }
    return total;
}

void hub_close_all(struct hub *hub, uint16_t code, const char *reason)
{
    struct list_node *node, *next;
    list_for_each_safe(node, next, &hub->sessions) hub_close_subscriber(
        subscriber_of_registry(node), code, reason); /* may free it, never next */
}

void hub_free(struct hub *hub)
{
    struct list_node *node;
    while ((node = list_front(&hub->sessions)))
        hub_free_subscriber(subscriber_of_registry(node));
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
