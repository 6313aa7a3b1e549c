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
 *   EVENT    u64 seq | u64 run | u64 number | u8 type_len (1..255) | type
 *            | message                                             (listen -> broadcast)
 *            run, number: the event's id (bus/event_id.h), both non-zero,
 *            given by the listen daemon. type: the event type, so the
 *            broadcast side routes without parsing JSON. message: the
 *            finished subscriber message text,
 *            {"type":"event","event":...,"data":...}, at least 1 byte and
 *            at most the decoder's max_message bytes.
 *   HISTORY  the body of an EVENT                                   (listen -> broadcast)
 *            An event the listen daemon sent before this connection
 *            began, replayed so that a broadcast daemon that (re)connects
 *            holds the same history as the others. One the receiver already
 *            has (its run's number not after the last it received) is
 *            skipped; one of a run it already has events of is one it
 *            missed and is delivered late, in order; one of a run it never
 *            saw is kept in its history only (its subscribers came later).
 *   SYNC     u64 run | u64 number                                   body_len 16
 *            (listen -> broadcast). Every event of run up to number that
 *            the listen daemon still retains has now been sent on this
 *            connection (as HISTORY or EVENT); those before were dropped
 *            by its history's bounds. Sent once, after the HISTORY frames
 *            that follow HELLO and before any EVENT; run non-zero, number 0
 *            when none was sent. A listen daemon that sends no SYNC (one
 *            with nothing to replay, or an older one) goes straight to its
 *            EVENTs; the first of them ends the wait for a SYNC.
 *   ACK      u64 seq                                                body_len 8
 *            (broadcast -> listen). Cumulative: every EVENT and HISTORY
 *            frame of this connection with a sequence number up to and
 *            including seq is handled: an EVENT queued to every current
 *            subscriber of its type.
 *
 * Sequence numbers (EVENT and HISTORY frames share them) are per
 * connection, start at 1 and increase by one.
 *
 * The decoder treats the peer as untrusted: every length is checked against
 * the bytes present and against max_message before anything is read, unknown
 * kinds, kinds the receiving side never takes and non-zero flags are errors,
 * and a header announcing an oversized body is refused as soon as its 8 bytes
 * are present. Pure: no I/O (bus_evbuffer.h feeds it from a libevent buffer).
 */
#ifndef EVS_BUS_CODEC_H
#define EVS_BUS_CODEC_H

#include <stddef.h>
#include <stdint.h>

#define BUS_PROTOCOL_VERSION 2
#define BUS_MAGIC 0x45565342u /* "EVSB" */
#define BUS_HEADER_LEN 8
#define BUS_HELLO_FRAME_LEN (BUS_HEADER_LEN + 8)
#define BUS_ACK_FRAME_LEN (BUS_HEADER_LEN + 8)
#define BUS_SYNC_FRAME_LEN (BUS_HEADER_LEN + 16)
#define BUS_TYPE_MAX 255
#define BUS_EVENT_HEAD_MAX (BUS_HEADER_LEN + 8 + 8 + 8 + 1 + BUS_TYPE_MAX)
/* Absolute ceiling on an event message, whatever a daemon is configured with. */
#define BUS_MESSAGE_HARD_MAX (64u * 1024 * 1024)

enum bus_kind {
    BUS_KIND_HELLO = 1,
    BUS_KIND_EVENT = 2,
    BUS_KIND_ACK = 3,
    BUS_KIND_HISTORY = 4,
    BUS_KIND_SYNC = 5,
};

/* The kinds each side may receive, as masks for struct bus_decoder. */
#define BUS_KIND_BIT(kind) (1u << (kind))
#define BUS_KINDS_FROM_LISTEN                                                                      \
    (BUS_KIND_BIT(BUS_KIND_HELLO) | BUS_KIND_BIT(BUS_KIND_EVENT) |                                 \
     BUS_KIND_BIT(BUS_KIND_HISTORY) | BUS_KIND_BIT(BUS_KIND_SYNC))
#define BUS_KINDS_FROM_BROADCAST (BUS_KIND_BIT(BUS_KIND_HELLO) | BUS_KIND_BIT(BUS_KIND_ACK))

enum bus_status {
    BUS_OK = 0,
    BUS_AGAIN = -1,           /* the bytes so far are a valid prefix; need more */
    BUS_ERR_TOO_LARGE = -2,   /* body_len over the limit for its kind */
    BUS_ERR_KIND = -3,        /* unknown kind */
    BUS_ERR_MALFORMED = -4,   /* bad flags/reserved, wrong body size, bad type length, id 0 */
    BUS_ERR_VERSION = -5,     /* HELLO with another magic or version */
    BUS_ERR_NOT_ALLOWED = -6, /* a known kind this side never receives */
    BUS_ERR_TRUNCATED = -7,   /* the stream ended inside a frame */
};

/* A decoded frame. type and message point into the decoded buffer
 * (borrowed: valid while that buffer is). */
struct bus_frame {
    enum bus_kind kind;
    uint16_t version; /* HELLO */
    uint64_t seq;     /* EVENT, HISTORY, ACK */
    uint64_t run;     /* EVENT, HISTORY: the id's run and number, non-zero; SYNC */
    uint64_t number;
    const uint8_t *type; /* EVENT, HISTORY */
    size_t type_len;
    const uint8_t *message; /* EVENT, HISTORY */
    size_t message_len;
};

/* One direction of a bus connection, as its receiving side decodes it.
 * allowed_kinds: BUS_KINDS_FROM_LISTEN (the broadcast daemon's side) or
 * BUS_KINDS_FROM_BROADCAST (the listen daemon's side). max_message bounds an
 * EVENT's message (clamped to BUS_MESSAGE_HARD_MAX; unused when EVENT is not
 * allowed). Holds no bytes and no position: the caller keeps the stream's
 * unconsumed bytes, so the same decoder serves a byte slice or an evbuffer. */
struct bus_decoder {
    unsigned allowed_kinds;
    size_t max_message;
};

/* Decodes the next frame from buf[0..len), the stream's bytes not yet
 * consumed. The header is judged byte by byte as it arrives (kind, then the
 * kind's body length, then flags and reserved), so a prefix never yields a
 * verdict the whole frame would contradict, and an oversized, unknown or
 * not-allowed frame is refused before its body is waited for. Returns:
 *   BUS_OK       *out is the frame (borrowing from buf) and *frame_len its
 *                length: consume that many bytes, then call again for the next.
 *   BUS_AGAIN    buf is a valid prefix; *frame_len (> len) is how many bytes
 *                are needed in one piece before a call can say more: the
 *                header's length until the header is in, then the frame's.
 *   BUS_ERR_KIND, BUS_ERR_NOT_ALLOWED, BUS_ERR_TOO_LARGE, BUS_ERR_MALFORMED,
 *   BUS_ERR_VERSION
 *                the peer broke the protocol: close the connection. *out and
 *                *frame_len are untouched. */
int bus_decoder_next(const struct bus_decoder *dec, const uint8_t *buf, size_t len,
                     struct bus_frame *out, size_t *frame_len);

/* At the end of the stream, judges the len bytes bus_decoder_next left
 * unconsumed: BUS_OK when there are none, BUS_ERR_TRUNCATED when they are the
 * start of a frame that never ended, or the error they already are. */
int bus_decoder_finish(const struct bus_decoder *dec, const uint8_t *buf, size_t len);

/* Encoders write into caller-provided space and return the bytes written. */
size_t bus_encode_hello(uint8_t out[BUS_HELLO_FRAME_LEN]);
size_t bus_encode_ack(uint8_t out[BUS_ACK_FRAME_LEN], uint64_t seq);
/* 0 when run is 0. */
size_t bus_encode_sync(uint8_t out[BUS_SYNC_FRAME_LEN], uint64_t run, uint64_t number);

/* Writes the header and the fixed part of an EVENT, or of a HISTORY frame
 * when kind says so (everything up to the message), so that the message
 * text can follow on the wire without a copy. Returns the bytes written, or
 * 0 when kind is neither, run or number is 0, type_len is 0 or over
 * BUS_TYPE_MAX, or message_len is 0 or over BUS_MESSAGE_HARD_MAX. */
size_t bus_encode_event_head(uint8_t out[BUS_EVENT_HEAD_MAX], enum bus_kind kind, uint64_t seq,
                             uint64_t run, uint64_t number, const char *type, size_t type_len,
                             size_t message_len);

/* A short human reason for a status, for log lines. */
const char *bus_status_text(int status);

#endif
