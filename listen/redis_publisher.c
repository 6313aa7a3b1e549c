#include "redis_publisher.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/sha1.h>

#include "bus/event_id.h"
#include "core/error_message.h"

/* See redis_publisher.h. KEYS: stream, meta. ARGV: 3 random hex digits,
 * max_len, type, message. A new epoch is Redis's clock (seconds, then
 * microseconds, in hex) and the 3 digits: 16 hex digits, never 0, and new
 * each time the meta key is made again. When the stream is ahead of seq
 * (its last id, even deleted, is at or after <n>-1: an entry added by
 * another hand, or a meta key deleted alone), n moves past it (XINFO
 * STREAM's last-generated-id), below 2^53 where Lua's numbers are exact;
 * any other refusal is the script's error. */
static const char SCRIPT[] =
    "if redis.call('HEXISTS', KEYS[2], 'epoch') == 0 then "
    "local t = redis.call('TIME') "
    "redis.call('HSET', KEYS[2], 'epoch', string.format('%08x%05x%s', tonumber(t[1]), "
    "tonumber(t[2]), ARGV[1])) "
    "end "
    "local e = redis.call('HGET', KEYS[2], 'epoch') "
    "local n = redis.call('HINCRBY', KEYS[2], 'seq', 1) "
    "local function add() "
    "return redis.pcall('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], string.format('%d-1', n), "
    "'e', e, 't', ARGV[3], 'm', ARGV[4]) "
    "end "
    "local r = add() "
    "if type(r) == 'table' and r.err then "
    "local info = redis.call('XINFO', 'STREAM', KEYS[1]) "
    "local ms "
    "for i = 1, #info - 1, 2 do "
    "if info[i] == 'last-generated-id' then ms = tonumber(string.match(info[i + 1], '^(%d+)-')) "
    "end "
    "end "
    "if not ms or ms < n or ms >= 9007199254740991 then return r end "
    "n = ms + 1 "
    "redis.call('HSET', KEYS[2], 'seq', string.format('%d', n)) "
    "r = add() "
    "if type(r) == 'table' and r.err then return r end "
    "end "
    "return {e, n}";

struct redis_publisher {
    struct redis_conn *conn;
    char sha[41];     /* the script's SHA1, in hex: EVALSHA's name for it */
    size_t in_flight; /* publishes not answered yet; they hold the publisher */
    bool freed;       /* redis_publisher_free was called: gone with the last of them */
    char stream[REDIS_STREAM_MAX + 1];
    char meta[REDIS_STREAM_META_MAX + 1];
    char salt[4]; /* 3 random hex digits, the end of a new epoch */
    char max_len[24];
    unsigned wait_replicas;
    char wait_replicas_text[12], wait_timeout_text[12];
    struct event *wait_event; /* sends the WAIT for the publishes on unwaited */
    struct publish *unwaited; /* sent, and no WAIT after them yet, in order */
    struct publish **unwaited_end;
};

/* One publish waiting for its replies: the script's, and the WAIT's after
 * it when replicas are waited for. */
struct publish {
    struct redis_publisher *p;
    const char *type, *message; /* the caller's, until done */
    size_t type_len, message_len;
    bool by_sha; /* sent with EVALSHA */
    redis_publish_done_fn done;
    void *arg;
    int answers; /* replies still to come */
    enum redis_publish_status status, wait_status;
    uint64_t run, number;
    struct publish *next; /* on unwaited, then in its WAIT's batch */
};

/* The publishes one WAIT answers for. */
struct wait_batch {
    struct publish *first;
    unsigned replicas;
};

static void answered(struct publish *pub)
{
    enum redis_publish_status status = pub->status;
    if (--pub->answers > 0)
        return;
    if (status == REDIS_PUBLISH_OK && pub->wait_status != REDIS_PUBLISH_OK)
        status = pub->wait_status;
    if (status == REDIS_PUBLISH_OK)
        pub->done(pub->arg, status, pub->run, pub->number);
    else
        pub->done(pub->arg, status, 0, 0);
    if (--pub->p->in_flight == 0 && pub->p->freed)
        free(pub->p);
    free(pub);
}

/* Ends the wait of each publish from first on with status. */
static void wait_answered(struct publish *first, enum redis_publish_status status)
{
    while (first) {
        struct publish *next = first->next;
        first->wait_status = status;
        answered(first);
        first = next;
    }
}

static void wait_done(void *arg, const redisReply *reply)
{
    struct wait_batch *batch = arg;
    enum redis_publish_status status = REDIS_PUBLISH_OK;
    if (!reply)
        status = REDIS_PUBLISH_UNAVAILABLE;
    else if (reply->type != REDIS_REPLY_INTEGER || reply->integer < (long long)batch->replicas)
        status = REDIS_PUBLISH_UNREPLICATED;
    wait_answered(batch->first, status);
    free(batch);
}

/* One WAIT for every publish sent since the last one: Redis answers it once
 * the replicas have all of them. */
static void wait_event_cb(evutil_socket_t fd, short what, void *arg)
{
    struct redis_publisher *p = arg;
    const char *argv[3] = {"WAIT", p->wait_replicas_text, p->wait_timeout_text};
    size_t lens[3] = {4, strlen(argv[1]), strlen(argv[2])};
    struct wait_batch *batch = malloc(sizeof *batch);
    struct publish *first = p->unwaited;
    p->unwaited = NULL;
    p->unwaited_end = &p->unwaited;
    if (!first) {
        free(batch);
        return;
    }
    if (batch) {
        batch->first = first;
        batch->replicas = p->wait_replicas;
        /* The reply timeout covers the wait, and the replies queued behind it. */
        if (redis_conn_command(p->conn, 3, argv, lens, 0, wait_done, batch) == 0)
            return;
        free(batch);
    }
    wait_answered(first, REDIS_PUBLISH_UNAVAILABLE);
}

