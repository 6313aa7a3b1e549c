#include "net/http_server.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <netinet/in.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "core/byte_budget.h"
#include "net/conn_flush.h"
#include "net/conn_write.h"
#include "net/http_chunked.h"
#include "core/log.h"
#include "net/net.h"

enum conn_state {
    CONN_READING_HEAD, /* waiting for (the rest of) a request head */
    CONN_READING_BODY, /* head parsed, its body being read (or decoded) */
    CONN_HANDLING,     /* handed to the handler; reading is off */
};

struct http_exchange {
    struct http_conn *conn;
    struct http_request_head head;
    const char *body;
    size_t body_len;
    void (*cancel)(void *arg);
    void *cancel_arg;
};

struct http_conn {
    struct http_server *server;
    struct bufferevent *bev;
    struct event *timer;
    enum conn_state state;
    bool keep_alive;
    bool in_process;             /* inside conn_process: an answer must not re-enter it */
    bool *alive;                 /* cleared by conn_free while conn_process runs the handler */
    bool timer_for_request;      /* the timer measures a request, not idleness */
    bool early;                  /* answering from the head: the body is unread */
    unsigned failed_credentials; /* refused credentials in a row */
    struct event *resume;        /* re-checks a connection paused on unsent output */
    size_t scanned;              /* input bytes already searched for the end of the head */
    /* The request handed to the handler, taken off the input: its head and
     * body (the data alone, for a chunked one), contiguous once exposed.
     * Reading never touches it, and the input holds only what follows. */
    struct evbuffer *request;
    bool chunked;           /* the body is decoded by chunked_body ... */
    uint64_t body_len;      /* ... or is Content-Length bytes */
    uint64_t body_reserved; /* bytes of the server's bodies budget held */
    uint64_t source;        /* net_source_key of the peer */
    struct http_chunked_decoder chunked_body;
    struct http_exchange ex;
    char peer[64];
    struct http_conn *prev, *next;
};

struct http_listener {
    struct evconnlistener *listener;
    struct http_listener *next;
};

struct http_server {
    struct event_base *base;
    struct http_server_limits limits;
    http_handler_fn handler;
    http_head_check_fn head_check;
    void *handler_arg;
    http_bev_factory_fn factory;
    void *factory_arg;
    struct http_listener *listeners;
    struct event *resume_accept;
    struct http_conn *conns;
    size_t conn_count;
    bool shutting_down;
    struct http_server_stats stats;
    struct byte_budget bodies; /* bytes of request bodies held by every connection */
    time_t last_refusal_log;
};

static void conn_process(struct http_conn *conn);
static void conn_free(struct http_conn *conn);

const char *http_status_text(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 101:
        return "Switching Protocols";
    case 200:
        return "OK";
    case 400:
        return "Bad Request";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 411:
        return "Length Required";
    case 413:
        return "Content Too Large";
    case 415:
        return "Unsupported Media Type";
    case 426:
        return "Upgrade Required";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 503:
        return "Service Unavailable";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "Unknown";
    }
}

static void timeval_from_ms(struct timeval *tv, unsigned ms)
{
    tv->tv_sec = ms / 1000;
    tv->tv_usec = (ms % 1000) * 1000;
}

static void conn_arm_timer(struct http_conn *conn, unsigned ms, bool for_request)
{
    struct timeval tv;
    timeval_from_ms(&tv, ms);
    conn->timer_for_request = for_request;
    evtimer_add(conn->timer, &tv);
}

/* Queues an answer on the connection; closes after it when close is set. */
static void conn_write_answer(struct http_conn *conn, int status, const char *extra_headers,
                              const char *content_type, const char *body, size_t len, bool close,
                              bool head_only)
{
    struct evbuffer *out = bufferevent_get_output(conn->bev);
    /* An HTTP/1.0 client keeps the connection only when the answer says
     * keep-alive too (RFC 9112 §9.3, Appendix C.2.2). */
    const char *connection = close                              ? "Connection: close\r\n"
                             : conn->ex.head.version_minor == 0 ? "Connection: keep-alive\r\n"
                                                                : "";
    evbuffer_add_printf(out,
                        "HTTP/1.1 %d %s\r\n"
                        "Content-Type: %s\r\n"
                        "Content-Length: %zu\r\n"
                        "Cache-Control: no-store\r\n"
                        "%s%s\r\n",
                        status, http_status_text(status), content_type, len, connection,
                        extra_headers ? extra_headers : "");
    if (!head_only) /* RFC 9110 §9.3.2: an answer to HEAD has no content */
        evbuffer_add(out, body, len);
}

