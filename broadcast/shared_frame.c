#include "shared_frame.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "ws_frame.h"

struct shared_frame_tally {
    size_t references; /* frames referenced by the output and not yet released */
    bool owned;        /* its owner has not let go of it */
};

static size_t live_count, live_bytes;

struct shared_frame *shared_frame_new_text_with(const uint8_t *payload, size_t len, size_t at,
                                                const char *insert, size_t insert_len)
{
    uint8_t header[WS_FRAME_HEADER_MAX];
    size_t header_len = ws_frame_header_encode(header, WS_OPCODE_TEXT, len + insert_len);
    struct shared_frame *frame = malloc(sizeof *frame + header_len + len + insert_len);
    uint8_t *p;
    if (!frame)
        return NULL;
    frame->refs = 1;
    frame->len = header_len + len + insert_len;
    p = frame->bytes;
    memcpy(p, header, header_len);
    p += header_len;
    memcpy(p, payload, at);
    p += at;
    if (insert_len)
        memcpy(p, insert, insert_len);
    memcpy(p + insert_len, payload + at, len - at);
    live_count++;
    live_bytes += frame->len;
    return frame;
}

struct shared_frame *shared_frame_new_text(const uint8_t *payload, size_t len)
{
    return shared_frame_new_text_with(payload, len, len, NULL, 0);
}

void shared_frame_release(struct shared_frame *frame)
{
    if (frame && --frame->refs == 0) {
        live_count--;
        live_bytes -= frame->len;
        free(frame);
    }
}

static bool frame_is_referenced(const struct shared_frame *frame)
{
    return frame->len > SHARED_FRAME_COPY_MAX;
}

size_t shared_frame_cost(const struct shared_frame *frame)
{
    return frame->len + (frame_is_referenced(frame) ? SHARED_FRAME_REFERENCE_COST : 0);
}

static void tally_free_if_done(struct shared_frame_tally *tally)
{
    if (!tally->owned && tally->references == 0)
        free(tally);
}

/* libevent hands back the referenced bytes, frame->bytes, and the tally. */
static void frame_cleanup(const void *data, size_t len, void *arg)
{
    struct shared_frame_tally *tally = arg;
    struct shared_frame *frame =
        (struct shared_frame *)(void *)((const uint8_t *)data -
                                        offsetof(struct shared_frame, bytes));
    shared_frame_release(frame);
    tally->references--;
    tally_free_if_done(tally);
}

/* A copy goes into space reserved at the end of out rather than through
 * evbuffer_add: after a reference, evbuffer_add sizes its new chain after
 * the referenced frame (up to twice its length), where a reservation takes
 * a chain sized for the copy (1 KiB at least), which the next copies fill. */
static int frame_copy(const struct shared_frame *frame, struct evbuffer *out)
{
    struct evbuffer_iovec space;
    if (evbuffer_reserve_space(out, (ev_ssize_t)frame->len, &space, 1) != 1)
        return -1;
    memcpy(space.iov_base, frame->bytes, frame->len);
    space.iov_len = frame->len;
    return evbuffer_commit_space(out, &space, 1);
}

int shared_frame_append(struct shared_frame *frame, struct evbuffer *out,
                        struct shared_frame_tally **tally)
{
    if (!frame_is_referenced(frame))
        return frame_copy(frame, out);
    if (!*tally) {
        if (!(*tally = calloc(1, sizeof **tally)))
            return -1;
        (*tally)->owned = true;
    }
    frame->refs++;
    (*tally)->references++;
    if (evbuffer_add_reference(out, frame->bytes, frame->len, frame_cleanup, *tally) < 0) {
        frame->refs--;
        (*tally)->references--;
        return -1;
    }
    return 0;
}

size_t shared_frame_tally_overhead(const struct shared_frame_tally *tally)
{
    return tally ? tally->references * SHARED_FRAME_REFERENCE_COST : 0;
}

void shared_frame_tally_release(struct shared_frame_tally *tally)
{
    if (tally) {
        tally->owned = false;
        tally_free_if_done(tally);
    }
}

size_t shared_frame_live_count(void)
{
    return live_count;
}

size_t shared_frame_live_bytes(void)
{
    return live_bytes;
}
