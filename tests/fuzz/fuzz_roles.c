/* Fuzz target: roles_parse on arbitrary file text, then lookups.
 *
 * Invariants checked: a refused file comes with a one-line reason naming a
 * line that exists; an accepted file has at most one role per line, every
 * role named by a line of the file (each line given by the shared line
 * reader, text_lines.h, and its name re-read here with the format of
 * roles.h) is found by roles_find, and every right it holds is a valid
 * pattern listed once.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/roles.h"
#include "core/text_lines.h"

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

/* The role name of a line's content: its first field. */
static void line_role(const struct text_line *line, const char **name, size_t *name_len)
{
    size_t j = 0;
    while (j < line->len && !is_blank(line->text[j]))
        j++;
    *name = line->text;
    *name_len = j;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    char err[128];
    memset(err, 'x', sizeof(err));
    struct roles *roles = roles_parse(text, size, err, sizeof(err));

    /* Lines as numbered by the reader: every CR, LF or CRLF ends one. */
    size_t lines = 1;
    for (size_t i = 0; i < size; i++)
        lines += data[i] == '\n' || (data[i] == '\r' && (i + 1 == size || data[i + 1] != '\n'));

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
    struct text_lines reader;
    struct text_line line;
    text_lines_init(&reader, text, size);
    while (text_lines_next(&reader, &line)) {
        const char *name = NULL;
        size_t name_len;
        line_role(&line, &name, &name_len);
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
