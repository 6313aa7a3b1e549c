/* Unit tests for broadcast/history.c: entries by position and by id, the
 * three bounds (count, bytes, age) and their eviction counters, what a
 * resume from an id answers around gaps and interleavings, the run table's
 * bound, and the frames' references (every test ends with no frame alive).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "history.h"
#include "shared_frame.h"

#define RUN_A UINT64_C(0x0006123456789001)
#define RUN_B UINT64_C(0x0006123456789002)

/* What an entry of a frame_len-byte frame and a type_len-byte type counts
 * against max_bytes (the formula history.c documents). */
#define ENTRY_COST(frame_len, type_len)                                                            \
    ((frame_len) + sizeof(struct history_entry) + (type_len) + 1 + 2 * sizeof(void *))

static struct history *history_of(size_t max_events, size_t max_bytes, uint64_t ttl_ms)
{
    struct history_limits limits = {
        .max_events = max_events, .max_bytes = max_bytes, .ttl_ms = ttl_ms};
    struct history *h = history_new(&limits, 0x5eed);
    assert_non_null(h);
    return h;
}

/* A frame of payload_len bytes of 'x' (a frame of payload_len + 2 bytes up
 * to 125). */
static struct shared_frame *frame_of_payload(size_t payload_len)
{
    uint8_t *payload = malloc(payload_len + 1);
    struct shared_frame *frame;
    assert_non_null(payload);
    memset(payload, 'x', payload_len);
    frame = shared_frame_new_text(payload, payload_len);
    free(payload);
    assert_non_null(frame);
    return frame;
}

/* Appends event number of run (type "t", a 10-byte payload), the caller's
 * reference on the frame let go of at once: the history's is the only one. */
static int append_at(struct history *h, uint64_t run, uint64_t number, bool other_run_live,
                     uint64_t now_ms)
{
    struct shared_frame *frame = frame_of_payload(10);
    int rc = history_append(h, "t", 1, run, number, frame, other_run_live, now_ms);
    shared_frame_release(frame);
    return rc;
}

static int append(struct history *h, uint64_t run, uint64_t number)
{
    return append_at(h, run, number, false, 0);
}

static enum history_lookup find(const struct history *h, uint64_t run, uint64_t number,
                                uint64_t *after)
{
    char id[EVENT_ID_LEN + 1];
    event_id_format(id, run, number);
    *after = 0;
    return history_find(h, id, EVENT_ID_LEN, after);
}

/* The answer alone, for the cases that are not FOUND. */
static enum history_lookup lookup(const struct history *h, uint64_t run, uint64_t number)
{
    uint64_t after;
    enum history_lookup r = find(h, run, number, &after);
    if (r != HISTORY_FOUND)
        assert_int_equal(after, 0); /* untouched */
    return r;
}

static void test_append_then_get_by_position_returns_each_entry(void **state)
{
    struct history *h = history_of(100, 1 << 20, 60000);
    struct shared_frame *frame = frame_of_payload(20);
    const struct history_entry *e;

    assert_true(history_enabled(h));
    assert_int_equal(history_first(h), 1);
    assert_int_equal(history_end(h), 1);
    assert_null(history_get(h, 1));
    assert_int_equal(history_append(h, "news", 4, RUN_A, 1, frame, false, 1234), 0);
    assert_int_equal(frame->refs, 2); /* the caller's and the history's */
    assert_int_equal(append(h, RUN_A, 2), 0);
    assert_int_equal(append(h, RUN_A, 3), 0);
    assert_int_equal(history_first(h), 1);
    assert_int_equal(history_end(h), 4);

    e = history_get(h, 1);
    assert_non_null(e);
    assert_int_equal(e->pos, 1);
    assert_int_equal(e->run, RUN_A);
    assert_int_equal(e->number, 1);
    assert_int_equal(e->at_ms, 1234);
    assert_ptr_equal(e->frame, frame);
    assert_string_equal(e->id, "0006123456789001-0000000000000001");
    assert_int_equal(e->type_len, 4);
    assert_string_equal(e->type, "news");
    assert_int_equal(e->cost, ENTRY_COST(22, 4));
    assert_int_equal(history_get(h, 3)->number, 3);
    assert_string_equal(history_get(h, 3)->id, "0006123456789001-0000000000000003");
    assert_null(history_get(h, 0));
    assert_null(history_get(h, 4));
    assert_null(history_get(h, UINT64_MAX));

    shared_frame_release(frame);
    assert_int_equal(frame->refs, 1);
    history_free(h);
    assert_int_equal(shared_frame_live_count(), 0);
}

