/* Authentication of a credential string "<scheme> <token>".
 *
 * The same text arrives as the HTTP Authorization header of a publish and as
 * the "authentication" member of a subscriber's init message. The scheme is
 * matched case-insensitively; the token is what follows the blanks after the
 * scheme, with trailing blanks removed. Pure.
 */
#ifndef EVS_AUTH_H
#define EVS_AUTH_H

#include <stddef.h>
#include "tokens.h"

enum auth_result {
    AUTH_OK = 0,
    AUTH_UNAUTHENTICATED = -1,      /* no credential, no token, or a token not in the set */
    AUTH_UNRECOGNIZED_SCHEME = -2,  /* a scheme other than Basic */
};

enum auth_scheme {
    AUTH_SCHEME_BASIC = 1,
};

/* Credential borrowed from the parsed text: valid while that text is. */
struct auth_credential {
    enum auth_scheme scheme;
    const char *token;
    size_t token_len;
};

/* Splits text (len bytes, need not be NUL-terminated; NULL/0 = absent).
 * Returns AUTH_OK with *out filled, AUTH_UNRECOGNIZED_SCHEME, or
 * AUTH_UNAUTHENTICATED (absent, empty, or a scheme with no token). */
int auth_parse(const char *text, size_t len, struct auth_credential *out);

/* auth_parse, then a constant-time lookup of the token in tokens (which may be NULL). */
int auth_check(const struct tokens *tokens, const char *text, size_t len);

/* The wire code of a result: "OK", "UNAUTHENTICATED", "AUTH_UNRECOGNIZED_SCHEME". */
const char *auth_result_code(int result);

#endif