/* Ends the connection once what is queued on it is written; conn is
 * freed at once and must not be used afterwards. */
static void conn_close_as(struct http_conn *conn, enum conn_close_mode mode)
{
    struct bufferevent *bev = conn->bev;
    struct evbuffer *in = bufferevent_get_input(bev);
    unsigned timeout_ms = conn->server->limits.write_timeout_ms;
    /* What is left of the request is of no more use: freed now, with the
     * body's share of the budget, not once the answer has been flushed. */
    evbuffer_drain(in, evbuffer_get_length(in));
    conn->bev = NULL;
    conn_free(conn);
    conn_flush_and_close(bev, timeout_ms, mode);
}

static void conn_start_closing(struct http_conn *conn)
{
    conn_close_as(conn, CONN_CLOSE_GRACEFUL);
}

/* An error answered by the server itself; the connection closes after it,
 * because the rest of the input can no longer be framed reliably. */
static void count_failure(struct http_server_stats *stats, int status)
{
    switch (status) {
    case 400:
        stats->bad_request++;
        break;
    case 408:
        stats->request_timeout++;
        break;
    case 413:
        stats->body_too_large++;
        break;
    case 431:
        stats->headers_too_large++;
        break;
    case 501:
        stats->unsupported_transfer_encoding++;
        break;
    case 503:
        stats->server_busy++;
        break;
    case 505:
        stats->version_not_supported++;
        break;
    default:
        break;
    }
}

/* Answers with a JSON error and closes. extra_headers (or NULL) go into the
 * answer; reason (or NULL) says why, for the log line. */
static void conn_fail_with(struct http_conn *conn, int status, const char *code,
                           const char *extra_headers, const char *reason)
{
    char body[96];
    count_failure(&conn->server->stats, status);
    int n = snprintf(body, sizeof body, "{\"code\":\"%s\"}", code);
    if (reason)
        log_info("http %s: %d %s: %s", conn->peer, status, code, reason);
    else
        log_info("http %s: %d %s", conn->peer, status, code);
    conn_write_answer(conn, status, extra_headers, "application/json", body, (size_t)n, true,
                      false);
    conn_start_closing(conn);
}

static void conn_fail(struct http_conn *conn, int status, const char *code, const char *reason)
{
    conn_fail_with(conn, status, code, NULL, reason);
}

/* The bodies budget (struct http_server_limits, max_bodies): a connection
 * reserves the bytes of a body before it reads them, and gives them back
 * when the body is freed (the exchange is over, or the connection ends).
 * A body whose size is only learned as it arrives reserves each part as it
 * comes. Returns false, with nothing reserved, when bytes would pass the
 * budget. */
static bool conn_reserve_body(struct http_conn *conn, uint64_t bytes)
{
    if (!byte_budget_reserve(&conn->server->bodies, bytes))
        return false;
    conn->body_reserved += bytes;
    return true;
}

static void conn_release_body(struct http_conn *conn)
{
    byte_budget_release(&conn->server->bodies, conn->body_reserved);
    conn->body_reserved = 0;
}

static void conn_after_answer(struct http_conn *conn)
{
    evbuffer_drain(conn->request, evbuffer_get_length(conn->request));
    conn_release_body(conn);
    memset(&conn->ex, 0, sizeof conn->ex);
    conn->ex.conn = conn;
    conn->scanned = 0;
    if (!conn->keep_alive || conn->server->shutting_down) {
        conn_start_closing(conn);
        return;
    }
    conn->state = CONN_READING_HEAD;
    evtimer_del(conn->timer);
    bufferevent_setwatermark(conn->bev, EV_READ, 0, conn->server->limits.max_head + 1);
    bufferevent_enable(conn->bev, EV_READ);
    if (!conn->in_process)
        conn_process(conn);
}

