/* The listen daemon's side of the Redis engine: appends each event to the
 * Redis stream, with its id given by Redis, on a redis_conn (bus/redis_conn.h).
 *
 * One Lua script per event, run atomically by Redis, keeps the ids of the
 * UNIX bus (bus/event_id.h: a run and a number that counts up by one):
 *
 *   unless <stream>:meta has an epoch:      a new one: Redis's TIME (seconds,
 *     HSET <stream>:meta epoch <new>        microseconds) and 3 random hex digits
 *   e = HGET <stream>:meta epoch            the stream's epoch
 *   n = HINCRBY <stream>:meta seq 1         numbers in the order Redis took them
 *   XADD <stream> MAXLEN ~ <max_len> <n>-1 e <e> t <type> m <message>
 *   return {e, n}
 *
 * so the stream entry id is "<n>-1" and the event id "<e>-<n>", whichever
 * listen daemon on whichever machine published it; a stream and meta key
 * that were deleted (FLUSHALL) start a new epoch, which no old id matches.
 * The reply is checked before use (an epoch of 16 hex digits, not 0, and a
 * number from 1): anything else is an error, never an id.
 *
 * With wait_replicas, one WAIT follows the scripts sent during one pass of
 * the event loop, and each of them succeeds only when Redis says that many
 * replicas have it within wait_timeout_ms (UNREPLICATED otherwise: the
 * event is in the stream, and may reach subscribers, but was not confirmed
 * as asked).
 *
 * The script goes by its SHA1 (EVALSHA), and by its text (EVAL) the once
 * a Redis answers NOSCRIPT (new, restarted, SCRIPT FLUSH), or every time
 * with wait_replicas (a second try would miss the WAIT meant to cover it).
 */
#ifndef EVS_REDIS_PUBLISHER_H
#define EVS_REDIS_PUBLISHER_H

#include <stddef.h>
#include <stdint.h>

#include "bus/redis_conn.h"
#include "bus/redis_stream.h"

enum redis_publish_status {
    REDIS_PUBLISH_OK,
    REDIS_PUBLISH_UNAVAILABLE,  /* no ready connection, or it was lost before the reply */
    REDIS_PUBLISH_REFUSED,      /* Redis answered with an error, or with what is not ours */
    REDIS_PUBLISH_UNREPLICATED, /* taken, but fewer replicas than wait_replicas confirmed it */
};

struct redis_publisher_config {
    const char *stream;       /* copied */
    size_t max_len;           /* MAXLEN ~ of XADD: the history size */
    unsigned wait_replicas;   /* WAIT for this many replicas after each pass's scripts; 0: none */
    unsigned wait_timeout_ms; /* WAIT's timeout, below the connection's reply timeout */
    struct event_base *base;  /* for the WAIT, only with wait_replicas */
};

struct redis_publisher;

/* status REDIS_PUBLISH_OK comes with the event's id (run, number). */
typedef void (*redis_publish_done_fn)(void *arg, enum redis_publish_status status, uint64_t run,
                                      uint64_t number);

/* conn is borrowed (it outlives the publisher). NULL with the reason in err
 * when the stream name is empty, too long or holds a control character, or
 * when out of memory. */
struct redis_publisher *redis_publisher_new(struct redis_conn *conn,
                                            const struct redis_publisher_config *config, char *err,
                                            size_t err_len);

/* Frees (once the publishes still waiting for their replies are answered:
 * they are, by the connection, UNAVAILABLE when it goes). NULL is a no-op. */
void redis_publisher_free(struct redis_publisher *p);

/* Appends one event. type and message stay the caller's and must stay
 * valid until done is called (a NOSCRIPT reply sends them again). Returns
 * 0 (done is called once), or -1 when the connection is not ready or
 * memory ran out (done is not called). */
int redis_publisher_publish(struct redis_publisher *p, const char *type, size_t type_len,
                            const char *message, size_t message_len, redis_publish_done_fn done,
                            void *arg);

/* Reads the {e, n} reply of the script. Returns 0 with *run and *number,
 * or -1 when the reply is not that. Pure (exposed for the tests). */
int redis_publisher_parse_reply(const redisReply *reply, uint64_t *run, uint64_t *number);

#endif
