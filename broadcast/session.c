#include "session.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <wslay/wslay.h>

#include "auth/auth_store.h"
#include "net/conn_flush.h"
#include "net/conn_write.h"
#include "hub.h"
#include "init_message.h"
#include "core/log.h"
#include "core/rate_limit.h"
#include "shared_frame.h"
#include "subscriptions.h"
#include "ws_frame.h"

/* Input read per callback before wslay gets to parse it: bounds what one
 * client can make the daemon buffer. */
#define SESSION_INPUT_HIGH_WATER (256 * 1024)

/* Work a client may cause with its own messages (every one is an init):
 * SESSION_INIT_BURST at once, then one per SESSION_INIT_INTERVAL_MS; an
 * init beyond that closes the session with 1008. And the credential
 * refused SESSION_FAILED_CREDENTIALS_MAX times in a row closes it with 1008
 * after that answer, so that trying credentials (each a signature
 * verification, up to a millisecond) costs a new connection every few
 * attempts. */
#define SESSION_INIT_BURST 32
#define SESSION_INIT_INTERVAL_MS 125
#define SESSION_FAILED_CREDENTIALS_MAX 3

/* RFC 6455 §7.4.1 status codes used here. */
#define WS_CLOSE_GOING_AWAY 1001
#define WS_CLOSE_PROTOCOL_ERROR 1002
#define WS_CLOSE_INVALID_DATA 1007
#define WS_CLOSE_POLICY 1008
#define WS_CLOSE_MESSAGE_TOO_BIG 1009
#define WS_CLOSE_TRY_AGAIN_LATER 1013

/* A wslay context costs about 9 KiB (its 4 KiB input and output buffers),
 * more than the rest of an idle session together. So a session holds one
 * only while wslay has state to keep: from the arrival of client bytes
 * until the stream is back between messages (ws_frame_tracker), and for
 * the whole close handshake. Server frames (events, init replies, pings)
 * are written directly, never through wslay's queue. */
struct session {
    struct hub *hub;
    struct bufferevent *bev;
    /* The frames bev's output holds by reference; NULL until the first. */
    struct shared_frame_tally *frames_referenced;
    wslay_event_context_ptr ws; /* NULL while idle */
    struct ws_frame_tracker frames;
    struct subs_session_list subs;
    bool authenticated; /* has had a successful init */
    bool closing;       /* close started by us; in the closing FIFO */
    bool awaiting_pong;
    bool protocol_close_seen;    /* a close wslay started has been accounted for */
    bool closed_by_us;           /* our close frame is out; waiting for the peer's */
    size_t ws_input_left;        /* input bytes wslay may still read in this pump */
    unsigned failed_credentials; /* inits refused for their credential, in a row */
    struct rate_bucket inits;    /* the client's messages, against the init rate */
    const char *close_reason;    /* close with 1008 once wslay's callback returns */
    uint64_t source;             /* net_source_key of the peer */
    char *credential;            /* authentication text of the last successful init (owned) */
    size_t credential_len;
    struct event *expiry;            /* JWT credentials: fires at their exp */
    int64_t ends_at;                 /* JWT: wall-clock second from which it is refused */
    unsigned depends_on;             /* AUTH_SOURCE_* bits its credential's check uses */
    uint64_t auth_checked;           /* hub->auth_changes at that check */
    uint64_t deadline_ms;            /* init or close deadline, by the FIFO it is in */
    struct list_node registry_node;  /* hub->sessions */
    struct list_node deadline_node;  /* hub->init_wait or hub->closing */
    struct list_node deferred_node;  /* hub->deferred */
    struct list_node unflushed_node; /* hub->unflushed */
    char peer[64];
};

/* --- lists ---------------------------------------------------------------- */

struct session *session_from_registry(struct list_node *node)
{
    return list_entry(node, struct session, registry_node);
}

/* The first session of hub->sessions, or NULL when there is none. */
static struct session *session_first(const struct hub *hub)
{
    struct list_node *first = list_front(&hub->sessions);
    return first ? session_from_registry(first) : NULL;
}

/* The node after s's on hub->sessions, or NULL after the last. */
static struct list_node *registry_after(const struct session *s)
{
    struct list_node *next = s->registry_node.next;
    return next == &s->hub->sessions ? NULL : next;
}

/* The session after s on hub->sessions, or NULL after the last. */
static struct session *session_next(const struct session *s)
{
    struct list_node *next = registry_after(s);
    return next ? session_from_registry(next) : NULL;
}

/* The session waiting on the deadline list node `node`, or NULL. */
static struct session *session_of_deadline(struct list_node *node)
{
    return node ? list_entry(node, struct session, deadline_node) : NULL;
}

