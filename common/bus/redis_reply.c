#include "redis_reply.h"

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

static redisReply *new_reply(const redisReadTask *task)
{
    redisReply *r;
    if (depth_of(task) > REDIS_REPLY_DEPTH_MAX || !(r = calloc(1, sizeof *r)))
        return NULL;
    r->type = task->type;
    return r;
}

static void *create_string(const redisReadTask *task, char *str, size_t len)
{
    redisReply *r;
    if (len > REDIS_REPLY_STRING_MAX || !(r = new_reply(task)))
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
    if (elements < 0 || elements > REDIS_REPLY_ELEMENTS_MAX || !(r = new_reply(task)))
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

/* A nil whatever announced it: hiredis reads "*-1" (what XREAD BLOCK answers
 * when it ran out with nothing new) and "$-1" as tasks of the array and
 * string types, and its own createNil makes REDIS_REPLY_NIL of both. */
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

bool redis_reply_is_status(const redisReply *r, const char *text)
{
    return r && r->type == REDIS_REPLY_STATUS && r->str && r->len == strlen(text) &&
           memcmp(r->str, text, r->len) == 0;
}

bool redis_reply_is_error(const redisReply *r)
{
    return r && r->type == REDIS_REPLY_ERROR;
}
