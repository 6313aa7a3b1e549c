/* The line rules shared by the tokens, roles and JWT secrets files: see
 * text_lines.h. */
#include "core/text_lines.h"

static bool text_lines_is_blank(char c)
{
    return c == ' ' || c == '\t';
}

void text_lines_init(struct text_lines *lines, const char *text, size_t len)
{
    lines->text = text;
    lines->len = text != NULL ? len : 0;
    lines->pos = 0;
    lines->number = 0;
}

bool text_lines_next(struct text_lines *lines, struct text_line *line)
{
    while (lines->pos < lines->len) {
        const char *start = lines->text + lines->pos;
        size_t left = lines->len - lines->pos;
        size_t end = 0;
        while (end < left && start[end] != '\n' && start[end] != '\r')
            end++;
        /* The ending: LF, CR, or CR then LF (one ending, not two). */
        size_t next = end;
        if (next < left && start[next] == '\r')
            next++;
        if (next < left && start[next] == '\n')
            next++;
        lines->pos += next;
        lines->number++;

        size_t begin = 0;
        while (begin < end && text_lines_is_blank(start[begin]))
            begin++;
        while (end > begin && text_lines_is_blank(start[end - 1]))
            end--;
        if (begin == end || start[begin] == '#')
            continue;
        line->text = start + begin;
        line->len = end - begin;
        line->number = lines->number;
        return true;
    }
    return false;
}
