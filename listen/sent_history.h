/* The events this listen daemon has sent on the bus, the most recent
 * retained, for broadcast daemons that connect later: a broadcast daemon
 * that (re)connects is sent them first (bus_codec.h's HISTORY frames), so
 * that one that restarted holds the same history as the others and its
 * subscribers resume exactly.
 *
 * Bounded like the broadcast daemon's history (bus/history_limits.h): the
 * oldest entries go first once the count or the bytes (message, type and
 * the entry's own memory) would pass their bound, or their age passes the
 * TTL at sent_history_expire. An entry references its message, which
 * belongs to its owner: release(owner) is called when the entry goes.
 * Single-threaded; no I/O (the caller runs the expiry timer).
 */
#ifndef EVS_SENT_HISTORY_H
#define EVS_SENT_HISTORY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bus/history_limits.h"

struct sent_entry {
    uint64_t number; /* of its id, in this daemon's run */
    uint64_t at_ms;  /* when it was appended (the caller's clock) */
    const char *type;
    size_t type_len;
    const char *message;
    size_t message_len;
    void *owner;
};

struct sent_history;

/* NULL when out of memory. release is called once per entry that goes. */
struct sent_history *sent_history_new(const struct history_limits *limits,
                                      void (*release)(void *owner));

/* Releases every entry and frees. NULL is a no-op. */
void sent_history_free(struct sent_history *h);

/* Appends an entry (numbers increase from one append to the next), after
 * evicting the oldest until it fits. Returns true when it is retained
 * (release(owner) comes when it goes); false when history is off, the entry
 * is over max_bytes by itself, or memory ran out: then the caller keeps
 * what it would have given. */
bool sent_history_append(struct sent_history *h, const struct sent_entry *entry);

/* Evicts the entries older than the TTL at now_ms. Returns when the next
 * one expires, or 0 when none is retained. */
uint64_t sent_history_expire(struct sent_history *h, uint64_t now_ms);

/* The retained entries, oldest first: i in [0, sent_history_count). */
size_t sent_history_count(const struct sent_history *h);
const struct sent_entry *sent_history_at(const struct sent_history *h, size_t i);

/* What is retained, as max_bytes counts it. */
size_t sent_history_bytes(const struct sent_history *h);

#endif
