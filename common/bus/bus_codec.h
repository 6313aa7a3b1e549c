/* The bus protocol between listen daemons and broadcast daemons: framing.
 *
 * A stream socket (AF_UNIX SOCK_STREAM) carrying frames. Every frame is an
 * 8-byte header followed by body_len bytes of body; integers are big-endian.
 *
 *   header   u32 body_len | u8 kind | u8 flags (0) | u16 reserved (0)
 *
 *   HELLO    u32 magic "EVSB" | u16 version | u16 reserved (0)     body_len 8
 *            Each side sends HELLO first; a peer whose magic or version
 *            differs is closed.
 *   EVENT    u64 seq | u8 type_len (1..255) | type | message           (listen -> broadcast)
 *            type: the event type, so the broadcast side routes without
 *            parsing JSON. message: the finished subscriber message text,
 *            {"type":"event","event":...,"data":...}, at least 1 byte and
 *            at most the decoder's max_message bytes.
 *   ACK      u64 seq                                                body_len 8 (broadcast ->
 * listen) Cumulative: every EVENT of this connection with a sequence number up to and including seq
 * is queued to every current subscriber of its type.
 *
 * Sequence numbers are per connection, start at 1 and increase by one.
 *
 * The decoder treats the peer as untrusted: every length is checked against
 * the bytes present and against max_message before anything is read, unknown
 * kinds and non-zero flags are errors, and a header announcing an oversized
 * body is refused as soon as its 8 bytes are present. Pure: no I/O.
 */
#ifndef EVS_BUS_CODEC_H
#define EVS_BUS_CODEC_H

#include <stddef.h>
#include <stdint.h>

#define BUS_PROTOCOL_VERSION 1
#define BUS_MAGIC 0x45565342u /* "EVSB" */
#define BUS_HEADER_LEN 8
#define BUS_HELLO_FRAME_LEN (BUS_HEADER_LEN + 8)
#define BUS_ACK_FRAME_LEN (BUS_HEADER_LEN + 8)
#define BUS_TYPE_MAX 255
#define BUS_EVENT_HEAD_MAX (BUS_HEADER_LEN + 8 + 1 + BUS_TYPE_MAX)
/* Absolute ceiling on an event message, whatever a daemon is configured with. */
#define BUS_MESSAGE_HARD_MAX (64u * 1024 * 1024)

enum bus_kind {
    BUS_KIND_HELLO = 1,
    BUS_KIND_EVENT = 2,
    BUS_KIND_ACK = 3,
};

enum bus_status {
    BUS_OK = 0,
    BUS_AGAIN = -1,         /* the bytes so far are a valid prefix; need more */
    BUS_ERR_TOO_LARGE = -2, /* body_len over the limit for its kind */
    BUS_ERR_KIND = -3,      /* unknown kind */
    BUS_ERR_MALFORMED = -4, /* bad flags/reserved, wrong body size, bad type length */
    BUS_ERR_VERSION = -5,   /* HELLO with another magic or version */
};

/* A decoded frame. type and message point into the decoded buffer
 * (borrowed: valid while that buffer is). */
struct bus_frame {
    enum bus_kind kind;
    uint16_t version;    /* HELLO */
    uint64_t seq;        /* EVENT, ACK */
    const uint8_t *type; /* EVENT */
    size_t type_len;
    const uint8_t *message; /* EVENT */
    size_t message_len;
};

/* Decodes the frame at the start of buf[0..len).
 * Returns BUS_OK with *out and *frame_len (header + body bytes) set,
 * BUS_AGAIN when buf holds a valid but incomplete frame, or a BUS_ERR_*.
 * max_message bounds an EVENT's message (clamped to BUS_MESSAGE_HARD_MAX). */
int bus_frame_decode(const uint8_t *buf, size_t len, size_t max_message, struct bus_frame *out,
                     size_t *frame_len);

/* Encoders write into caller-provided space and return the bytes written. */
size_t bus_encode_hello(uint8_t out[BUS_HELLO_FRAME_LEN]);
size_t bus_encode_ack(uint8_t out[BUS_ACK_FRAME_LEN], uint64_t seq);

/* Writes the header and the fixed part of an EVENT (everything up to the
 * message), so that the message text can follow on the wire without a copy.
 * Returns the bytes written, or 0 when type_len is 0 or over BUS_TYPE_MAX or
 * message_len is 0 or over BUS_MESSAGE_HARD_MAX. */
size_t bus_encode_event_head(uint8_t out[BUS_EVENT_HEAD_MAX], uint64_t seq, const char *type,
                             size_t type_len, size_t message_len);

/* A short human reason for a status, for log lines. */
const char *bus_status_text(int status);

#endif
