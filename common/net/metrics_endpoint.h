/* GET /metrics for either daemon: checks the optional bearer token, lets the
 * daemon write its families, and answers in the Prometheus text format. */
#ifndef EVS_METRICS_ENDPOINT_H
#define EVS_METRICS_ENDPOINT_H

struct evbuffer;
struct http_exchange;

typedef void (*metrics_write_fn)(void *arg, struct evbuffer *out);

/* Answers ex: 403 UNAUTHENTICATED when token is set and the request lacks
 * "Authorization: Bearer <token>", else 200 with what write(arg, out) wrote. */
void metrics_endpoint_serve(struct http_exchange *ex, const char *token, metrics_write_fn write,
                            void *arg);

#endif