static void test_find_retained_id_answers_found_with_its_position(void **state)
{
    struct history *h = history_of(100, 1 << 20, 60000);
    uint64_t after;

    for (uint64_t n = 1; n <= 5; n++)
        assert_int_equal(append(h, RUN_A, n), 0);
    for (uint64_t n = 1; n <= 5; n++) {
        assert_int_equal(find(h, RUN_A, n, &after), HISTORY_FOUND);
        assert_int_equal(after, n);
    }
    /* Two runs, one after the other (a listen daemon restarted). */
    assert_int_equal(append(h, RUN_B, 1), 0);
    assert_int_equal(append(h, RUN_B, 2), 0);
    assert_int_equal(find(h, RUN_B, 1, &after), HISTORY_FOUND);
    assert_int_equal(after, 6);
    assert_int_equal(find(h, RUN_A, 5, &after), HISTORY_FOUND);
    assert_int_equal(after, 5);
    history_free(h);
    assert_int_equal(shared_frame_live_count(), 0);
}

static void test_eviction_by_count_keeps_the_newest_and_evicted_ids_are_too_old(void **state)
{
    struct history *h = history_of(3, 1 << 20, 60000);
    struct history_stats stats;
    uint64_t after;

    for (uint64_t n = 1; n <= 5; n++)
        assert_int_equal(append(h, RUN_A, n), 0);
    assert_int_equal(history_first(h), 3);
    assert_int_equal(history_end(h), 6);
    assert_null(history_get(h, 2));
    assert_int_equal(history_get(h, 3)->number, 3);
    assert_int_equal(history_get(h, 5)->number, 5);
    history_get_stats(h, &stats);
    assert_int_equal(stats.events, 3);
    assert_int_equal(stats.bytes, 3 * ENTRY_COST(12, 1));
    assert_int_equal(stats.evictions_count, 2);
    assert_int_equal(stats.evictions_bytes, 0);
    assert_int_equal(stats.evictions_age, 0);
    assert_int_equal(shared_frame_live_count(), 3);

    assert_int_equal(lookup(h, RUN_A, 1), HISTORY_TOO_OLD);
    assert_int_equal(lookup(h, RUN_A, 2), HISTORY_TOO_OLD);
    assert_int_equal(find(h, RUN_A, 3, &after), HISTORY_FOUND);
    assert_int_equal(after, 3);
    history_free(h);
    assert_int_equal(shared_frame_live_count(), 0);
}

static void test_eviction_by_bytes_counts_frame_and_entry_memory(void **state)
{
    /* Room for exactly two 12-byte frames' entries. */
    size_t cost = ENTRY_COST(12, 1);
    struct history *h = history_of(100, 2 * cost + cost - 1, 60000);
    struct history_stats stats;

    assert_int_equal(append(h, RUN_A, 1), 0);
    assert_int_equal(append(h, RUN_A, 2), 0);
    history_get_stats(h, &stats);
    assert_int_equal(stats.events, 2);
    assert_int_equal(stats.bytes, 2 * cost);
    assert_int_equal(stats.evictions_bytes, 0);

    assert_int_equal(append(h, RUN_A, 3), 0);
    history_get_stats(h, &stats);
    assert_int_equal(stats.events, 2);
    assert_int_equal(stats.bytes, 2 * cost);
    assert_int_equal(stats.evictions_bytes, 1);
    assert_int_equal(stats.evictions_count, 0);
    assert_int_equal(history_first(h), 2);
    assert_int_equal(lookup(h, RUN_A, 1), HISTORY_TOO_OLD);

    /* A bigger event pushes out as many as it needs. */
    {
        struct shared_frame *big = frame_of_payload(200);
        size_t big_cost = ENTRY_COST(big->len, 1);
        assert_true(big_cost <= 3 * cost - 1);
        assert_true(big_cost + cost > 3 * cost - 1);
        assert_int_equal(history_append(h, "t", 1, RUN_A, 4, big, false, 0), 0);
        shared_frame_release(big);
        history_get_stats(h, &stats);
        assert_int_equal(stats.events, 1);
        assert_int_equal(stats.bytes, big_cost);
        assert_int_equal(stats.evictions_bytes, 3);
        assert_int_equal(history_first(h), 4);
    }
    history_free(h);
    assert_int_equal(shared_frame_live_count(), 0);
}