/* Appends s to a deadline list: deadlines are the same length for every
 * session of a list, so the list stays in deadline order. */
static void deadline_push(struct list_node *list, struct session *s)
{
    list_push_back(list, &s->deadline_node);
}

static void deadline_remove(struct session *s)
{
    if (list_is_linked(&s->deadline_node))
        list_unlink(&s->deadline_node);
}

static const struct wslay_event_callbacks ws_callbacks;
static const struct rate_limit session_init_rate = {SESSION_INIT_INTERVAL_MS, SESSION_INIT_BURST};

/* The session's wslay context, created when needed. NULL when out of memory. */
static wslay_event_context_ptr session_ws(struct session *s)
{
    if (!s->ws) {
        if (wslay_event_context_server_init(&s->ws, &ws_callbacks, s) != 0) {
            s->ws = NULL;
            return NULL;
        }
        wslay_event_config_set_max_recv_msg_length(s->ws, s->hub->limits.max_message);
    }
    return s->ws;
}

/* Frees the wslay context when it holds nothing: no partial frame or
 * message, nothing queued, no close under way. */
static void session_release_ws_if_idle(struct session *s)
{
    if (!s->ws || s->closing || !ws_frame_tracker_idle(&s->frames) ||
        wslay_event_want_write(s->ws) || !wslay_event_get_read_enabled(s->ws) ||
        wslay_event_get_close_sent(s->ws) || wslay_event_get_close_received(s->ws))
        return;
    wslay_event_context_free(s->ws);
    s->ws = NULL;
}

/* What the session's unsent output holds in memory: its bytes, plus the
 * bookkeeping of the frames it holds by reference (shared_frame.h). This
 * is what max_backlog bounds and the backlog gauge reports. */
static size_t session_backlog(const struct session *s)
{
    return conn_output_pending(s->bev) + shared_frame_tally_overhead(s->frames_referenced);
}

static void arm_timer(struct event *timer, uint64_t deadline_ms)
{
    uint64_t now = hub_now_ms(), delay = deadline_ms > now ? deadline_ms - now : 0;
    struct timeval tv = {(time_t)(delay / 1000), (suseconds_t)((delay % 1000) * 1000)};
    evtimer_add(timer, &tv);
}

/* --- ending --------------------------------------------------------------- */

void session_free(struct session *s)
{
    struct hub *hub = s->hub;
    if (list_is_linked(&s->deferred_node))
        list_unlink(&s->deferred_node);
    subs_remove_all(hub->subs, &s->subs);
    deadline_remove(s);
    if (list_is_linked(&s->unflushed_node))
        list_unlink(&s->unflushed_node);
    if (hub->recheck_cursor == &s->registry_node)
        hub->recheck_cursor = registry_after(s);
    list_unlink(&s->registry_node);
    hub->counters.sessions_open--;
    if (s->authenticated)
        hub->counters.sessions_authenticated--;
    if (s->expiry)
        event_free(s->expiry);
    free(s->credential);
    if (s->bev)
        conn_release(s->bev); /* releases the shared frames still queued */
    /* The output may outlive the session (conn_flush_and_close): the tally
     * stays until the output is done with its references. */
    shared_frame_tally_release(s->frames_referenced);
    if (s->ws)
        wslay_event_context_free(s->ws);
    log_debug("ws %s: session ended", s->peer);
    free(s);
    hub_session_ended(hub);
}

/* Ends the session now; its connection closes once its output is on the
 * wire (the server closes the TCP connection first, RFC 6455 §7.1.1). */
static void session_end_flushed(struct session *s)
{
    struct bufferevent *bev = s->bev;
    unsigned timeout_ms = s->hub->limits.close_timeout_ms;
    s->bev = NULL;
    session_free(s);
    conn_flush_and_close(bev, timeout_ms, CONN_CLOSE_GRACEFUL);
}

/* Ends the session once wslay has nothing left to read or write. Returns
 * true when s was freed. */
static bool session_finish_if_done(struct session *s)
{
    if (!s->ws || wslay_event_want_read(s->ws) || wslay_event_want_write(s->ws))
        return false;
    session_end_flushed(s);
    return true;
}

/* Writes a server frame straight to the output (server frames are not
 * masked, §5.1). Safe at any time: wslay never leaves a frame half-written,
 * since the send callback never blocks. */
static void session_send_frame(struct session *s, uint8_t opcode, const void *payload, size_t len)
{
    uint8_t header[WS_FRAME_HEADER_MAX];
    size_t header_len = ws_frame_header_encode(header, opcode, len);
    struct evbuffer *out = bufferevent_get_output(s->bev);
    evbuffer_add(out, header, header_len);
    if (len)
        evbuffer_add(out, payload, len);
    conn_write_flush(s->bev);
}

