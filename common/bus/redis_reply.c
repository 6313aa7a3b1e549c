#include "redis_reply.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* How deep task is: 0 for a reply's top level. */
static int depth_of(const redisReadTask *task)
{
    int depth = 0;
    for (const redisReadTask *t = task->parent; t; t = t->parent)
        depth++;
    return depth;
}

/* Links r into its parent array, if any; r goes with it on free. */
static void *attach(const redisReadTask *task, redisReply *r)
{
    if (task->parent) {
        redisReply *parent = task->parent->obj;
        parent->element[task->idx] = r;
    }
    return r;
}

/* A reply over a limit: said to the reader's owner (privdata), refused. */
static void *refuse(const redisReadTask *task)
{
    if (task->privdata)
        *(bool *)task->privdata = true;
    return NULL;
}

static redisReply *new_reply(const redisReadTask *task)
{
    redisReply *r;
    if (depth_of(task) > REDIS_REPLY_DEPTH_MAX)
        return refuse(task);
    if (!(r = calloc(1, sizeof *r)))
        return NULL;
    r->type = task->type;
    return r;
}

static void *create_string(const redisReadTask *task, char *str, size_t len)
{
    redisReply *r;
    if (len > REDIS_REPLY_STRING_MAX)
        return refuse(task);
    if (!(r = new_reply(task)))
        return NULL;
    if (!(r->str = malloc(len + 1))) {
        free(r);
        return NULL;
    }
    memcpy(r->str, str, len);
    r->str[len] = '\0';
    r->len = len;
    return attach(task, r);
}

static void *create_array(const redisReadTask *task, int elements)
{
    redisReply *r;
    if (elements < 0 || elements > REDIS_REPLY_ELEMENTS_MAX)
        return refuse(task);
    if (!(r = new_reply(task)))
        return NULL;
    if (elements > 0 && !(r->element = calloc((size_t)elements, sizeof *r->element))) {
        free(r);
        return NULL;
    }
    r->elements = (size_t)elements;
    return attach(task, r);
}

static void *create_integer(const redisReadTask *task, long long value)
{
    redisReply *r = new_reply(task);
    if (!r)
        return NULL;
    r->integer = value;
    return attach(task, r);
}

/* A nil bulk string or array ("$-1", "*-1"): task->type is the string's
 * or the array's, the reply is neither. */
static void *create_nil(const redisReadTask *task)
{
    redisReply *r = new_reply(task);
    if (!r)
        return NULL;
    r->type = REDIS_REPLY_NIL;
    return attach(task, r);
}

redisReplyObjectFunctions redis_reply_bounded = {create_string, create_array, create_integer,
                                                 create_nil, freeReplyObject};

bool redis_reply_announced_over_limit(const redisReader *reader)
{
    const char *p;
    size_t n;
    uint64_t len = 0;
    if (!reader || !reader->buf || reader->ridx < 0 ||
        (size_t)reader->ridx >= sizeof reader->rstack / sizeof reader->rstack[0] ||
        reader->rstack[reader->ridx].type != REDIS_REPLY_STRING || reader->pos > reader->len)
        return false;
    p = reader->buf + reader->pos;
    n = reader->len - reader->pos;
    for (size_t i = 0; i < n && p[i] >= '0' && p[i] <= '9'; i++) {
        len = len * 10 + (uint64_t)(p[i] - '0');
        if (len > REDIS_REPLY_STRING_MAX)
            return true; /* more digits only make it larger */
    }
    return false;
}

bool redis_reply_is_status(const redisReply *r, const char *text)
{
    return r && r->type == REDIS_REPLY_STATUS && r->str && r->len == strlen(text) &&
           memcmp(r->str, text, r->len) == 0;
}

bool redis_reply_is_error(const redisReply *r)
{
    return r && r->type == REDIS_REPLY_ERROR;
}
