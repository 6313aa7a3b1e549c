/* Token buckets (see rate_limit.h). */
#include "core/rate_limit.h"

#include <stdlib.h>

#define RATE_TABLE_WAYS 4

static uint64_t rate_later(uint64_t a, uint64_t b)
{
    return a > b ? a : b;
}

bool rate_bucket_allows(const struct rate_bucket *bucket, const struct rate_limit *limit,
                        uint64_t now_ms)
{
    uint64_t window = (limit->burst - 1) * limit->interval_ms;
    return bucket->full_at_ms <= now_ms || bucket->full_at_ms - now_ms <= window;
}

void rate_bucket_charge(struct rate_bucket *bucket, const struct rate_limit *limit, uint64_t now_ms)
{
    bucket->full_at_ms = rate_later(bucket->full_at_ms, now_ms) + limit->interval_ms;
}

bool rate_bucket_take(struct rate_bucket *bucket, const struct rate_limit *limit, uint64_t now_ms)
{
    if (!rate_bucket_allows(bucket, limit, now_ms))
        return false;
    rate_bucket_charge(bucket, limit, now_ms);
    return true;
}

/* --- the table ------------------------------------------------------------ */

struct rate_slot {
    uint64_t key;
    struct rate_bucket bucket; /* full (or never used) when full_at_ms <= now */
};

struct rate_table {
    struct rate_limit limit;
    uint64_t seed;
    size_t set_count;
    struct rate_slot slots[];
};

/* The splitmix64 finaliser over the seeded key. */
static uint64_t rate_hash(uint64_t seed, uint64_t key)
{
    uint64_t z = key ^ seed;
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

static struct rate_slot *rate_set(const struct rate_table *table, uint64_t key)
{
    size_t set = (size_t)(rate_hash(table->seed, key) % table->set_count);
    return (struct rate_slot *)&table->slots[set * RATE_TABLE_WAYS];
}

struct rate_table *rate_table_new(size_t slots, const struct rate_limit *limit, uint64_t seed)
{
    size_t sets = slots / RATE_TABLE_WAYS + (slots % RATE_TABLE_WAYS != 0);
    struct rate_table *table;

    if (sets == 0)
        sets = 1;
    if (sets > (SIZE_MAX - sizeof *table) / sizeof(struct rate_slot) / RATE_TABLE_WAYS)
        return NULL;
    table = calloc(1, sizeof *table + sets * RATE_TABLE_WAYS * sizeof(struct rate_slot));
    if (!table)
        return NULL;
    table->limit = *limit;
    table->seed = seed;
    table->set_count = sets;
    return table;
}

void rate_table_free(struct rate_table *table)
{
    free(table);
}

bool rate_table_allows(const struct rate_table *table, uint64_t key, uint64_t now_ms)
{
    const struct rate_slot *set = rate_set(table, key);
    for (size_t i = 0; i < RATE_TABLE_WAYS; i++)
        if (set[i].key == key)
            return rate_bucket_allows(&set[i].bucket, &table->limit, now_ms);
    return true;
}

void rate_table_charge(struct rate_table *table, uint64_t key, uint64_t now_ms)
{
    struct rate_slot *set = rate_set(table, key), *slot = NULL;

    for (size_t i = 0; i < RATE_TABLE_WAYS && !slot; i++)
        if (set[i].key == key)
            slot = &set[i];
    /* Otherwise a slot whose bucket is full (as good as free), or failing
     * that the one nearest to full. */
    for (size_t i = 0; i < RATE_TABLE_WAYS && !slot; i++)
        if (set[i].bucket.full_at_ms <= now_ms)
            slot = &set[i];
    if (!slot) {
        slot = &set[0];
        for (size_t i = 1; i < RATE_TABLE_WAYS; i++)
            if (set[i].bucket.full_at_ms < slot->bucket.full_at_ms)
                slot = &set[i];
    }
    if (slot->key != key) {
        slot->key = key;
        slot->bucket.full_at_ms = 0;
    }
    rate_bucket_charge(&slot->bucket, &table->limit, now_ms);
}

size_t rate_table_tracked(const struct rate_table *table, uint64_t now_ms)
{
    size_t count = 0;
    for (size_t i = 0; i < table->set_count * RATE_TABLE_WAYS; i++)
        count += table->slots[i].bucket.full_at_ms > now_ms;
    return count;
}
