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
#include "bus/event_id.h"
#include "core/clock.h"
#include "core/log.h"
#include "history.h"
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

/* sub's resume ends (caught up, or sub is going): it leaves the replaying
 * list and its replay state is freed. */
static void replay_end(struct subscriber *sub)
{
    struct subscriber_replay *r = sub->replay;
    if (!r)
        return;
    list_unlink(&sub->replay_node);
    for (size_t i = 0; i < r->count; i++)
        free(r->types[i]);
    free(r->types);
    free(r->lens);
    free(r);
    sub->replay = NULL;
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
    replay_end(sub);
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
    replay_end(sub);
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

/* sub has output queued: flush_cb, which the hub's flush event runs once
 * the current callback is over, writes it. */
static void flush_soon(struct subscriber *sub)
{
    struct hub *hub = sub->hub;
    if (list_is_linked(&sub->unflushed_node))
        return;
    if (list_is_empty(&hub->unflushed))
        event_active(hub->flush_event, EV_TIMEOUT, 0);
    list_insert_before(hub->unflushed.next, &sub->unflushed_node);
}

/* Queues a shared event frame to sub, to be written by flush_cb. When it
 * does not fit under the backlog limit sub is put on hub->deferred instead. */
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
    flush_soon(sub);
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

/* --- history and resumes -------------------------------------------------- */

static void expire_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct hub *hub = arg;
    uint64_t next = history_expire(hub->history, clock_now_ms());
    if (next)
        clock_arm_at(hub->expire_timer, next);
}

/* The next replay pass runs after the loop has polled for I/O again: soon
 * when a replay progressed, else after HUB_REPLAY_POLL_MS, by which time a
 * socket may have taken what it was given. */
static void replay_schedule(struct hub *hub, bool progressed)
{
    if (list_is_empty(&hub->replaying))
        return;
    clock_arm_at(hub->replay_timer, progressed ? 0 : clock_now_ms() + HUB_REPLAY_POLL_MS);
}

static bool replay_wants(const struct subscriber_replay *r, const struct history_entry *e)
{
    for (size_t i = 0; i < r->count; i++) {
        if (r->lens[i] == e->type_len && memcmp(r->types[i], e->type, e->type_len) == 0)
            return true;
    }
    return false;
}

/* The replay has reached the history's end: sub holds its types from now
 * on, so the next event of them comes live. */
static void replay_caught_up(struct subscriber *sub)
{
    struct subscriber_replay *r = sub->replay;
    int rc = subs_add_all(sub->hub->subs, &sub->subs, sub, r->types, r->lens, r->count);
    replay_end(sub);
    if (rc < 0) {
        log_error("%s %s: out of memory subscribing after a replay: closing (1013)", sub->ops->name,
                  sub->peer);
        hub_close_subscriber(sub, CLOSE_TRY_AGAIN_LATER, "out of memory");
    }
}

/* The answer to a resume the history cannot serve, counted. */
static enum hub_resume resume_refused(struct hub *hub, enum history_lookup found)
{
    switch (found) {
    case HISTORY_TOO_OLD:
        hub->counters.resumes_too_old++;
        return HUB_RESUME_TOO_OLD;
    case HISTORY_DISABLED:
        hub->counters.resumes_disabled++;
        return HUB_RESUME_DISABLED;
    default:
        hub->counters.resumes_unknown++;
        return HUB_RESUME_UNKNOWN;
    }
}

/* Whether a resume by id that the history answered found may get a better
 * answer by waiting (hub.h's HUB_RESUME_HELD), held_for ms after it came. */
static bool resume_may_wait(const struct hub *hub, enum history_lookup found, uint64_t held_for)
{
    uint64_t now = clock_now_ms();
    if (held_for >= HUB_RESUME_HOLD_MAX_MS)
        return false;
    if (found == HISTORY_NOT_YET)
        return held_for < HUB_RESUME_AHEAD_MS;
    if (found != HISTORY_UNKNOWN)
        return false;
    return hub->bus_syncing > 0 ||
           (!hub->bus_synced && now - hub->started_ms < HUB_RESUME_STARTUP_MS);
}

