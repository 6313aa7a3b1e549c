/* Replies from Redis as the Redis engine takes them: untrusted. hiredis
 * 0.14's reader allocates an array's element table as soon as the header
 * announcing it has arrived ("*2000000000\r\n" asks for 16 GB) and has no
 * limit of its own; the object functions here build the same redisReply
 * trees (freeReplyObject frees them) but refuse an array of more than
 * REDIS_REPLY_ELEMENTS_MAX elements, a string over REDIS_REPLY_STRING_MAX
 * bytes and nesting deeper than REDIS_REPLY_DEPTH_MAX, which makes the
 * reader fail and the connection drop. Set them on every reader:
 * reader->fn = &redis_reply_bounded. With reader->privdata pointing at a
 * bool, they set it to true when they refuse a reply for a limit, which
 * tells such a failure from running out of memory (hiredis reports both
 * as "Out of memory"). */
#ifndef EVS_REDIS_REPLY_H
#define EVS_REDIS_REPLY_H

#include <stdbool.h>

#include <hiredis/hiredis.h>

#define REDIS_REPLY_ELEMENTS_MAX (1 << 20)
#define REDIS_REPLY_STRING_MAX (65u * 1024 * 1024) /* a 64 MiB event and its fields */
#define REDIS_REPLY_DEPTH_MAX 6                    /* XREAD's replies are 4 deep */

extern redisReplyObjectFunctions redis_reply_bounded;

/* Whether the bulk string reader is in the middle of announced more than
 * REDIS_REPLY_STRING_MAX bytes: the reply is refused once they are all
 * there, and they need not all come for that (hiredis 0.14 keeps a bulk
 * string's "<length>\r\n" at reader->pos until it is whole). Pure. */
bool redis_reply_announced_over_limit(const redisReader *reader);

/* Checks on an untrusted reply. */
bool redis_reply_is_status(const redisReply *r, const char *text); /* +text */
bool redis_reply_is_error(const redisReply *r);

#endif