void http_exchange_respond_full(struct http_exchange *ex, int status, const char *extra_headers,
                                const char *content_type, const char *body, size_t len)
{
    struct http_conn *conn = ex->conn;
    bool close;
    if (conn->early)
        conn->keep_alive = false; /* the body is still in the way of the next request */
    close = !conn->keep_alive || conn->server->shutting_down;
    conn_write_answer(conn, status, extra_headers, content_type, body, len, close,
                      http_request_method_is(&ex->head, "HEAD"));
    conn_write_flush(conn->bev);
    conn_after_answer(conn);
}

void http_exchange_respond_code(struct http_exchange *ex, int status, const char *code)
{
    char body[128];
    int n = snprintf(body, sizeof body, "{\"code\":\"%s\"}", code);
    http_exchange_respond_full(ex, status, NULL, "application/json", body, (size_t)n);
}

const struct http_request_head *http_exchange_head(const struct http_exchange *ex)
{
    return &ex->head;
}

const char *http_exchange_body(const struct http_exchange *ex, size_t *len)
{
    *len = ex->body_len;
    return ex->body;
}

const char *http_exchange_peer(const struct http_exchange *ex)
{
    return ex->conn->peer;
}

uint64_t http_exchange_source(const struct http_exchange *ex)
{
    return ex->conn->source;
}

void http_exchange_note_credential(struct http_exchange *ex, bool accepted)
{
    struct http_conn *conn = ex->conn;
    if (accepted)
        conn->failed_credentials = 0;
    else if (++conn->failed_credentials >= HTTP_FAILED_CREDENTIALS_MAX)
        conn->keep_alive = false;
}

void http_exchange_set_cancel(struct http_exchange *ex, void (*cancel)(void *arg), void *arg)
{
    ex->cancel = cancel;
    ex->cancel_arg = arg;
}

struct bufferevent *http_exchange_take_connection(struct http_exchange *ex)
{
    struct http_conn *conn = ex->conn;
    struct bufferevent *bev = conn->bev;
    bufferevent_setcb(bev, NULL, NULL, NULL, NULL);
    conn_write_set_timeout(bev, NULL);
    bufferevent_setwatermark(bev, EV_READ, 0, 0);
    conn->bev = NULL;
    conn->ex.cancel = NULL;
    conn_free(conn);
    return bev;
}

/* Looks for the blank line that ends a head, resuming where the last search
 * stopped, so that a head arriving a byte at a time costs O(n) to find. */
static bool conn_head_complete(struct http_conn *conn, struct evbuffer *in, size_t len)
{
    struct evbuffer_ptr start, found;
    size_t from = conn->scanned > 3 ? conn->scanned - 3 : 0;
    if (evbuffer_ptr_set(in, &start, from, EVBUFFER_PTR_SET) < 0)
        return false;
    found = evbuffer_search(in, "\n\r\n", 3, &start);
    if (found.pos < 0)
        found = evbuffer_search(in, "\n\n", 2, &start);
    conn->scanned = len;
    return found.pos >= 0;
}

/* Points the exchange's head and body into the request read so far, made
 * contiguous. Adding to an evbuffer may move the bytes it holds, so this
 * runs again each time the exchange is handed out. */
static bool conn_expose_request(struct http_conn *conn)
{
    size_t total = evbuffer_get_length(conn->request);
    const char *buf = (const char *)evbuffer_pullup(conn->request, (ev_ssize_t)total);

    /* The same bytes parsed before: this only finds them again. */
    if (!buf || http_request_parse(buf, total, conn->server->limits.max_head, &conn->ex.head) !=
                    HTTP_PARSE_OK)
        return false;
    conn->ex.body = buf + conn->ex.head.head_len;
    conn->ex.body_len = total - conn->ex.head.head_len;
    conn->ex.conn = conn;
    return true;
}

