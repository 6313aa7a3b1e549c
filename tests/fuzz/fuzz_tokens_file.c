/* Fuzz target: tokens_parse on arbitrary file text, then lookups.
 *
 * Invariants checked: the stats agree with the set; no more results than
 * lines; every line that the file rules (tokens.h) make a token is found by
 * tokens_contains, judged by an independent re-reading of the line here.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tokens.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int is_blank(char c)
{
    return c == ' ' || c == '\t';
}

/* The token of one line per tokens.h, or len 0 when the line has none. */
static void expected_token(const char *line, size_t len, const char **token, size_t *token_len)
{
    *token_len = 0;
    if (memchr(line, '\0', len) != NULL)
        return;
    while (len > 0 && (is_blank(line[len - 1]) || line[len - 1] == '\r'))
        len--;
    size_t i = 0;
    while (i < len && is_blank(line[i]))
        i++;
    if (i == len || line[i] == '#')
        return;
    size_t j = i;
    while (j < len && !is_blank(line[j]))
        j++;
    if (j - i < TOKENS_MIN_LEN || j - i > TOKENS_MAX_LEN)
        return;
    *token = line + i;
    *token_len = j - i;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    struct tokens_stats stats;
    struct tokens *set = tokens_parse(text, size, &stats);
    if (set == NULL)
        return 0; /* out of memory */

    size_t lines = 1;
    for (size_t i = 0; i < size; i++)
        lines += data[i] == '\n';
    if (stats.accepted != tokens_count(set))
        abort();
    if (stats.accepted + stats.too_short + stats.too_long > lines)
        abort();

    size_t found = 0;
    for (size_t pos = 0; pos < size;) {
        const char *nl = memchr(text + pos, '\n', size - pos);
        size_t line_len = nl != NULL ? (size_t)(nl - (text + pos)) : size - pos;
        const char *token = NULL;
        size_t token_len;
        expected_token(text + pos, line_len, &token, &token_len);
        if (token_len != 0) {
            if (!tokens_contains(set, token, token_len))
                abort();
            found++;
        }
        pos += line_len + 1;
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
