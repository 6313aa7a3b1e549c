#include "redis_conn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/async.h>

#include "core/clock.h"
#include "core/error_message.h"
#include "core/log.h"

#define OVERSIZED_REASON "a reply over the size limit"

/* A command sent and not yet answered. Redis answers in order, so these
 * form a FIFO and the head has the earliest deadline that matters. */
struct pending {
    struct redis_conn *conn;
    redis_conn_done_fn done;
    void *arg;
    uint64_t deadline_ms;
    struct pending *next;
};

enum conn_state {
    CONN_WAITING,    /* no context: the retry timer runs */
    CONN_CONNECTING, /* a context, not connected yet */
    CONN_HANDSHAKE,  /* connected: AUTH and SELECT on their way */
    CONN_READY,
};

struct redis_conn {
    struct event_base *base;
    struct redis_conn_config config;
    char password[REDIS_CONN_PASSWORD_MAX + 1];
    const struct redis_conn_events *events;
    void *arg;
    redisAsyncContext *ac;
    enum conn_state state;
    bool freeing; /* in redis_conn_free: no events, no retry */
    unsigned backoff_ms;
    unsigned handshake_left; /* replies the handshake still waits for */
    struct event *retry_timer;
    struct event *deadline_timer; /* the connect deadline, then the head command's */
    struct pending *head, *tail;
    size_t pending_count;
    struct redis_conn_stats stats;
    char last_error[160];
    bool reply_refused; /* the reader's privdata: a reply over a limit (bus/redis_reply.h) */
    bool oversized;     /* the current context is being dropped for such a reply */
    bool lost_to_oversized;
};

static void conn_start(struct redis_conn *c);
static void conn_drop(struct redis_conn *c, const char *reason);

/* --- the event loop's side of a hiredis context ---------------------------
 *
 * hiredis's own libevent adapter, with two changes. Commands are written
 * once per loop pass, straight to the socket (struct adapter). And hiredis
 * keeps a reply that is still arriving in its reader's buffer, as long as
 * the length it announced ("$100000000000"), so before each read the bytes
 * it holds are
 * held to REDIS_CONN_UNREAD_MAX: past it the connection drops. So it does
 * once a string's announced length is over the limit: the reply would be
 * refused when whole, and reading it all first may take longer than the
 * command's timeout (which would hide why it failed). */

/* Commands are written from the loop, once per pass, straight to the
 * socket (flush): write interest is armed only while the kernel refuses
 * bytes, or while connecting, not around every command. */
struct adapter {
    redisAsyncContext *ac;
    struct event *read, *write, *flush;
    bool flushing; /* in flush_cb: hiredis asks again only when bytes are left */
    bool gone;     /* cleaned up during flush_cb: flush_cb frees it */
};

static void adapter_free(struct adapter *a)
{
    event_free(a->read);
    event_free(a->write);
    event_free(a->flush);
    free(a);
}

static void adapter_read_cb(evutil_socket_t fd, short what, void *arg)
{
    struct adapter *a = arg;
    const redisReader *reader = a->ac->c.reader;
    if (reader && (reader->len - reader->pos > REDIS_CONN_UNREAD_MAX ||
                   redis_reply_announced_over_limit(reader))) {
        struct redis_conn *c = a->ac->data;
        if (c) {
            c->oversized = true;
            conn_drop(c, OVERSIZED_REASON);
            return;
        }
    }
    redisAsyncHandleRead(a->ac);
}

static void adapter_write_cb(evutil_socket_t fd, short what, void *arg)
{
    redisAsyncHandleWrite(((struct adapter *)arg)->ac);
}

static void adapter_flush_cb(evutil_socket_t fd, short what, void *arg)
{
    struct adapter *a = arg;
    a->flushing = true;
    redisAsyncHandleWrite(a->ac); /* may end the context, and clean a up */
    if (a->gone) {
        adapter_free(a);
        return;
    }
    a->flushing = false;
}

static void adapter_add_read(void *arg)
{
    event_add(((struct adapter *)arg)->read, NULL);
}

static void adapter_del_read(void *arg)
{
    event_del(((struct adapter *)arg)->read);
}

