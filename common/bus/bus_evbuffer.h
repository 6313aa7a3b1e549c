/* The bus decoder (bus_codec.h) fed from a libevent input buffer: the glue
 * both daemons' bus connections read through, kept apart so that the codec
 * itself stays pure.
 */
#ifndef EVS_BUS_EVBUFFER_H
#define EVS_BUS_EVBUFFER_H

#include <stddef.h>

#include "bus/bus_codec.h"

struct evbuffer;

/* Decodes the next frame at the front of in, making contiguous only what
 * the decoder asks for: at most the header until the header is judged, then
 * the whole frame once all of it is in (so an oversized or refused frame
 * costs no more than its header). Returns what bus_decoder_next returns.
 * On BUS_OK, *out borrows from in: the caller handles the frame, then drains
 * *frame_len bytes from in before the next call. On BUS_AGAIN, in is left as
 * it was and the caller waits for more bytes. */
int bus_evbuffer_next(const struct bus_decoder *dec, struct evbuffer *in, struct bus_frame *out,
                      size_t *frame_len);

#endif
