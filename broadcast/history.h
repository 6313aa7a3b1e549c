/* The broadcast daemon's history: the recent events, in the order this
 * daemon received them, for subscribers that resume (an init's "since").
 *
 * Bounded by count, bytes and age, whichever is reached first; the oldest
 * entries go first, so what is retained is always one unbroken stretch of
 * arrival positions [first, end). An entry holds a reference to the event's
 * frame with its "id" member (shared_frame.h): the same frame live delivery
 * gives the sessions that asked for ids, so retained events cost their bytes
 * once. What an entry counts against max_bytes is its frame's bytes plus
 * its own memory (the entry, its type and its index slots).
 *
 * Ids are event_id.h's <run>-<number>. Besides the entries the history keeps,
 * per run seen (at most HISTORY_RUNS, the least recently seen forgotten
 * first), the last number received, so that it can tell an id that is gone
 * (TOO_OLD) from one it never had (UNKNOWN), and two positions that make a
 * replay inexact:
 *  - a gap: an event of a run whose number is not one more than the last
 *    this daemon received of that run (events it missed, say while its bus
 *    connection was down), or the first event of a run not numbered 1. A
 *    resume from an id before the gap would skip what is missing: TOO_OLD.
 *  - an interleaving: an event of one run received while another run is
 *    live (history_append's other_run_live: a different listen daemon is
 *    connected and has sent events, or its last event is less than
 *    HISTORY_INTERLEAVE_MS old). Another broadcast daemon may have received
 *    the two runs' events in another order, so a resume from an id at or
 *    before such an event could repeat or skip one: UNKNOWN.
 * Bounds: bus/history_limits.h (max_events 0: every lookup answers
 * HISTORY_DISABLED; max_bytes counts each entry's frame and its own memory).
 * Single-threaded; no I/O (the caller runs the expiry timer).
 */
#ifndef EVS_HISTORY_H
#define EVS_HISTORY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bus/event_id.h"
#include "bus/history_limits.h"

struct shared_frame;

#define HISTORY_RUNS 64
#define HISTORY_INTERLEAVE_MS 1000

/* One retained event. Owned by the history; valid until it is evicted (the
 * next history_append or history_expire may evict it). */
struct history_entry {
    uint64_t pos; /* arrival position, from 1 */
    uint64_t run; /* of its id */
    uint64_t number;
    uint64_t at_ms;             /* when it arrived (the caller's clock, ms) */
    struct shared_frame *frame; /* the message with its "id" member; one reference */
    char id[EVENT_ID_LEN + 1];
    size_t cost;                      /* what it counts against max_bytes */
    struct history_entry *index_next; /* the id index's chain (the history's own) */
    uint8_t type_len;
    char type[]; /* type_len bytes and a NUL */
};

enum history_lookup {
    HISTORY_FOUND = 0, /* *after is the position of the id's event */
    HISTORY_TOO_OLD = -1,
    HISTORY_UNKNOWN = -2,
    HISTORY_DISABLED = -3,
    HISTORY_NOT_YET = -4, /* its run is known, its number after the last received */
};

struct history_stats {
    size_t events;      /* retained */
    size_t bytes;       /* as max_bytes counts them */
    size_t frame_bytes; /* of their frames alone (shared with live delivery) */
    uint64_t evictions_count, evictions_bytes, evictions_age;
};

/* A new, empty history. seed keys the id index's hash. NULL when out of
 * memory. */
struct history *history_new(const struct history_limits *limits, uint64_t seed);

/* Releases every entry's frame and frees. NULL is a no-op. */
void history_free(struct history *h);

bool history_enabled(const struct history *h);

/* Appends an event at position history_end(h), taking a reference on frame
 * (the caller keeps its own), after evicting the oldest entries until the
 * new one fits max_events and max_bytes. type_len is 1..255. other_run_live:
 * the caller knows of a run other than this one that is live (see above).
 * An event larger than max_bytes by itself is not retained: it is a gap for
 * resumes across it (they answer TOO_OLD) but still takes its position.
 * Returns 0, or -1 when out of memory (then nothing is retained of it, and it
 * is a gap as well). A no-op returning 0 when history is off. */
int history_append(struct history *h, const char *type, size_t type_len, uint64_t run,
                   uint64_t number, struct shared_frame *frame, bool other_run_live,
                   uint64_t now_ms);

/* Evicts the entries older than ttl_ms at now_ms. Returns when the next
 * entry expires (its at_ms + ttl_ms), or 0 when none is retained. */
uint64_t history_expire(struct history *h, uint64_t now_ms);

/* Where a resume from the id text[0..len) starts (text is a well-formed id:
 * event_id_valid). HISTORY_FOUND: *after is the id's position; replay what
 * follows it. Else why it cannot: the id's event was evicted, or the id is
 * before a gap, or its run is known and its number not after the last
 * received (TOO_OLD); the id is at or before an interleaving, or its run is
 * not known (UNKNOWN); its number is after the last received of its run
 * (NOT_YET: it may still be on its way); history is off (DISABLED). */
enum history_lookup history_find(const struct history *h, const char *text, size_t len,
                                 uint64_t *after);

/* Whether run is known (by append or sync), and *last, the last number
 * received of it (0 when none, or unknown). */
bool history_run_last(const struct history *h, uint64_t run, uint64_t *last);

/* A listen daemon says it has sent every event of run up to number that it
 * still retains (bus_codec.h's SYNC): the run is known from now on, and a
 * number after the last received is a gap at the history's end (those
 * events are lost to this daemon, so a resume from before them is
 * TOO_OLD). A no-op when history is off. */
void history_sync(struct history *h, uint64_t run, uint64_t number);

/* The first position retained (history_end when empty), and the position
 * the next append takes. A resume from "oldest" replays from
 * history_first(h). */
uint64_t history_first(const struct history *h);
uint64_t history_end(const struct history *h);

/* The entry at pos, or NULL when it was evicted (or not retained), or is not
 * yet appended. O(1). */
const struct history_entry *history_get(const struct history *h, uint64_t pos);

void history_get_stats(const struct history *h, struct history_stats *out);

#endif
