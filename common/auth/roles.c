/* The roles file: parsed line by line into one entry per line, then sorted
 * by role name so that the lines of a role merge into one entry and lookups
 * are a binary search.
 *
 * Patterns are appended without the linear duplicate check of
 * event_patterns_add and deduplicated once per role at the end (sort and
 * unique), so a large file costs O(n log n), not O(n^2).
 */
#include "auth/roles.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/error_message.h"
#include "core/text_lines.h"

#define ROLES_RIGHT_PUBLISH 1u
#define ROLES_RIGHT_SUBSCRIBE 2u
/* How much of a bad field an error message quotes. */
#define ROLES_QUOTE_MAX 40

struct role_entry {
    char *name;
    size_t name_len;
    size_t line; /* first line of the role: keeps the merge order stable */
    struct role_rights rights;
};

struct roles {
    struct role_entry *items;
    size_t count;
    size_t capacity;
};

/* A field of a line: a slice of the text. */
struct roles_field {
    const char *ptr;
    size_t len;
};

int role_name_valid(const char *name, size_t len)
{
    if (name == NULL || len == 0 || len > ROLE_NAME_MAX)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '.' || c == '-';
        if (!ok)
            return 0;
    }
    return 1;
}

struct roles *roles_new_empty(void)
{
    return calloc(1, sizeof(struct roles));
}

static void role_entry_clear(struct role_entry *entry)
{
    free(entry->name);
    event_patterns_clear(&entry->rights.publish);
    event_patterns_clear(&entry->rights.subscribe);
    memset(entry, 0, sizeof(*entry));
}

void roles_free(struct roles *roles)
{
    if (roles == NULL)
        return;
    for (size_t i = 0; i < roles->count; i++)
        role_entry_clear(&roles->items[i]);
    free(roles->items);
    free(roles);
}

size_t roles_count(const struct roles *roles)
{
    return roles != NULL ? roles->count : 0;
}

static int roles_name_order(const char *a, size_t a_len, const char *b, size_t b_len)
{
    int cmp = memcmp(a, b, a_len < b_len ? a_len : b_len);
    if (cmp != 0)
        return cmp;
    return a_len < b_len ? -1 : (a_len > b_len ? 1 : 0);
}

static int roles_entry_order(const void *a, const void *b)
{
    const struct role_entry *x = a, *y = b;
    int cmp = roles_name_order(x->name, x->name_len, y->name, y->name_len);
    if (cmp != 0)
        return cmp;
    return x->line < y->line ? -1 : (x->line > y->line ? 1 : 0);
}

const struct role_rights *roles_find(const struct roles *roles, const char *name, size_t len)
{
    if (roles == NULL || name == NULL)
        return NULL;
    size_t lo = 0, hi = roles->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const struct role_entry *entry = &roles->items[mid];
        int cmp = roles_name_order(name, len, entry->name, entry->name_len);
        if (cmp == 0)
            return &entry->rights;
        if (cmp < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

/* A bad field as it may appear in a log line: bounded, and printable. */
static void roles_quote(char *out, size_t out_size, const char *field, size_t len)
{
    size_t n = len < ROLES_QUOTE_MAX ? len : ROLES_QUOTE_MAX;
    if (n >= out_size)
        n = out_size - 1;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)field[i];
        out[i] = (c < 0x20 || c >= 0x7f) ? '?' : (char)c;
    }
    out[n] = '\0';
}

static bool roles_is_blank(char c)
{
    return c == ' ' || c == '\t';
}

static char *roles_copy(const char *s, size_t len)
{
    char *copy = malloc(len + 1);
    if (copy != NULL) {
        memcpy(copy, s, len);
        copy[len] = '\0';
    }
    return copy;
}

/* Appends a copy of pattern without the duplicate check (done at the end). */
static int roles_append_pattern(struct event_patterns *list, const char *pattern, size_t len)
{
    if (list->count >= SIZE_MAX / sizeof(char *))
        return -1;
    char **grown = realloc(list->items, (list->count + 1) * sizeof(char *));
    if (grown == NULL)
        return -1;
    list->items = grown;
    char *copy = roles_copy(pattern, len);
    if (copy == NULL)
        return -1;
    list->items[list->count++] = copy;
    return 0;
}