static void adapter_add_write(void *arg)
{
    struct adapter *a = arg;
    if (a->flushing || !(a->ac->c.flags & REDIS_CONNECTED))
        event_add(a->write, NULL); /* bytes left, or the connect to finish */
    else if (!event_pending(a->write, EV_WRITE, NULL))
        event_active(a->flush, EV_TIMEOUT, 0);
}

static void adapter_del_write(void *arg)
{
    event_del(((struct adapter *)arg)->write);
}

static void adapter_cleanup(void *arg)
{
    struct adapter *a = arg;
    if (a->flushing) {
        a->gone = true; /* freed on the way out of flush_cb */
        event_del(a->read);
        event_del(a->write);
        return;
    }
    adapter_free(a);
}

static int adapter_attach(redisAsyncContext *ac, struct event_base *base)
{
    struct adapter *a = calloc(1, sizeof *a);
    if (!a)
        return -1;
    a->ac = ac;
    a->read = event_new(base, ac->c.fd, EV_READ | EV_PERSIST, adapter_read_cb, a);
    a->write = event_new(base, ac->c.fd, EV_WRITE | EV_PERSIST, adapter_write_cb, a);
    a->flush = event_new(base, -1, 0, adapter_flush_cb, a);
    if (!a->read || !a->write || !a->flush) {
        if (a->read)
            event_free(a->read);
        if (a->write)
            event_free(a->write);
        if (a->flush)
            event_free(a->flush);
        free(a);
        return -1;
    }
    ac->ev.addRead = adapter_add_read;
    ac->ev.delRead = adapter_del_read;
    ac->ev.addWrite = adapter_add_write;
    ac->ev.delWrite = adapter_del_write;
    ac->ev.cleanup = adapter_cleanup;
    ac->ev.data = a;
    return 0;
}

static void arm_deadline(struct redis_conn *c)
{
    if (c->state == CONN_READY) {
        if (c->head)
            clock_arm_at(c->deadline_timer, c->head->deadline_ms);
        else
            event_del(c->deadline_timer);
    }
}

/* The context is gone (hiredis frees it after this): every pending command
 * has had its NULL reply; schedule the next attempt. */
static void conn_gone(struct redis_conn *c, const char *reason)
{
    bool was_ready = c->state == CONN_READY;
    c->ac = NULL;
    c->state = CONN_WAITING;
    event_del(c->deadline_timer);
    if (c->freeing)
        return;
    c->lost_to_oversized = c->oversized;
    c->stats.oversized += c->oversized;
    if (reason[0])
        error_message_format(c->last_error, sizeof c->last_error, "%s", reason);
    c->stats.failures++;
    if (was_ready)
        c->backoff_ms = REDIS_CONN_BACKOFF_MIN_MS;
    clock_arm_at(c->retry_timer, clock_now_ms() + c->backoff_ms);
    if (c->backoff_ms < REDIS_CONN_BACKOFF_MAX_MS)
        c->backoff_ms = c->backoff_ms * 2 > REDIS_CONN_BACKOFF_MAX_MS ? REDIS_CONN_BACKOFF_MAX_MS
                                                                      : c->backoff_ms * 2;
    if (c->events->lost)
        c->events->lost(c->arg, c->last_error);
}

/* Ends the connection now, from anywhere (a hiredis callback included:
 * hiredis then frees the context once the callback returns). */
static void conn_drop(struct redis_conn *c, const char *reason)
{
    redisAsyncContext *ac = c->ac;
    char why[160];
    if (!ac)
        return;
    snprintf(why, sizeof why, "%s", reason);
    error_message_format(c->last_error, sizeof c->last_error, "%s", why);
    if (ac->c.flags & REDIS_CONNECTED) {
        redisAsyncFree(ac); /* pending callbacks get NULL; disconnect_cb follows */
        return;
    }
    /* Not connected yet: hiredis calls no disconnect callback. */
    ac->data = NULL;
    redisAsyncFree(ac);
    conn_gone(c, why);
}

static void disconnect_cb(const redisAsyncContext *ac, int status)
{
    struct redis_conn *c = ac->data;
    char reason[160];
    if (!c)
        return;
    if (c->reply_refused) {
        /* The reader failed in the bounded object functions: hiredis says
         * "Out of memory", the reason is the limit. */
        c->oversized = true;
        snprintf(reason, sizeof reason, "%s", OVERSIZED_REASON);
    } else if (ac->err)
        snprintf(reason, sizeof reason, "connection lost: %s", ac->errstr);
    else
        snprintf(reason, sizeof reason, "%s", c->last_error[0] ? c->last_error : "closed");
    conn_gone(c, reason);
}

