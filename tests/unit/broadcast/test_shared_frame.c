/* Unit tests for broadcast/shared_frame.c: small frames are copied into an
 * output, large ones referenced; what an output holds is counted, and the
 * counts (and the frames) are let go of when the output is done with them,
 * whether its owner is still there or not.
 *
 * Real evbuffers; draining one stands in for the socket taking the bytes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <event2/buffer.h>

#include "shared_frame.h"

/* A frame whose whole length (header included) is frame_len. */
static struct shared_frame *frame_of_length(size_t frame_len)
{
    size_t header = frame_len - 2 <= 125 ? 2 : frame_len - 4 <= 65535 ? 4 : 10;
    uint8_t *payload = malloc(frame_len - header);
    struct shared_frame *frame;
    assert_non_null(payload);
    memset(payload, 'x', frame_len - header);
    frame = shared_frame_new_text(payload, frame_len - header);
    free(payload);
    assert_non_null(frame);
    assert_int_equal(frame->len, frame_len);
    return frame;
}

static void test_frame_up_to_the_copy_limit_is_copied_and_costs_its_bytes(void **state)
{
    struct evbuffer *out = evbuffer_new();
    struct shared_frame_tally *tally = NULL;
    struct shared_frame *tiny = frame_of_length(40), *edge = frame_of_length(SHARED_FRAME_COPY_MAX);
    uint8_t first[2];

    assert_int_equal(shared_frame_cost(tiny), 40);
    assert_int_equal(shared_frame_cost(edge), SHARED_FRAME_COPY_MAX);
    assert_int_equal(shared_frame_append(tiny, out, &tally), 0);
    assert_int_equal(shared_frame_append(edge, out, &tally), 0);
    assert_null(tally); /* nothing referenced */
    assert_int_equal(evbuffer_get_length(out), 40 + SHARED_FRAME_COPY_MAX);
    /* The output holds copies: the frames go with their creator's reference. */
    shared_frame_release(tiny);
    shared_frame_release(edge);
    assert_int_equal(shared_frame_live_count(), 0);
    assert_int_equal(evbuffer_copyout(out, first, 2), 2);
    assert_int_equal(first[0], 0x81); /* FIN + text */
    assert_int_equal(first[1], 38);
    evbuffer_free(out);
}

static void test_larger_frame_is_referenced_and_counted_until_written(void **state)
{
    struct evbuffer *a = evbuffer_new(), *b = evbuffer_new();
    struct shared_frame_tally *tally_a = NULL, *tally_b = NULL;
    struct shared_frame *big = frame_of_length(SHARED_FRAME_COPY_MAX + 1);

    assert_int_equal(shared_frame_cost(big),
                     SHARED_FRAME_COPY_MAX + 1 + SHARED_FRAME_REFERENCE_COST);
    assert_int_equal(shared_frame_append(big, a, &tally_a), 0);
    assert_int_equal(shared_frame_append(big, a, &tally_a), 0);
    assert_int_equal(shared_frame_append(big, b, &tally_b), 0);
    assert_non_null(tally_a);
    assert_non_null(tally_b);
    assert_int_equal(shared_frame_tally_overhead(tally_a), 2 * SHARED_FRAME_REFERENCE_COST);
    assert_int_equal(shared_frame_tally_overhead(tally_b), SHARED_FRAME_REFERENCE_COST);
    /* One copy of the bytes, shared. */
    shared_frame_release(big);
    assert_int_equal(shared_frame_live_count(), 1);
    assert_int_equal(shared_frame_live_bytes(), SHARED_FRAME_COPY_MAX + 1);

    /* Half of the first reference written: it is still held. */
    evbuffer_drain(a, 500);
    assert_int_equal(shared_frame_tally_overhead(tally_a), 2 * SHARED_FRAME_REFERENCE_COST);
    evbuffer_drain(a, SHARED_FRAME_COPY_MAX + 1 - 500);
    assert_int_equal(shared_frame_tally_overhead(tally_a), SHARED_FRAME_REFERENCE_COST);
    evbuffer_drain(a, evbuffer_get_length(a));
    assert_int_equal(shared_frame_tally_overhead(tally_a), 0);
    assert_int_equal(shared_frame_live_count(), 1); /* b still holds it */
    evbuffer_free(b);
    assert_int_equal(shared_frame_tally_overhead(tally_b), 0);
    assert_int_equal(shared_frame_live_count(), 0);
    shared_frame_tally_release(tally_a);
    shared_frame_tally_release(tally_b);
    evbuffer_free(a);
}

static void test_tally_released_by_its_owner_lives_until_the_output_lets_go(void **state)
{
    struct evbuffer *out = evbuffer_new();
    struct shared_frame_tally *tally = NULL;
    struct shared_frame *big = frame_of_length(4096);

    assert_int_equal(shared_frame_append(big, out, &tally), 0);
    assert_int_equal(shared_frame_append(big, out, &tally), 0);
    shared_frame_release(big);
    /* The owner goes first (a session ends while its connection flushes):
     * the output's releases still find the tally, and the last one frees
     * it (the sanitizer build would report a use after free or a leak). */
    shared_frame_tally_release(tally);
    evbuffer_drain(out, 4096);
    assert_int_equal(shared_frame_live_count(), 1);
    evbuffer_free(out);
    assert_int_equal(shared_frame_live_count(), 0);
    shared_frame_tally_release(NULL);
    assert_int_equal(shared_frame_tally_overhead(NULL), 0);
}

static void test_copy_after_a_reference_keeps_the_frames_in_order(void **state)
{
    struct evbuffer *out = evbuffer_new();
    struct shared_frame_tally *tally = NULL;
    struct shared_frame *big = frame_of_length(70000), *tiny = frame_of_length(10);
    uint8_t *all;
    size_t len;

    assert_int_equal(shared_frame_append(tiny, out, &tally), 0);
    assert_int_equal(shared_frame_append(big, out, &tally), 0);
    assert_int_equal(shared_frame_append(tiny, out, &tally), 0);
    len = evbuffer_get_length(out);
    assert_int_equal(len, 10 + 70000 + 10);
    all = evbuffer_pullup(out, -1);
    assert_memory_equal(all, tiny->bytes, 10);
    assert_memory_equal(all + 10, big->bytes, 70000);
    assert_memory_equal(all + 70010, tiny->bytes, 10);
    /* pullup copied the reference out: it is released, and counted so. */
    assert_int_equal(shared_frame_tally_overhead(tally), 0);
    shared_frame_release(big);
    shared_frame_release(tiny);
    assert_int_equal(shared_frame_live_count(), 0);
    shared_frame_tally_release(tally);
    evbuffer_free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_frame_up_to_the_copy_limit_is_copied_and_costs_its_bytes),
        cmocka_unit_test(test_larger_frame_is_referenced_and_counted_until_written),
        cmocka_unit_test(test_tally_released_by_its_owner_lives_until_the_output_lets_go),
        cmocka_unit_test(test_copy_after_a_reference_keeps_the_frames_in_order),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