static void test_expire_evicts_entries_past_their_age_and_returns_next_expiry(void **state)
{
    struct history *h = history_of(100, 1 << 20, 1000);
    struct history_stats stats;
    uint64_t after;

    assert_int_equal(history_expire(h, 5000), 0); /* empty */
    assert_int_equal(append_at(h, RUN_A, 1, false, 100), 0);
    assert_int_equal(append_at(h, RUN_A, 2, false, 200), 0);
    assert_int_equal(append_at(h, RUN_A, 3, false, 700), 0);

    assert_int_equal(history_expire(h, 1099), 1100);
    history_get_stats(h, &stats);
    assert_int_equal(stats.events, 3);
    /* at_ms + ttl_ms == now: gone. */
    assert_int_equal(history_expire(h, 1200), 1700);
    history_get_stats(h, &stats);
    assert_int_equal(stats.events, 1);
    assert_int_equal(stats.evictions_age, 2);
    assert_int_equal(stats.evictions_count, 0);
    assert_int_equal(stats.evictions_bytes, 0);
    assert_int_equal(stats.bytes, ENTRY_COST(12, 1));
    assert_int_equal(history_first(h), 3);
    assert_int_equal(lookup(h, RUN_A, 2), HISTORY_TOO_OLD);
    assert_int_equal(find(h, RUN_A, 3, &after), HISTORY_FOUND);
    assert_int_equal(shared_frame_live_count(), 1);

    assert_int_equal(history_expire(h, 1700), 0);
    assert_int_equal(history_first(h), 4);
    assert_int_equal(history_end(h), 4);
    assert_int_equal(shared_frame_live_count(), 0);
    assert_int_equal(lookup(h, RUN_A, 3), HISTORY_TOO_OLD);
    history_free(h);
}

static void test_id_of_unknown_run_is_unknown_after_the_last_not_yet(void **state)
{
    struct history *h = history_of(100, 1 << 20, 60000);

    assert_int_equal(lookup(h, RUN_A, 1), HISTORY_UNKNOWN); /* empty */
    for (uint64_t n = 1; n <= 3; n++)
        assert_int_equal(append(h, RUN_A, n), 0);
    assert_int_equal(lookup(h, RUN_B, 1), HISTORY_UNKNOWN);
    assert_int_equal(lookup(h, RUN_B, 2), HISTORY_UNKNOWN);
    /* Of a run this daemon has, not received yet: it may be on its way. */
    assert_int_equal(lookup(h, RUN_A, 4), HISTORY_NOT_YET);
    assert_int_equal(lookup(h, RUN_A, UINT64_MAX), HISTORY_NOT_YET);
    history_free(h);
}

static void test_malformed_id_text_is_unknown(void **state)
{
    struct history *h = history_of(100, 1 << 20, 60000);
    static const char *const texts[] = {
        "x",
        "abc-def",
        "0006123456789001-000000000000001",   /* 32 characters */
        "0006123456789001-00000000000000001", /* 34 */
        "0006123456789001-0000000000000000",  /* number 0 */
        "0006123456789001_0000000000000001",  /* no '-' */
        "0006123456789ABC-0000000000000001",  /* upper case */
        "000612345678900g-0000000000000001",
    };
    uint64_t after = 77;

    assert_int_equal(append(h, RUN_A, 1), 0);
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
        assert_int_equal(history_find(h, texts[i], strlen(texts[i]), &after), HISTORY_UNKNOWN);
        assert_int_equal(after, 77);
    }
    /* The right id, a byte short: not the id. */
    assert_int_equal(history_find(h, "0006123456789001-0000000000000001", EVENT_ID_LEN - 1, &after),
                     HISTORY_UNKNOWN);
    assert_int_equal(history_find(h, "0006123456789001-0000000000000001", EVENT_ID_LEN, &after),
                     HISTORY_FOUND);
    assert_int_equal(after, 1);
    history_free(h);
}