/* Whether closing with code fails the connection (RFC 6455 §7.1.7) rather
 * than starting the closing handshake (§7.1.2). An endpoint that must Fail
 * the WebSocket Connection sends its close frame and then closes the TCP
 * connection; it "MUST NOT continue to attempt to process data (including a
 * responding Close frame) from the remote endpoint". That is what the codes
 * answering the peer's own breach of the protocol mean here: 1002 (a frame
 * against §5: a bad control frame, a bad close code), 1007 (payload not
 * valid for its type, §8.1) and 1009 (a message over the limit, whose rest
 * is never read: a frame announcing 2^62 bytes can never end, so no close
 * frame could ever follow it). Every other close we start (1001 going away,
 * 1008 policy, 1013 slow consumer) is a closing handshake with a peer whose
 * stream is in order: its close frame is awaited, up to the close timeout.
 * wslay's own closes for 1002, 1007 and 1009 already stop reading, and the
 * session ends as soon as wslay has written them (session_finish_if_done). */
static bool session_close_fails_connection(uint16_t code)
{
    return code == WS_CLOSE_PROTOCOL_ERROR || code == WS_CLOSE_INVALID_DATA ||
           code == WS_CLOSE_MESSAGE_TOO_BIG;
}

void session_close(struct session *s, uint16_t code, const char *reason)
{
    struct hub *hub = s->hub;
    uint8_t payload[2 + 123];
    size_t reason_len = strlen(reason);
    bool fail = session_close_fails_connection(code);
    if (s->closing)
        return;
    deadline_remove(s);
    /* Its subscriptions end now, whatever the peer does next. */
    subs_remove_all(hub->subs, &s->subs);
    s->closing = true;
    if (!fail) {
        s->deadline_ms = hub_now_ms() + hub->limits.close_timeout_ms;
        deadline_push(&hub->closing, s);
        if (list_front(&hub->closing) == &s->deadline_node)
            arm_timer(hub->close_timer, s->deadline_ms);
    }
    /* The close frame is written directly, so that closing thousands of
     * sessions (a shutdown, an init-timeout wave) costs no wslay context
     * each. What wslay still holds goes out first; then it is dropped. */
    if (s->ws) {
        if (wslay_event_send(s->ws) != 0) {
            session_free(s);
            return;
        }
        wslay_event_context_free(s->ws);
        s->ws = NULL;
    }
    if (reason_len > sizeof payload - 2)
        reason_len = sizeof payload - 2; /* §5.5: a control frame carries at most 125 bytes */
    payload[0] = (uint8_t)(code >> 8);
    payload[1] = (uint8_t)code;
    memcpy(payload + 2, reason, reason_len);
    session_send_frame(s, 0x8, payload, 2 + reason_len);
    if (fail) {
        session_end_flushed(s);
        return;
    }
    s->closed_by_us = true;
}

/* --- init messages -------------------------------------------------------- */

/* While wslay is active its queue is used, so that a pong it owes (for a
 * ping that came before this message) goes out first: wslay sends control
 * frames ahead of data. The caller runs wslay_event_send afterwards. */
static void session_reply(struct session *s, const char *json)
{
    struct wslay_event_msg msg = {WSLAY_TEXT_FRAME, (const uint8_t *)json, strlen(json)};
    if (s->ws && wslay_event_queue_msg(s->ws, &msg) == 0)
        return;
    session_send_frame(s, WS_OPCODE_TEXT, json, strlen(json));
}

static void session_reply_init(struct session *s, const char *code)
{
    char json[96];
    snprintf(json, sizeof json, "{\"type\":\"init\",\"code\":\"%s\"}", code);
    session_reply(s, json);
}

/* Sends {"type":"auth","code":...} and closes with 1008: the session's
 * credential expired or was revoked. */
/* Why an authenticated session's credential stopped authenticating it. */
enum session_auth_end {
    SESSION_AUTH_EXPIRED, /* the token's exp passed: code TOKEN_EXPIRED */
    SESSION_AUTH_REVOKED, /* a credential change refused it: code REVOKED */
};

static void session_end_auth(struct session *s, enum session_auth_end why)
{
    bool revoked = why == SESSION_AUTH_REVOKED;
    char json[64];
    snprintf(json, sizeof json, "{\"type\":\"auth\",\"code\":\"%s\"}",
             revoked ? "REVOKED" : "TOKEN_EXPIRED");
    /* Written directly, after anything wslay still holds: queued through
     * wslay it would go out after the close frame, which wslay sends first. */
    if (s->ws && wslay_event_send(s->ws) != 0) {
        session_free(s);
        return;
    }
    session_send_frame(s, WS_OPCODE_TEXT, json, strlen(json));
    log_info("ws %s: credential %s: closing (1008)", s->peer, revoked ? "revoked" : "expired");
    session_close(s, WS_CLOSE_POLICY, revoked ? "revoked" : "token expired");
}

