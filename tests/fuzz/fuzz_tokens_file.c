/* Fuzz target: tokens_parse on arbitrary file text, then lookups; and the
 * line reader (text_lines.h) that the tokens, roles and secrets files share.
 *
 * Invariants checked: every line the reader gives is a non-empty slice of
 * the text, after the previous one, with no line end inside, no blank at
 * either end and no leading '#', numbered upwards and no further than the
 * line ends seen; the stats agree with the set; no more results than lines;
 * every line that the file rules (tokens.h) make a token is found by
 * tokens_contains, judged by an independent reading of the line here.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/text_lines.h"
#include "auth/tokens.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int is_blank(char c)
{
    return c == ' ' || c == '\t';
}

/* The token of one line's content per tokens.h, or len 0 when it has none. */
static void expected_token(const struct text_line *line, const char **token, size_t *token_len)
{
    *token_len = 0;
    if (memchr(line->text, '\0', line->len) != NULL)
        return;
    size_t j = 0;
    while (j < line->len && !is_blank(line->text[j]))
        j++;
    if (j < TOKENS_MIN_LEN || j > TOKENS_MAX_LEN)
        return;
    *token = line->text;
    *token_len = j;
}

/* The reader's contract, checked on its own; returns the lines counted by
 * their endings (a last line without one included). */
static size_t check_lines(const char *text, size_t size)
{
    size_t endings = 0;
    for (size_t i = 0; i < size; i++) {
        if (text[i] == '\n' || (text[i] == '\r' && (i + 1 == size || text[i + 1] != '\n')))
            endings++;
    }
    size_t lines_in_text = endings + (size > 0 && text[size - 1] != '\n' && text[size - 1] != '\r');

    struct text_lines lines;
    struct text_line line;
    const char *after_previous = text;
    size_t previous_number = 0;
    text_lines_init(&lines, text, size);
    while (text_lines_next(&lines, &line)) {
        if (line.len == 0 || line.text < after_previous || line.text + line.len > text + size)
            abort();
        if (memchr(line.text, '\n', line.len) != NULL || memchr(line.text, '\r', line.len) != NULL)
            abort();
        if (is_blank(line.text[0]) || is_blank(line.text[line.len - 1]) || line.text[0] == '#')
            abort();
        if (line.number <= previous_number || line.number > lines_in_text)
            abort();
        after_previous = line.text + line.len;
        previous_number = line.number;
    }
    if (text_lines_next(&lines, &line))
        abort(); /* the end stays the end */
    return lines_in_text;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    struct tokens_stats stats;
    struct tokens *set = tokens_parse(text, size, &stats);
    if (set == NULL)
        return 0; /* out of memory */

    size_t lines = check_lines(text, size);
    if (stats.accepted != tokens_count(set))
        abort();
    if (stats.accepted + stats.too_short + stats.too_long > lines)
        abort();

    size_t found = 0;
    struct text_lines reader;
    struct text_line line;
    text_lines_init(&reader, text, size);
    while (text_lines_next(&reader, &line)) {
        const char *token = NULL;
        size_t token_len;
        expected_token(&line, &token, &token_len);
        if (token_len != 0) {
            if (!tokens_contains(set, token, token_len))
                abort();
            found++;
        }
    }
    /* Duplicates count once, so the set never holds more than the lines found. */
    if (tokens_count(set) > found || (found > 0 && tokens_count(set) == 0))
        abort();

    /* A slice chosen by the first bytes: must not crash, whatever it is. */
    if (size >= 2) {
        size_t start = data[0] % size;
        size_t len = ((size_t)data[1] * 17) % (size - start + 1);
        (void)tokens_contains(set, text + start, len);
    }
    (void)tokens_contains(set, text, size);

    tokens_free(set);
    return 0;
}
