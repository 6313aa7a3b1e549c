/* The broadcast daemon's state: every subscriber (subscriber.h), whatever
 * its transport, the subscription index, and fan-out of events from the
 * bus to subscribers. The hub owns the subscribers: it registers them,
 * keeps their deadlines, closes and frees them, and runs every sweep over
 * them; a transport reports what its peer did and answers the hub's few
 * requests (struct subscriber_ops).
 *
 * Fan-out encodes an event's frame once (shared_frame.h) and appends it to
 * each subscriber's output (by reference, or copied when small), costing
 * O(subscribers of its type). A subscriber that cannot take the frame
 * without the memory its unsent backlog holds passing max_backlog is closed
 * (1013) after the fan-out, so it never slows the others. Deliveries are
 * written to the sockets once the loop has finished its current callback,
 * so that every event of one bus read reaches a subscriber in one write.
 * Timers work on FIFO lists ordered by deadline, never on a scan of every
 * connection, except the ping sweep, which visits each session once per
 * ping interval to ping it.
 */
#ifndef EVS_HUB_H
#define EVS_HUB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth/auth.h"
#include "core/list.h"
#include "history.h"
#include "init_message.h"
#include "subscriber.h"

struct event_base;
struct event;
struct auth_store;
struct subs_index;

struct hub_limits {
    size_t max_message;        /* largest client message (bytes); larger closes with 1009 */
    size_t max_backlog;        /* memory unsent frames may hold per subscriber before 1013 */
    unsigned init_timeout_ms;  /* time to a successful init before close 1008 */
    unsigned ping_interval_ms; /* ping period; no pong by the next one closes */
    unsigned close_timeout_ms; /* how long a closing peer may take to finish */
    size_t max_subscriptions;  /* event types per session */
    struct history_limits history;
};

struct hub_counters {
    uint64_t sessions_opened;
    uint64_t sessions_open;
    uint64_t sessions_authenticated; /* open sessions with a successful init */
    uint64_t init_ok;
    uint64_t init_rejected;
    uint64_t events_received;
    uint64_t events_unrouted; /* no subscriber for the type */
    uint64_t deliveries;      /* frames queued to subscribers */
    uint64_t delivered_bytes;
    uint64_t slow_consumer_closes;
    uint64_t init_timeout_closes;
    uint64_t ping_timeout_closes;
    uint64_t oversized_message_closes;
    uint64_t expired_closes;      /* JWT past its exp */
    uint64_t revoked_closes;      /* credential or right withdrawn */
    uint64_t init_rate_closes;    /* inits past the per-session rate */
    uint64_t auth_failure_closes; /* credentials refused too many times in a row */
    uint64_t recheck_passes;      /* passes over the sessions after credential changes, finished */
    uint64_t rechecks;            /* sessions those passes authenticated again */
    uint64_t resumes_replayed;    /* inits with "since" answered resumed:true */
    uint64_t resumes_too_old;     /* ... resumed:false, by reason */
    uint64_t resumes_unknown;
    uint64_t resumes_disabled;
    uint64_t resumes_held;    /* inits with "since" that waited for the bus (HUB_RESUME_HELD) */
    uint64_t history_loaded;  /* events kept in the history only (HISTORY frames) */
    uint64_t replayed_events; /* frames queued by replays */
    uint64_t replay_overrun_closes; /* replays the history's eviction overtook (1013) */
};

struct hub {
    struct event_base *base;
    struct hub_limits limits;
    struct auth_store *auth; /* borrowed */
    struct subs_index *subs;
    struct list_node sessions; /* every open subscriber, newest first */
    /* Lists of subscribers (core/list.h), each through its own node in the
     * subscriber; whether one is on a list is asked of that node. */
    struct list_node init_wait; /* no successful init yet, by connect time */
    struct list_node closing;   /* close started, by start time */
    struct list_node deferred;  /* to close once the current fan-out ends */
    struct list_node unflushed; /* sessions with deliveries not yet written */
    struct event *flush_event;  /* made active while unflushed is not empty */
    struct event *init_timer, *close_timer, *ping_timer, *trim_timer;
    struct history *history;
    struct event *expire_timer; /* evicts history entries past their age */
    struct list_node replaying; /* subscribers whose resume is replaying or held, in turn */
    struct event *replay_timer; /* runs the replays' next pass */
    /* What the bus side (bus_server.h) tells about the listen daemons, for
     * resumes that arrive before the history is whole (HUB_RESUME_HELD). */
    uint64_t started_ms;    /* hub_init */
    unsigned bus_syncing;   /* connected listen daemons whose SYNC has not come */
    bool bus_synced;        /* one has synced since the start */
    bool bus_start_pending; /* hub_bus_start_pending, until the first sync */
    /* The recheck pass after credential changes (hub_recheck_sessions).
     * Changes are numbered; each source keeps the number of its last
     * change, each session the number current when its credential was
     * last checked, so a session is due when a source it depends on
     * changed since (hub_recheck_due). */
    uint64_t auth_changes;                         /* changes so far */
    uint64_t source_changed_at[AUTH_SOURCE_COUNT]; /* by bit of AUTH_SOURCE_* */
    struct list_node *recheck_cursor;              /* the next session of the pass, on sessions */
    struct event *recheck_timer;                   /* runs the pass's next batch */
    struct hub_counters counters;
    uint64_t sessions_ended; /* since the last heap trim */
    uint64_t released_bytes; /* unsent bytes freed with connections, since then */
    uint64_t last_trim_ms;   /* when the heap was last trimmed */
    bool stopping;           /* shutting down: no new session */
};

