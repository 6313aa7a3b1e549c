/* An event's WebSocket frame, encoded once for all its subscribers.
 *
 * A large frame is shared by reference among every subscriber's output
 * buffer (evbuffer_add_reference), so that one 1 MiB event to 10,000
 * subscribers costs one copy, not 10,000. A reference is not free, though:
 * libevent 2.1 gives each one a chain of its own, a 1 KiB allocation
 * (MIN_BUFFER_SIZE) whatever the frame's size. So a small frame is copied
 * into the output instead, where it shares a chain with its neighbours:
 * cheaper in memory and in CPU than a reference, up to about the size of
 * that chain.
 *
 * What an output holds is then its length plus SHARED_FRAME_REFERENCE_COST
 * for each frame it references: a shared_frame_tally per output counts
 * those references until the output has written or dropped them, so that a
 * backlog limit bounds the memory a subscriber really holds whatever the
 * frame sizes.
 *
 * Reference counted: the creator holds one reference; every output buffer
 * it is added to by reference holds one more, released when those bytes
 * have been written or the connection is gone. The frame is freed by the
 * last release. Single-threaded, like the rest of the daemon.
 */
#ifndef EVS_SHARED_FRAME_H
#define EVS_SHARED_FRAME_H

#include <stddef.h>
#include <stdint.h>

struct evbuffer;

/* Frames of at most this many bytes (header included) are copied into an
 * output; larger ones are referenced. */
#define SHARED_FRAME_COPY_MAX 1024

/* Memory a reference costs beyond the frame's bytes: libevent's 1 KiB
 * chain and malloc's header for it. */
#define SHARED_FRAME_REFERENCE_COST 1040

struct shared_frame {
    uint32_t refs;
    size_t len;      /* header + payload bytes */
    uint8_t bytes[]; /* the whole frame, ready for the wire */
};

/* The frames one output buffer holds by reference. Created by the first
 * shared_frame_append that references a frame into that output; its owner
 * (whoever owns the output) lets go of it with shared_frame_tally_release,
 * and it lives on until the output has released the last of them. */
struct shared_frame_tally;

/* A text frame holding a copy of payload[0..len). Returns it with one
 * reference held by the caller, or NULL when out of memory. */
struct shared_frame *shared_frame_new_text(const uint8_t *payload, size_t len);

/* A text frame holding payload[0..len) with insert[0..insert_len) put in
 * at offset at (at <= len): an event message given its "id" member. As
 * shared_frame_new_text otherwise. */
struct shared_frame *shared_frame_new_text_with(const uint8_t *payload, size_t len, size_t at,
                                                const char *insert, size_t insert_len);

/* What appending the frame adds to an output's memory: its bytes, plus
 * SHARED_FRAME_REFERENCE_COST when it goes by reference. */
size_t shared_frame_cost(const struct shared_frame *frame);

/* Appends the frame to out: a copy when it is small, else by reference
 * (taking a reference, counted in *tally, which is created when NULL).
 * The same tally must be passed for every append to one output.
 * Returns 0, or -1 when out of memory (nothing was appended). */
int shared_frame_append(struct shared_frame *frame, struct evbuffer *out,
                        struct shared_frame_tally **tally);

/* Memory the output's references cost beyond their bytes (0 for NULL). */
size_t shared_frame_tally_overhead(const struct shared_frame_tally *tally);

/* The owner lets go of the tally; it is freed now, or by the output's
 * release of its last reference. NULL is a no-op. */
void shared_frame_tally_release(struct shared_frame_tally *tally);

/* Releases one reference. NULL is a no-op. */
void shared_frame_release(struct shared_frame *frame);

/* Frames alive and their bytes, for the metrics. */
size_t shared_frame_live_count(void);
size_t shared_frame_live_bytes(void);

#endif
