/* The broadcast daemon's history (see history.h).
 *
 * Entries live in a ring of pointers: the entry at position pos is at slot
 * (head + pos - first) of the ring, wrapped once, so history_get is O(1).
 * The ring starts small and doubles, never beyond max_events, when it is
 * full: max_events may be a million, and a daemon that never gets that many
 * events should not pay 8 MiB of pointers for them.
 *
 * Ids are found through a chained hash from (run, number) to the entry,
 * keyed by the seed so that which ids share a bucket cannot be worked out in
 * advance; the chains go through entry->index_next. Its bucket count is a
 * power of two, at least the ring's size (grown with the ring, never shrunk);
 * a failed resize is not an error, only longer chains.
 *
 * What is retained is one unbroken stretch [first, end): an event that is
 * not retained (larger than max_bytes by itself, or out of memory) drops
 * every entry before it too, so that a replay from history_first never skips
 * an event silently. Those entries could not have served a resume by id
 * anyway: the event not retained is a gap, and they are before it.
 *
 * The run table is a small array (HISTORY_RUNS), searched linearly: 64
 * comparisons per append at worst, and the run of the previous append is
 * tried first, which is nearly always the one.
 */
#include "history.h"

#include <stdlib.h>
#include <string.h>

#include "shared_frame.h"

#define HISTORY_RING_INITIAL 16
#define HISTORY_BUCKETS_INITIAL 16

struct history_run {
    uint64_t run;
    uint64_t last; /* the highest number received of it */
    uint64_t seen; /* history->clock when it was last appended to */
};

enum history_cause { HISTORY_CAUSE_COUNT, HISTORY_CAUSE_BYTES, HISTORY_CAUSE_AGE };

struct history {
    struct history_limits limits;
    uint64_t seed;

    struct history_entry **ring;
    size_t ring_size; /* slots; 0 until the first append */
    size_t head;      /* the slot of position first */
    size_t count;     /* entries retained: end == first + count */
    uint64_t first;
    size_t bytes;
    size_t frame_bytes; /* of the entries' frames alone */

    struct history_entry **buckets;
    size_t bucket_count; /* a power of two, or 0 until the first append */

    /* Resumes from an id at a position before gap are inexact (TOO_OLD),
     * and from one at or before interleave (UNKNOWN); 0: none so far. */
    uint64_t gap;
    uint64_t interleave;

    struct history_run runs[HISTORY_RUNS];
    size_t run_count;
    size_t run_recent; /* the slot of the run appended to last */
    uint64_t clock;    /* counts appends, for the runs' recency */

    uint64_t evictions[3]; /* by enum history_cause */
};