static void connect_cb(const redisAsyncContext *ac, int status)
{
    struct redis_conn *c = ac->data;
    char reason[160];
    if (!c)
        return;
    if (status != REDIS_OK) {
        /* hiredis frees the context after this; no disconnect callback. */
        snprintf(reason, sizeof reason, "connect: %s", ac->errstr);
        conn_gone(c, reason);
        return;
    }
    c->state = CONN_HANDSHAKE;
}

static void pending_pop(struct redis_conn *c, struct pending *p)
{
    /* Replies come in order: p is the head. */
    c->head = p->next;
    if (!c->head)
        c->tail = NULL;
    c->pending_count--;
}

static void reply_cb(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct pending *p = privdata;
    struct redis_conn *c = p->conn;
    const redisReply *r = reply;
    pending_pop(c, p);
    if (r) {
        c->stats.round_trips++;
        if (r->type == REDIS_REPLY_ERROR)
            c->stats.errors++;
    }
    p->done(p->arg, r);
    free(p);
    arm_deadline(c);
}

/* The handshake's replies: AUTH, SELECT, then PING, which tells that the
 * server serves commands (it also answers a server still loading its data
 * with -LOADING, which is not ready). */
static void handshake_cb(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct redis_conn *c = ac->data;
    const redisReply *r = reply;
    const char *step = privdata;
    char reason[200];
    if (!c || !r)
        return; /* the connection is going: disconnect_cb says why */
    c->stats.round_trips++;
    if (strcmp(step, "PING") == 0 ? !redis_reply_is_status(r, "PONG")
                                  : !redis_reply_is_status(r, "OK")) {
        if (r->type == REDIS_REPLY_ERROR || r->type == REDIS_REPLY_STATUS)
            snprintf(reason, sizeof reason, "%s refused: %.120s", step, r->str ? r->str : "");
        else
            snprintf(reason, sizeof reason, "%s: an unexpected reply (type %d)", step, r->type);
        c->stats.errors += r->type == REDIS_REPLY_ERROR;
        conn_drop(c, reason);
        return;
    }
    if (--c->handshake_left > 0)
        return;
    c->state = CONN_READY;
    c->stats.connects++;
    c->last_error[0] = '\0';
    event_del(c->deadline_timer);
    if (c->events->ready)
        c->events->ready(c->arg);
}

static void deadline_cb(evutil_socket_t fd, short what, void *arg)
{
    struct redis_conn *c = arg;
    char reason[96];
    if (c->state == CONN_READY) {
        if (!c->head || c->head->deadline_ms > clock_now_ms()) {
            arm_deadline(c);
            return;
        }
        snprintf(reason, sizeof reason, "no reply within its timeout");
    } else {
        snprintf(reason, sizeof reason, "not ready within %u ms", c->config.connect_timeout_ms);
    }
    c->stats.timeouts++;
    conn_drop(c, reason);
}

static void retry_cb(evutil_socket_t fd, short what, void *arg)
{
    conn_start(arg);
}

