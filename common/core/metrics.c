#include "core/metrics.h"

#include <string.h>
#include <strings.h>

#include <event2/buffer.h>

#include "core/constant_time.h"

static const double bucket_bounds[METRICS_BUCKETS] = {
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
};

void metrics_histogram_observe(struct metrics_histogram *h, double seconds)
{
    for (int i = 0; i < METRICS_BUCKETS; i++) {
        if (seconds <= bucket_bounds[i]) {
            h->counts[i]++;
            break;
        }
    }
    h->count++;
    h->sum += seconds;
}

void metrics_family(struct evbuffer *out, const char *name, const char *type, const char *help)
{
    evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

void metrics_sample(struct evbuffer *out, const char *name, const char *labels, uint64_t value)
{
    if (labels)
        evbuffer_add_printf(out, "%s{%s} %llu\n", name, labels, (unsigned long long)value);
    else
        evbuffer_add_printf(out, "%s %llu\n", name, (unsigned long long)value);
}

void metrics_single(struct evbuffer *out, const char *name, const char *type, const char *help,
                    uint64_t value)
{
    metrics_family(out, name, type, help);
    metrics_sample(out, name, NULL, value);
}

void metrics_write_histogram(struct evbuffer *out, const char *name, const char *help,
                             const struct metrics_histogram *h)
{
    uint64_t cumulative = 0;
    metrics_family(out, name, "histogram", help);
    for (int i = 0; i < METRICS_BUCKETS; i++) {
        cumulative += h->counts[i];
        evbuffer_add_printf(out, "%s_bucket{le=\"%g\"} %llu\n", name, bucket_bounds[i],
                            (unsigned long long)cumulative);
    }
    evbuffer_add_printf(out, "%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)h->count);
    evbuffer_add_printf(out, "%s_sum %.6f\n%s_count %llu\n", name, h->sum, name,
                        (unsigned long long)h->count);
}

int metrics_authorized(const char *authorization, size_t len, const char *token)
{
    size_t token_len;
    if (!token || !*token)
        return 1;
    token_len = strlen(token);
    if (!authorization || len != 7 + token_len || strncasecmp(authorization, "Bearer ", 7) != 0)
        return 0;
    return (int)constant_time_equal(authorization + 7, token, token_len);
}
