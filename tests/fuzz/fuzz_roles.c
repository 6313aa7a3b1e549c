/* Fuzz target: roles_parse on arbitrary file text, then lookups.
 *
 * Invariants checked: a refused file comes with a one-line reason naming a
 * line that exists; an accepted file has at most one role per line, every
 * role named by a line of the file (re-read here with the format of
 * roles.h) is found by roles_find, and every right it holds is a valid
 * pattern listed once.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "roles.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool is_blank(char c)
{
    return c == ' ' || c == '\t';
}

static void check_patterns(const struct event_patterns *list)
{
    for (size_t i = 0; i < list->count; i++) {
        if (!event_pattern_valid(list->items[i], strlen(list->items[i])))
            abort();
        for (size_t j = 0; j < i; j++) {
            if (strcmp(list->items[i], list->items[j]) == 0)
                abort();
        }
    }
}

/* The role name of a line, or len 0 when the line is blank or a comment. */
static void line_role(const char *line, size_t len, const char **name, size_t *name_len)
{
    size_t i = 0;
    *name_len = 0;
    while (i < len && is_blank(line[i]))
        i++;
    size_t end = len;
    while (end > i && (is_blank(line[end - 1]) || line[end - 1] == '\r'))
        end--;
    if (i == end || line[i] == '#')
        return;
    size_t j = i;
    while (j < end && !is_blank(line[j]))
        j++;
    *name = line + i;
    *name_len = j - i;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    char err[128];
    memset(err, 'x', sizeof(err));
    struct roles *roles = roles_parse(text, size, err, sizeof(err));

    size_t lines = 1;
    for (size_t i = 0; i < size; i++)
        lines += data[i] == '\n';

    if (roles == NULL) {
        size_t err_len = strnlen(err, sizeof(err));
        if (err_len == 0 || err_len == sizeof(err) || memchr(err, '\n', err_len) != NULL)
            abort();
        unsigned long line_no = 0;
        if (sscanf(err, "line %lu:", &line_no) == 1 && (line_no == 0 || line_no > lines))
            abort();
        return 0;
    }

    if (roles_count(roles) > lines)
        abort();
    size_t named = 0;
    for (size_t pos = 0; pos < size;) {
        const char *nl = memchr(text + pos, '\n', size - pos);
        size_t line_len = nl != NULL ? (size_t)(nl - (text + pos)) : size - pos;
        const char *name = NULL;
        size_t name_len;
        line_role(text + pos, line_len, &name, &name_len);
        if (name_len != 0) {
            if (!role_name_valid(name, name_len))
                abort(); /* an accepted file has only valid names */
            const struct role_rights *rights = roles_find(roles, name, name_len);
            if (rights == NULL)
                abort();
            if (rights->publish.count + rights->subscribe.count == 0)
                abort();
            check_patterns(&rights->publish);
            check_patterns(&rights->subscribe);
            named++;
        }
        pos += line_len + 1;
    }
    if (roles_count(roles) > named || (named > 0 && roles_count(roles) == 0))
        abort();

    /* Lookups of arbitrary slices must not crash. */
    if (size >= 2) {
        size_t start = data[0] % size;
        size_t len = ((size_t)data[1] * 7) % (size - start + 1);
        (void)roles_find(roles, text + start, len);
    }
    (void)roles_find(roles, text, size);
    roles_free(roles);
    return 0;
}