/* The expiry timer waits at most this long at a time, then looks at the
 * wall clock again: a far-future exp never makes a huge timer, and a clock
 * set forwards or back is followed within a day. */
#define SESSION_EXPIRY_MAX_WAIT_S (24 * 3600)

/* Time until s->ends_at, capped at SESSION_EXPIRY_MAX_WAIT_S; false when
 * it has come. Differences are taken in seconds before any scaling, so no
 * exp can overflow them. */
static bool session_expiry_delay(const struct session *s, struct timeval *tv)
{
    struct timespec now;
    int64_t seconds, delay_us;
    clock_gettime(CLOCK_REALTIME, &now);
    if (s->ends_at <= (int64_t)now.tv_sec)
        return false;
    seconds = s->ends_at - (int64_t)now.tv_sec; /* > 0; now.tv_sec >= 0 */
    if (seconds > SESSION_EXPIRY_MAX_WAIT_S) {
        tv->tv_sec = SESSION_EXPIRY_MAX_WAIT_S;
        tv->tv_usec = 0;
        return true;
    }
    delay_us = seconds * 1000000 - now.tv_nsec / 1000;
    tv->tv_sec = (time_t)(delay_us / 1000000);
    tv->tv_usec = (suseconds_t)(delay_us % 1000000);
    return true;
}

static void session_expiry_cb(evutil_socket_t fd, short what, void *arg)
{
    struct session *s = arg;
    struct timeval tv;
    if (s->closing)
        return;
    if (session_expiry_delay(s, &tv)) {
        evtimer_add(s->expiry, &tv); /* a capped wait, or a clock set back */
        return;
    }
    s->hub->counters.expired_closes++;
    session_end_auth(s, SESSION_AUTH_EXPIRED);
}

/* Arms the expiry timer for a credential ending at expires (seconds since
 * the epoch; 0: never). The session lasts as long as the credential would
 * be accepted: up to exp plus the configured leeway. */
static int session_set_expiry(struct session *s, int64_t expires)
{
    struct timeval tv = {0, 0};
    if (expires == 0) {
        if (s->expiry)
            evtimer_del(s->expiry);
        return 0;
    }
    if (!s->expiry &&
        !(s->expiry = evtimer_new(bufferevent_get_base(s->bev), session_expiry_cb, s)))
        return -1;
    s->ends_at = jwt_end_time(expires, &auth_store_sources(s->hub->auth)->jwt_policy);
    session_expiry_delay(s, &tv);
    return evtimer_add(s->expiry, &tv);
}

/* true when identity may hold every subscription the session has. */
static bool session_subscriptions_allowed(const struct session *s,
                                          const struct auth_identity *identity)
{
    for (const struct subs_entry *e = s->subs.head; e; e = e->session_next) {
        size_t len;
        const char *type = subs_topic_type(e->topic, &len);
        if (!auth_may_subscribe(identity, type, len))
            return false;
    }
    return true;
}

/* Whether adding msg's types would pass the per-session limit (types
 * already held do not count twice). */
static bool session_too_many(const struct session *s, const struct init_message *msg)
{
    struct hub *hub = s->hub;
    if (s->subs.count + msg->event_count <= hub->limits.max_subscriptions)
        return false;
    return s->subs.count + subs_count_missing(hub->subs, &s->subs, msg->events, msg->event_lens,
                                              msg->event_count) >
           hub->limits.max_subscriptions;
}

/* Every text message is an init (the public contract); each answer is
 * {"type":"init","code":...} and the connection stays open after an error.
 * A later init adds its types to the earlier ones, and its credential
 * replaces the earlier one (a fresh JWT extends the session) provided it
 * allows every type the session holds. An init naming a type its
 * credential may not subscribe to gets FORBIDDEN and subscribes to none of
 * its types. */