/* Feeds the input to a chunked decoder: with sink, the data goes to sink,
 * charged to the bodies budget, and the bytes decoded leave the input;
 * without, the input is only looked at. Sets *status to the decoder's
 * answer, and *busy when the budget would be passed (the body is then
 * abandoned: the connection is failed). Returns false when out of memory. */
static bool conn_feed_chunked(struct http_conn *conn, struct http_chunked_decoder *dec,
                              struct evbuffer *sink, int *status, bool *busy)
{
    struct evbuffer *in = bufferevent_get_input(conn->bev);
    size_t total = evbuffer_get_length(in);
    size_t offset = 0;
    bool ok = true;

    *status = HTTP_CHUNKED_AGAIN;
    while (ok && *status == HTTP_CHUNKED_AGAIN && offset < total) {
        struct evbuffer_iovec vec[8];
        struct evbuffer_ptr at;
        int n;

        if (evbuffer_ptr_set(in, &at, offset, EVBUFFER_PTR_SET) < 0)
            break;
        n = evbuffer_peek(in, -1, &at, vec, 8);
        for (int i = 0; i < n && i < 8 && ok && *status == HTTP_CHUNKED_AGAIN; i++) {
            const char *p = vec[i].iov_base;
            size_t left = vec[i].iov_len;

            while (left > 0 && ok && *status == HTTP_CHUNKED_AGAIN) {
                const char *data;
                size_t data_len, used;

                *status = http_chunked_feed(dec, p, left, &used, &data, &data_len);
                if (sink && data_len > 0 && !conn_reserve_body(conn, data_len)) {
                    *busy = true;
                    return true;
                }
                if (sink && data_len > 0 && evbuffer_add(sink, data, data_len) < 0)
                    ok = false;
                p += used;
                left -= used;
                offset += used;
            }
        }
    }
    if (sink)
        evbuffer_drain(in, offset);
    return ok;
}

/* Answers a chunked body the decoder refused; the connection closes, as
 * the rest of the input can no longer be framed. */
static void conn_fail_chunked(struct http_conn *conn, int status)
{
    const char *reason = http_chunked_reason(&conn->chunked_body);

    if (status == HTTP_CHUNKED_TOO_LARGE)
        conn_fail(conn, 413, "BODY_TOO_LARGE", reason);
    else if (status == HTTP_CHUNKED_TRAILER_TOO_LARGE)
        conn_fail(conn, 431, "HEADERS_TOO_LARGE", reason);
    else
        conn_fail(conn, 400, "BAD_REQUEST", reason);
}

/* Decides how the body is framed once the head is known. Returns false when
 * the connection was failed or answered from the head alone. */
