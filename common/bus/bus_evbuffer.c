/* Bus decoder over an evbuffer: see bus_evbuffer.h. */
#include "bus/bus_evbuffer.h"

#include <event2/buffer.h>

int bus_evbuffer_next(const struct bus_decoder *dec, struct evbuffer *in, struct bus_frame *out,
                      size_t *frame_len)
{
    size_t len = evbuffer_get_length(in);
    size_t want = len < BUS_HEADER_LEN ? len : BUS_HEADER_LEN;

    if (len == 0)
        return BUS_AGAIN;
    for (;;) {
        const uint8_t *buf = evbuffer_pullup(in, (ev_ssize_t)want);
        size_t need = 0;
        int rc;

        if (!buf)
            return BUS_AGAIN; /* out of memory: the bytes stay for the next read */
        rc = bus_decoder_next(dec, buf, want, out, &need);
        if (rc == BUS_OK)
            *frame_len = need;
        /* Every byte shown has been judged; on BUS_AGAIN need > want, so
         * the loop shows the whole frame at most once more. */
        if (rc != BUS_AGAIN || need > len || need <= want)
            return rc;
        want = need;
    }
}