static void session_handle_init(struct session *s, const uint8_t *text, size_t len)
{
    struct hub *hub = s->hub;
    struct init_message msg;
    struct auth_identity identity;
    int rc = init_message_parse((const char *)text, len, hub->limits.max_subscriptions, &msg);
    const char *code = NULL;
    char *credential = NULL;

    memset(&identity, 0, sizeof identity);
    if (rc != INIT_OK) {
        code = init_status_code(rc);
        goto reject;
    }
    rc = auth_store_authenticate(hub->auth, msg.authentication, msg.authentication_len, s->source,
                                 &identity);
    if (rc != AUTH_OK) {
        code = auth_result_code(rc);
        if (++s->failed_credentials >= SESSION_FAILED_CREDENTIALS_MAX) {
            hub->counters.auth_failure_closes++;
            log_info("ws %s: %u failed credentials in a row: closing (1008)", s->peer,
                     s->failed_credentials);
            s->close_reason = "too many failed credentials";
        }
        goto reject;
    }
    s->failed_credentials = 0;
    for (size_t i = 0; i < msg.event_count; i++) {
        if (!auth_may_subscribe(&identity, msg.events[i], msg.event_lens[i])) {
            code = auth_result_code(AUTH_FORBIDDEN);
            goto reject;
        }
    }
    if (!session_subscriptions_allowed(s, &identity)) {
        code = auth_result_code(AUTH_FORBIDDEN);
        goto reject;
    }
    if (session_too_many(s, &msg)) {
        code = init_status_code(INIT_TOO_MANY_EVENTS);
        goto reject;
    }
    credential = malloc(msg.authentication_len + 1);
    if (!credential || session_set_expiry(s, identity.expires) < 0) {
        code = "INTERNAL_ERROR";
        goto reject;
    }
    memcpy(credential, msg.authentication, msg.authentication_len + 1);
    free(s->credential);
    s->credential = credential;
    s->credential_len = msg.authentication_len;
    credential = NULL;
    if (subs_add_all(hub->subs, &s->subs, s, msg.events, msg.event_lens, msg.event_count) < 0) {
        code = "INTERNAL_ERROR";
        goto reject;
    }
    s->depends_on = identity.depends_on;
    s->auth_checked = hub->auth_changes;
    hub->counters.init_ok++;
    if (!s->authenticated) {
        s->authenticated = true;
        hub->counters.sessions_authenticated++;
        deadline_remove(s);
    }
    if (*identity.subject)
        log_info("ws %s: init OK as %s, %zu subscriptions", s->peer, identity.subject,
                 s->subs.count);
    else
        log_debug("ws %s: init OK, %zu subscriptions", s->peer, s->subs.count);
    auth_identity_clear(&identity);
    init_message_clear(&msg);
    session_reply_init(s, "OK");
    return;
reject:
    hub->counters.init_rejected++;
    log_info("ws %s: init rejected: %s", s->peer, code);
    free(credential);
    auth_identity_clear(&identity);
    init_message_clear(&msg);
    session_reply_init(s, code);
}

bool session_recheck_some(struct hub *hub)
{
    const struct auth_sources *sources = auth_store_sources(hub->auth);
    int64_t now = (int64_t)time(NULL);
    uint64_t started_ms = hub_now_ms();
    unsigned checked = 0;
    bool visited = false;
    struct session *s;
    while (hub->recheck_cursor) {
        struct auth_identity identity;
        int rc;
        if (checked >= SESSION_RECHECK_BATCH ||
            (visited && hub_now_ms() - started_ms >= SESSION_RECHECK_BUDGET_MS))
            return true;
        visited = true;
        s = session_from_registry(hub->recheck_cursor);
        hub->recheck_cursor = registry_after(s);
        /* A verified signature does not change with the tokens file, nor a
         * token's line with the keys: only what the change touched is
         * checked again. */
        if (!s->authenticated || s->closing || !s->credential ||
            !hub_recheck_due(hub, s->depends_on, s->auth_checked))
            continue;
        s->auth_checked = hub->auth_changes;
        checked++;
        hub->counters.rechecks++;
        rc = auth_authenticate(sources, s->credential, s->credential_len, now, &identity);
        if (rc == AUTH_OK && session_subscriptions_allowed(s, &identity)) {
            s->depends_on = identity.depends_on;
            auth_identity_clear(&identity);
            continue;
        }
        auth_identity_clear(&identity);
        if (rc == AUTH_TOKEN_EXPIRED) {
            hub->counters.expired_closes++;
            session_end_auth(s, SESSION_AUTH_EXPIRED); /* may free s, never the cursor */
        } else {
            hub->counters.revoked_closes++;
            session_end_auth(s, SESSION_AUTH_REVOKED);
        }
    }
    return false;
}

/* --- wslay callbacks ------------------------------------------------------ */