static void test_gap_within_a_run_makes_ids_before_it_too_old(void **state)
{
    struct history *h = history_of(100, 1 << 20, 60000);
    uint64_t after;

    assert_int_equal(append(h, RUN_A, 1), 0);
    assert_int_equal(append(h, RUN_A, 2), 0);
    /* 3 and 4 missed (the bus was down): 5 at position 3 is a gap. */
    assert_int_equal(append(h, RUN_A, 5), 0);
    assert_int_equal(append(h, RUN_A, 6), 0);
    assert_int_equal(lookup(h, RUN_A, 1), HISTORY_TOO_OLD);
    assert_int_equal(lookup(h, RUN_A, 2), HISTORY_TOO_OLD);
    assert_int_equal(lookup(h, RUN_A, 3), HISTORY_TOO_OLD); /* never had, but before the last */
    assert_int_equal(lookup(h, RUN_A, 4), HISTORY_TOO_OLD);
    /* From the event right after the missing ones, nothing is skipped. */
    assert_int_equal(find(h, RUN_A, 5, &after), HISTORY_FOUND);
    assert_int_equal(after, 3);
    assert_int_equal(find(h, RUN_A, 6, &after), HISTORY_FOUND);
    assert_int_equal(after, 4);
    /* The events stay retained (a resume from "oldest" has them). */
    assert_int_equal(history_first(h), 1);
    assert_int_equal(history_get(h, 1)->number, 1);

    /* The run going on without a break is no new gap. */
    assert_int_equal(append(h, RUN_A, 7), 0);
    assert_int_equal(find(h, RUN_A, 5, &after), HISTORY_FOUND);
    history_free(h);
}

static void test_number_not_after_the_last_is_a_gap(void **state)
{
    struct history *h = history_of(100, 1 << 20, 60000);
    uint64_t after;

    assert_int_equal(append(h, RUN_A, 1), 0);
    assert_int_equal(append(h, RUN_A, 2), 0);
    assert_int_equal(append(h, RUN_A, 3), 0);
    /* 2 again (at position 4): not one more than the last received. */
    assert_int_equal(append(h, RUN_A, 2), 0);
    assert_int_equal(lookup(h, RUN_A, 1), HISTORY_TOO_OLD);
    assert_int_equal(lookup(h, RUN_A, 3), HISTORY_TOO_OLD);
    /* The run's last stays 3: 4 follows it without a gap. */
    assert_int_equal(append(h, RUN_A, 4), 0);
    assert_int_equal(find(h, RUN_A, 4, &after), HISTORY_FOUND);
    assert_int_equal(after, 5);
    /* A repeated id names its newest event, which is right after the gap. */
    assert_int_equal(find(h, RUN_A, 2, &after), HISTORY_FOUND);
    assert_int_equal(after, 4);
    assert_int_equal(lookup(h, RUN_A, 5), HISTORY_NOT_YET);
    history_free(h);
}

static void test_run_starting_after_number_one_is_a_gap(void **state)
{
    struct history *h = history_of(100, 1 << 20, 60000);
    uint64_t after;

    assert_int_equal(append(h, RUN_A, 1), 0);
    assert_int_equal(append(h, RUN_A, 2), 0);
    /* A new run starting at 1 is none: nothing of it was missed. */
    assert_int_equal(append(h, RUN_B, 1), 0);
    assert_int_equal(find(h, RUN_A, 1, &after), HISTORY_FOUND);
    assert_int_equal(after, 1);
    /* A run first heard of at its 4th event: 1..3 were missed. */
    assert_int_equal(append(h, UINT64_C(0x0006123456789003), 4), 0);
    assert_int_equal(append(h, RUN_B, 2), 0);
    assert_int_equal(lookup(h, RUN_A, 1), HISTORY_TOO_OLD);
    assert_int_equal(lookup(h, RUN_B, 1), HISTORY_TOO_OLD);
    assert_int_equal(lookup(h, UINT64_C(0x0006123456789003), 3), HISTORY_TOO_OLD);
    assert_int_equal(find(h, UINT64_C(0x0006123456789003), 4, &after), HISTORY_FOUND);
    assert_int_equal(after, 4);
    assert_int_equal(find(h, RUN_B, 2, &after), HISTORY_FOUND);
    assert_int_equal(after, 5);
    history_free(h);
}

