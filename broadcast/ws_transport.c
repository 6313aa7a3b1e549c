#include "ws_transport.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <wslay/wslay.h>

#include "core/log.h"
#include "hub.h"
#include "init_handler.h"
#include "net/conn_flush.h"
#include "net/conn_write.h"
#include "subscriber.h"
#include "ws_frame.h"
#include "ws_handshake.h"

/* Input read per callback before wslay gets to parse it: bounds what one
 * client can make the daemon buffer. */
#define WS_INPUT_HIGH_WATER (256 * 1024)

/* RFC 6455 §7.4.1 status codes used here. */
#define WS_CLOSE_PROTOCOL_ERROR 1002
#define WS_CLOSE_INVALID_DATA 1007
#define WS_CLOSE_POLICY 1008
#define WS_CLOSE_MESSAGE_TOO_BIG 1009
#define WS_CLOSE_TRY_AGAIN_LATER 1013

#define WS_OPCODE_CLOSE 0x8
#define WS_OPCODE_PING 0x9

/* Where the close handshake stands, as far as this side is concerned. */
enum ws_close_state {
    WS_OPEN,
    WS_CLOSED_BY_WSLAY, /* wslay sent a close itself, and the hub was told */
    WS_CLOSED_BY_US,    /* our close frame is out; waiting for the peer's */
};

/* A wslay context costs about 9 KiB (its 4 KiB input and output buffers),
 * more than the rest of an idle session together. So a session holds one
 * only while wslay has state to keep: from the arrival of client bytes
 * until the stream is back between messages (ws_frame_tracker), and for
 * the whole close handshake. Server frames (events, init replies, pings)
 * are written directly, never through wslay's queue. */
struct ws_session {
    struct subscriber sub;
    wslay_event_context_ptr ws; /* NULL while idle */
    struct ws_frame_tracker frames;
    enum ws_close_state close_state;
    size_t input_left;        /* input bytes wslay may still read in this pump */
    const char *close_reason; /* close with 1008 once wslay's callback returns */
};

static struct ws_session *ws_session_of(struct subscriber *sub)
{
    return (struct ws_session *)((char *)sub - offsetof(struct ws_session, sub));
}

static const struct wslay_event_callbacks ws_callbacks;

/* The session's wslay context, created when needed. NULL when out of memory. */
static wslay_event_context_ptr session_ws(struct ws_session *s)
{
    if (!s->ws) {
        if (wslay_event_context_server_init(&s->ws, &ws_callbacks, s) != 0) {
            s->ws = NULL;
            return NULL;
        }
        wslay_event_config_set_max_recv_msg_length(s->ws, s->sub.hub->limits.max_message);
    }
    return s->ws;
}

/* Frees the wslay context when it holds nothing: no partial frame or
 * message, nothing queued, no close under way. */
static void release_ws_if_idle(struct ws_session *s)
{
    if (!s->ws || s->sub.state == SUBSCRIBER_CLOSING || !ws_frame_tracker_idle(&s->frames) ||
        wslay_event_want_write(s->ws) || !wslay_event_get_read_enabled(s->ws) ||
        wslay_event_get_close_sent(s->ws) || wslay_event_get_close_received(s->ws))
        return;
    wslay_event_context_free(s->ws);
    s->ws = NULL;
}

/* Ends the session once wslay has nothing left to read or write. Returns
 * true when s was freed. */
static bool finish_if_done(struct ws_session *s)
{
    if (!s->ws || wslay_event_want_read(s->ws) || wslay_event_want_write(s->ws))
        return false;
    hub_end_subscriber(&s->sub);
    return true;
}

/* Writes a server frame straight to the output (server frames are not
 * masked, §5.1). Safe at any time: wslay never leaves a frame half-written,
 * since the send callback never blocks. */
static void send_frame(struct ws_session *s, uint8_t opcode, const void *payload, size_t len)
{
    uint8_t header[WS_FRAME_HEADER_MAX];
    size_t header_len = ws_frame_header_encode(header, opcode, len);
    struct evbuffer *out = bufferevent_get_output(s->sub.bev);
    evbuffer_add(out, header, header_len);
    if (len)
        evbuffer_add(out, payload, len);
    conn_write_flush(s->sub.bev);
}

