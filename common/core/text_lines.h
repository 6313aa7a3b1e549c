/* The line rules shared by the tokens, roles and JWT secrets files.
 *
 * A line ends at CRLF, CR or LF, whichever the editor wrote (the original
 * service split on all three), or at the end of the text. Blanks (space,
 * tab) around a line's content are trimmed; a line that is then empty, or
 * whose content starts with '#', is skipped. What a line's content means is
 * the caller's business. Pure: the reader walks the caller's buffer and
 * hands out slices of it.
 *
 *     struct text_lines lines;
 *     struct text_line line;
 *     text_lines_init(&lines, text, len);
 *     while (text_lines_next(&lines, &line))
 *         use(line.text, line.len, line.number);
 */
#ifndef EVS_TEXT_LINES_H
#define EVS_TEXT_LINES_H

#include <stdbool.h>
#include <stddef.h>

/* One line's content: never empty, without its line end or the blanks
 * around it, and not NUL-terminated. Borrowed from the reader's text. */
struct text_line {
    const char *text;
    size_t len;
    size_t number; /* 1-based, counting every line (skipped ones too), for messages */
};

/* The reader's position; set up by text_lines_init, read by nobody else. */
struct text_lines {
    const char *text;
    size_t len;
    size_t pos;
    size_t number;
};

/* Starts reading text[0..len), which must outlive the reader. text may be
 * NULL when len is 0. */
void text_lines_init(struct text_lines *lines, const char *text, size_t len);

/* Moves to the next line that has content and describes it in *line.
 * Returns false (and leaves *line alone) once the text is used up. */
bool text_lines_next(struct text_lines *lines, struct text_line *line);

#endif
