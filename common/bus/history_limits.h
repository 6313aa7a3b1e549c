/* The bounds of a history of events: the broadcast daemon's, which resumes
 * replay from (broadcast/history.h), and the listen daemon's, which a
 * broadcast daemon that (re)connects is sent (listen/sent_history.h).
 * Whichever bound is reached first evicts the oldest events. */
#ifndef EVS_HISTORY_LIMITS_H
#define EVS_HISTORY_LIMITS_H

#include <stddef.h>
#include <stdint.h>

struct history_limits {
    size_t max_events; /* 0: history off */
    size_t max_bytes;  /* the events' messages plus each entry's own memory */
    uint64_t ttl_ms;   /* an entry older than this goes at the next expiry */
};

#endif
