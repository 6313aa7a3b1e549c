/* The broadcast daemon's side of the Redis engine: reads the Redis stream
 * that listen daemons append to (listen/redis_publisher.h) on a connection
 * of its own, and hands each event on in the stream's order.
 *
 * At its first ready connection it starts at the stream's end (the last
 * entry's id, read with XREVRANGE, so that nothing appended between that
 * read and the first XREAD is missed). With load_history, it first reads
 * what the stream holds up to that end (XRANGE, count entries at a time),
 * as events marked history_only: what a new daemon's history needs for
 * resumes from before its start. Then it calls on_loaded, once (at once
 * without load_history), and reads with XREAD BLOCK from that end, then
 * from the last id it read, across lost connections: events appended
 * while it was cut off arrive when it is back, in order, once. At every
 * connection and whenever a BLOCK runs out it looks at the stream's last
 * entry: one before the last it read, or of another epoch, means the stream
 * was reset (deleted, flushed, a Redis restarted without its data), and it
 * reads it from its start.
 *
 * Entries are Redis's and anyone may XADD to the stream: an entry is taken
 * only when its id is "<n>-1" with n from 1, and its fields are exactly
 * e (the epoch: 16 lower-case hex digits, not 0), t (1 to 255 bytes) and
 * m (the subscriber message, {"type":"event","event":"<t>"...}, at most
 * max_message bytes); any other is skipped, counted and logged (once per
 * REDIS_READER_LOG_EVERY), never delivered. Single-threaded.
 */
#ifndef EVS_REDIS_READER_H
#define EVS_REDIS_READER_H

#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>

#include "bus/redis_conn.h"

#define REDIS_READER_LOG_EVERY 1000
#define REDIS_READER_COUNT_MAX 10000
#define REDIS_READER_LAG_EVERY_MS 1000

struct redis_reader_config {
    struct redis_conn_config conn; /* its own connection; the reply timeout is
                                      block_ms plus this */
    const char *stream;            /* copied */
    unsigned block_ms;             /* XREAD BLOCK; 1 to 60,000 */
    unsigned count;                /* XREAD COUNT: entries per read, 1 to _COUNT_MAX */
    size_t max_message;
    bool load_history;            /* read the stream up to its end first (see above) */
    void (*on_loaded)(void *arg); /* may be NULL */
};

/* One event from the stream; borrowed for the call. */
struct redis_reader_event {
    uint64_t run, number; /* its id: the stream's epoch and n */
    const char *type;
    size_t type_len;
    const char *message;
    size_t message_len;
    size_t id_offset;  /* event_message_id_offset of message */
    bool history_only; /* from the stream's past, read at the start: keep, do not fan out */
};

typedef void (*redis_reader_event_fn)(void *arg, const struct redis_reader_event *event);

struct redis_reader_stats {
    uint64_t reads;   /* XREAD replies */
    uint64_t entries; /* delivered, loaded ones too */
    uint64_t loaded;  /* of those, read at the start as history (history_only) */
    uint64_t skipped; /* entries that were not ours */
    uint64_t errors;  /* error replies and replies of another shape */
    uint64_t resets;  /* times the stream was found reset and read from its start */
    uint64_t lag;     /* events appended and not read yet, as last seen (at most a second old) */
    struct redis_conn_stats conn;
};

struct redis_reader;

/* Reads one stream entry, [id, [field, value, ...]], of an XREAD or XRANGE
 * reply. Returns 1 with *ev (pointing into entry) when it is an event of
 * ours, 0 when it is an entry that is not (skipped), -1 when it is not an
 * entry at all; *id and *id_len (into entry) are set unless -1. Pure. */
int redis_reader_parse_entry(const redisReply *entry, size_t max_message,
                             struct redis_reader_event *ev, const char **id, size_t *id_len);

/* NULL with the reason in err for a bad stream name, block_ms or count, or
 * when out of memory. */
struct redis_reader *redis_reader_new(struct event_base *base,
                                      const struct redis_reader_config *config,
                                      redis_reader_event_fn on_event, void *arg, char *err,
                                      size_t err_len);
void redis_reader_free(struct redis_reader *r);

/* Whether it has its starting point and a ready connection (it may be
 * loading the history still). */
bool redis_reader_reading(const struct redis_reader *r);

/* The id of the last entry read ("0-0" before the stream had one). */
const char *redis_reader_last_id(const struct redis_reader *r);

void redis_reader_get_stats(const struct redis_reader *r, struct redis_reader_stats *out);

#endif