/* Where a resume as since asks (the id, for INIT_SINCE_ID) starts:
 * HISTORY_FOUND with *from, the first position to replay; HISTORY_DISABLED
 * for an init that replays nothing. */
static enum history_lookup resume_lookup(const struct hub *hub, enum init_since since,
                                         const char *id, size_t id_len, uint64_t *from)
{
    enum history_lookup found;
    if (since == INIT_SINCE_ID) {
        found = history_find(hub->history, id, id_len, from);
        ++*from;
        return found;
    }
    if (since == INIT_SINCE_OLDEST && history_enabled(hub->history)) {
        *from = history_first(hub->history);
        return HISTORY_FOUND;
    }
    return HISTORY_DISABLED;
}

/* The answer to an init that replays nothing: resumed:false for one that
 * asked to, counted; plain OK otherwise. */
static enum hub_resume resume_not_replayed(struct hub *hub, enum init_since since,
                                           enum history_lookup found)
{
    if (since == INIT_SINCE_ID || since == INIT_SINCE_OLDEST)
        return resume_refused(hub, found);
    return HUB_RESUME_NONE;
}

/* Looks a held init up again. Returns true when it is now replaying (the
 * reply resumed:true is sent); false when it still waits, or when it was
 * answered (resumed:false, or plain OK) and subscribed (sub->replay is
 * then NULL). */
static bool resume_held_decide(struct subscriber *sub)
{
    struct hub *hub = sub->hub;
    struct subscriber_replay *r = sub->replay;
    uint64_t from = 0, held_for = clock_now_ms() - r->held_since_ms;
    enum history_lookup found;
    enum hub_resume result;
    if (hub->bus_start_pending && held_for < HUB_RESUME_HOLD_MAX_MS)
        return false;
    found = resume_lookup(hub, r->since_kind, r->since, r->since_len, &from);
    if (found == HISTORY_FOUND) {
        r->held = false;
        r->next_pos = from;
        hub->counters.resumes_replayed++;
        hub_reply_init_ok(sub, HUB_RESUME_REPLAYING);
        return true;
    }
    if (r->since_kind == INIT_SINCE_ID && resume_may_wait(hub, found, held_for))
        return false;
    result = resume_not_replayed(hub, r->since_kind, found);
    hub_reply_init_ok(sub, result);
    /* r->types are the init's types sub did not hold: what it subscribes. */
    if (subs_add_all(hub->subs, &sub->subs, sub, r->types, r->lens, r->count) < 0) {
        replay_end(sub);
        log_error("%s %s: out of memory subscribing after a resume: closing (1013)", sub->ops->name,
                  sub->peer);
        hub_close_subscriber(sub, CLOSE_TRY_AGAIN_LATER, "out of memory");
        return false;
    }
    replay_end(sub);
    return false;
}

/* What replay_some did. */
struct replay_work {
    size_t bytes;   /* queued */
    size_t entries; /* looked at */
};

/* Replays to sub what fits its fill level, within *budget. Ends the replay
 * when it catches up; closes sub (1013) when the history lost an entry the
 * replay still needed (evicted, or never retained), since the replay could
 * no longer be exact. Returns false when sub stopped replaying. */
