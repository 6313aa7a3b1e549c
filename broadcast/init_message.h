/* The subscriber's init message (the public contract):
 *   {"authentication": "Basic <token>", "events": ["<type>", ...],
 *    "since": "<event id>" | "oldest" | "now"}            (since: optional)
 *
 * Parse order and results, each answered {"type":"init","code":...}:
 *   not JSON (or not UTF-8)            INIT_INVALID_SYNTAX     INVALID_SYNTAX
 *   no array "events", or an entry
 *   that is not a non-empty string of
 *   at most INIT_TYPE_MAX bytes        INIT_EVENTS_MISSING     INVALID_EVENTS_MISSING
 *   more than max_events entries       INIT_TOO_MANY_EVENTS    TOO_MANY_EVENTS
 *   "since" present and not a string
 *   that is a well-formed event id
 *   (bus/event_id.h: event_id_valid)   INIT_INVALID_SINCE      INVALID_SINCE
 * Authentication is checked by the caller (common/auth/auth.h) afterwards, on
 * authentication/authentication_len (NULL when absent or not a string).
 * Duplicate entries are kept here; the subscription index ignores them. Pure.
 */
#ifndef EVS_INIT_MESSAGE_H
#define EVS_INIT_MESSAGE_H

#include <stddef.h>

#include "bus/event_id.h"

#define INIT_TYPE_MAX 255

enum init_status {
    INIT_OK = 0,
    INIT_INVALID_SYNTAX = -1,
    INIT_EVENTS_MISSING = -2,
    INIT_TOO_MANY_EVENTS = -3,
    INIT_NOMEM = -4,
    INIT_INVALID_SINCE = -5,
};

/* What the init's "since" asks for. */
enum init_since {
    INIT_SINCE_NONE = 0, /* no "since": events without ids, as always */
    INIT_SINCE_ID,       /* replay what followed since_id */
    INIT_SINCE_OLDEST,   /* replay every retained event */
    INIT_SINCE_NOW,      /* replay nothing */
};

/* Owned by the caller after a parse: init_message_clear. */
struct init_message {
    char *authentication; /* NUL-terminated, or NULL */
    size_t authentication_len;
    char **events; /* event_count NUL-terminated types */
    size_t *event_lens;
    size_t event_count;
    enum init_since since;
    char since_id[EVENT_ID_MAX + 1]; /* INIT_SINCE_ID: the id, NUL-terminated */
    size_t since_len;
};

int init_message_parse(const char *text, size_t len, size_t max_events, struct init_message *out);

/* Frees the parse result and zeroes *msg. NULL is a no-op. */
void init_message_clear(struct init_message *msg);

/* The wire code of a status: "INVALID_SYNTAX", "INVALID_EVENTS_MISSING", ... */
const char *init_status_code(int status);

#endif
