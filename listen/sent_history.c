#include "sent_history.h"

#include <stdlib.h>

struct sent_history {
    struct history_limits limits;
    void (*release)(void *owner);
    struct sent_entry *ring; /* capacity slots; count from head, oldest first */
    size_t capacity, head, count;
    size_t bytes;
};

/* What an entry counts against max_bytes. */
static size_t entry_cost(const struct sent_entry *e)
{
    return sizeof *e + e->type_len + e->message_len;
}

struct sent_history *sent_history_new(const struct history_limits *limits,
                                      void (*release)(void *owner))
{
    struct sent_history *h = calloc(1, sizeof *h);
    if (!h)
        return NULL;
    h->limits = *limits;
    h->release = release;
    return h;
}

static void evict_oldest(struct sent_history *h)
{
    struct sent_entry *e = &h->ring[h->head];
    h->bytes -= entry_cost(e);
    h->head = (h->head + 1) % h->capacity;
    h->count--;
    h->release(e->owner);
}

void sent_history_free(struct sent_history *h)
{
    if (!h)
        return;
    while (h->count)
        evict_oldest(h);
    free(h->ring);
    free(h);
}

/* Room for one more entry: the ring doubles up to max_events. */
static bool make_room(struct sent_history *h)
{
    size_t capacity;
    struct sent_entry *ring;
    if (h->count < h->capacity)
        return true;
    capacity = h->capacity ? h->capacity * 2 : 64;
    if (capacity > h->limits.max_events)
        capacity = h->limits.max_events;
    if (capacity <= h->capacity)
        return false;
    ring = malloc(capacity * sizeof *ring);
    if (!ring)
        return false;
    for (size_t i = 0; i < h->count; i++)
        ring[i] = h->ring[(h->head + i) % h->capacity];
    free(h->ring);
    h->ring = ring;
    h->capacity = capacity;
    h->head = 0;
    return true;
}

bool sent_history_append(struct sent_history *h, const struct sent_entry *entry)
{
    size_t cost = entry_cost(entry);
    if (h->limits.max_events == 0 || cost > h->limits.max_bytes)
        return false;
    while (h->count && (h->count >= h->limits.max_events || h->bytes + cost > h->limits.max_bytes))
        evict_oldest(h);
    if (!make_room(h))
        return false;
    h->ring[(h->head + h->count) % h->capacity] = *entry;
    h->count++;
    h->bytes += cost;
    return true;
}

uint64_t sent_history_expire(struct sent_history *h, uint64_t now_ms)
{
    while (h->count && now_ms - h->ring[h->head].at_ms >= h->limits.ttl_ms)
        evict_oldest(h);
    return h->count ? h->ring[h->head].at_ms + h->limits.ttl_ms : 0;
}

size_t sent_history_count(const struct sent_history *h)
{
    return h->count;
}

const struct sent_entry *sent_history_at(const struct sent_history *h, size_t i)
{
    return i < h->count ? &h->ring[(h->head + i) % h->capacity] : NULL;
}

size_t sent_history_bytes(const struct sent_history *h)
{
    return h->bytes;
}