static void test_interleaving_makes_ids_at_or_before_it_unknown(void **state)
{
    struct history *h = history_of(100, 1 << 20, 60000);
    uint64_t after;

    assert_int_equal(append(h, RUN_A, 1), 0);
    assert_int_equal(append(h, RUN_B, 1), 0);
    assert_int_equal(append_at(h, RUN_A, 2, true, 0), 0); /* position 3, B still live */
    assert_int_equal(append(h, RUN_A, 3), 0);
    assert_int_equal(lookup(h, RUN_A, 1), HISTORY_UNKNOWN);
    assert_int_equal(lookup(h, RUN_B, 1), HISTORY_UNKNOWN);
    assert_int_equal(lookup(h, RUN_A, 2), HISTORY_UNKNOWN);
    assert_int_equal(find(h, RUN_A, 3, &after), HISTORY_FOUND);
    assert_int_equal(after, 4);
    /* A later interleaving moves the line. */
    assert_int_equal(append_at(h, RUN_B, 2, true, 0), 0);
    assert_int_equal(append(h, RUN_B, 3), 0);
    assert_int_equal(lookup(h, RUN_A, 3), HISTORY_UNKNOWN);
    assert_int_equal(lookup(h, RUN_B, 2), HISTORY_UNKNOWN);
    assert_int_equal(find(h, RUN_B, 3, &after), HISTORY_FOUND);
    assert_int_equal(after, 6);
    history_free(h);
}

static void test_gap_before_interleaving_answers_too_old(void **state)
{
    struct history *h = history_of(100, 1 << 20, 60000);
    uint64_t after;

    assert_int_equal(append(h, RUN_A, 1), 0);
    assert_int_equal(append_at(h, RUN_B, 1, true, 0), 0); /* interleaving at 2 */
    assert_int_equal(append(h, RUN_A, 5), 0);             /* gap at 3 */
    assert_int_equal(append(h, RUN_A, 6), 0);
    assert_int_equal(lookup(h, RUN_A, 1), HISTORY_TOO_OLD);
    assert_int_equal(lookup(h, RUN_B, 1), HISTORY_TOO_OLD);
    assert_int_equal(find(h, RUN_A, 5, &after), HISTORY_FOUND);
    assert_int_equal(after, 3);
    history_free(h);
}

static void test_disabled_history_retains_nothing_and_answers_disabled(void **state)
{
    struct history *h = history_of(0, 1 << 20, 60000);
    struct shared_frame *frame = frame_of_payload(10);
    struct history_stats stats;
    uint64_t after = 9;

    assert_false(history_enabled(h));
    assert_int_equal(history_append(h, "t", 1, RUN_A, 1, frame, false, 0), 0);
    assert_int_equal(frame->refs, 1);
    assert_null(history_get(h, 1));
    assert_int_equal(history_first(h), history_end(h));
    assert_int_equal(history_find(h, "0006123456789001-0000000000000001", EVENT_ID_LEN, &after),
                     HISTORY_DISABLED);
    assert_int_equal(history_find(h, "junk", 4, &after), HISTORY_DISABLED);
    assert_int_equal(after, 9);
    assert_int_equal(history_expire(h, 100000), 0);
    history_get_stats(h, &stats);
    assert_int_equal(stats.events, 0);
    assert_int_equal(stats.bytes, 0);
    shared_frame_release(frame);
    history_free(h);
    history_free(NULL);
    assert_int_equal(shared_frame_live_count(), 0);
}

