/* An event's WebSocket frame, encoded once and shared by reference among
 * every subscriber's output buffer (evbuffer_add_reference), so that one
 * 1 MiB event to 10,000 subscribers costs one copy, not 10,000.
 *
 * Reference counted: the creator holds one reference; every output buffer
 * it is added to holds one more, released when those bytes have been
 * written or the connection is gone. The frame is freed by the last release.
 * Single-threaded, like the rest of the daemon.
 */
#ifndef EVS_SHARED_FRAME_H
#define EVS_SHARED_FRAME_H

#include <stddef.h>
#include <stdint.h>

struct evbuffer;

struct shared_frame {
    uint32_t refs;
    size_t len;       /* header + payload bytes */
    uint8_t bytes[];  /* the whole frame, ready for the wire */
};

/* A text frame holding a copy of payload[0..len). Returns it with one
 * reference held by the caller, or NULL when out of memory. */
struct shared_frame *shared_frame_new_text(const uint8_t *payload, size_t len);

/* Appends the frame to out by reference (no copy), taking a reference.
 * Returns 0, or -1 when out of memory. */
int shared_frame_append(struct shared_frame *frame, struct evbuffer *out);

/* Releases one reference. NULL is a no-op. */
void shared_frame_release(struct shared_frame *frame);

/* Frames alive and their bytes, for the metrics. */
size_t shared_frame_live_count(void);
size_t shared_frame_live_bytes(void);

#endif