static bool replay_some(struct subscriber *sub, struct replay_work *work)
{
    struct hub *hub = sub->hub;
    struct subscriber_replay *r = sub->replay;
    size_t fill = hub->limits.max_backlog / 2;
    size_t queued = 0;
    bool more = true;
    if (fill > HUB_REPLAY_FILL_MAX)
        fill = HUB_REPLAY_FILL_MAX;
    if (r->held && !resume_held_decide(sub))
        return sub->replay != NULL;
    while (work->bytes + queued < HUB_REPLAY_PASS_BYTES &&
           work->entries < HUB_REPLAY_PASS_ENTRIES) {
        const struct history_entry *e;
        if (r->next_pos >= history_end(hub->history)) {
            if (hub->bus_syncing > 0 && clock_now_ms() - r->started_ms < HUB_RESUME_HOLD_MAX_MS)
                break; /* more history is on its way: caught up once it is in */
            replay_caught_up(sub);
            more = false;
            break;
        }
        e = history_get(hub->history, r->next_pos);
        if (!e) {
            hub->counters.replay_overrun_closes++;
            log_warn("%s %s: the history lost events the replay needed: closing (1013)",
                     sub->ops->name, sub->peer);
            hub_close_subscriber(sub, CLOSE_TRY_AGAIN_LATER, "history overrun");
            return false;
        }
        work->entries++;
        if (!replay_wants(r, e)) {
            r->next_pos++;
            continue;
        }
        if (subscriber_backlog(sub) >= fill)
            break;
        if (subscriber_append(sub, e->frame, hub->limits.max_backlog) < 0) {
            if (subscriber_backlog(sub) > 0)
                break; /* the rest once the socket took some */
            /* Over max_backlog by itself: live delivery would close it too. */
            hub->counters.slow_consumer_closes++;
            log_warn("%s %s: slow consumer, an event over %zu bytes: closing (1013)",
                     sub->ops->name, sub->peer, hub->limits.max_backlog);
            hub_close_subscriber(sub, CLOSE_TRY_AGAIN_LATER, "slow consumer");
            return false;
        }
        hub->counters.replayed_events++;
        hub->counters.deliveries++;
        hub->counters.delivered_bytes += e->frame->len;
        queued += e->frame->len;
        r->next_pos++;
    }
    work->bytes += queued;
    if (queued)
        flush_soon(sub);
    return more;
}

/* One pass over the replaying subscribers, in turn, within the pass's
 * budget of bytes, entries and time; the next pass starts where this one
 * stopped. */
static void replay_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct hub *hub = arg;
    struct replay_work work = {0, 0};
    uint64_t started_ms = clock_now_ms();
    struct list_node served, *node;
    list_init(&served);
    while ((node = list_front(&hub->replaying))) {
        struct subscriber *sub = list_entry(node, struct subscriber, replay_node);
        if (replay_some(sub, &work)) {
            list_unlink(&sub->replay_node);
            list_push_back(&served, &sub->replay_node);
        }
        if (work.bytes >= HUB_REPLAY_PASS_BYTES || work.entries >= HUB_REPLAY_PASS_ENTRIES ||
            clock_now_ms() - started_ms >= HUB_REPLAY_BUDGET_MS)
            break;
    }
    /* Those served wait behind those the budget left for the next pass. */
    list_splice_back(&hub->replaying, &served);
    replay_schedule(hub, work.entries > 0);
}

/* The types of msg that sub does not hold yet, each once: what a replay
 * replays. Returns the replay state (count may be 0), or NULL when out of
 * memory. */
static struct subscriber_replay *replay_new(const struct subscriber *sub,
                                            const struct init_message *msg, uint64_t from)
{
    struct subscriber_replay *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->next_pos = from;
    r->started_ms = clock_now_ms();
    r->types = calloc(msg->event_count ? msg->event_count : 1, sizeof *r->types);
    r->lens = calloc(msg->event_count ? msg->event_count : 1, sizeof *r->lens);
    if (!r->types || !r->lens)
        goto fail;
    for (size_t i = 0; i < msg->event_count; i++) {
        const char *type = msg->events[i];
        size_t len = msg->event_lens[i];
        bool held = false;
        for (const struct subs_entry *e = sub->subs.head; e && !held; e = e->session_next) {
            size_t held_len;
            const char *held_type = subs_topic_type(e->topic, &held_len);
            held = held_len == len && memcmp(held_type, type, len) == 0;
        }
        for (size_t j = 0; j < r->count && !held; j++)
            held = r->lens[j] == len && memcmp(r->types[j], type, len) == 0;
        if (held)
            continue;
        if (!(r->types[r->count] = malloc(len + 1)))
            goto fail;
        memcpy(r->types[r->count], type, len + 1);
        r->lens[r->count++] = len;
    }
    return r;
fail:
    for (size_t i = 0; i < r->count; i++)
        free(r->types[i]);
    free(r->types);
    free(r->lens);
    free(r);
    return NULL;
}