static void test_event_larger_than_max_bytes_is_not_retained_and_is_a_gap(void **state)
{
    size_t cost = ENTRY_COST(12, 1);
    struct history *h = history_of(100, 4 * cost, 60000);
    struct shared_frame *big = frame_of_payload(1000);
    struct history_stats stats;
    uint64_t after;

    assert_true(ENTRY_COST(big->len, 1) > 4 * cost);
    assert_int_equal(append(h, RUN_A, 1), 0);
    assert_int_equal(append(h, RUN_A, 2), 0);
    assert_int_equal(history_append(h, "t", 1, RUN_A, 3, big, false, 0), 0);
    assert_int_equal(big->refs, 1); /* no reference kept */
    shared_frame_release(big);
    /* It took position 3; nothing retained before it either (an unbroken
     * stretch: a replay from the oldest does not skip it silently). */
    assert_int_equal(history_end(h), 4);
    assert_int_equal(history_first(h), 4);
    assert_null(history_get(h, 3));
    history_get_stats(h, &stats);
    assert_int_equal(stats.events, 0);
    assert_int_equal(stats.bytes, 0);
    assert_int_equal(stats.evictions_bytes, 2);
    assert_int_equal(lookup(h, RUN_A, 2), HISTORY_TOO_OLD);
    assert_int_equal(lookup(h, RUN_A, 3), HISTORY_TOO_OLD);

    /* Its number was taken: the next of the run is no gap. */
    assert_int_equal(append(h, RUN_A, 4), 0);
    assert_int_equal(append(h, RUN_A, 5), 0);
    assert_int_equal(find(h, RUN_A, 4, &after), HISTORY_FOUND);
    assert_int_equal(after, 4);
    assert_int_equal(find(h, RUN_A, 5, &after), HISTORY_FOUND);
    assert_int_equal(after, 5);
    assert_int_equal(history_get(h, 4)->number, 4);
    history_free(h);
    assert_int_equal(shared_frame_live_count(), 0);
}

static void test_frames_are_released_on_eviction_and_on_free(void **state)
{
    struct history *h = history_of(2, 1 << 20, 1000);
    struct shared_frame *f[4];

    for (int i = 0; i < 4; i++)
        f[i] = frame_of_payload(10);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(history_append(h, "t", 1, RUN_A, (uint64_t)i + 1, f[i], false, 0), 0);
        assert_int_equal(f[i]->refs, 2);
    }
    assert_int_equal(f[0]->refs, 1); /* evicted by count */
    shared_frame_release(f[0]);
    shared_frame_release(f[1]);
    shared_frame_release(f[2]);
    assert_int_equal(shared_frame_live_count(), 2 + 1); /* the history's, and f[3] */
    {
        struct history_stats stats;
        history_get_stats(h, &stats);
        assert_int_equal(stats.frame_bytes, shared_frame_live_bytes() - f[3]->len);
    }
    assert_int_equal(history_expire(h, 1000), 0);
    assert_int_equal(shared_frame_live_count(), 1); /* evicted by age */

    assert_int_equal(history_append(h, "t", 1, RUN_A, 4, f[3], false, 2000), 0);
    assert_int_equal(f[3]->refs, 2);
    history_free(h);
    assert_int_equal(f[3]->refs, 1);
    shared_frame_release(f[3]);
    assert_int_equal(shared_frame_live_count(), 0);
}