/* Returns 0, or -1 when out of memory (then hub_free cleans up). */
int hub_init(struct hub *hub, struct event_base *base, const struct hub_limits *limits,
             struct auth_store *auth);

/* Re-checks the authenticated sessions against the current credentials
 * after the sources in changed (AUTH_SOURCE_* bits) were reloaded: a
 * session whose credential no longer authenticates, or no longer allows
 * one of its subscriptions, gets {"type":"auth","code":"REVOKED"} and close
 * 1008. Only sessions whose credential depends on a changed source are
 * checked (a Basic token on the tokens file, and the roles file when its
 * line names roles; a JWT on the keys, and the roles file when it has a
 * "roles" claim), each once per change, in batches spread over loop passes
 * (at most HUB_RECHECK_BATCH checks or HUB_RECHECK_BUDGET_MS each) so that
 * the loop never stalls. A change during a pass starts it again from the
 * first session: the sessions already checked are checked again only when
 * the new change concerns them. A session whose init succeeds meanwhile
 * was checked against the new sources already. */
void hub_recheck_sessions(struct hub *hub, unsigned changed);

/* A recheck pass does at most this much per loop pass, so that the loop
 * keeps serving in between: a JWT signature check costs up to about a
 * millisecond (RS256, ES256), and a pass may cover every session. */
#define HUB_RECHECK_BATCH 256
#define HUB_RECHECK_BUDGET_MS 5

/* Whether a credential that depends on the sources depends_on
 * (AUTH_SOURCE_* bits) and was last checked when hub->auth_changes was
 * checked_at must be checked again. */
bool hub_recheck_due(const struct hub *hub, unsigned depends_on, uint64_t checked_at);

/* One event from the bus (borrowed for the call). */
struct hub_event {
    const uint8_t *type;
    size_t type_len;
    const uint8_t *message; /* the subscriber message, without an id */
    size_t message_len;
    size_t id_offset; /* where its "id" member goes: event_message_id_offset */
    uint64_t run, number;
    bool other_run_live; /* history_append's */
    bool history_only;   /* a HISTORY frame of a run this daemon never had: kept, not fanned out */
};

/* Queues the subscriber message of one event to every session subscribed
 * to its type, with its "id" member to those whose init carried "since",
 * and keeps it in the history (only keeps it when history_only). Each form
 * is built once, as one shared frame. */
void hub_fanout(struct hub *hub, const struct hub_event *event);

/* A resume as the init reply states it. */
enum hub_resume {
    HUB_RESUME_NONE,      /* no "since", or "now": {"code":"OK"} */
    HUB_RESUME_REPLAYING, /* resumed:true; the replay then the live events follow */
    HUB_RESUME_TOO_OLD,   /* resumed:false with that reason; subscribed to the live events */
    HUB_RESUME_UNKNOWN,
    HUB_RESUME_DISABLED,
    HUB_RESUME_HELD, /* no reply yet: the hub sends it (hub_reply_init_ok) once it knows */
};

/* How long a resume may wait for the history to be whole (HUB_RESUME_HELD):
 *  - an id of a run the history does not know, while a listen daemon that
 *    connected has not sent its SYNC yet (its history is on its way), or
 *    within HUB_RESUME_STARTUP_MS of the start while none has synced (one
 *    is reconnecting: listen daemons retry every second at most);
 *  - an id of a known run whose number has not arrived (NOT_YET: it may be
 *    in this daemon's socket still, as when a subscriber moves from one
 *    broadcast daemon to another), up to HUB_RESUME_AHEAD_MS.
 * No wait lasts beyond HUB_RESUME_HOLD_MAX_MS; then the answer is what the
 * history says. */
#define HUB_RESUME_STARTUP_MS 3000
#define HUB_RESUME_AHEAD_MS 1000
#define HUB_RESUME_HOLD_MAX_MS 10000

/* The bus side's news for held resumes: a listen daemon connected (its
 * history and SYNC follow), synced (or sent an event with no SYNC before:
 * it has no history to send), or went away before either. */
