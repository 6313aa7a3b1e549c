/* Writing metrics in the Prometheus text exposition format (version 0.0.4).
 * Each family is written as "# HELP", "# TYPE" and its samples. Pure apart
 * from appending to the caller's evbuffer. */
#ifndef EVS_METRICS_H
#define EVS_METRICS_H

#include <stddef.h>
#include <stdint.h>

struct evbuffer;

#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* Latency buckets, in seconds, shared by every histogram here. */
#define METRICS_BUCKETS 14

struct metrics_histogram {
    uint64_t counts[METRICS_BUCKETS]; /* per bucket, not cumulative */
    uint64_t count;
    double sum;
};

void metrics_histogram_observe(struct metrics_histogram *h, double seconds);

/* type: "counter" or "gauge". */
void metrics_family(struct evbuffer *out, const char *name, const char *type, const char *help);
/* labels: NULL, or the inside of the braces, e.g. "code=\"OK\"". */
void metrics_sample(struct evbuffer *out, const char *name, const char *labels, uint64_t value);
/* A one-sample family. */
void metrics_single(struct evbuffer *out, const char *name, const char *type, const char *help,
                    uint64_t value);
/* Whether a request may read the metrics: always when token is NULL or
 * empty, else only with authorization "Bearer <token>" (compared in
 * constant time). authorization may be NULL. */
int metrics_authorized(const char *authorization, size_t len, const char *token);

void metrics_write_histogram(struct evbuffer *out, const char *name, const char *help,
                             const struct metrics_histogram *h);

#endif
