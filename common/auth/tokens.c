/* The accepted-token set: SHA-256 digests of the tokens file's tokens.
 *
 * Only digests are kept, so a core dump or a heap read does not reveal a
 * token. Lookups hash the candidate (so its length and bytes no longer shape
 * the comparison) and then compare against every digest without an early
 * exit: the time taken depends on the number of stored tokens only.
 */
#include "auth/tokens.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/sha256.h>

#include "core/constant_time.h"
#include "core/text_lines.h"

#define TOKENS_DIGEST_LEN 32

struct tokens_entry {
    unsigned char digest[TOKENS_DIGEST_LEN];
    char *roles; /* the line's second field, or NULL */
};

struct tokens {
    struct tokens_entry *entries;
    size_t count;
    size_t capacity;
};

struct tokens *tokens_new_empty(void)
{
    return calloc(1, sizeof(struct tokens));
}

void tokens_free(struct tokens *tokens)
{
    if (tokens == NULL)
        return;
    for (size_t i = 0; i < tokens->count; i++)
        free(tokens->entries[i].roles);
    free(tokens->entries);
    free(tokens);
}

size_t tokens_count(const struct tokens *tokens)
{
    return tokens != NULL ? tokens->count : 0;
}

static int tokens_hash(const char *token, size_t len, unsigned char digest[TOKENS_DIGEST_LEN])
{
    return mbedtls_sha256_ret((const unsigned char *)token, len, digest, 0);
}

/* Takes ownership of roles (NULL allowed) even on failure. */
static int tokens_append(struct tokens *tokens, const unsigned char digest[TOKENS_DIGEST_LEN],
                         char *roles)
{
    if (tokens->count == tokens->capacity) {
        size_t capacity = tokens->capacity != 0 ? tokens->capacity * 2 : 16;
        if (capacity < tokens->capacity || capacity > SIZE_MAX / sizeof(struct tokens_entry)) {
            free(roles);
            return -1;
        }
        void *grown = realloc(tokens->entries, capacity * sizeof(struct tokens_entry));
        if (grown == NULL) {
            free(roles);
            return -1;
        }
        tokens->entries = grown;
        tokens->capacity = capacity;
    }
    memcpy(tokens->entries[tokens->count].digest, digest, TOKENS_DIGEST_LEN);
    tokens->entries[tokens->count++].roles = roles;
    return 0;
}

/* By digest, then by position in the file, so that the first line of a
 * repeated token is the one kept. */
static int tokens_entry_order(const void *a, const void *b)
{
    const struct tokens_entry *x = a, *y = b;
    int c = memcmp(x->digest, y->digest, TOKENS_DIGEST_LEN);
    return c != 0 ? c : (x < y ? -1 : x > y);
}

/* Sorts the digests and drops repeats, so a token listed twice counts once
 * (with the roles of its first line). */
static void tokens_deduplicate(struct tokens *tokens)
{
    if (tokens->count < 2)
        return;
    qsort(tokens->entries, tokens->count, sizeof(struct tokens_entry), tokens_entry_order);
    size_t kept = 1;
    for (size_t i = 1; i < tokens->count; i++) {
        if (memcmp(tokens->entries[i].digest, tokens->entries[kept - 1].digest,
                   TOKENS_DIGEST_LEN) != 0)
            tokens->entries[kept++] = tokens->entries[i];
        else
            free(tokens->entries[i].roles);
    }
    tokens->count = kept;
}

static bool tokens_is_blank(char c)
{
    return c == ' ' || c == '\t';
}

/* Applies the file rules of tokens.h to one line's content (text_lines.h
 * has trimmed it and skipped comments). Returns the token (start, len) and
 * the second field (roles, roles_len; 0 when absent), or false when the
 * line holds none. */
static bool tokens_line_token(const struct text_line *line, const char **start, size_t *len,
                              const char **roles, size_t *roles_len)
{
    const char *text = line->text;
    size_t end = line->len;

    /* A NUL cannot come from a text editor; such a line is damage, not a token,
     * and it would be cut short by any tool that handles the token as a string. */
    if (memchr(text, '\0', end) != NULL)
        return false;
    size_t field_end = 0;
    while (field_end < end && !tokens_is_blank(text[field_end]))
        field_end++;
    *start = text;
    *len = field_end;
    size_t second = field_end;
    while (second < end && tokens_is_blank(text[second]))
        second++;
    size_t second_end = second;
    while (second_end < end && !tokens_is_blank(text[second_end]))
        second_end++;
    *roles = text + second;
    *roles_len = second_end - second;
    return true;
}

struct tokens *tokens_parse(const char *text, size_t len, struct tokens_stats *stats)
{
    struct tokens_stats counted = {0};
    struct tokens *tokens = tokens_new_empty();
    if (tokens == NULL)
        goto fail;

    struct text_lines lines;
    struct text_line line;
    text_lines_init(&lines, text, len);
    while (text_lines_next(&lines, &line)) {
        const char *token, *roles_field;
        size_t token_len, roles_len;
        if (!tokens_line_token(&line, &token, &token_len, &roles_field, &roles_len))
            continue;
        if (token_len < TOKENS_MIN_LEN) {
            counted.too_short++;
            continue;
        }
        if (token_len > TOKENS_MAX_LEN) {
            counted.too_long++;
            continue;
        }
        unsigned char digest[TOKENS_DIGEST_LEN];
        char *roles = NULL;
        if (roles_len > 0 && (roles = strndup(roles_field, roles_len)) == NULL)
            goto fail;
        if (tokens_hash(token, token_len, digest) != 0) {
            free(roles);
            goto fail;
        }
        if (tokens_append(tokens, digest, roles) != 0)
            goto fail;
    }
    tokens_deduplicate(tokens);
    counted.accepted = tokens->count;
    if (stats != NULL)
        *stats = counted;
    return tokens;

fail:
    tokens_free(tokens);
    return NULL;
}

bool tokens_find(const struct tokens *tokens, const char *token, size_t len, const char **roles)
{
    unsigned char digest[TOKENS_DIGEST_LEN];

    if (roles)
        *roles = NULL;
    /* The bounds are public (tokens.h), so rejecting by length alone leaks nothing. */
    if (tokens == NULL || token == NULL || len < TOKENS_MIN_LEN || len > TOKENS_MAX_LEN)
        return false;
    if (tokens_hash(token, len, digest) != 0)
        return false;

    /* No early exit and no data-dependent branch: every digest is compared in
     * full, and the matching index is selected with a mask. */
    volatile unsigned found = 0;
    size_t match = 0;
    for (size_t i = 0; i < tokens->count; i++) {
        unsigned hit = constant_time_equal(tokens->entries[i].digest, digest, TOKENS_DIGEST_LEN);
        found |= hit;
        match |= ((size_t)0 - (size_t)hit) & i;
    }
    if (found && roles)
        *roles = tokens->entries[match].roles;
    return found != 0;
}

bool tokens_contains(const struct tokens *tokens, const char *token, size_t len)
{
    return tokens_find(tokens, token, len, NULL);
}
