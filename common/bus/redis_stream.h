/* The Redis stream both engines' sides use (REDIS_STREAM): its name's
 * bounds and the key beside it where listen daemons keep the epoch and the
 * count (listen/redis_publisher.h). */
#ifndef EVS_REDIS_STREAM_H
#define EVS_REDIS_STREAM_H

#include <stddef.h>

#define REDIS_STREAM_MAX 200 /* bytes of a stream key name */
#define REDIS_STREAM_META_SUFFIX ":meta"
#define REDIS_STREAM_META_MAX (REDIS_STREAM_MAX + sizeof REDIS_STREAM_META_SUFFIX - 1)

/* Checks name: 1 to REDIS_STREAM_MAX bytes, no space or control
 * character. Returns 0, or -1 with the reason in err. */
int redis_stream_check(const char *name, char *err, size_t err_len);

/* Writes name's meta key, "<name>:meta", to out (REDIS_STREAM_META_MAX + 1
 * bytes); name is a checked one. */
void redis_stream_meta_key(const char *name, char *out);

#endif
