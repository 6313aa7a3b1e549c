/* The roles file: named roles granting publish and/or subscribe rights on
 * event-type patterns (event_pattern.h).
 *
 * Format, one grant per line, with the line rules of text_lines.h (lines
 * end at CRLF, CR or LF; blank lines and '#' comments are ignored):
 *
 *     <role> <rights> <pattern>[,<pattern>...]
 *
 * where <rights> is "publish", "subscribe" or "publish,subscribe". A role
 * may have several lines; its grants add up. Example:
 *
 *     orders-writer   publish            orders.*
 *     dashboard       subscribe          orders.*,payments.settled
 *     admin           publish,subscribe  *
 *
 * Role names are 1..64 characters of [A-Za-z0-9_.-]. Pure.
 */
#ifndef EVS_ROLES_H
#define EVS_ROLES_H

#include <stddef.h>

#include "auth/event_pattern.h"

#define ROLES_FILE_MAX_BYTES (4u * 1024 * 1024)
#define ROLE_NAME_MAX 64

struct roles;

struct role_rights {
    struct event_patterns publish;
    struct event_patterns subscribe;
};

/* Parses text. Returns a new set, or NULL with a one-line reason in err
 * naming the first bad line ("line 3: unknown right 'pub'"). A file with
 * errors is refused whole, so that a typo never silently drops a grant. */
struct roles *roles_parse(const char *text, size_t len, char *err, size_t err_len);

/* An empty set. NULL when out of memory. */
struct roles *roles_new_empty(void);

/* The rights of role name[0..len), or NULL when there is no such role.
 * Borrowed from the set. roles may be NULL. */
const struct role_rights *roles_find(const struct roles *roles, const char *name, size_t len);

size_t roles_count(const struct roles *roles);

void roles_free(struct roles *roles);

/* true when name[0..len) is a valid role name. */
int role_name_valid(const char *name, size_t len);

#endif