int hub_subscribe(struct subscriber *sub, const struct init_message *msg, enum hub_resume *result)
{
    struct hub *hub = sub->hub;
    struct subscriber_replay *r;
    uint64_t from = 0;
    enum history_lookup found =
        resume_lookup(hub, msg->since, msg->since_id, msg->since_len, &from);
    bool hold =
        hub->bus_start_pending || (msg->since == INIT_SINCE_ID && resume_may_wait(hub, found, 0));

    *result = HUB_RESUME_NONE;
    if (msg->since != INIT_SINCE_NONE)
        sub->with_ids = true;
    if (found != HISTORY_FOUND && !hold) {
        if (subs_add_all(hub->subs, &sub->subs, sub, msg->events, msg->event_lens,
                         msg->event_count) < 0)
            return -1;
        *result = resume_not_replayed(hub, msg->since, found);
        return 0;
    }
    if (!(r = replay_new(sub, msg, from)))
        return -1;
    sub->replay = r;
    list_push_back(&hub->replaying, &sub->replay_node);
    replay_schedule(hub, true);
    if (found == HISTORY_FOUND && !hub->bus_start_pending) {
        hub->counters.resumes_replayed++;
        *result = HUB_RESUME_REPLAYING;
    } else {
        if (msg->since != INIT_SINCE_NONE)
            hub->counters.resumes_held++;
        r->held = true;
        r->held_since_ms = clock_now_ms();
        r->since_kind = msg->since;
        if (msg->since == INIT_SINCE_ID) {
            memcpy(r->since, msg->since_id, msg->since_len);
            r->since_len = msg->since_len;
        }
        *result = HUB_RESUME_HELD;
    }
    return 0;
}

void hub_reply_init_ok(struct subscriber *sub, enum hub_resume resume)
{
    static const char *const replies[] = {
        [HUB_RESUME_NONE] = "{\"type\":\"init\",\"code\":\"OK\"}",
        [HUB_RESUME_REPLAYING] = "{\"type\":\"init\",\"code\":\"OK\",\"resumed\":true}",
        [HUB_RESUME_TOO_OLD] =
            "{\"type\":\"init\",\"code\":\"OK\",\"resumed\":false,\"reason\":\"TOO_OLD\"}",
        [HUB_RESUME_UNKNOWN] =
            "{\"type\":\"init\",\"code\":\"OK\",\"resumed\":false,\"reason\":\"UNKNOWN\"}",
        [HUB_RESUME_DISABLED] =
            "{\"type\":\"init\",\"code\":\"OK\",\"resumed\":false,\"reason\":\"DISABLED\"}",
    };
    if (resume != HUB_RESUME_HELD)
        sub->ops->reply(sub, replies[resume], strlen(replies[resume]));
}

void hub_bus_peer_greeted(struct hub *hub)
{
    hub->bus_syncing++;
}

void hub_bus_start_pending(struct hub *hub)
{
    hub->bus_start_pending = true;
}

void hub_bus_peer_synced(struct hub *hub)
{
    hub->bus_syncing--;
    hub->bus_synced = true;
    hub->bus_start_pending = false;
    replay_schedule(hub, true); /* held resumes may be answered now */
}

