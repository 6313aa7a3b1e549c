/* A subscriber, whatever carries it: its connection's output (the delivery
 * queue), its credential, its subscriptions, its place on the hub's lists
 * and its state. The hub (hub.h) owns every subscriber: it registers it,
 * keeps the deadline lists, runs the sweeps, closes and frees it. A
 * transport (ws_transport.h: WebSocket) embeds a struct subscriber in its
 * own state and gives the hub a table of operations, the only things the
 * hub asks of it: this file and the hub know nothing of frames or wslay.
 *
 * Who owns what: the subscriber owns bev (until the connection is handed to
 * conn_flush_and_close), its credential text and its expiry timer; the
 * transport owns the memory of the whole (ops->destroy frees it).
 */
#ifndef EVS_SUBSCRIBER_H
#define EVS_SUBSCRIBER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth/auth.h"
#include "bus/event_id.h"
#include "core/list.h"
#include "core/rate_limit.h"
#include "init_message.h"
#include "subscriptions.h"

struct bufferevent;
struct event;
struct hub;
struct shared_frame;
struct shared_frame_tally;
struct subscriber;

enum subscriber_state {
    SUBSCRIBER_OPEN,    /* serving, and answered the last ping */
    SUBSCRIBER_PINGED,  /* serving, a ping unanswered: dropped at the next one */
    SUBSCRIBER_CLOSING, /* close started: no subscriptions, no deliveries */
};

/* What the hub asks of a transport. Each is called with a live subscriber
 * whose bev is set. */
struct subscriber_ops {
    const char *name; /* the transport, as log lines name it: "ws" */
    /* Answers the subscriber's own message (an init reply), after anything
     * the transport already owes the peer. */
    void (*reply)(struct subscriber *sub, const char *text, size_t len);
    /* Writes a message the peer did not ask for (the end of its
     * credential) now, after anything already queued. Returns false when
     * that failed and the subscriber was freed. */
    bool (*notify)(struct subscriber *sub, const char *text, size_t len);
    /* Writes the close (code, reason) the hub decided; the subscriber is
     * already SUBSCRIBER_CLOSING. Returns true when the peer's answer is to
     * be awaited (the hub then gives it the close deadline); false when the
     * transport ended the subscriber instead (it is freed). */
    bool (*close)(struct subscriber *sub, uint16_t code, const char *reason);
    /* Sends a keep-alive probe, whose answer the transport reports with
     * subscriber_alive. */
    void (*ping)(struct subscriber *sub);
    /* Frees the transport's state and the memory holding sub, once the
     * hub has let go of everything else. */
    void (*destroy)(struct subscriber *sub);
};

/* A resume in progress (hub_subscribe): the history positions still to
 * replay, and the types replayed, which the subscriber holds once the
 * replay has caught up with the live events. Owned by the hub. */
struct subscriber_replay {
    uint64_t next_pos;   /* the next history position to look at */
    uint64_t started_ms; /* when the init came */
    size_t count;
    size_t *lens;
    char **types;
    /* An init the hub cannot answer yet (hub.h's HUB_RESUME_HELD): what
     * its "since" asked, and the id, looked up again while the hold lasts. */
    bool held;
    enum init_since since_kind;
    uint64_t held_since_ms;
    size_t since_len;
    char since[EVENT_ID_MAX];
};

struct subscriber {
    /* What a fan-out touches for each subscriber first, together: one event
     * to ten thousand subscribers is bound by these cache lines. */
    struct hub *hub;
    struct bufferevent *bev; /* NULL once the connection was handed on */
    /* The frames bev's output holds by reference; NULL until the first. */
    struct shared_frame_tally *frames_referenced;
    enum subscriber_state state;
    bool with_ids;                   /* an init of it carried "since": its events carry their ids */
    struct list_node deferred_node;  /* hub->deferred */
    struct list_node unflushed_node; /* hub->unflushed */
    const struct subscriber_ops *ops;
    struct subs_session_list subs;
    struct subscriber_replay *replay; /* NULL unless resuming */
    unsigned failed_credentials;      /* inits refused for their credential, in a row */
    struct rate_bucket inits;         /* the client's messages, against the init rate */
    uint64_t source;                  /* net_source_key of the peer */
    /* The authentication text of the last successful init (owned): NULL
     * until one, which is what "authenticated" means. */
    char *credential;
    size_t credential_len;
    struct event *expiry;           /* JWT credentials: fires at their end */
    int64_t ends_at;                /* JWT: wall-clock second from which it is refused */
    unsigned depends_on;            /* AUTH_SOURCE_* bits its credential's check uses */
    uint64_t auth_checked;          /* hub->auth_changes at that check */
    uint64_t deadline_ms;           /* init or close deadline, by the list it is on */
    struct list_node registry_node; /* hub->sessions */
    struct list_node deadline_node; /* hub->init_wait or hub->closing */
    struct list_node replay_node;   /* hub->replaying */
    char peer[64];
};

/* What sub's unsent output holds in memory: its bytes, plus the
 * bookkeeping of the frames it holds by reference (shared_frame.h). This
 * is what max_backlog bounds and the backlog gauge reports. */
size_t subscriber_backlog(const struct subscriber *sub);

/* Appends frame to sub's output unless that would take its backlog past
 * max_backlog. Returns 0, or -1 when it did not fit (or memory ran out). */
int subscriber_append(struct subscriber *sub, struct shared_frame *frame, size_t max_backlog);

/* Whether identity may hold every subscription sub has, and every type
 * its resume is replaying. */
bool subscriber_subscriptions_allowed(const struct subscriber *sub,
                                      const struct auth_identity *identity);

/* The peer answered (any message counts as a pong). */
static inline void subscriber_alive(struct subscriber *sub)
{
    if (sub->state == SUBSCRIBER_PINGED)
        sub->state = SUBSCRIBER_OPEN;
}

#endif
