/* A small HTTP/1.1 server on libevent bufferevents, shared by both daemons.
 *
 * Why not evhttp: libevent 2.1's evhttp answers its own errors (oversized
 * body, bad request, timeouts) with HTML pages that the public contract does
 * not allow (every answer here is JSON {"code": ...}), offers no hook before
 * the body is read, cannot hand a connection over for a WebSocket upgrade,
 * and needs two workarounds to run over a TLS filter. This server keeps the
 * request parsing pure (http_request.h) and the I/O here.
 *
 * One request at a time per connection; pipelined requests wait in the input
 * buffer and are answered in order. A body is framed by Content-Length or by
 * the chunked transfer coding (decoded as it arrives, http_chunked.h); either
 * way the handler gets the head and the whole body in one contiguous buffer,
 * which stays put until it answers. Reading stops while a request is being
 * handled, and while more than HTTP_OUTPUT_PAUSE_BYTES of answers are unsent,
 * so a client that pipelines without reading cannot grow them. Limits: head
 * size, body size (refused with 413 from the head alone for Content-Length,
 * as soon as a chunk would pass it for a chunked body), the bytes of bodies
 * held by all connections together (past it a body is refused with 503: from
 * the head alone for Content-Length, as its decoded bytes arrive for a
 * chunked body), chunked framing (a chunk-size line's length, trailers within
 * the head size), a deadline for a whole request to arrive, an idle
 * keep-alive deadline, a write-progress timeout, and a cap on open
 * connections (past it, new connections are closed at once). A framing the
 * server cannot trust (Content-Length with Transfer-Encoding, a coding other
 * than chunked) is refused and the connection closed.
 */
#ifndef EVS_HTTP_SERVER_H
#define EVS_HTTP_SERVER_H

#define HTTP_OUTPUT_PAUSE_BYTES (256 * 1024)

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "net/http_request.h"

struct event_base;
struct bufferevent;
struct http_server;
struct http_exchange;

struct http_server_limits {
    size_t max_head;             /* bytes of request line and headers; of trailers too */
    uint64_t max_body;           /* bytes (decoded, if chunked); larger get 413 BODY_TOO_LARGE */
    uint64_t max_bodies;         /* bytes of bodies held at once by every connection (0: no limit);
                                    a body that would pass it gets 503 SERVER_BUSY */
    unsigned request_timeout_ms; /* from a request's first byte to its last */
    unsigned idle_timeout_ms;    /* keep-alive wait for the next request */
    unsigned write_timeout_ms;   /* no progress sending an answer */
    size_t max_connections;      /* client connections of the process (conn_flush.h counts them) */
};

/* Called once per complete request. The exchange is borrowed until the
 * handler answers it with http_exchange_respond*, which may happen later
 * (after the handler returns), or until the cancel callback runs. */
typedef void (*http_handler_fn)(struct http_exchange *ex, void *arg);

/* Called once a request's head is in while its body has not fully arrived
 * yet, before "100 Continue" is sent. It may answer the exchange at once (for example
 * 403 without reading a body), which closes the connection afterwards since
 * the body was not read; or return without answering, and the body is read
 * and the handler called. The body is not available here. */
typedef void (*http_head_check_fn)(struct http_exchange *ex, void *arg);

/* Wraps an accepted socket into a bufferevent (plain or TLS) owning fd.
 * Returns NULL on failure, leaving fd open (the server then closes it). */
typedef struct bufferevent *(*http_bev_factory_fn)(struct event_base *base, int fd, void *arg);

struct http_server *http_server_new(struct event_base *base,
                                    const struct http_server_limits *limits,
                                    http_handler_fn handler, void *handler_arg);

/* Sets the head check (default: none); it gets the handler's arg. */
void http_server_set_head_check(struct http_server *server, http_head_check_fn check);

/* Sets how accepted sockets become bufferevents (default: a plain socket one). */
void http_server_set_bev_factory(struct http_server *server, http_bev_factory_fn factory,
                                 void *arg);

/* Accepts on the listening socket fd; takes ownership of fd. Returns 0 or -1. */
int http_server_add_listener(struct http_server *server, int fd);

/* Stops accepting and closes connections that are idle between requests;
 * requests in progress are still answered, then their connections close. */
void http_server_shutdown(struct http_server *server);

size_t http_server_connection_count(const struct http_server *server);

/* Bytes of request bodies held now (reserved against max_bodies). */
uint64_t http_server_body_bytes(const struct http_server *server);

/* Requests the server answered itself, and connections it refused. */
struct http_server_stats {
    uint64_t bad_request;                   /* 400 */
    uint64_t request_timeout;               /* 408 */
    uint64_t body_too_large;                /* 413 */
    uint64_t headers_too_large;             /* 431 */
    uint64_t unsupported_transfer_encoding; /* 501 */
    uint64_t server_busy;                   /* 503: a body over the bodies budget */
    uint64_t version_not_supported;         /* 505 */
    uint64_t refused_connections;           /* over the connection cap */
    uint64_t accepted_connections;
};
const struct http_server_stats *http_server_stats(const struct http_server *server);

/* Closes every connection (cancelling exchanges in progress) and frees. NULL: no-op. */
void http_server_free(struct http_server *server);

/* --- the exchange: one request and its answer -------------------------------- */

/* The parsed head and the body; borrowed until the exchange is answered. */
const struct http_request_head *http_exchange_head(const struct http_exchange *ex);
const char *http_exchange_body(const struct http_exchange *ex, size_t *len);
/* "127.0.0.1:5678": the peer, for log lines. */
const char *http_exchange_peer(const struct http_exchange *ex);
/* The peer's network (net_source_key), for per-source limits. */
uint64_t http_exchange_source(const struct http_exchange *ex);

/* Records, before the answer, whether the request's credential was
 * accepted. A connection that has had HTTP_FAILED_CREDENTIALS_MAX refused
 * in a row (none accepted in between) ends after this answer, which
 * carries "Connection: close": whoever tries credentials must pay for a
 * new connection every few attempts. */
#define HTTP_FAILED_CREDENTIALS_MAX 3
void http_exchange_note_credential(struct http_exchange *ex, bool accepted);

/* Answers with status, optional extra header lines ("Name: value\r\n"...,
 * or NULL), content type and body (copied). Ends the exchange. */
void http_exchange_respond_full(struct http_exchange *ex, int status, const char *extra_headers,
                                const char *content_type, const char *body, size_t len);
/* Answers {"code":"<code>"} as application/json. Ends the exchange. */
void http_exchange_respond_code(struct http_exchange *ex, int status, const char *code);

/* cancel(arg) runs if the connection ends before the exchange is answered;
 * the exchange is invalid afterwards. */
void http_exchange_set_cancel(struct http_exchange *ex, void (*cancel)(void *arg), void *arg);

/* Ends the exchange without an answer and hands the connection over (for a
 * WebSocket upgrade): returns its bufferevent, with the request consumed and
 * any bytes after it still in the input buffer; callbacks and timeouts are
 * cleared and the caller owns it. The head and body are invalid afterwards. */
struct bufferevent *http_exchange_take_connection(struct http_exchange *ex);

/* The reason phrase for status ("OK", "Not Found"...). */
const char *http_status_text(int status);

#endif