static ssize_t ws_recv_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags,
                          void *user_data)
{
    struct session *s = user_data;
    int n = 0;
    if (len > s->ws_input_left)
        len = s->ws_input_left;
    if (len > 0)
        n = evbuffer_remove(bufferevent_get_input(s->bev), buf, len);
    if (n <= 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    s->ws_input_left -= (size_t)n;
    return n;
}

/* Never blocks: the output buffer takes the whole frame, and what the
 * buffer holds (session_backlog) is what session_deliver limits. */
static ssize_t ws_send_cb(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags,
                          void *user_data)
{
    struct session *s = user_data;
    if (evbuffer_add(bufferevent_get_output(s->bev), data, len) < 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
    }
    return (ssize_t)len;
}

static void ws_msg_recv_cb(wslay_event_context_ptr ctx,
                           const struct wslay_event_on_msg_recv_arg *arg, void *user_data)
{
    struct session *s = user_data;
    s->awaiting_pong = false;
    switch (arg->opcode) {
    case WSLAY_TEXT_FRAME:
    case WSLAY_BINARY_FRAME:
        /* Binary messages are read like text ones, as the original service
         * did; a non-UTF-8 one is INVALID_SYNTAX. Once a close is decided,
         * the messages wslay still parses are dropped. */
        if (s->closing || s->close_reason)
            break;
        if (!rate_bucket_take(&s->inits, &session_init_rate, hub_now_ms())) {
            s->hub->counters.init_rate_closes++;
            log_info("ws %s: more than %d inits at once or %d a second: closing (1008)", s->peer,
                     SESSION_INIT_BURST, 1000 / SESSION_INIT_INTERVAL_MS);
            s->close_reason = "too many inits";
            break;
        }
        session_handle_init(s, arg->msg, arg->msg_length);
        break;
    case WSLAY_CONNECTION_CLOSE:
        /* wslay echoes the close; the subscriptions end at once. */
        subs_remove_all(s->hub->subs, &s->subs);
        break;
    default:
        break;
    }
}

static const struct wslay_event_callbacks ws_callbacks = {
    ws_recv_cb, ws_send_cb, NULL, NULL, NULL, NULL, ws_msg_recv_cb,
};

/* --- I/O ------------------------------------------------------------------ */

/* wslay closes by itself on a protocol violation (1002), invalid UTF-8
 * (1007) or a message over the limit (1009). Such a session gets the same
 * close deadline as one we close, and is counted. */
static void session_note_protocol_close(struct session *s)
{
    struct hub *hub = s->hub;
    uint16_t code;
    if (!s->ws || s->closing || s->protocol_close_seen || !wslay_event_get_close_sent(s->ws) ||
        wslay_event_get_close_received(s->ws))
        return;
    s->protocol_close_seen = true;
    code = wslay_event_get_status_code_sent(s->ws);
    if (code == 1009)
        hub->counters.oversized_message_closes++;
    log_info("ws %s: closed by the server with %u (%s)", s->peer, (unsigned)code,
             code == 1009   ? "message too big"
             : code == 1007 ? "invalid UTF-8"
                            : "protocol error");
    subs_remove_all(hub->subs, &s->subs);
    deadline_remove(s);
    s->closing = true;
    s->deadline_ms = hub_now_ms() + hub->limits.close_timeout_ms;
    deadline_push(&hub->closing, s);
    if (list_front(&hub->closing) == &s->deadline_node)
        arm_timer(hub->close_timer, s->deadline_ms);
}

/* Tells the frame tracker about every byte wslay is about to consume
 * (wslay reads until the input is empty, unless it stops after a close,
 * and then the tracker no longer matters), and lets wslay read only the
 * frames before one the tracker refuses: those are handled in order, and
 * the refused frame never reaches wslay. */
static void session_track_input(struct session *s)
{
    struct evbuffer *in = bufferevent_get_input(s->bev);
    struct evbuffer_iovec v[8];
    struct evbuffer_ptr pos;
    size_t total = evbuffer_get_length(in), done = 0;
    uint64_t start = s->frames.offset; /* the stream offset of in's first byte */
    evbuffer_ptr_set(in, &pos, 0, EVBUFFER_PTR_SET);
    while (done < total && !s->frames.failure) {
        int n = evbuffer_peek(in, (ev_ssize_t)(total - done), &pos, v, 8);
        if (n <= 0)
            break;
        for (int i = 0; i < n && i < 8; i++) {
            size_t len = v[i].iov_len;
            if (len > total - done)
                len = total - done;
            ws_frame_tracker_feed(&s->frames, v[i].iov_base, len);
            done += len;
        }
        if (evbuffer_ptr_set(in, &pos, done, EVBUFFER_PTR_SET) < 0)
            break;
    }
    s->ws_input_left = total;
    if (s->frames.failure) /* a refused header begun in an earlier read leaves nothing */
        s->ws_input_left = s->frames.frame_offset > start ? s->frames.frame_offset - start : 0;
}

static void session_pump(struct session *s)
{
    if (s->closed_by_us) {
        /* Only the peer's close frame matters now (§5.5.1): follow the
         * frames without wslay and drop them; the close timeout covers a
         * peer that never answers. */
        session_track_input(s);
        evbuffer_drain(bufferevent_get_input(s->bev),
                       evbuffer_get_length(bufferevent_get_input(s->bev)));
        /* A frame that fails the connection ends the wait as well. */
        if (s->frames.close_seen || s->frames.failure)
            session_end_flushed(s);
        return;
    }
    if (!session_ws(s)) {
        session_free(s);
        return;
    }
    session_track_input(s);
    if (wslay_event_recv(s->ws) != 0 || wslay_event_send(s->ws) != 0) {
        session_free(s);
        return;
    }
    conn_write_flush(s->bev); /* pongs, init replies */
    session_note_protocol_close(s);
    /* A frame the tracker refused on its header: wslay checks a message's
     * size only once its payload starts to come (a header announcing 2 GiB
     * would wait for bytes that never come), and lets bad control frames
     * through. The frames before it have been handled; it fails the
     * connection (RFC 6455 §5.5, §7.4.1), unless one of them was a close
     * that wslay has answered: what follows a close is ignored (§5.5.1). */
    if (s->frames.failure && !s->closing && !wslay_event_get_close_sent(s->ws)) {
        if (s->frames.failure == WS_CLOSE_MESSAGE_TOO_BIG)
            s->hub->counters.oversized_message_closes++;
        log_info("ws %s: closed by the server with %u (%s), a frame of %llu bytes announced",
                 s->peer, (unsigned)s->frames.failure, s->frames.failure_reason,
                 (unsigned long long)s->frames.payload_len);
        session_close(s, s->frames.failure, s->frames.failure_reason);
        return;
    }
    /* A close decided inside wslay's callback, where the context that is
     * running could not be freed. */
    if (s->close_reason && !s->closing) {
        session_close(s, WS_CLOSE_POLICY, s->close_reason);
        return;
    }
    /* Answers to the client's own messages (pongs, init replies) count
     * against the backlog too: a client that sends without reading is a
     * slow consumer like any other. */
    if (!s->closing && session_backlog(s) > s->hub->limits.max_backlog) {
        s->hub->counters.slow_consumer_closes++;
        log_warn("ws %s: slow consumer, over %zu bytes unsent: closing (1013)", s->peer,
                 s->hub->limits.max_backlog);
        session_close(s, WS_CLOSE_TRY_AGAIN_LATER, "slow consumer");
        return;
    }
    /* Bytes after a close are never read by wslay: drop them. */
    if (!wslay_event_get_read_enabled(s->ws))
        evbuffer_drain(bufferevent_get_input(s->bev),
                       evbuffer_get_length(bufferevent_get_input(s->bev)));
    if (!session_finish_if_done(s))
        session_release_ws_if_idle(s);
}

static void session_read_cb(struct bufferevent *bev, void *arg)
{
    session_pump(arg);
}

static void session_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct session *s = arg;
    unsigned timeout_ms = s->hub->limits.close_timeout_ms;
    /* EOF or a reset: the peer is gone; its subscriptions go with it. What
     * is still queued (a TLS alert, say) is written briefly. */
    log_debug("ws %s: connection %s", s->peer, (what & BEV_EVENT_EOF) ? "closed" : "lost");
    s->bev = NULL;
    session_free(s);
    conn_flush_and_close(bev, timeout_ms,
                         (what & BEV_EVENT_EOF) ? CONN_CLOSE_PEER_DONE : CONN_CLOSE_FAILED);
}

