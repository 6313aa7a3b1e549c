#include "shared_frame.h"

#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "ws_frame.h"

static size_t live_count, live_bytes;

struct shared_frame *shared_frame_new_text(const uint8_t *payload, size_t len)
{
    uint8_t header[WS_FRAME_HEADER_MAX];
    size_t header_len = ws_frame_header_encode(header, WS_OPCODE_TEXT, len);
    struct shared_frame *frame = malloc(sizeof *frame + header_len + len);
    if (!frame)
        return NULL;
    frame->refs = 1;
    frame->len = header_len + len;
    memcpy(frame->bytes, header, header_len);
    memcpy(frame->bytes + header_len, payload, len);
    live_count++;
    live_bytes += frame->len;
    return frame;
}

void shared_frame_release(struct shared_frame *frame)
{
    if (frame && --frame->refs == 0) {
        live_count--;
        live_bytes -= frame->len;
        free(frame);
    }
}

static void frame_cleanup(const void *data, size_t len, void *arg)
{
    shared_frame_release(arg);
}

int shared_frame_append(struct shared_frame *frame, struct evbuffer *out)
{
    frame->refs++;
    if (evbuffer_add_reference(out, frame->bytes, frame->len, frame_cleanup, frame) < 0) {
        frame->refs--;
        return -1;
    }
    return 0;
}

size_t shared_frame_live_count(void)
{
    return live_count;
}

size_t shared_frame_live_bytes(void)
{
    return live_bytes;
}
