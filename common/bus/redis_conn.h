/* One connection to Redis (REDIS_URL), kept up: connected with Debian's
 * hiredis (async API, libevent adapter), authenticated (AUTH with the
 * password of REDIS_PASSWORD_FILE, and the URL's user when it names one),
 * on the URL's database (SELECT), and connected again with backoff
 * (REDIS_CONN_BACKOFF_MIN_MS doubling up to _MAX_MS) whenever it is lost.
 *
 * Commands go out only while the connection is ready; their replies come
 * back in order, and each command's done callback is called exactly once:
 * with the reply, or with NULL when the connection was lost (or freed)
 * first, in which case Redis may or may not have run it. A command not
 * answered within its timeout drops the connection: Redis that stops
 * answering is as good as gone, and the owner hears of it at once instead
 * of after the kernel's TCP timeout.
 *
 * Replies are Redis's: bounded while they are read (bus/redis_reply.h), and
 * the callers check their types and sizes before use. Single-threaded, on the caller's event_base.
 */
#ifndef EVS_REDIS_CONN_H
#define EVS_REDIS_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>

#include "bus/redis_reply.h"
#include "bus/redis_url.h"

#define REDIS_CONN_BACKOFF_MIN_MS 50
#define REDIS_CONN_BACKOFF_MAX_MS 1000
#define REDIS_CONN_PASSWORD_MAX 512
/* Bytes of replies not yet whole that a connection holds before it drops. */
#define REDIS_CONN_UNREAD_MAX (REDIS_REPLY_STRING_MAX + 1024u * 1024)

struct redis_conn_config {
    struct redis_url url;
    const char *password;        /* NULL or "": no AUTH; copied */
    unsigned connect_timeout_ms; /* to connect, authenticate and select the database */
    unsigned reply_timeout_ms;   /* the default of redis_conn_command */
};

struct redis_conn_events {
    void (*ready)(void *arg);                    /* connected, authenticated, selected */
    void (*lost)(void *arg, const char *reason); /* a ready connection ended, or an attempt
                                                    failed; another follows after the backoff */
};

struct redis_conn_stats {
    uint64_t connects;    /* attempts that became ready */
    uint64_t failures;    /* attempts that failed or ready connections that were lost */
    uint64_t round_trips; /* replies received */
    uint64_t errors;      /* error replies among them */
    uint64_t timeouts;    /* connections dropped for a late reply or a slow connect */
    uint64_t oversized;   /* connections dropped for a reply over the size limit */
};

struct redis_conn;

/* The reply is borrowed: valid only during the call. */
typedef void (*redis_conn_done_fn)(void *arg, const redisReply *reply);

/* Starts connecting (from the loop: no event comes from inside this call).
 * events is borrowed for the connection's life. NULL when out of memory.
 * Never free the connection from inside one of its callbacks. */
struct redis_conn *redis_conn_new(struct event_base *base, const struct redis_conn_config *config,
                                  const struct redis_conn_events *events, void *arg);

/* Drops the connection: every pending command's done is called with NULL
 * (events are not called), then frees. NULL is a no-op. */
void redis_conn_free(struct redis_conn *c);

bool redis_conn_ready(const struct redis_conn *c);

/* Sends argv (argc strings of argvlen bytes, copied) on a ready connection.
 * timeout_ms 0 takes the configured reply timeout (a blocking command such
 * as XREAD BLOCK passes its block time plus a margin). Returns 0 (done will
 * be called once), or -1 when not ready or out of memory (done will not). */
int redis_conn_command(struct redis_conn *c, int argc, const char **argv, const size_t *argvlen,
                       unsigned timeout_ms, redis_conn_done_fn done, void *arg);

/* Commands sent and not yet answered. */
size_t redis_conn_pending(const struct redis_conn *c);

void redis_conn_get_stats(const struct redis_conn *c, struct redis_conn_stats *out);

/* Why the last attempt or connection ended (empty when none did). */
const char *redis_conn_last_error(const struct redis_conn *c);

/* Whether the last connection that ended was dropped for a reply over the
 * size limit (bus/redis_reply.h): the reply of the command at the head,
 * whose done had NULL. Set before events->lost is called, kept until the
 * next connection ends. Asking again gets the same reply again: the caller
 * that can tell what made it so large (a stream entry) has to step past it. */
bool redis_conn_lost_to_oversized(const struct redis_conn *c);

#endif