void hub_bus_peer_lost_unsynced(struct hub *hub)
{
    hub->bus_syncing--;
    replay_schedule(hub, true);
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
    list_init(&hub->replaying);
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
    hub->history = history_new(&limits->history, seed ^ 0x9e3779b97f4a7c15u);
    hub->expire_timer = evtimer_new(base, expire_timer_cb, hub);
    hub->replay_timer = evtimer_new(base, replay_timer_cb, hub);
    if (!hub->subs || !hub->init_timer || !hub->close_timer || !hub->ping_timer ||
        !hub->trim_timer || !hub->flush_event || !hub->recheck_timer || !hub->history ||
        !hub->expire_timer || !hub->replay_timer)
        return -1;
    event_add(hub->ping_timer, &ping);
    hub->last_trim_ms = clock_now_ms();
    hub->started_ms = hub->last_trim_ms;
    conn_set_release_hook(hub_connection_released, hub);
    return 0;
}

/* The frame of one event in the form sub gets, built on first need. */
static struct shared_frame *fanout_frame(const struct hub_event *ev, bool with_id,
                                         struct shared_frame **plain, struct shared_frame **idf,
                                         const char *member, size_t member_len)
{
    if (with_id) {
        if (!*idf)
            *idf = shared_frame_new_text_with(ev->message, ev->message_len, ev->id_offset, member,
                                              member_len);
        return *idf;
    }
    if (!*plain)
        *plain = shared_frame_new_text(ev->message, ev->message_len);
    return *plain;
}

void hub_fanout(struct hub *hub, const struct hub_event *ev)
{
    struct subs_topic *topic = subs_find(hub->subs, (const char *)ev->type, ev->type_len);
    struct shared_frame *plain = NULL, *idf = NULL;
    char member[sizeof ",\"id\":\"\"" + EVENT_ID_LEN];
    size_t member_len;

    memcpy(member, ",\"id\":\"", 7);
    event_id_format(member + 7, ev->run, ev->number);
    member[7 + EVENT_ID_LEN] = '"';
    member_len = 7 + EVENT_ID_LEN + 1;

    if (!ev->history_only)
        hub->counters.events_received++;
    if (history_enabled(hub->history)) {
        fanout_frame(ev, true, &plain, &idf, member, member_len);
        /* Out of memory leaves a gap the history answers for (TOO_OLD). */
        history_append(hub->history, (const char *)ev->type, ev->type_len, ev->run, ev->number, idf,
                       ev->other_run_live, clock_now_ms());
        if (!evtimer_pending(hub->expire_timer, NULL))
            expire_timer_cb(-1, 0, hub);
    }
    if (ev->history_only) {
        hub->counters.history_loaded++;
    } else if (!topic) {
        hub->counters.events_unrouted++;
    } else {
        /* Closing a slow subscriber would change the list being walked, so
         * it is deferred until the walk is over. */
        for (struct subs_entry *e = subs_topic_first(topic); e; e = e->topic_next) {
            struct subscriber *sub = e->session;
            struct shared_frame *frame =
                fanout_frame(ev, sub->with_ids, &plain, &idf, member, member_len);
            if (frame)
                deliver(sub, frame);
        }
    }
    shared_frame_release(plain);
    shared_frame_release(idf);
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

size_t hub_replaying_count(const struct hub *hub)
{
    size_t n = 0;
    for (const struct list_node *node = hub->replaying.next; node != &hub->replaying;
         node = node->next)
        n++;
    return n;
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
    if (hub->expire_timer)
        event_free(hub->expire_timer);
    if (hub->replay_timer)
        event_free(hub->replay_timer);
    history_free(hub->history);
    hub->history = NULL;
    hub->expire_timer = hub->replay_timer = NULL;
    hub->subs = NULL;
    hub->init_timer = hub->close_timer = hub->ping_timer = hub->trim_timer = NULL;
    hub->flush_event = hub->recheck_timer = NULL;
}
