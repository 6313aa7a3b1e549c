/* Fuzz target: auth_parse and auth_check on arbitrary credential text.
 *
 * Invariants checked: a parsed token lies inside the input, is not empty and
 * has no blank at either end; auth_check agrees with auth_parse followed by
 * tokens_contains; every result has a wire code.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "auth/auth.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char known_tokens[] = "0123456789abcdef\n"
                                   "secret-token-for-fuzzing\n"
                                   "  padded-token-0000000000   role\r\n";

static struct tokens *fuzz_tokens(void)
{
    static struct tokens *set;
    if (set == NULL) {
        set = tokens_parse(known_tokens, sizeof(known_tokens) - 1, NULL);
        if (set == NULL || tokens_count(set) != 3)
            abort();
    }
    return set;
}

static int is_blank(char c)
{
    return c == ' ' || c == '\t';
}

static void check_one(const struct tokens *set, const char *text, size_t len)
{
    struct auth_credential credential;
    int parsed = auth_parse(text, len, &credential);
    int checked = auth_check(set, text, len);

    if (auth_result_code(parsed) == NULL || auth_result_code(checked) == NULL)
        abort();
    if (parsed != AUTH_OK) {
        if (parsed != AUTH_UNAUTHENTICATED && parsed != AUTH_UNRECOGNIZED_SCHEME)
            abort();
        if (checked != parsed)
            abort();
        return;
    }
    if ((credential.scheme != AUTH_SCHEME_BASIC && credential.scheme != AUTH_SCHEME_BEARER) ||
        credential.token_len == 0)
        abort();
    if (credential.token < text || credential.token_len > len ||
        (size_t)(credential.token - text) > len - credential.token_len)
        abort();
    if (is_blank(credential.token[0]) || is_blank(credential.token[credential.token_len - 1]))
        abort();
    if (credential.scheme == AUTH_SCHEME_BEARER) {
        /* auth_check knows tokens only: a Bearer credential is not for it. */
        if (checked != AUTH_UNRECOGNIZED_SCHEME)
            abort();
        return;
    }
    bool member = tokens_contains(set, credential.token, credential.token_len);
    if (checked != (member ? AUTH_OK : AUTH_UNAUTHENTICATED))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const struct tokens *set = fuzz_tokens();

    check_one(set, (const char *)data, size);

    /* The same bytes as a Basic token, to reach the lookup on most inputs. */
    char *prefixed = malloc(size + 6);
    if (prefixed == NULL)
        return 0;
    memcpy(prefixed, "Basic ", 6);
    if (size > 0)
        memcpy(prefixed + 6, data, size);
    check_one(set, prefixed, size + 6);
    free(prefixed);

    check_one(NULL, (const char *)data, size);
    return 0;
}