static bool conn_accept_head(struct http_conn *conn)
{
    struct http_server *server = conn->server;
    struct evbuffer *in = bufferevent_get_input(conn->bev);
    const struct http_request_head *head = &conn->ex.head;
    const struct http_header *expect = http_request_header(head, "Expect");
    struct http_body_framing framing;
    size_t head_len = head->head_len;
    bool wants_continue, complete, refused = false;
    const char *reason;
    int rc;

    conn->keep_alive = http_request_keep_alive(head);
    wants_continue = head->version_minor == 1 && expect && expect->value_len == 12 &&
                     strncasecmp(expect->value, "100-continue", 12) == 0;
    rc = http_request_body_framing(head, &framing, &reason);
    if (rc == HTTP_PARSE_UNSUPPORTED) {
        conn_fail(conn, 501, "UNSUPPORTED_TRANSFER_ENCODING", reason);
        return false;
    }
    if (rc != HTTP_PARSE_OK) {
        conn_fail(conn, 400, "BAD_REQUEST", reason);
        return false;
    }
    if (!framing.chunked && framing.length > server->limits.max_body) {
        conn_fail(conn, 413, "BODY_TOO_LARGE", NULL);
        return false;
    }
    conn->chunked = framing.chunked;
    conn->body_len = framing.length;
    if (conn->chunked) {
        struct http_chunked_decoder probe;
        int status;

        /* The data is decoded from between framing bytes that leave the
         * input as they are read: the head goes ahead to the request
         * buffer. (A Content-Length request goes there whole once its body
         * is in, in one move that seldom copies.) */
        if (evbuffer_remove_buffer(in, conn->request, head_len) != (int)head_len ||
            !conn_expose_request(conn)) {
            conn_fail(conn, 500, "INTERNAL_ERROR", "out of memory");
            return false;
        }
        http_chunked_init(&conn->chunked_body, server->limits.max_body, server->limits.max_head);
        /* Whether the body is all in already, without consuming it. */
        probe = conn->chunked_body;
        conn_feed_chunked(conn, &probe, NULL, &status, NULL);
        complete = status == HTTP_CHUNKED_DONE;
        refused = status != HTTP_CHUNKED_DONE && status != HTTP_CHUNKED_AGAIN;
    } else {
        complete = evbuffer_get_length(in) >= head_len + conn->body_len;
    }
    /* The head check only matters while the body is still to come; a
     * request already complete goes straight to the handler, keeping its
     * connection alive whatever the answer. A body that will be refused is
     * still to come too: credentials are judged before the body, always. */
    if (server->head_check && !complete) {
        bool alive = true;
        conn->alive = &alive;
        conn->early = true;
        conn->state = CONN_HANDLING;
        conn->ex.conn = conn;
        server->head_check(&conn->ex, server->handler_arg);
        if (!alive)
            return false; /* answered: the connection is closing */
        conn->alive = NULL;
        conn->early = false;
        conn->state = CONN_READING_HEAD;
    }
    /* Answered from the head like a 413, but only once the credential has
     * been judged, so that a client without one still learns that first.
     * A chunked body is charged as its data is decoded (conn_read_body). */
    if (!conn->chunked && !conn_reserve_body(conn, conn->body_len)) {
        conn_fail_with(conn, 503, "SERVER_BUSY", "Retry-After: 1\r\n", "bodies budget spent");
        return false;
    }
    /* RFC 9110 §10.1.1: 100 only for a body the client holds back. */
    if (wants_continue && !complete && !refused) {
        evbuffer_add_printf(bufferevent_get_output(conn->bev), "HTTP/1.1 100 Continue\r\n\r\n");
        conn_write_flush(conn->bev);
    }
    /* Stop reading once this request is in: pipelined bytes beyond it wait
     * in the kernel, which bounds what a client can queue. A chunked body's
     * end is not known in advance: the input is decoded as it comes, and at
     * most a head's worth is read ahead. */
    bufferevent_setwatermark(conn->bev, EV_READ, 0,
                             conn->chunked ? server->limits.max_head + 1
                                           : head_len + conn->body_len + 1);
    return true;
}

/* Reads the body into the request buffer (with the head, for Content-Length).
 * Returns 1 once it is all there, 0 while more is to come, -1 when the
 * connection was failed. */
static int conn_read_body(struct http_conn *conn)
{
    struct evbuffer *in = bufferevent_get_input(conn->bev);
    int status;

    if (!conn->chunked) {
        size_t total = conn->ex.head.head_len + conn->body_len;
        if (evbuffer_get_length(in) < total)
            return 0;
        if (evbuffer_remove_buffer(in, conn->request, total) != (int)total) {
            conn_fail(conn, 500, "INTERNAL_ERROR", "out of memory");
            return -1;
        }
        return 1;
    }
    bool busy = false;
    if (!conn_feed_chunked(conn, &conn->chunked_body, conn->request, &status, &busy)) {
        conn_fail(conn, 500, "INTERNAL_ERROR", "out of memory");
        return -1;
    }
    if (busy) {
        conn_fail_with(conn, 503, "SERVER_BUSY", "Retry-After: 1\r\n", "bodies budget spent");
        return -1;
    }
    if (status == HTTP_CHUNKED_AGAIN)
        return 0;
    if (status != HTTP_CHUNKED_DONE) {
        conn_fail_chunked(conn, status);
        return -1;
    }
    return 1;
}