/* --- the hub's timers ----------------------------------------------------- */

void session_expire_init(struct hub *hub, uint64_t now_ms)
{
    struct session *s;
    while ((s = session_of_deadline(list_front(&hub->init_wait))) && s->deadline_ms <= now_ms) {
        deadline_remove(s);
        hub->counters.init_timeout_closes++;
        log_info("ws %s: no successful init within %u ms: closing (1008)", s->peer,
                 hub->limits.init_timeout_ms);
        session_close(s, WS_CLOSE_POLICY, "no successful init in time");
    }
}

void session_expire_closing(struct hub *hub, uint64_t now_ms)
{
    struct session *s;
    while ((s = session_of_deadline(list_front(&hub->closing))) && s->deadline_ms <= now_ms) {
        log_debug("ws %s: close not completed in time: dropped", s->peer);
        session_free(s);
    }
}

uint64_t session_backlog_all(const struct hub *hub)
{
    uint64_t total = 0;
    for (const struct session *s = session_first(hub); s; s = session_next(s))
        if (s->bev)
            total += session_backlog(s);
    return total;
}

uint64_t session_init_deadline(const struct hub *hub)
{
    const struct session *s = session_of_deadline(list_front(&hub->init_wait));
    return s ? s->deadline_ms : 0;
}

