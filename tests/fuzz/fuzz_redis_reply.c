/* Fuzz target: what the Redis engine reads from Redis. The bytes are RESP,
 * as a Redis server (or anything at its address) sends them, parsed by
 * hiredis's reader (with the engine's bounded object functions,
 * bus/redis_reply.h) into replies; each reply goes through the engine's
 * checks: redis_publisher_parse_reply (the publish script's {epoch, n})
 * and redis_reader_parse_entry on every element of every array down to
 * the depth an XREAD reply has.
 *
 * Invariants checked: an accepted entry's type and message lie inside the
 * reply's strings, its type is 1 to 255 bytes, its message within the
 * bound with the id's place inside it, its number from 1 and its run not
 * 0; an accepted publish reply has a run that is not 0 and a number from 1.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "bus/redis_reply.h"
#include "redis_publisher.h"
#include "redis_reader.h"

#define FUZZ_MAX_MESSAGE 4096

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_entry(const redisReply *entry)
{
    struct redis_reader_event ev;
    const char *id;
    size_t id_len;
    int rc = redis_reader_parse_entry(entry, FUZZ_MAX_MESSAGE, &ev, &id, &id_len);
    if (rc < 0)
        return;
    if (id != entry->element[0]->str || id_len != entry->element[0]->len)
        abort();
    if (rc == 0)
        return;
    if (ev.type != entry->element[1]->element[3]->str ||
        ev.type_len != entry->element[1]->element[3]->len ||
        ev.message != entry->element[1]->element[5]->str ||
        ev.message_len != entry->element[1]->element[5]->len)
        abort();
    if (ev.type_len < 1 || ev.type_len > 255 || ev.message_len > FUZZ_MAX_MESSAGE ||
        ev.id_offset == 0 || ev.id_offset > ev.message_len || ev.number < 1 || ev.run == 0)
        abort();
}

static void check(const redisReply *r, int depth)
{
    uint64_t run, number;
    if (redis_publisher_parse_reply(r, &run, &number) == 0 && (run == 0 || number < 1))
        abort();
    check_entry(r);
    if (r->type == REDIS_REPLY_ARRAY && depth < 4) {
        for (size_t i = 0; i < r->elements; i++)
            check(r->element[i], depth + 1);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    redisReader *reader = redisReaderCreate();
    void *reply;
    if (!reader)
        return 0;
    reader->fn = &redis_reply_bounded; /* as redis_conn.c reads them */
    if (redisReaderFeed(reader, (const char *)data, size) == REDIS_OK) {
        while (redisReaderGetReply(reader, &reply) == REDIS_OK && reply) {
            check(reply, 0);
            freeReplyObject(reply);
        }
    }
    redisReaderFree(reader);
    return 0;
}