/* --- what the hub asks ----------------------------------------------------- */

/* While wslay is active its queue is used, so that a pong it owes (for a
 * ping that came before this message) goes out first: wslay sends control
 * frames ahead of data. The pump runs wslay_event_send afterwards. */
static void ws_reply(struct subscriber *sub, const char *text, size_t len)
{
    struct ws_session *s = ws_session_of(sub);
    struct wslay_event_msg msg = {WSLAY_TEXT_FRAME, (const uint8_t *)text, len};
    if (s->ws && wslay_event_queue_msg(s->ws, &msg) == 0)
        return;
    send_frame(s, WS_OPCODE_TEXT, text, len);
}

/* Written directly, after anything wslay still holds: queued through wslay
 * it would go out after a close frame, which wslay sends first. */
static bool ws_notify(struct subscriber *sub, const char *text, size_t len)
{
    struct ws_session *s = ws_session_of(sub);
    if (s->ws && wslay_event_send(s->ws) != 0) {
        hub_free_subscriber(sub);
        return false;
    }
    send_frame(s, WS_OPCODE_TEXT, text, len);
    return true;
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
 * session ends as soon as wslay has written them (finish_if_done). */
static bool close_fails_connection(uint16_t code)
{
    return code == WS_CLOSE_PROTOCOL_ERROR || code == WS_CLOSE_INVALID_DATA ||
           code == WS_CLOSE_MESSAGE_TOO_BIG;
}

static bool ws_close(struct subscriber *sub, uint16_t code, const char *reason)
{
    struct ws_session *s = ws_session_of(sub);
    uint8_t payload[2 + 123];
    size_t reason_len = strlen(reason);
    /* wslay has sent a close already (its answer to the peer's): the
     * connection ends when that is done, or at the close deadline. */
    if (s->ws && wslay_event_get_close_sent(s->ws))
        return true;
    /* The close frame is written directly, so that closing thousands of
     * sessions (a shutdown, an init-timeout wave) costs no wslay context
     * each. What wslay still holds goes out first; then it is dropped. */
    if (s->ws) {
        if (wslay_event_send(s->ws) != 0) {
            hub_free_subscriber(sub);
            return false;
        }
        wslay_event_context_free(s->ws);
        s->ws = NULL;
    }
    if (reason_len > sizeof payload - 2)
        reason_len = sizeof payload - 2; /* §5.5: a control frame carries at most 125 bytes */
    payload[0] = (uint8_t)(code >> 8);
    payload[1] = (uint8_t)code;
    memcpy(payload + 2, reason, reason_len);
    send_frame(s, WS_OPCODE_CLOSE, payload, 2 + reason_len);
    if (close_fails_connection(code)) {
        hub_end_subscriber(sub);
        return false;
    }
    s->close_state = WS_CLOSED_BY_US;
    return true;
}

static void ws_ping(struct subscriber *sub)
{
    send_frame(ws_session_of(sub), WS_OPCODE_PING, NULL, 0); /* §5.5.2 */
}

static void ws_destroy(struct subscriber *sub)
{
    struct ws_session *s = ws_session_of(sub);
    if (s->ws)
        wslay_event_context_free(s->ws);
    free(s);
}

static const struct subscriber_ops ws_ops = {
    .name = "ws",
    .reply = ws_reply,
    .notify = ws_notify,
    .close = ws_close,
    .ping = ws_ping,
    .destroy = ws_destroy,
};

/* --- wslay callbacks ------------------------------------------------------ */

static ssize_t ws_recv_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags,
                          void *user_data)
{
    struct ws_session *s = user_data;
    int n = 0;
    if (len > s->input_left)
        len = s->input_left;
    if (len > 0)
        n = evbuffer_remove(bufferevent_get_input(s->sub.bev), buf, len);
    if (n <= 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    s->input_left -= (size_t)n;
    return n;
}

/* Never blocks: the output buffer takes the whole frame, and what the
 * buffer holds (subscriber_backlog) is what the hub limits. */
static ssize_t ws_send_cb(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags,
                          void *user_data)
{
    struct ws_session *s = user_data;
    if (evbuffer_add(bufferevent_get_output(s->sub.bev), data, len) < 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
    }
    return (ssize_t)len;
}

static void ws_msg_recv_cb(wslay_event_context_ptr ctx,
                           const struct wslay_event_on_msg_recv_arg *arg, void *user_data)
{
    struct ws_session *s = user_data;
    subscriber_alive(&s->sub);
    switch (arg->opcode) {
    case WSLAY_TEXT_FRAME:
    case WSLAY_BINARY_FRAME:
        /* Binary messages are read like text ones, as the original service
         * did; a non-UTF-8 one is INVALID_SYNTAX. Once a close is decided,
         * the messages wslay still parses are dropped. */
        if (s->sub.state == SUBSCRIBER_CLOSING || s->close_reason)
            break;
        s->close_reason = init_handler_message(&s->sub, arg->msg, arg->msg_length);
        break;
    case WSLAY_CONNECTION_CLOSE:
        /* wslay echoes the close; the subscriptions end at once. */
        subs_remove_all(s->sub.hub->subs, &s->sub.subs);
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
static void note_protocol_close(struct ws_session *s)
{
    struct hub *hub = s->sub.hub;
    uint16_t code;
    if (!s->ws || s->sub.state == SUBSCRIBER_CLOSING || s->close_state != WS_OPEN ||
        !wslay_event_get_close_sent(s->ws) || wslay_event_get_close_received(s->ws))
        return;
    s->close_state = WS_CLOSED_BY_WSLAY;
    code = wslay_event_get_status_code_sent(s->ws);
    if (code == WS_CLOSE_MESSAGE_TOO_BIG)
        hub->counters.oversized_message_closes++;
    log_info("ws %s: closed by the server with %u (%s)", s->sub.peer, (unsigned)code,
             code == WS_CLOSE_MESSAGE_TOO_BIG ? "message too big"
             : code == WS_CLOSE_INVALID_DATA  ? "invalid UTF-8"
                                              : "protocol error");
    hub_subscriber_closing(&s->sub);
}

/* Tells the frame tracker about every byte wslay is about to consume
 * (wslay reads until the input is empty, unless it stops after a close,
 * and then the tracker no longer matters), and lets wslay read only the
 * frames before one the tracker refuses: those are handled in order, and
 * the refused frame never reaches wslay. */
static void track_input(struct ws_session *s)
{
    struct evbuffer *in = bufferevent_get_input(s->sub.bev);
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
    s->input_left = total;
    if (s->frames.failure) /* a refused header begun in an earlier read leaves nothing */
        s->input_left = s->frames.frame_offset > start ? s->frames.frame_offset - start : 0;
}

static void drain_input(struct ws_session *s)
{
    struct evbuffer *in = bufferevent_get_input(s->sub.bev);
    evbuffer_drain(in, evbuffer_get_length(in));
}

static void pump(struct ws_session *s)
{
    struct subscriber *sub = &s->sub;
    struct hub *hub = sub->hub;
    if (s->close_state == WS_CLOSED_BY_US) {
        /* Only the peer's close frame matters now (§5.5.1): follow the
         * frames without wslay and drop them; the close timeout covers a
         * peer that never answers. */
        track_input(s);
        drain_input(s);
        /* A frame that fails the connection ends the wait as well. */
        if (s->frames.close_seen || s->frames.failure)
            hub_end_subscriber(sub);
        return;
    }
    if (!session_ws(s)) {
        hub_free_subscriber(sub);
        return;
    }
    track_input(s);
    if (wslay_event_recv(s->ws) != 0 || wslay_event_send(s->ws) != 0) {
        hub_free_subscriber(sub);
        return;
    }
    conn_write_flush(sub->bev); /* pongs, init replies */
    note_protocol_close(s);
    /* A frame the tracker refused on its header: wslay checks a message's
     * size only once its payload starts to come (a header announcing 2 GiB
     * would wait for bytes that never come), and lets bad control frames
     * through. The frames before it have been handled; it fails the
     * connection (RFC 6455 §5.5, §7.4.1), unless one of them was a close
     * that wslay has answered: what follows a close is ignored (§5.5.1). */
    if (s->frames.failure && sub->state != SUBSCRIBER_CLOSING &&
        !wslay_event_get_close_sent(s->ws)) {
        if (s->frames.failure == WS_CLOSE_MESSAGE_TOO_BIG)
            hub->counters.oversized_message_closes++;
        log_info("ws %s: closed by the server with %u (%s), a frame of %llu bytes announced",
                 sub->peer, (unsigned)s->frames.failure, s->frames.failure_reason,
                 (unsigned long long)s->frames.payload_len);
        hub_close_subscriber(sub, s->frames.failure, s->frames.failure_reason);
        return;
    }
    /* A close decided inside wslay's callback, where the context that is
     * running could not be freed. */
    if (s->close_reason && sub->state != SUBSCRIBER_CLOSING) {
        hub_close_subscriber(sub, WS_CLOSE_POLICY, s->close_reason);
        return;
    }
    /* Answers to the client's own messages (pongs, init replies) count
     * against the backlog too: a client that sends without reading is a
     * slow consumer like any other. */
    if (sub->state != SUBSCRIBER_CLOSING && subscriber_backlog(sub) > hub->limits.max_backlog) {
        hub->counters.slow_consumer_closes++;
        log_warn("ws %s: slow consumer, over %zu bytes unsent: closing (1013)", sub->peer,
                 hub->limits.max_backlog);
        hub_close_subscriber(sub, WS_CLOSE_TRY_AGAIN_LATER, "slow consumer");
        return;
    }
    /* Bytes after a close are never read by wslay: drop them. */
    if (!wslay_event_get_read_enabled(s->ws))
        drain_input(s);
    if (!finish_if_done(s))
        release_ws_if_idle(s);
}

static void read_cb(struct bufferevent *bev, void *arg)
{
    pump(arg);
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct ws_session *s = arg;
    unsigned timeout_ms = s->sub.hub->limits.close_timeout_ms;
    /* EOF or a reset: the peer is gone; its subscriptions go with it. What
     * is still queued (a TLS alert, say) is written briefly. */
    log_debug("ws %s: connection %s", s->sub.peer, (what & BEV_EVENT_EOF) ? "closed" : "lost");
    s->sub.bev = NULL;
    hub_free_subscriber(&s->sub);
    conn_flush_and_close(bev, timeout_ms,
                         (what & BEV_EVENT_EOF) ? CONN_CLOSE_PEER_DONE : CONN_CLOSE_FAILED);
}

/* --- start ---------------------------------------------------------------- */

int ws_transport_start(struct hub *hub, struct bufferevent *bev, const char *accept,
                       const char *peer, uint64_t source)
{
    char response[256];
    size_t response_len = ws_handshake_response(response, sizeof response, accept);
    struct ws_session *s = calloc(1, sizeof *s);

    if (!s || response_len == 0) {
        free(s);
        conn_release(bev);
        return -1;
    }
    s->sub.ops = &ws_ops;
    s->sub.bev = bev;
    s->sub.source = source;
    snprintf(s->sub.peer, sizeof s->sub.peer, "%s", peer);
    s->frames.max_payload = hub->limits.max_message;
    hub_add_subscriber(hub, &s->sub);

    bufferevent_setcb(bev, read_cb, conn_write_drained, event_cb, s);
    bufferevent_setwatermark(bev, EV_READ, 0, WS_INPUT_HIGH_WATER);
    conn_write_enable(bev);
    bufferevent_write(bev, response, response_len);
    conn_write_flush(bev);
    log_debug("ws %s: session started", s->sub.peer);
    /* Frames may have arrived in the same segment as the handshake. */
    if (evbuffer_get_length(bufferevent_get_input(bev)) > 0)
        pump(s); /* may end s */
    return 0;
}