uint64_t session_close_deadline(const struct hub *hub)
{
    const struct session *s = session_of_deadline(list_front(&hub->closing));
    return s ? s->deadline_ms : 0;
}

void session_ping_all(struct hub *hub)
{
    struct session *s, *next;
    for (s = session_first(hub); s; s = next) {
        next = session_next(s);
        if (s->closing)
            continue;
        if (s->awaiting_pong) {
            hub->counters.ping_timeout_closes++;
            log_info("ws %s: no pong within %u ms: dropped", s->peer, hub->limits.ping_interval_ms);
            session_free(s);
            continue;
        }
        s->awaiting_pong = true;
        session_send_frame(s, 0x9, NULL, 0); /* ping, §5.5.2 */
    }
}

void session_close_deferred(struct hub *hub)
{
    struct list_node *node;
    while ((node = list_pop_front(&hub->deferred))) {
        struct session *s = list_entry(node, struct session, deferred_node);
        hub->counters.slow_consumer_closes++;
        log_warn("ws %s: slow consumer, over %zu bytes unsent: closing (1013)", s->peer,
                 hub->limits.max_backlog);
        session_close(s, WS_CLOSE_TRY_AGAIN_LATER, "slow consumer");
    }
}

void session_close_all(struct hub *hub, uint16_t code, const char *reason)
{
    struct session *s, *next;
    for (s = session_first(hub); s; s = next) {
        next = session_next(s);
        if (!s->closing && (!s->ws || !wslay_event_get_close_sent(s->ws)))
            session_close(s, code, reason); /* may free s, never next */
    }
}

/* --- delivery ------------------------------------------------------------- */

void session_deliver(struct session *s, struct shared_frame *frame)
{
    struct hub *hub = s->hub;
    if (s->closing || list_is_linked(&s->deferred_node))
        return;
    if (session_backlog(s) + shared_frame_cost(frame) > hub->limits.max_backlog ||
        shared_frame_append(frame, bufferevent_get_output(s->bev), &s->frames_referenced) < 0) {
        /* Newest first, as the sweep has always closed them. */
        list_insert_before(hub->deferred.next, &s->deferred_node);
        return;
    }
    hub->counters.deliveries++;
    hub->counters.delivered_bytes += frame->len;
    if (!list_is_linked(&s->unflushed_node)) {
        if (list_is_empty(&hub->unflushed))
            event_active(hub->flush_event, EV_TIMEOUT, 0);
        list_insert_before(hub->unflushed.next, &s->unflushed_node);
    }
}

void session_flush_all(struct hub *hub)
{
    struct list_node *node;
    while ((node = list_pop_front(&hub->unflushed))) {
        struct session *s = list_entry(node, struct session, unflushed_node);
        conn_write_flush(s->bev);
    }
}

/* --- start ---------------------------------------------------------------- */

int session_start(struct hub *hub, struct bufferevent *bev, const char *accept, const char *peer,
                  uint64_t source)
{
    char response[256];
    size_t response_len = ws_handshake_response(response, sizeof response, accept);
    struct session *s = calloc(1, sizeof *s);

    if (!s || response_len == 0) {
        free(s);
        conn_release(bev);
        return -1;
    }
    s->hub = hub;
    s->bev = bev;
    s->frames.max_payload = hub->limits.max_message;
    s->source = source;
    snprintf(s->peer, sizeof s->peer, "%s", peer);

    /* Newest first: the order of the sweeps and the recheck pass. */
    list_insert_before(hub->sessions.next, &s->registry_node);
    hub->counters.sessions_opened++;
    hub->counters.sessions_open++;
    s->deadline_ms = hub_now_ms() + hub->limits.init_timeout_ms;
    deadline_push(&hub->init_wait, s);
    if (list_front(&hub->init_wait) == &s->deadline_node)
        arm_timer(hub->init_timer, s->deadline_ms);

    bufferevent_setcb(bev, session_read_cb, conn_write_drained, session_event_cb, s);
    bufferevent_setwatermark(bev, EV_READ, 0, SESSION_INPUT_HIGH_WATER);
    conn_write_enable(bev);
    bufferevent_write(bev, response, response_len);
    conn_write_flush(bev);
    log_debug("ws %s: session started", s->peer);
    /* Frames may have arrived in the same segment as the handshake. */
    if (evbuffer_get_length(bufferevent_get_input(bev)) > 0)
        session_pump(s); /* may end s */
    return 0;
}