static int roles_pattern_order(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void roles_deduplicate(struct event_patterns *list)
{
    if (list->count < 2)
        return;
    qsort(list->items, list->count, sizeof(char *), roles_pattern_order);
    size_t kept = 1;
    for (size_t i = 1; i < list->count; i++) {
        if (strcmp(list->items[i], list->items[kept - 1]) == 0)
            free(list->items[i]);
        else
            list->items[kept++] = list->items[i];
    }
    list->count = kept;
}

/* Moves every pattern of src to the end of dst; src is left empty. */
static int roles_move_patterns(struct event_patterns *dst, struct event_patterns *src)
{
    if (src->count == 0)
        return 0;
    if (dst->count > SIZE_MAX / sizeof(char *) - src->count)
        return -1;
    char **grown = realloc(dst->items, (dst->count + src->count) * sizeof(char *));
    if (grown == NULL)
        return -1;
    dst->items = grown;
    memcpy(dst->items + dst->count, src->items, src->count * sizeof(char *));
    dst->count += src->count;
    free(src->items);
    src->items = NULL;
    src->count = 0;
    return 0;
}

static struct role_entry *roles_append_entry(struct roles *roles)
{
    if (roles->count == roles->capacity) {
        size_t capacity = roles->capacity != 0 ? roles->capacity * 2 : 16;
        if (capacity > SIZE_MAX / sizeof(struct role_entry))
            return NULL;
        struct role_entry *grown = realloc(roles->items, capacity * sizeof(struct role_entry));
        if (grown == NULL)
            return NULL;
        roles->items = grown;
        roles->capacity = capacity;
    }
    struct role_entry *entry = &roles->items[roles->count++];
    memset(entry, 0, sizeof(*entry));
    return entry;
}

/* Splits line into at most max blank-separated fields; returns how many it
 * found, or max + 1 when there are more. */
static size_t roles_split(const char *line, size_t len, struct roles_field *fields, size_t max)
{
    size_t count = 0;
    size_t i = 0;
    while (i < len) {
        while (i < len && roles_is_blank(line[i]))
            i++;
        if (i == len)
            break;
        size_t start = i;
        while (i < len && !roles_is_blank(line[i]))
            i++;
        if (count == max)
            return max + 1;
        fields[count].ptr = line + start;
        fields[count].len = i - start;
        count++;
    }
    return count;
}

/* Reads "publish", "subscribe" or both, comma-separated, into *rights. */
static int roles_parse_rights(struct roles_field field, unsigned *rights, size_t line_no, char *err,
                              size_t err_len)
{
    size_t i = 0;
    *rights = 0;
    for (;;) {
        const char *item = field.ptr + i;
        const char *comma = memchr(item, ',', field.len - i);
        size_t item_len = comma != NULL ? (size_t)(comma - item) : field.len - i;
        if (item_len == 7 && memcmp(item, "publish", 7) == 0) {
            *rights |= ROLES_RIGHT_PUBLISH;
        } else if (item_len == 9 && memcmp(item, "subscribe", 9) == 0) {
            *rights |= ROLES_RIGHT_SUBSCRIBE;
        } else {
            char quoted[ROLES_QUOTE_MAX + 1];
            roles_quote(quoted, sizeof(quoted), item, item_len);
            error_message_format(err, err_len, "line %zu: unknown right '%s'", line_no, quoted);
            return -1;
        }
        if (comma == NULL)
            return 0;
        i += item_len + 1;
    }
}

/* Parses one non-comment line into a new entry of roles. */
static int roles_parse_line(struct roles *roles, const char *line, size_t len, size_t line_no,
                            char *err, size_t err_len)
{
    struct roles_field fields[3] = {{NULL, 0}};
    char quoted[ROLES_QUOTE_MAX + 1];
    unsigned rights;

    size_t count = roles_split(line, len, fields, 3);
    if (count > 3) {
        error_message_format(err, err_len, "line %zu: too many fields", line_no);
        return -1;
    }
    if (!role_name_valid(fields[0].ptr, fields[0].len)) {
        roles_quote(quoted, sizeof(quoted), fields[0].ptr, fields[0].len);
        error_message_format(err, err_len, "line %zu: bad role name '%s'", line_no, quoted);
        return -1;
    }
    if (count < 2) {
        error_message_format(err, err_len, "line %zu: missing rights and patterns", line_no);
        return -1;
    }
    if (roles_parse_rights(fields[1], &rights, line_no, err, err_len) != 0)
        return -1;
    if (count < 3) {
        error_message_format(err, err_len, "line %zu: missing patterns", line_no);
        return -1;
    }

    struct role_entry *entry = roles_append_entry(roles);
    if (entry == NULL)
        goto nomem;
    entry->line = line_no;
    entry->name_len = fields[0].len;
    entry->name = roles_copy(fields[0].ptr, fields[0].len);
    if (entry->name == NULL)
        goto nomem;

    struct roles_field patterns = fields[2];
    size_t i = 0;
    for (;;) {
        const char *item = patterns.ptr + i;
        const char *comma = memchr(item, ',', patterns.len - i);
        size_t item_len = comma != NULL ? (size_t)(comma - item) : patterns.len - i;
        if (!event_pattern_valid(item, item_len)) {
            roles_quote(quoted, sizeof(quoted), item, item_len);
            error_message_format(err, err_len, "line %zu: bad pattern '%s'", line_no, quoted);
            return -1;
        }
        if ((rights & ROLES_RIGHT_PUBLISH) &&
            roles_append_pattern(&entry->rights.publish, item, item_len) != 0)
            goto nomem;
        if ((rights & ROLES_RIGHT_SUBSCRIBE) &&
            roles_append_pattern(&entry->rights.subscribe, item, item_len) != 0)
            goto nomem;
        if (comma == NULL)
            break;
        i += item_len + 1;
    }
    return 0;

nomem:
    error_message_format(err, err_len, "out of memory");
    return -1;
}

/* Sorts the per-line entries by name and folds the lines of each role into
 * its first entry. */
static int roles_merge(struct roles *roles)
{
    if (roles->count > 1)
        qsort(roles->items, roles->count, sizeof(struct role_entry), roles_entry_order);
    size_t kept = 0;
    for (size_t i = 0; i < roles->count; i++) {
        struct role_entry *entry = &roles->items[i];
        struct role_entry *last = kept > 0 ? &roles->items[kept - 1] : NULL;
        if (last != NULL &&
            roles_name_order(last->name, last->name_len, entry->name, entry->name_len) == 0) {
            if (roles_move_patterns(&last->rights.publish, &entry->rights.publish) != 0 ||
                roles_move_patterns(&last->rights.subscribe, &entry->rights.subscribe) != 0)
                return -1;
            role_entry_clear(entry);
            continue;
        }
        if (kept != i) {
            roles->items[kept] = *entry;
            memset(entry, 0, sizeof(*entry));
        }
        kept++;
    }
    /* Entries past kept were cleared or moved; none owns anything now. */
    roles->count = kept;
    for (size_t i = 0; i < roles->count; i++) {
        roles_deduplicate(&roles->items[i].rights.publish);
        roles_deduplicate(&roles->items[i].rights.subscribe);
    }
    return 0;
}

struct roles *roles_parse(const char *text, size_t len, char *err, size_t err_len)
{
    if (err != NULL && err_len > 0)
        err[0] = '\0';
    if (len > ROLES_FILE_MAX_BYTES) {
        error_message_format(err, err_len, "larger than %u bytes", (unsigned)ROLES_FILE_MAX_BYTES);
        return NULL;
    }
    struct roles *roles = roles_new_empty();
    if (roles == NULL) {
        error_message_format(err, err_len, "out of memory");
        return NULL;
    }

    struct text_lines lines;
    struct text_line line;
    text_lines_init(&lines, text, len);
    while (text_lines_next(&lines, &line)) {
        if (roles_parse_line(roles, line.text, line.len, line.number, err, err_len) != 0)
            goto fail;
    }
    if (roles_merge(roles) != 0) {
        error_message_format(err, err_len, "out of memory");
        goto fail;
    }
    return roles;

fail:
    roles_free(roles);
    return NULL;
}