void hub_bus_peer_greeted(struct hub *hub);
void hub_bus_peer_synced(struct hub *hub);
void hub_bus_peer_lost_unsynced(struct hub *hub);

/* The bus does not know yet where this daemon's events begin (the Redis
 * engine before it has read the stream's end and past): an event a
 * publisher had answered after an init could still come as history only.
 * Every init, with "since" or not, waits (HUB_RESUME_HELD) until the next
 * hub_bus_peer_synced, or HUB_RESUME_HOLD_MAX_MS. */
void hub_bus_start_pending(struct hub *hub);

/* Sends sub the reply to a successful init, {"type":"init","code":"OK"},
 * with what became of its "since" (not for HUB_RESUME_HELD). */
void hub_reply_init_ok(struct subscriber *sub, enum hub_resume resume);

/* Subscribes sub to the types of its init msg, resuming as msg->since asks.
 * HUB_RESUME_HELD: the history may soon answer better than now (see above),
 * or the bus's start is pending (hub_bus_start_pending); the hub replies
 * later, and subscribes or replays as the answer says.
 * With an id found in the history (or "oldest"), the types sub does not
 * hold yet are replayed first: the retained events of those types after the
 * id, paced by sub's output (never more than a fill level of unsent replay,
 * below max_backlog), and sub holds the types from the moment the replay
 * has caught up with the history's end, so the first live event is the one
 * after the last replayed; while a listen daemon is sending its history
 * (before its SYNC), a replay at the end waits for what is still to come. Types sub already holds
 * are not replayed: it had their events live. Every event sub gets from now on carries its id once
 * msg->since is set. Returns 0 and *result, or -1 when out of memory
 * (nothing subscribed). */
int hub_subscribe(struct subscriber *sub, const struct init_message *msg, enum hub_resume *result);

/* The replay pass does at most this much per loop pass, so that live
 * delivery to everyone else goes on while thousands resume. */
#define HUB_REPLAY_PASS_BYTES (4u << 20)
#define HUB_REPLAY_PASS_ENTRIES 65536
#define HUB_REPLAY_BUDGET_MS 5
/* A replaying subscriber's output is filled up to the smaller of this and
 * half of max_backlog, then waits for the socket to take it. */
#define HUB_REPLAY_FILL_MAX (256u * 1024)
/* How soon the replays are looked at again when none could progress. */
#define HUB_REPLAY_POLL_MS 10

/* Subscribers whose resume is replaying (a walk: for the metrics). */
size_t hub_replaying_count(const struct hub *hub);

/* Memory held by what is queued to every session and not yet sent, as
 * max_backlog counts it (a walk over sessions: for the metrics, not for
 * hot paths). */
uint64_t hub_backlog_bytes(const struct hub *hub);

/* Closes every session with code (1001 on shutdown). */
void hub_close_all(struct hub *hub, uint16_t code, const char *reason);

/* Frees every session and the hub's own state (not the struct itself). */
void hub_free(struct hub *hub);

/* --- a subscriber's life, for its transport ------------------------------ */

/* Registers sub, whose transport has set ops, bev (owned by sub from now),
 * source and peer and zeroed the rest: it is counted open and has
 * init_timeout_ms for a successful init. */
void hub_add_subscriber(struct hub *hub, struct subscriber *sub);

/* sub's first successful init: it is counted authenticated and its init
 * deadline ends. */
void hub_subscriber_authenticated(struct subscriber *sub);

/* Starts closing sub with code and reason (unless it is closing already):
 * its subscriptions end now, ops->close writes the close, and the peer has
 * close_timeout_ms to answer. sub may be freed on return. */
void hub_close_subscriber(struct subscriber *sub, uint16_t code, const char *reason);

/* The transport began a close by itself (the peer broke the protocol):
 * sub's subscriptions end now and it gets the close deadline. */
void hub_subscriber_closing(struct subscriber *sub);

/* Why an authenticated subscriber's credential stopped authenticating it. */
enum hub_credential_end {
    HUB_CREDENTIAL_EXPIRED, /* the token's exp passed: code TOKEN_EXPIRED */
    HUB_CREDENTIAL_REVOKED, /* a credential change refused it: code REVOKED */
};

/* Tells sub {"type":"auth","code":...} and closes it with 1008. sub may be
 * freed on return. */
void hub_end_credential(struct subscriber *sub, enum hub_credential_end why);

/* Ends sub now; its connection closes once its output is on the wire. */
void hub_end_subscriber(struct subscriber *sub);

/* Ends sub now, without writing anything more: its connection is released
 * (closed at once), unless the transport took it first (sub->bev NULL). */
void hub_free_subscriber(struct subscriber *sub);

#endif
