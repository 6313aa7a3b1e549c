/* The set of accepted tokens, parsed from the tokens file's text.
 *
 * File rules: one token per line; the line rules of text_lines.h (lines
 * end at CRLF, CR or LF; leading and trailing blanks are trimmed; blank
 * lines and lines starting with '#' are ignored); a line holding a NUL
 * byte is ignored; the token is the first blank-separated field of a line,
 * and the second field, when present, names its roles ("<token>
 * role1,role2"; see roles.h); further fields are ignored; a token shorter
 * than TOKENS_MIN_LEN or longer than TOKENS_MAX_LEN is ignored and counted.
 *
 * Tokens are kept only as SHA-256 digests; tokens_contains compares the
 * digest of the candidate with every stored digest in constant time, so the
 * time taken depends on the number of tokens, never on their content.
 * Pure: no I/O (watched_file.h and auth_store.h keep it current).
 */
#ifndef EVS_TOKENS_H
#define EVS_TOKENS_H

#include <stdbool.h>
#include <stddef.h>

#define TOKENS_MIN_LEN 16
#define TOKENS_MAX_LEN 4096
#define TOKENS_FILE_MAX_BYTES (16u * 1024 * 1024)

struct tokens;

struct tokens_stats {
    size_t accepted;  /* tokens in the set (duplicates counted once) */
    size_t too_short; /* lines ignored for being shorter than TOKENS_MIN_LEN */
    size_t too_long;  /* lines ignored for being longer than TOKENS_MAX_LEN */
};

/* Returns a new set (possibly empty), or NULL when out of memory.
 * stats may be NULL. The caller owns the result: tokens_free. */
struct tokens *tokens_parse(const char *text, size_t len, struct tokens_stats *stats);

/* An empty set: every lookup fails. Caller owns it. NULL when out of memory. */
struct tokens *tokens_new_empty(void);

/* true when token (not NUL-terminated, len bytes) is in the set.
 * tokens may be NULL (no tokens). */
bool tokens_contains(const struct tokens *tokens, const char *token, size_t len);

/* tokens_contains, and on a match *roles (when roles is not NULL) is the
 * token's roles field ("role1,role2"), or NULL when its line names none.
 * Borrowed from the set. A token listed twice keeps its first line. */
bool tokens_find(const struct tokens *tokens, const char *token, size_t len, const char **roles);

size_t tokens_count(const struct tokens *tokens);

void tokens_free(struct tokens *tokens);

#endif