static void conn_resume_cb(evutil_socket_t fd, short what, void *arg)
{
    struct http_conn *conn = arg;
    if (conn->state != CONN_READING_HEAD)
        return;
    bufferevent_enable(conn->bev, EV_READ);
    conn_process(conn);
}

/* Stops reading requests until the answers already queued have mostly left;
 * the output of a layered (TLS) connection gives no callback when it
 * drains, so this polls. */
static void conn_pause(struct http_conn *conn)
{
    struct timeval tv = {0, 20 * 1000};
    bufferevent_disable(conn->bev, EV_READ);
    if (!conn->resume)
        conn->resume = evtimer_new(conn->server->base, conn_resume_cb, conn);
    if (conn->resume)
        evtimer_add(conn->resume, &tv);
}

static void conn_process(struct http_conn *conn)
{
    struct http_server *server = conn->server;
    struct evbuffer *in = bufferevent_get_input(conn->bev);

    conn->in_process = true;
    for (;;) {
        size_t len = evbuffer_get_length(in);
        if (conn->state == CONN_READING_HEAD) {
            unsigned char *buf;
            int rc;
            if (conn_output_pending(conn->bev) > HTTP_OUTPUT_PAUSE_BYTES) {
                conn_pause(conn);
                break;
            }
            if (len == 0) {
                if (server->shutting_down) {
                    conn_start_closing(conn);
                    return;
                }
                conn_arm_timer(conn, server->limits.idle_timeout_ms, false);
                break;
            }
            if (!conn->timer_for_request || !evtimer_pending(conn->timer, NULL))
                conn_arm_timer(conn, server->limits.request_timeout_ms, true);
            if (!conn_head_complete(conn, in, len) && len <= server->limits.max_head)
                break;
            buf = evbuffer_pullup(in, (ev_ssize_t)(len < server->limits.max_head + 1
                                                       ? len
                                                       : server->limits.max_head + 1));
            rc = http_request_parse((const char *)buf,
                                    len < server->limits.max_head + 1 ? len
                                                                      : server->limits.max_head + 1,
                                    server->limits.max_head, &conn->ex.head);
            if (rc == HTTP_PARSE_AGAIN)
                break;
            if (rc == HTTP_PARSE_TOO_LARGE) {
                conn_fail(conn, 431, "HEADERS_TOO_LARGE", NULL);
                return;
            }
            if (rc == HTTP_PARSE_VERSION) {
                conn_fail(conn, 505, "HTTP_VERSION_NOT_SUPPORTED", NULL);
                return;
            }
            if (rc != HTTP_PARSE_OK) {
                conn_fail(conn, 400, "BAD_REQUEST", NULL);
                return;
            }
            if (!conn_accept_head(conn))
                return;
            conn->state = CONN_READING_BODY;
            continue;
        }
        if (conn->state == CONN_READING_BODY) {
            int rc = conn_read_body(conn);
            if (rc < 0)
                return;
            if (rc == 0)
                break;
            if (!conn_expose_request(conn)) {
                conn_fail(conn, 400, "BAD_REQUEST", NULL);
                return;
            }
            conn->state = CONN_HANDLING;
            evtimer_del(conn->timer);
            conn->timer_for_request = false;
            /* On a plain socket reading goes on while the request is
             * handled (disabling and enabling it around every request
             * would cost two epoll_ctl calls each time): this watermark
             * suspends it at the first byte beyond what is already in, and
             * the handler's bytes are in the request buffer, which reading
             * never touches. On TLS a close_notify read now would fail the
             * stream before the answer is written: there reading stops
             * until the answer. */
            bufferevent_setwatermark(conn->bev, EV_READ, 0, 1);
            if (bufferevent_get_underlying(conn->bev))
                bufferevent_disable(conn->bev, EV_READ);
            bool alive = true;
            conn->alive = &alive;
            server->handler(&conn->ex, server->handler_arg);
            /* The handler may have answered (state changed), taken the
             * connection (conn is gone), or kept the exchange for later. */
            if (!alive)
                return;
            conn->alive = NULL;
            if (conn->state == CONN_HANDLING)
                break;
            continue;
        }
        break;
    }
    conn->in_process = false;
}

