/* Unit tests for common/core/metrics.c: the Prometheus text written for counters,
 * gauges and histograms, and the bearer check of the metrics endpoint. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <event2/buffer.h>

#include "core/metrics.h"

/* The buffer's text, NUL-terminated; the caller frees it. */
static char *text_of(struct evbuffer *out)
{
    size_t len = evbuffer_get_length(out);
    char *text = malloc(len + 1);
    assert_non_null(text);
    evbuffer_copyout(out, text, len);
    text[len] = '\0';
    return text;
}

static void test_single_writes_help_type_and_the_sample(void **state)
{
    struct evbuffer *out = evbuffer_new();
    metrics_single(out, "evs_things_total", "counter", "Things seen.", 18446744073709551615ull);
    char *text = text_of(out);
    assert_string_equal(text, "# HELP evs_things_total Things seen.\n"
                              "# TYPE evs_things_total counter\n"
                              "evs_things_total 18446744073709551615\n");
    free(text);
    evbuffer_free(out);
}

static void test_samples_carry_their_labels(void **state)
{
    struct evbuffer *out = evbuffer_new();
    metrics_family(out, "evs_answers_total", "counter", "Answers.");
    metrics_sample(out, "evs_answers_total", "code=\"OK\"", 3);
    metrics_sample(out, "evs_answers_total", NULL, 0);
    char *text = text_of(out);
    assert_non_null(strstr(text, "\nevs_answers_total{code=\"OK\"} 3\nevs_answers_total 0\n"));
    free(text);
    evbuffer_free(out);
}

static void test_histogram_buckets_are_cumulative_and_end_at_inf(void **state)
{
    struct metrics_histogram h = {0};
    metrics_histogram_observe(&h, 0.0001); /* first bucket */
    metrics_histogram_observe(&h, 0.001);  /* on a bound: counts in that bucket */
    metrics_histogram_observe(&h, 0.3);
    metrics_histogram_observe(&h, 60); /* past the last bound: only +Inf */
    assert_int_equal(h.count, 4);

    struct evbuffer *out = evbuffer_new();
    metrics_write_histogram(out, "evs_latency_seconds", "Latency.", &h);
    char *text = text_of(out);
    assert_non_null(strstr(text, "# TYPE evs_latency_seconds histogram\n"));
    assert_non_null(strstr(text, "evs_latency_seconds_bucket{le=\"0.0005\"} 1\n"));
    assert_non_null(strstr(text, "evs_latency_seconds_bucket{le=\"0.001\"} 2\n"));
    assert_non_null(strstr(text, "evs_latency_seconds_bucket{le=\"0.25\"} 2\n"));
    assert_non_null(strstr(text, "evs_latency_seconds_bucket{le=\"0.5\"} 3\n"));
    assert_non_null(strstr(text, "evs_latency_seconds_bucket{le=\"10\"} 3\n"));
    assert_non_null(strstr(text, "evs_latency_seconds_bucket{le=\"+Inf\"} 4\n"));
    assert_non_null(strstr(text, "evs_latency_seconds_sum 60.301100\n"));
    assert_non_null(strstr(text, "evs_latency_seconds_count 4\n"));

    /* Every bucket line, in order, never decreasing. */
    unsigned long long last = 0;
    int buckets = 0;
    for (const char *p = strstr(text, "_bucket{"); p != NULL; p = strstr(p + 1, "_bucket{")) {
        unsigned long long value = strtoull(strchr(p, ' ') + 1, NULL, 10);
        assert_true(value >= last);
        last = value;
        buckets++;
    }
    assert_int_equal(buckets, METRICS_BUCKETS + 1);
    free(text);
    evbuffer_free(out);
}

static void test_authorized_without_a_token_always(void **state)
{
    assert_true(metrics_authorized(NULL, 0, NULL));
    assert_true(metrics_authorized(NULL, 0, ""));
    assert_true(metrics_authorized("Basic x", 7, NULL));
}

static void test_authorized_only_with_the_bearer_token(void **state)
{
    const char *token = "s3cret-metrics-token";
    const char *good = "Bearer s3cret-metrics-token";
    assert_true(metrics_authorized(good, strlen(good), token));
    const char *scheme_case = "bearer s3cret-metrics-token";
    assert_true(metrics_authorized(scheme_case, strlen(scheme_case), token));

    assert_false(metrics_authorized(NULL, 0, token));
    const char *wrong = "Bearer s3cret-metrics-tokeN";
    assert_false(metrics_authorized(wrong, strlen(wrong), token));
    const char *prefix = "Bearer s3cret-metrics-toke";
    assert_false(metrics_authorized(prefix, strlen(prefix), token));
    const char *longer = "Bearer s3cret-metrics-token2";
    assert_false(metrics_authorized(longer, strlen(longer), token));
    const char *basic = "Basic  s3cret-metrics-token";
    assert_false(metrics_authorized(basic, strlen(basic), token));
    /* The length is the caller's: bytes past it do not count. */
    assert_false(metrics_authorized(good, strlen(good) - 1, token));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_single_writes_help_type_and_the_sample),
        cmocka_unit_test(test_samples_carry_their_labels),
        cmocka_unit_test(test_histogram_buckets_are_cumulative_and_end_at_inf),
        cmocka_unit_test(test_authorized_without_a_token_always),
        cmocka_unit_test(test_authorized_only_with_the_bearer_token),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
