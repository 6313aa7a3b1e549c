#include "redis_publisher.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    char stream[REDIS_STREAM_MAX + 1];
    char meta[REDIS_STREAM_MAX + sizeof ":meta"];
    char salt[4]; /* 3 random hex digits, the end of a new epoch */
    char max_len[24];
};

/* One publish waiting for its reply. */
struct publish {
    redis_publish_done_fn done;
    void *arg;
};

struct redis_publisher *redis_publisher_new(struct redis_conn *conn,
                                            const struct redis_publisher_config *config, char *err,
                                            size_t err_len)
{
    size_t len = config->stream ? strnlen(config->stream, REDIS_STREAM_MAX + 1) : 0;
    struct redis_publisher *p;
    if (len == 0 || len > REDIS_STREAM_MAX) {
        error_message_format(err, err_len, "REDIS_STREAM must be 1 to %d bytes", REDIS_STREAM_MAX);
        return NULL;
    }
    for (size_t i = 0; i < len; i++) {
        if ((unsigned char)config->stream[i] <= 0x20 || config->stream[i] == 0x7f) {
            error_message_format(err, err_len, "REDIS_STREAM holds a space or a control character");
            return NULL;
        }
    }
    if (!(p = calloc(1, sizeof *p))) {
        error_message_format(err, err_len, "out of memory");
        return NULL;
    }
    p->conn = conn;
    memcpy(p->stream, config->stream, len);
    snprintf(p->meta, sizeof p->meta, "%s:meta", p->stream);
    snprintf(p->salt, sizeof p->salt, "%03x", (unsigned)(event_id_new_run() & 0xfff));
    snprintf(p->max_len, sizeof p->max_len, "%zu", config->max_len ? config->max_len : 1);
    return p;
}

void redis_publisher_free(struct redis_publisher *p)
{
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

static void publish_done(void *arg, const redisReply *reply)
{
    struct publish *pub = arg;
    uint64_t run = 0, number = 0;
    if (!reply)
        pub->done(pub->arg, REDIS_PUBLISH_UNAVAILABLE, 0, 0);
    else if (redis_publisher_parse_reply(reply, &run, &number) < 0)
        pub->done(pub->arg, REDIS_PUBLISH_REFUSED, 0, 0);
    else
        pub->done(pub->arg, REDIS_PUBLISH_OK, run, number);
    free(pub);
}

int redis_publisher_publish(struct redis_publisher *p, const char *type, size_t type_len,
                            const char *message, size_t message_len, redis_publish_done_fn done,
                            void *arg)
{
    const char *argv[9] = {"EVAL",  SCRIPT,     "2",  p->stream, p->meta,
                           p->salt, p->max_len, type, message};
    size_t lens[9] = {4,
                      sizeof SCRIPT - 1,
                      1,
                      strlen(p->stream),
                      strlen(p->meta),
                      strlen(p->salt),
                      strlen(p->max_len),
                      type_len,
                      message_len};
    struct publish *pub = malloc(sizeof *pub);
    if (!pub)
        return -1;
    pub->done = done;
    pub->arg = arg;
    if (redis_conn_command(p->conn, 9, argv, lens, 0, publish_done, pub) < 0) {
        free(pub);
        return -1;
    }
    return 0;
}