static void conn_free(struct http_conn *conn)
{
    struct http_server *server = conn->server;
    if (conn->alive)
        *conn->alive = false;
    if (conn->state == CONN_HANDLING && conn->ex.cancel) {
        void (*cancel)(void *) = conn->ex.cancel;
        conn->ex.cancel = NULL;
        cancel(conn->ex.cancel_arg);
    }
    if (conn->prev)
        conn->prev->next = conn->next;
    else
        server->conns = conn->next;
    if (conn->next)
        conn->next->prev = conn->prev;
    server->conn_count--;
    conn_release_body(conn);
    if (conn->bev)
        conn_release(conn->bev);
    event_free(conn->timer);
    if (conn->resume)
        event_free(conn->resume);
    evbuffer_free(conn->request);
    free(conn);
}

static void conn_read_cb(struct bufferevent *bev, void *arg)
{
    conn_process(arg);
}

static void conn_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct http_conn *conn = arg;
    if (what & BEV_EVENT_EOF) {
        /* The client finished sending (it may have shut down only its own
         * side): the request in progress is still answered, and answers
         * already queued are written before the connection closes. */
        if (conn->state == CONN_HANDLING) {
            conn->keep_alive = false;
            return;
        }
        conn_close_as(conn, CONN_CLOSE_PEER_DONE);
        return;
    }
    if (what & BEV_EVENT_TIMEOUT) {
        log_debug("http %s: write timeout", conn->peer);
        conn_free(conn);
        return;
    }
    /* An error (a reset, or a TLS failure whose alert is still queued):
     * write what is queued, briefly, and close. */
    conn_close_as(conn, CONN_CLOSE_FAILED);
}

static void conn_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct http_conn *conn = arg;
    if (conn->state == CONN_READING_HEAD &&
        (!conn->timer_for_request || evbuffer_get_length(bufferevent_get_input(conn->bev)) == 0)) {
        conn_free(conn); /* idle: nothing of a request has arrived */
        return;
    }
    if (conn->state == CONN_READING_HEAD || conn->state == CONN_READING_BODY) {
        conn_fail(conn, 408, "REQUEST_TIMEOUT", NULL);
        return;
    }
}

static void server_accept_cb(struct evconnlistener *listener, evutil_socket_t fd,
                             struct sockaddr *sa, int socklen, void *arg)
{
    struct http_server *server = arg;
    struct http_conn *conn;
    struct timeval write_tv;

