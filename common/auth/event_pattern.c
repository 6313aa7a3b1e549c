/* Event-type patterns: exact names and trailing-'*' prefixes.
 *
 * A pattern list is small (a role's or a token's grants), so it is a plain
 * array searched linearly; duplicates are refused on insertion so that a
 * merged list never grows with repeats.
 */
#include "auth/event_pattern.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

bool event_pattern_valid(const char *pattern, size_t len)
{
    if (pattern == NULL || len == 0 || len > EVENT_PATTERN_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)pattern[i];
        /* NUL is a control character too: it would cut the stored copy short. */
        if (c < 0x20 || c == 0x7f)
            return false;
        if (c == '*' && i + 1 != len)
            return false;
    }
    return true;
}

bool event_pattern_match(const char *pattern, const char *type, size_t type_len)
{
    size_t len = strlen(pattern);

    if (len > 0 && pattern[len - 1] == '*') {
        size_t prefix = len - 1;
        return type_len >= prefix && memcmp(pattern, type, prefix) == 0;
    }
    return type_len == len && memcmp(pattern, type, len) == 0;
}

static bool event_patterns_contains(const struct event_patterns *list, const char *pattern,
                                    size_t len)
{
    for (size_t i = 0; i < list->count; i++) {
        if (strlen(list->items[i]) == len && memcmp(list->items[i], pattern, len) == 0)
            return true;
    }
    return false;
}

int event_patterns_add(struct event_patterns *list, const char *pattern, size_t len)
{
    if (!event_pattern_valid(pattern, len))
        return -1;
    if (event_patterns_contains(list, pattern, len))
        return 0;
    /* The list keeps no capacity, so any array of count pointers that
     * another module built is a valid list; realloc amortises the growth. */
    if (list->count >= SIZE_MAX / sizeof(char *))
        return -1;
    char **grown = realloc(list->items, (list->count + 1) * sizeof(char *));
    if (grown == NULL)
        return -1;
    list->items = grown;
    char *copy = malloc(len + 1);
    if (copy == NULL)
        return -1;
    memcpy(copy, pattern, len);
    copy[len] = '\0';
    list->items[list->count++] = copy;
    return 0;
}

int event_patterns_merge(struct event_patterns *list, const struct event_patterns *src)
{
    if (src == NULL || src == list)
        return 0;
    for (size_t i = 0; i < src->count; i++) {
        if (event_patterns_add(list, src->items[i], strlen(src->items[i])) != 0)
            return -1;
    }
    return 0;
}

bool event_patterns_match(const struct event_patterns *list, const char *type, size_t type_len)
{
    if (list == NULL)
        return false;
    for (size_t i = 0; i < list->count; i++) {
        if (event_pattern_match(list->items[i], type, type_len))
            return true;
    }
    return false;
}

void event_patterns_clear(struct event_patterns *list)
{
    if (list == NULL)
        return;
    for (size_t i = 0; i < list->count; i++)
        free(list->items[i]);
    free(list->items);
    list->items = NULL;
    list->count = 0;
}
