/* Validation of a publish body and construction of the subscriber message.
 *
 * The body must be UTF-8 JSON (checked by cJSON) whose top level is an
 * object with a member "event" holding a non-empty string of at most
 * PUBLISH_TYPE_MAX bytes once decoded (no NUL in it), and optionally a member
 * "data" holding any JSON value. Other members are ignored. When a member
 * repeats, the last one wins (as in JSON.parse).
 *
 * The subscriber message is built once per event:
 *   {"type":"event","event":<type, re-escaped>,"data":<data as sent>}
 * where the data is the publisher's raw text of that value, byte-exact (cJSON
 * keeps numbers as doubles, so re-serialising would change digits). Without a
 * "data" member the message has none. Pure.
 */
#ifndef EVS_PUBLISH_BODY_H
#define EVS_PUBLISH_BODY_H

#include <stddef.h>

#define PUBLISH_TYPE_MAX 255

enum publish_body_status {
    PUBLISH_BODY_OK = 0,
    PUBLISH_BODY_INVALID = -1, /* answer 400 INVALID_BODY */
    PUBLISH_BODY_NOMEM = -2,
};

/* Owned by the caller after a successful parse: publish_event_clear. */
struct publish_event {
    char *type; /* decoded event type, NUL-terminated, type_len bytes */
    size_t type_len;
    char *message; /* subscriber message text, NUL-terminated, message_len bytes */
    size_t message_len;
};

/* Parses body[0..len). On PUBLISH_BODY_OK *out is filled; otherwise *out is
 * left empty (all NULL/0). reason, when not NULL, gets a short static text
 * for the debug log. */
int publish_body_parse(const char *body, size_t len, struct publish_event *out,
                       const char **reason);

/* Frees what publish_body_parse allocated and zeroes *event. NULL is a no-op. */
void publish_event_clear(struct publish_event *event);

#endif
