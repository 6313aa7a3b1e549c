#include "net/metrics_endpoint.h"

#include <event2/buffer.h>

#include "net/http_server.h"
#include "core/metrics.h"

void metrics_endpoint_serve(struct http_exchange *ex, const char *token, metrics_write_fn write,
                            void *arg)
{
    const struct http_header *authorization =
        http_request_header(http_exchange_head(ex), "Authorization");
    struct evbuffer *out;
    if (!metrics_authorized(authorization ? authorization->value : NULL,
                            authorization ? authorization->value_len : 0, token)) {
        http_exchange_respond_code(ex, 403, "UNAUTHENTICATED");
        return;
    }
    out = evbuffer_new();
    if (!out) {
        http_exchange_respond_code(ex, 500, "INTERNAL_ERROR");
        return;
    }
    write(arg, out);
    http_exchange_respond_full(ex, 200, NULL, METRICS_CONTENT_TYPE,
                               (const char *)evbuffer_pullup(out, -1), evbuffer_get_length(out));
    evbuffer_free(out);
}