    if (conn_open_count() >= server->limits.max_connections || server->shutting_down) {
        char peer[64];
        net_format_address(sa, (socklen_t)socklen, peer, sizeof peer);
        server->stats.refused_connections++;
        /* At most one line a second: a flood must not flood the log too. */
        if (time(NULL) != server->last_refusal_log) {
            server->last_refusal_log = time(NULL);
            log_warn("http %s: refused, %zu connections open (limit); %llu refused so far", peer,
                     conn_open_count(), (unsigned long long)server->stats.refused_connections);
        }
        close(fd);
        return;
    }
    conn = calloc(1, sizeof *conn);
    if (!conn) {
        close(fd);
        return;
    }
    net_tune_accepted(fd, sa);
    conn->server = server;
    conn->ex.conn = conn;
    net_format_address(sa, (socklen_t)socklen, conn->peer, sizeof conn->peer);
    conn->source = net_source_key(sa, (socklen_t)socklen);
    conn->timer = evtimer_new(server->base, conn_timer_cb, conn);
    conn->request = evbuffer_new();
    if (server->factory)
        conn->bev = server->factory(server->base, fd, server->factory_arg);
    else
        conn->bev = bufferevent_socket_new(server->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (conn->bev)
        conn_track_open();
    if (!conn->timer || !conn->request || !conn->bev) {
        if (conn->bev)
            conn_release(conn->bev);
        else
            close(fd);
        if (conn->timer)
            event_free(conn->timer);
        if (conn->request)
            evbuffer_free(conn->request);
        free(conn);
        return;
    }
    conn->next = server->conns;
    if (server->conns)
        server->conns->prev = conn;
    server->conns = conn;
    server->conn_count++;
    server->stats.accepted_connections++;

    timeval_from_ms(&write_tv, server->limits.write_timeout_ms);
    conn_write_set_timeout(conn->bev, &write_tv);
    bufferevent_setwatermark(conn->bev, EV_READ, 0, server->limits.max_head + 1);
    bufferevent_setcb(conn->bev, conn_read_cb, conn_write_drained, conn_event_cb, conn);
    conn_write_enable(conn->bev);
    conn_arm_timer(conn, server->limits.request_timeout_ms, true);
}

static void server_resume_accept_cb(evutil_socket_t fd, short what, void *arg)
{
    struct http_server *server = arg;
    if (server->shutting_down)
        return;
    for (struct http_listener *l = server->listeners; l; l = l->next)
        evconnlistener_enable(l->listener);
}

/* accept() failed, most likely EMFILE: pause accepting briefly instead of
 * spinning on a listener that stays readable. */
static void server_accept_error_cb(struct evconnlistener *listener, void *arg)
{
    struct http_server *server = arg;
    struct timeval tv = {0, 100 * 1000};
    log_warn("http: accept failed: %s; pausing accepts for 100 ms", strerror(errno));
    for (struct http_listener *l = server->listeners; l; l = l->next)
        evconnlistener_disable(l->listener);
    evtimer_add(server->resume_accept, &tv);
}

struct http_server *http_server_new(struct event_base *base,
                                    const struct http_server_limits *limits,
                                    http_handler_fn handler, void *handler_arg)
{
    struct http_server *server = calloc(1, sizeof *server);
    if (!server)
        return NULL;
    server->base = base;
    server->limits = *limits;
    server->bodies.limit = limits->max_bodies;
    server->handler = handler;
    server->handler_arg = handler_arg;
    server->resume_accept = evtimer_new(base, server_resume_accept_cb, server);
    if (!server->resume_accept) {
        free(server);
        return NULL;
    }
    return server;
}

void http_server_set_head_check(struct http_server *server, http_head_check_fn check)
{
    server->head_check = check;
}

void http_server_set_bev_factory(struct http_server *server, http_bev_factory_fn factory, void *arg)
{
    server->factory = factory;
    server->factory_arg = arg;
}

int http_server_add_listener(struct http_server *server, int fd)
{
    struct http_listener *l = calloc(1, sizeof *l);
    if (!l) {
        close(fd);
        return -1;
    }
    l->listener = evconnlistener_new(server->base, server_accept_cb, server,
                                     LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 0, fd);
    if (!l->listener) {
        close(fd);
        free(l);
        return -1;
    }
    evconnlistener_set_error_cb(l->listener, server_accept_error_cb);
    l->next = server->listeners;
    server->listeners = l;
    return 0;
}

void http_server_shutdown(struct http_server *server)
{
    struct http_conn *conn, *next;
    server->shutting_down = true;
    for (struct http_listener *l = server->listeners; l; l = l->next)
        evconnlistener_disable(l->listener);
    for (conn = server->conns; conn; conn = next) {
        next = conn->next;
        if (conn->state == CONN_READING_HEAD &&
            evbuffer_get_length(bufferevent_get_input(conn->bev)) == 0)
            conn_start_closing(conn); /* idle: write what is queued, then close */
    }
}

size_t http_server_connection_count(const struct http_server *server)
{
    return server->conn_count;
}

uint64_t http_server_body_bytes(const struct http_server *server)
{
    return server->bodies.used;
}

const struct http_server_stats *http_server_stats(const struct http_server *server)
{
    return &server->stats;
}

void http_server_free(struct http_server *server)
{
    struct http_listener *l, *next_l;
    if (!server)
        return;
    while (server->conns)
        conn_free(server->conns);
    for (l = server->listeners; l; l = next_l) {
        next_l = l->next;
        evconnlistener_free(l->listener);
        free(l);
    }
    event_free(server->resume_accept);
    free(server);
}
