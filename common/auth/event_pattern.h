/* Event-type patterns used by roles and JWT claims: an exact type
 * ("orders.created"), or a prefix ending in '*' ("orders.*" matches
 * "orders.created" and "orders.eu.created" but not "orders"; "*" matches
 * every type). A '*' anywhere but at the end is not a pattern. Pure.
 */
#ifndef EVS_EVENT_PATTERN_H
#define EVS_EVENT_PATTERN_H

#include <stdbool.h>
#include <stddef.h>

#define EVENT_PATTERN_MAX 255

/* true when pattern[0..len) is a valid pattern: 1..EVENT_PATTERN_MAX bytes,
 * no NUL, no control characters, '*' only as the last byte. */
bool event_pattern_valid(const char *pattern, size_t len);

/* true when type[0..type_len) matches pattern (NUL-terminated, valid). */
bool event_pattern_match(const char *pattern, const char *type, size_t type_len);

/* A list of patterns (owned strings). */
struct event_patterns {
    char **items;
    size_t count;
};

/* Appends a copy of pattern[0..len). Returns 0, or -1 when it is not a
 * valid pattern or memory ran out. Duplicates are not added twice. */
int event_patterns_add(struct event_patterns *list, const char *pattern, size_t len);

/* Appends every pattern of src. Returns 0 or -1 (out of memory). */
int event_patterns_merge(struct event_patterns *list, const struct event_patterns *src);

/* true when any pattern of list matches type. */
bool event_patterns_match(const struct event_patterns *list, const char *type, size_t type_len);

/* Frees the strings and resets *list. */
void event_patterns_clear(struct event_patterns *list);

#endif