static void test_run_table_forgets_the_least_recently_seen_run(void **state)
{
    /* One entry retained: every id but the last is answered from the run
     * table alone, TOO_OLD while its run is known, UNKNOWN once forgotten. */
    struct history *h = history_of(1, 1 << 20, 60000);
    uint64_t base = UINT64_C(0x0006000000000000);

    for (uint64_t r = 0; r < HISTORY_RUNS; r++)
        assert_int_equal(append(h, base + r, 1), 0);
    for (uint64_t r = 0; r < HISTORY_RUNS - 1; r++)
        assert_int_equal(lookup(h, base + r, 1), HISTORY_TOO_OLD);
    /* The first run is seen again: the second is now the least recent. */
    assert_int_equal(append(h, base, 2), 0);
    assert_int_equal(append(h, base + HISTORY_RUNS, 1), 0);
    assert_int_equal(lookup(h, base + 1, 1), HISTORY_UNKNOWN);
    assert_int_equal(lookup(h, base, 1), HISTORY_TOO_OLD);
    assert_int_equal(lookup(h, base, 2), HISTORY_TOO_OLD);
    for (uint64_t r = 2; r < HISTORY_RUNS; r++)
        assert_int_equal(lookup(h, base + r, 1), HISTORY_TOO_OLD);

    /* Many more runs: only the last HISTORY_RUNS are known. */
    for (uint64_t r = 100; r < 100 + 3 * HISTORY_RUNS; r++)
        assert_int_equal(append(h, base + r, 1), 0);
    assert_int_equal(lookup(h, base, 1), HISTORY_UNKNOWN);
    assert_int_equal(lookup(h, base + 100 + 2 * HISTORY_RUNS - 1, 1), HISTORY_UNKNOWN);
    assert_int_equal(lookup(h, base + 100 + 2 * HISTORY_RUNS, 1), HISTORY_TOO_OLD);

    /* A forgotten run heard of again past its 1st event: a gap. */
    {
        uint64_t after;
        assert_int_equal(append(h, base + 1, 2), 0);
        assert_int_equal(find(h, base + 1, 2, &after), HISTORY_FOUND);
        assert_int_equal(append(h, base + 1, 3), 0);
        assert_int_equal(lookup(h, base + 1, 1), HISTORY_TOO_OLD);
    }
    history_free(h);
    assert_int_equal(shared_frame_live_count(), 0);
}

static void test_many_appends_stay_bounded_by_max_events(void **state)
{
    struct history *h = history_of(1000, 1 << 24, 60000);
    struct history_stats stats;
    uint64_t after;

    for (uint64_t n = 1; n <= 100000; n++)
        assert_int_equal(append_at(h, RUN_A, n, false, n), 0);
    history_get_stats(h, &stats);
    assert_int_equal(stats.events, 1000);
    assert_int_equal(stats.bytes, 1000 * ENTRY_COST(12, 1));
    assert_int_equal(stats.evictions_count, 99000);
    assert_int_equal(shared_frame_live_count(), 1000);
    assert_int_equal(history_first(h), 99001);
    assert_int_equal(history_end(h), 100001);
    for (uint64_t pos = 99001; pos <= 100000; pos++) {
        const struct history_entry *e = history_get(h, pos);
        assert_non_null(e);
        assert_int_equal(e->pos, pos);
        assert_int_equal(find(h, RUN_A, pos, &after), HISTORY_FOUND);
        assert_int_equal(after, pos);
    }
    assert_null(history_get(h, 99000));
    assert_int_equal(lookup(h, RUN_A, 99000), HISTORY_TOO_OLD);
    assert_int_equal(lookup(h, RUN_A, 1), HISTORY_TOO_OLD);
    assert_int_equal(lookup(h, RUN_A, 100001), HISTORY_NOT_YET);
    history_free(h);
    assert_int_equal(shared_frame_live_count(), 0);
}

static void test_ring_growth_keeps_positions_after_wrapping(void **state)
{
    /* Evictions by bytes move the ring's head, then the ring grows: every
     * retained entry must stay at its position. */
    size_t cost = ENTRY_COST(12, 1);
    struct history *h = history_of(1000, 10 * cost, 60000);
    struct history_limits big = {.max_events = 1000, .max_bytes = 1 << 20, .ttl_ms = 60000};
    struct history *g = history_new(&big, 1);
    uint64_t after;

    assert_non_null(g);
    for (uint64_t n = 1; n <= 25; n++)
        assert_int_equal(append(h, RUN_A, n), 0);
    assert_int_equal(history_first(h), 16);
    for (uint64_t pos = 16; pos <= 25; pos++)
        assert_int_equal(history_get(h, pos)->number, pos);

    /* Wrapped then grown: 10 evicted by age, then 30 more appended. */
    for (uint64_t n = 1; n <= 14; n++)
        assert_int_equal(append_at(g, RUN_A, n, false, n < 11 ? 0 : 100000), 0);
    assert_int_equal(history_expire(g, 60000), 100000 + 60000);
    assert_int_equal(history_first(g), 11);
    for (uint64_t n = 15; n <= 44; n++)
        assert_int_equal(append_at(g, RUN_A, n, false, 100000), 0);
    for (uint64_t pos = 11; pos <= 44; pos++) {
        assert_int_equal(history_get(g, pos)->number, pos);
        assert_int_equal(find(g, RUN_A, pos, &after), HISTORY_FOUND);
        assert_int_equal(after, pos);
    }
    history_free(h);
    history_free(g);
    assert_int_equal(shared_frame_live_count(), 0);
}