static void conn_start(struct redis_conn *c)
{
    const struct redis_url *u = &c->config.url;
    redisAsyncContext *ac = u->kind == REDIS_URL_UNIX ? redisAsyncConnectUnix(u->path)
                                                      : redisAsyncConnect(u->host, (int)u->port);
    char db[16];
    const char *argv[3];
    size_t lens[3];
    int argc;

    c->last_error[0] = '\0';
    c->reply_refused = c->oversized = false;
    if (!ac || ac->err) {
        char reason[160];
        snprintf(reason, sizeof reason, "connect: %s", ac ? ac->errstr : "out of memory");
        if (ac)
            redisAsyncFree(ac);
        conn_gone(c, reason);
        return;
    }
    ac->data = c;
    ac->c.reader->fn = &redis_reply_bounded;    /* before any byte of a reply */
    ac->c.reader->privdata = &c->reply_refused; /* see bus/redis_reply.h */
    if (adapter_attach(ac, c->base) < 0) {
        redisAsyncFree(ac);
        conn_gone(c, "connect: attaching to the event loop failed");
        return;
    }
    redisAsyncSetConnectCallback(ac, connect_cb);
    redisAsyncSetDisconnectCallback(ac, disconnect_cb);
    c->ac = ac;
    c->state = CONN_CONNECTING;
    c->handshake_left = 0;
    clock_arm_at(c->deadline_timer, clock_now_ms() + c->config.connect_timeout_ms);
    /* Queued now, written once connected: hiredis keeps the order. */
    if (c->password[0]) {
        argc = 0;
        argv[argc] = "AUTH", lens[argc++] = 4;
        if (u->user[0])
            argv[argc] = u->user, lens[argc++] = strlen(u->user);
        argv[argc] = c->password, lens[argc++] = strlen(c->password);
        if (redisAsyncCommandArgv(ac, handshake_cb, (void *)"AUTH", argc, argv, lens) == REDIS_OK)
            c->handshake_left++;
    }
    if (u->db) {
        snprintf(db, sizeof db, "%u", u->db);
        argv[0] = "SELECT", lens[0] = 6;
        argv[1] = db, lens[1] = strlen(db);
        if (redisAsyncCommandArgv(ac, handshake_cb, (void *)"SELECT", 2, argv, lens) == REDIS_OK)
            c->handshake_left++;
    }
    argv[0] = "PING", lens[0] = 4;
    if (redisAsyncCommandArgv(ac, handshake_cb, (void *)"PING", 1, argv, lens) == REDIS_OK)
        c->handshake_left++;
}

struct redis_conn *redis_conn_new(struct event_base *base, const struct redis_conn_config *config,
                                  const struct redis_conn_events *events, void *arg)
{
    struct redis_conn *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->base = base;
    c->config = *config;
    c->config.password = NULL;
    if (config->password)
        snprintf(c->password, sizeof c->password, "%s", config->password);
    c->events = events;
    c->arg = arg;
    c->backoff_ms = REDIS_CONN_BACKOFF_MIN_MS;
    c->retry_timer = evtimer_new(base, retry_cb, c);
    c->deadline_timer = evtimer_new(base, deadline_cb, c);
    if (!c->retry_timer || !c->deadline_timer)
        goto fail;
    /* The first attempt from the loop, so that no event comes from inside
     * redis_conn_new. */
    event_active(c->retry_timer, EV_TIMEOUT, 0);
    return c;
fail:
    if (c->retry_timer)
        event_free(c->retry_timer);
    if (c->deadline_timer)
        event_free(c->deadline_timer);
    free(c);
    return NULL;
}

void redis_conn_free(struct redis_conn *c)
{
    if (!c)
        return;
    c->freeing = true;
    if (c->ac)
        redisAsyncFree(c->ac);
    event_free(c->retry_timer);
    event_free(c->deadline_timer);
    memset(c->password, 0, sizeof c->password);
    free(c);
}

bool redis_conn_ready(const struct redis_conn *c)
{
    return c->state == CONN_READY;
}

int redis_conn_command(struct redis_conn *c, int argc, const char **argv, const size_t *argvlen,
                       unsigned timeout_ms, redis_conn_done_fn done, void *arg)
{
    struct pending *p;
    if (c->state != CONN_READY || !(p = malloc(sizeof *p)))
        return -1;
    p->conn = c;
    p->done = done;
    p->arg = arg;
    p->deadline_ms = clock_now_ms() + (timeout_ms ? timeout_ms : c->config.reply_timeout_ms);
    p->next = NULL;
    if (redisAsyncCommandArgv(c->ac, reply_cb, p, argc, argv, argvlen) != REDIS_OK) {
        free(p);
        return -1;
    }
    if (c->tail)
        c->tail->next = p;
    else
        c->head = p;
    c->tail = p;
    c->pending_count++;
    if (c->head == p)
        arm_deadline(c);
    return 0;
}

size_t redis_conn_pending(const struct redis_conn *c)
{
    return c->pending_count;
}

void redis_conn_get_stats(const struct redis_conn *c, struct redis_conn_stats *out)
{
    *out = c->stats;
}

const char *redis_conn_last_error(const struct redis_conn *c)
{
    return c->last_error;
}

bool redis_conn_lost_to_oversized(const struct redis_conn *c)
{
    return c->lost_to_oversized;
}