/* The splitmix64 finaliser: a bijection on 64 bits with full avalanche. */
static uint64_t history_mix(uint64_t z)
{
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

static uint64_t history_hash(uint64_t seed, uint64_t run, uint64_t number)
{
    return history_mix(history_mix(seed ^ run) ^ number);
}

static struct history_entry **history_bucket(const struct history *h, uint64_t run, uint64_t number)
{
    return &h->buckets[history_hash(h->seed, run, number) & (h->bucket_count - 1)];
}

/* The newest entry with that id (ids repeat only if a run's numbers do). */
static struct history_entry *history_lookup(const struct history *h, uint64_t run, uint64_t number)
{
    if (h->bucket_count == 0)
        return NULL;
    for (struct history_entry *e = *history_bucket(h, run, number); e; e = e->index_next)
        if (e->run == run && e->number == number)
            return e;
    return NULL;
}

static void history_index_unlink(struct history *h, struct history_entry *entry)
{
    struct history_entry **p = history_bucket(h, entry->run, entry->number);

    while (*p != entry)
        p = &(*p)->index_next;
    *p = entry->index_next;
}

/* Rehashes into count buckets (a power of two); on failure keeps the old. */
static void history_index_resize(struct history *h, size_t count)
{
    struct history_entry **buckets, **old = h->buckets;
    size_t old_count = h->bucket_count;

    if (count > SIZE_MAX / sizeof(*buckets))
        return;
    buckets = calloc(count, sizeof(*buckets));
    if (!buckets)
        return;
    h->buckets = buckets;
    h->bucket_count = count;
    for (size_t i = 0; i < old_count; i++) {
        struct history_entry *e = old[i], *next;
        for (; e; e = next) {
            struct history_entry **bucket = history_bucket(h, e->run, e->number);
            next = e->index_next;
            e->index_next = *bucket;
            *bucket = e;
        }
    }
    free(old);
}

static size_t history_slot(const struct history *h, uint64_t pos)
{
    size_t slot = h->head + (size_t)(pos - h->first);
    return slot >= h->ring_size ? slot - h->ring_size : slot;
}

/* Room for one more entry: the ring doubles (up to max_events), the index
 * follows it. Returns 0, or -1 when out of memory. */
static int history_reserve(struct history *h)
{
    size_t size, buckets = h->bucket_count ? h->bucket_count : HISTORY_BUCKETS_INITIAL;
    struct history_entry **ring;

    if (h->count < h->ring_size)
        return h->bucket_count ? 0 : -1;
    if (h->ring_size == 0)
        size = HISTORY_RING_INITIAL;
    else if (h->ring_size > SIZE_MAX / 2 / sizeof(*ring))
        return -1;
    else
        size = h->ring_size * 2;
    if (size > h->limits.max_events)
        size = h->limits.max_events;
    ring = malloc(size * sizeof(*ring));
    if (!ring)
        return -1;
    for (size_t i = 0; i < h->count; i++)
        ring[i] = h->ring[history_slot(h, h->first + i)];
    free(h->ring);
    h->ring = ring;
    h->ring_size = size;
    h->head = 0;

    while (buckets < size && buckets <= SIZE_MAX / 2)
        buckets *= 2;
    if (buckets != h->bucket_count)
        history_index_resize(h, buckets);
    return h->bucket_count ? 0 : -1;
}

static void history_evict_oldest(struct history *h, enum history_cause cause)
{
    struct history_entry *e = h->ring[h->head];

    h->ring[h->head] = NULL;
    h->head = h->head + 1 == h->ring_size ? 0 : h->head + 1;
    h->count--;
    h->first++;
    h->bytes -= e->cost;
    h->frame_bytes -= e->frame->len;
    h->evictions[cause]++;
    history_index_unlink(h, e);
    shared_frame_release(e->frame);
    free(e);
}

/* The table's entry for run, made when it is not there (its last number
 * 0), and made the most recent. */
static struct history_run *history_run_of(struct history *h, uint64_t run)
{
    struct history_run *r = NULL;

    h->clock++;
    if (h->run_count > 0 && h->runs[h->run_recent].run == run) {
        r = &h->runs[h->run_recent];
    } else {
        size_t oldest = 0;
        for (size_t i = 0; i < h->run_count; i++) {
            if (h->runs[i].run == run) {
                r = &h->runs[i];
                break;
            }
            if (h->runs[i].seen < h->runs[oldest].seen)
                oldest = i;
        }
        if (!r) {
            /* Full: the least recently seen run is forgotten. */
            r = &h->runs[h->run_count < HISTORY_RUNS ? h->run_count++ : oldest];
            r->run = run;
            r->last = 0;
        }
        h->run_recent = (size_t)(r - h->runs);
    }
    r->seen = h->clock;
    return r;
}

/* Records that number of run arrives at pos: whether it is a gap (see
 * history.h), and the run's last number and recency. A run not in the table
 * (never seen, or forgotten) is new: a gap unless its number is 1. */
static void history_note_run(struct history *h, uint64_t run, uint64_t number, uint64_t pos)
{
    struct history_run *r = history_run_of(h, run);

    if (number != r->last + 1)
        h->gap = pos;
    /* A number not after the last (a repeat) leaves the last as it was: the
     * numbers up to it were received, or were a gap, either way TOO_OLD. */
    if (number > r->last)
        r->last = number;
}

static const struct history_run *history_find_run(const struct history *h, uint64_t run)
{
    for (size_t i = 0; i < h->run_count; i++)
        if (h->runs[i].run == run)
            return &h->runs[i];
    return NULL;
}

struct history *history_new(const struct history_limits *limits, uint64_t seed)
{
    struct history *h = calloc(1, sizeof(*h));

    if (!h)
        return NULL;
    h->limits = *limits;
    h->seed = seed;
    h->first = 1;
    return h;
}

void history_free(struct history *h)
{
    if (!h)
        return;
    for (size_t i = 0; i < h->count; i++) {
        struct history_entry *e = h->ring[history_slot(h, h->first + i)];
        shared_frame_release(e->frame);
        free(e);
    }
    free(h->ring);
    free(h->buckets);
    free(h);
}

bool history_enabled(const struct history *h)
{
    return h->limits.max_events > 0;
}

int history_append(struct history *h, const char *type, size_t type_len, uint64_t run,
                   uint64_t number, struct shared_frame *frame, bool other_run_live,
                   uint64_t now_ms)
{
    uint64_t pos = h->first + h->count;
    struct history_entry *e = NULL;
    size_t cost;
    int rc = -1;

    if (!history_enabled(h))
        return 0;
    history_note_run(h, run, number, pos);
    if (other_run_live)
        h->interleave = pos;

    /* What an entry counts against max_bytes: the frame's bytes (its one
     * copy, shared with live delivery), the entry's one allocation (the
     * struct, the type and its NUL) and its two slots, one in the ring and
     * one in the index's buckets (each table has about one slot per entry). */
    if (type_len == 0 || type_len > UINT8_MAX || frame->len > SIZE_MAX / 2)
        goto not_retained; /* outside the contract: refused as if out of memory */
    cost = frame->len + sizeof(*e) + type_len + 1 + 2 * sizeof(void *);
    if (cost > h->limits.max_bytes) {
        rc = 0;
        goto not_retained;
    }
    e = malloc(sizeof(*e) + type_len + 1);
    if (!e)
        goto not_retained;

    while (h->count >= h->limits.max_events)
        history_evict_oldest(h, HISTORY_CAUSE_COUNT);
    while (h->count > 0 && h->bytes + cost > h->limits.max_bytes)
        history_evict_oldest(h, HISTORY_CAUSE_BYTES);
    if (history_reserve(h) < 0)
        goto not_retained;

    e->pos = pos;
    e->run = run;
    e->number = number;
    e->at_ms = now_ms;
    e->frame = frame;
    frame->refs++;
    event_id_format(e->id, run, number);
    e->cost = cost;
    e->type_len = (uint8_t)type_len;
    memcpy(e->type, type, type_len);
    e->type[type_len] = '\0';
    {
        struct history_entry **bucket = history_bucket(h, run, number);
        e->index_next = *bucket;
        *bucket = e;
    }
    h->ring[history_slot(h, pos)] = e;
    h->count++;
    h->bytes += cost;
    h->frame_bytes += frame->len;
    return 0;

not_retained:
    /* The event takes its position (and its run's number, noted above) but
     * not a place: what is before it goes (see the top of the file), counted
     * as evicted by bytes, and a resume from before it is TOO_OLD. */
    free(e);
    while (h->count > 0)
        history_evict_oldest(h, HISTORY_CAUSE_BYTES);
    h->first = pos + 1;
    h->gap = pos + 1;
    return rc;
}

uint64_t history_expire(struct history *h, uint64_t now_ms)
{
    uint64_t ttl = h->limits.ttl_ms;

    while (h->count > 0) {
        uint64_t at = h->ring[h->head]->at_ms;
        uint64_t expiry = at > UINT64_MAX - ttl ? UINT64_MAX : at + ttl;
        if (expiry > now_ms)
            return expiry;
        history_evict_oldest(h, HISTORY_CAUSE_AGE);
    }
    return 0;
}

enum history_lookup history_find(const struct history *h, const char *text, size_t len,
                                 uint64_t *after)
{
    uint64_t run, number;
    const struct history_entry *e;
    const struct history_run *r;

    if (!history_enabled(h))
        return HISTORY_DISABLED;
    if (event_id_parse(text, len, &run, &number) < 0)
        return HISTORY_UNKNOWN;
    e = history_lookup(h, run, number);
    if (e) {
        /* A gap at g: events are missing just before g, so only a resume
         * from before g would skip them. */
        if (e->pos < h->gap)
            return HISTORY_TOO_OLD;
        if (e->pos <= h->interleave)
            return HISTORY_UNKNOWN;
        *after = e->pos;
        return HISTORY_FOUND;
    }
    r = history_find_run(h, run);
    if (!r)
        return HISTORY_UNKNOWN;
    return number <= r->last ? HISTORY_TOO_OLD : HISTORY_NOT_YET;
}

bool history_run_last(const struct history *h, uint64_t run, uint64_t *last)
{
    const struct history_run *r = history_find_run(h, run);
    *last = r ? r->last : 0;
    return r != NULL;
}

void history_sync(struct history *h, uint64_t run, uint64_t number)
{
    struct history_run *r;

    if (!history_enabled(h))
        return;
    r = history_run_of(h, run);
    if (number > r->last) {
        /* Events this daemon never got and nobody can send it any more: a
         * resume from before now would skip them. */
        h->gap = history_end(h);
        r->last = number;
    }
}

uint64_t history_first(const struct history *h)
{
    return h->first;
}

uint64_t history_end(const struct history *h)
{
    return h->first + h->count;
}

const struct history_entry *history_get(const struct history *h, uint64_t pos)
{
    if (pos < h->first || pos - h->first >= h->count)
        return NULL;
    return h->ring[history_slot(h, pos)];
}

void history_get_stats(const struct history *h, struct history_stats *out)
{
    out->events = h->count;
    out->bytes = h->bytes;
    out->frame_bytes = h->frame_bytes;
    out->evictions_count = h->evictions[HISTORY_CAUSE_COUNT];
    out->evictions_bytes = h->evictions[HISTORY_CAUSE_BYTES];
    out->evictions_age = h->evictions[HISTORY_CAUSE_AGE];
}