struct redis_publisher *redis_publisher_new(struct redis_conn *conn,
                                            const struct redis_publisher_config *config, char *err,
                                            size_t err_len)
{
    struct redis_publisher *p;
    if (redis_stream_check(config->stream, err, err_len) < 0)
        return NULL;
    if (!(p = calloc(1, sizeof *p))) {
        error_message_format(err, err_len, "out of memory");
        return NULL;
    }
    p->conn = conn;
    p->wait_replicas = config->wait_replicas;
    p->unwaited_end = &p->unwaited;
    if (p->wait_replicas) {
        snprintf(p->wait_replicas_text, sizeof p->wait_replicas_text, "%u", config->wait_replicas);
        snprintf(p->wait_timeout_text, sizeof p->wait_timeout_text, "%u",
                 config->wait_timeout_ms ? config->wait_timeout_ms : 1);
        if (!config->base || !(p->wait_event = event_new(config->base, -1, 0, wait_event_cb, p))) {
            error_message_format(err, err_len, "out of memory");
            free(p);
            return NULL;
        }
    }
    {
        unsigned char digest[20];
        mbedtls_sha1_ret((const unsigned char *)SCRIPT, sizeof SCRIPT - 1, digest);
        for (int i = 0; i < 20; i++)
            snprintf(p->sha + 2 * i, 3, "%02x", digest[i]);
    }
    snprintf(p->stream, sizeof p->stream, "%s", config->stream);
    redis_stream_meta_key(p->stream, p->meta);
    snprintf(p->salt, sizeof p->salt, "%03x", (unsigned)(event_id_new_run() & 0xfff));
    snprintf(p->max_len, sizeof p->max_len, "%zu", config->max_len ? config->max_len : 1);
    return p;
}

void redis_publisher_free(struct redis_publisher *p)
{
    if (!p)
        return;
    wait_answered(p->unwaited, REDIS_PUBLISH_UNAVAILABLE); /* no WAIT will come */
    p->unwaited = NULL;
    if (p->wait_event)
        event_free(p->wait_event);
    p->wait_event = NULL;
    p->freed = true;
    if (p->in_flight == 0)
        free(p);
}

int redis_publisher_parse_reply(const redisReply *r, uint64_t *run, uint64_t *number)
{
    const redisReply *e, *n;
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2 || !r->element)
        return -1;
    e = r->element[0];
    n = r->element[1];
    if (!e || !n || e->type != REDIS_REPLY_STRING || !e->str || n->type != REDIS_REPLY_INTEGER)
        return -1;
    if (event_id_parse_run(e->str, e->len, run) < 0 || n->integer < 1)
        return -1;
    *number = (uint64_t)n->integer;
    return 0;
}

static int send_script(struct publish *pub, bool by_sha);

static bool is_noscript(const redisReply *reply)
{
    return reply->type == REDIS_REPLY_ERROR && reply->str && reply->len >= 8 &&
           memcmp(reply->str, "NOSCRIPT", 8) == 0;
}

static void publish_done(void *arg, const redisReply *reply)
{
    struct publish *pub = arg;
    /* A Redis that has not the script yet (new, restarted, SCRIPT FLUSH):
     * the text this once, which it keeps for the next EVALSHAs. */
    if (reply && pub->by_sha && is_noscript(reply) && !pub->p->freed &&
        send_script(pub, false) == 0)
        return;
    if (!reply)
        pub->status = REDIS_PUBLISH_UNAVAILABLE;
    else if (redis_publisher_parse_reply(reply, &pub->run, &pub->number) < 0)
        pub->status = REDIS_PUBLISH_REFUSED;
    else
        pub->status = REDIS_PUBLISH_OK;
    answered(pub);
}

/* EVALSHA, or EVAL with the script's text. Returns redis_conn_command's. */
static int send_script(struct publish *pub, bool by_sha)
{
    struct redis_publisher *p = pub->p;
    const char *argv[9] = {by_sha ? "EVALSHA" : "EVAL",
                           by_sha ? p->sha : SCRIPT,
                           "2",
                           p->stream,
                           p->meta,
                           p->salt,
                           p->max_len,
                           pub->type,
                           pub->message};
    size_t lens[9] = {by_sha ? 7 : 4,
                      by_sha ? 40 : sizeof SCRIPT - 1,
                      1,
                      strlen(p->stream),
                      strlen(p->meta),
                      strlen(p->salt),
                      strlen(p->max_len),
                      pub->type_len,
                      pub->message_len};
    pub->by_sha = by_sha;
    return redis_conn_command(p->conn, 9, argv, lens, 0, publish_done, pub);
}

int redis_publisher_publish(struct redis_publisher *p, const char *type, size_t type_len,
                            const char *message, size_t message_len, redis_publish_done_fn done,
                            void *arg)
{
    struct publish *pub = malloc(sizeof *pub);
    if (!pub)
        return -1;
    pub->p = p;
    pub->type = type;
    pub->type_len = type_len;
    pub->message = message;
    pub->message_len = message_len;
    pub->done = done;
    pub->arg = arg;
    pub->answers = p->wait_replicas ? 2 : 1;
    pub->wait_status = REDIS_PUBLISH_OK;
    pub->next = NULL;
    /* With a WAIT after it, the text each time: a second try after NOSCRIPT
     * would come after the WAIT meant to cover it. */
    if (send_script(pub, !p->wait_replicas) < 0) {
        free(pub);
        return -1;
    }
    p->in_flight++;
    if (p->wait_replicas) {
        *p->unwaited_end = pub;
        p->unwaited_end = &pub->next;
        event_active(p->wait_event, EV_TIMEOUT, 0);
    }
    return 0;
}
