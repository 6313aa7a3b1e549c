/* Token buckets: "at most burst at once, then one per interval", alone or
 * per key (a client's address) in a table of bounded size.
 *
 * A bucket is kept as the time at which it will be full again (the
 * generic cell rate algorithm of ITU-T I.371): one number, no refill step,
 * and zero means "full". An event fits while that time is at most
 * (burst - 1) intervals ahead of now. Times are milliseconds of any
 * monotonic clock the caller reads. Pure.
 */
#ifndef EVS_RATE_LIMIT_H
#define EVS_RATE_LIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct rate_limit {
    uint64_t interval_ms; /* one event per interval on average, > 0 */
    uint64_t burst;       /* events allowed at once, >= 1 */
};

/* Zero-initialised means full. */
struct rate_bucket {
    uint64_t full_at_ms;
};

/* Whether one more event fits now (nothing is taken). */
bool rate_bucket_allows(const struct rate_bucket *bucket, const struct rate_limit *limit,
                        uint64_t now_ms);

/* Counts one event, whether it fitted or not: a bucket charged past its
 * burst stays empty for longer. */
void rate_bucket_charge(struct rate_bucket *bucket, const struct rate_limit *limit,
                        uint64_t now_ms);

/* rate_bucket_allows, then rate_bucket_charge when it did: true when the
 * event fitted and was counted. */
bool rate_bucket_take(struct rate_bucket *bucket, const struct rate_limit *limit, uint64_t now_ms);

/* One bucket per key, in a set-associative table of a fixed number of
 * slots. A key without a slot has a full bucket. When every slot of a
 * key's set is taken by a key whose bucket is not full, charging a new key
 * evicts the one nearest to full: the table bounds memory, not the number
 * of keys, so a key may get its burst back early when more keys than slots
 * are being charged at once. Keys are spread by a seeded hash, so which
 * keys share a set cannot be chosen from outside. */
struct rate_table;

/* slots is rounded up to a multiple of the set size. NULL when out of memory. */
struct rate_table *rate_table_new(size_t slots, const struct rate_limit *limit, uint64_t seed);
void rate_table_free(struct rate_table *table); /* NULL: no-op */

bool rate_table_allows(const struct rate_table *table, uint64_t key, uint64_t now_ms);
void rate_table_charge(struct rate_table *table, uint64_t key, uint64_t now_ms);

/* Keys whose bucket is not full at now_ms. */
size_t rate_table_tracked(const struct rate_table *table, uint64_t now_ms);

#endif