static void test_sync_makes_a_run_known_and_marks_what_was_lost(void **state)
{
    struct history *h = history_of(100, 1 << 20, 60000);
    uint64_t after, last;

    /* A listen daemon that has sent nothing yet: its run is known, empty. */
    assert_false(history_run_last(h, RUN_A, &last));
    history_sync(h, RUN_A, 0);
    assert_true(history_run_last(h, RUN_A, &last));
    assert_true(last == 0);
    assert_int_equal(lookup(h, RUN_A, 1), HISTORY_NOT_YET);
    assert_int_equal(append(h, RUN_A, 1), 0);
    assert_int_equal(append(h, RUN_A, 2), 0);
    /* A sync that says what was received: nothing lost. */
    history_sync(h, RUN_A, 2);
    assert_int_equal(find(h, RUN_A, 1, &after), HISTORY_FOUND);
    assert_int_equal(after, 1);
    /* One that says more was sent than came: those are lost, and every
     * resume from before them would skip them. */
    history_sync(h, RUN_A, 5);
    assert_true(history_run_last(h, RUN_A, &last));
    assert_true(last == 5);
    assert_int_equal(lookup(h, RUN_A, 2), HISTORY_TOO_OLD);
    assert_int_equal(lookup(h, RUN_A, 4), HISTORY_TOO_OLD);
    assert_int_equal(append(h, RUN_A, 6), 0);
    assert_int_equal(find(h, RUN_A, 6, &after), HISTORY_FOUND);
    /* A run first known by a sync with events before it: those are gone. */
    history_sync(h, RUN_B, 7);
    assert_int_equal(lookup(h, RUN_B, 7), HISTORY_TOO_OLD);
    assert_int_equal(lookup(h, RUN_B, 8), HISTORY_NOT_YET);
    history_free(h);

    /* Off: a no-op. */
    h = history_of(0, 1 << 20, 60000);
    history_sync(h, RUN_A, 3);
    assert_false(history_run_last(h, RUN_A, &last));
    history_free(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_append_then_get_by_position_returns_each_entry),
        cmocka_unit_test(test_find_retained_id_answers_found_with_its_position),
        cmocka_unit_test(test_eviction_by_count_keeps_the_newest_and_evicted_ids_are_too_old),
        cmocka_unit_test(test_eviction_by_bytes_counts_frame_and_entry_memory),
        cmocka_unit_test(test_expire_evicts_entries_past_their_age_and_returns_next_expiry),
        cmocka_unit_test(test_id_of_unknown_run_is_unknown_after_the_last_not_yet),
        cmocka_unit_test(test_sync_makes_a_run_known_and_marks_what_was_lost),
        cmocka_unit_test(test_malformed_id_text_is_unknown),
        cmocka_unit_test(test_gap_within_a_run_makes_ids_before_it_too_old),
        cmocka_unit_test(test_number_not_after_the_last_is_a_gap),
        cmocka_unit_test(test_run_starting_after_number_one_is_a_gap),
        cmocka_unit_test(test_interleaving_makes_ids_at_or_before_it_unknown),
        cmocka_unit_test(test_gap_before_interleaving_answers_too_old),
        cmocka_unit_test(test_disabled_history_retains_nothing_and_answers_disabled),
        cmocka_unit_test(test_event_larger_than_max_bytes_is_not_retained_and_is_a_gap),
        cmocka_unit_test(test_frames_are_released_on_eviction_and_on_free),
        cmocka_unit_test(test_run_table_forgets_the_least_recently_seen_run),
        cmocka_unit_test(test_many_appends_stay_bounded_by_max_events),
        cmocka_unit_test(test_ring_growth_keeps_positions_after_wrapping),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
