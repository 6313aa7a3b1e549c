/* Authentication and authorization of a credential "<scheme> <token>".
 *
 * The same text arrives as the HTTP Authorization header of a publish and as
 * the "authentication" member of a subscriber's init message. The scheme is
 * matched case-insensitively; the token is what follows the blanks after the
 * scheme, with trailing blanks removed.
 *
 * Schemes: "Basic <token>" checks the token against the tokens file; the
 * token's line may name roles. "Bearer <jwt>" checks a JSON Web Token
 * (jwt.h), accepted only when JWT keys are configured (otherwise Bearer is
 * an unrecognized scheme, as it was in the original service).
 *
 * Rights: a Basic token without roles, and a JWT without "roles",
 * "publish" or "subscribe" claims, may publish and subscribe to every type,
 * so existing deployments work unchanged. Otherwise the rights are the
 * union of the named roles' grants and the patterns in the token. A role
 * that does not exist grants nothing. Pure.
 */
#ifndef EVS_AUTH_H
#define EVS_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth/event_pattern.h"
#include "auth/jwt.h"
#include "auth/roles.h"
#include "auth/tokens.h"

enum auth_result {
    AUTH_OK = 0,
    AUTH_UNAUTHENTICATED = -1,     /* no credential, no token, unknown token, bad JWT */
    AUTH_UNRECOGNIZED_SCHEME = -2, /* neither Basic nor (when enabled) Bearer */
    AUTH_TOKEN_EXPIRED = -3,       /* a JWT past its exp */
    AUTH_FORBIDDEN = -4,           /* authenticated, but without the right asked for */
    AUTH_TOO_MANY_FAILURES = -5,   /* a public-key JWT left unchecked (struct jwt_cost) */
};

enum auth_scheme {
    AUTH_SCHEME_BASIC = 1,
    AUTH_SCHEME_BEARER = 2,
};

/* Credential borrowed from the parsed text: valid while that text is. */
struct auth_credential {
    enum auth_scheme scheme;
    const char *token;
    size_t token_len;
};

/* Splits text (len bytes, need not be NUL-terminated; NULL/0 = absent).
 * Returns AUTH_OK with *out filled (scheme Basic or Bearer),
 * AUTH_UNRECOGNIZED_SCHEME, or AUTH_UNAUTHENTICATED (absent, empty, or a
 * scheme with no token). */
int auth_parse(const char *text, size_t len, struct auth_credential *out);

/* Basic only: auth_parse, then a constant-time lookup of the token in
 * tokens (which may be NULL). Bearer is AUTH_UNRECOGNIZED_SCHEME here. */
int auth_check(const struct tokens *tokens, const char *text, size_t len);

/* Where credentials are checked against; every member borrowed. */
struct auth_sources {
    const struct tokens *tokens;
    const struct roles *roles;       /* NULL: no roles defined */
    const struct jwt_keys *jwt_keys; /* NULL or empty: Bearer is not accepted */
    struct jwt_policy jwt_policy;
    struct jwt_cache *jwt_cache; /* NULL: none; verified tokens, updated by every check */
};

/* The sources a credential is checked against, as bits: what changed when
 * they are reloaded, and what an identity depends on. */
enum auth_source {
    AUTH_SOURCE_TOKENS = 1 << 0, /* the tokens file */
    AUTH_SOURCE_ROLES = 1 << 1,  /* the roles file */
    AUTH_SOURCE_KEYS = 1 << 2,   /* the JWT secrets and public keys */
};
#define AUTH_SOURCE_COUNT 3

/* Who a credential is and what it may do. Owned: auth_identity_clear. */
struct auth_identity {
    enum auth_scheme scheme;
    bool full_rights;
    struct event_patterns publish, subscribe; /* when not full_rights */
    int64_t expires;                          /* JWT exp (seconds); 0: never */
    char subject[JWT_SUBJECT_MAX + 1];        /* JWT sub, "" otherwise */
    /* AUTH_SOURCE_* bits: the sources whose change can alter this result.
     * A Basic token depends on the tokens file (and the roles file when its
     * line names roles); a JWT on the keys that verified its signature (and
     * the roles file when it has a "roles" claim), never on the tokens file. */
    unsigned depends_on;
};

/* Authenticates text at time now (seconds since the epoch). Returns
 * AUTH_OK with *out filled, or AUTH_UNAUTHENTICATED,
 * AUTH_UNRECOGNIZED_SCHEME, AUTH_TOKEN_EXPIRED (then *out is empty). */
int auth_authenticate(const struct auth_sources *sources, const char *text, size_t len, int64_t now,
                      struct auth_identity *out);

/* auth_authenticate with a bound on its cost (jwt.h; cost may be NULL):
 * with cost->public_key_refused, a public-key JWT that is not in the cache
 * is AUTH_TOO_MANY_FAILURES, unchecked; cost->public_key_checked and
 * public_key_failed tell the caller what the check cost. */
int auth_authenticate_bounded(const struct auth_sources *sources, const char *text, size_t len,
                              int64_t now, struct jwt_cost *cost, struct auth_identity *out);

bool auth_may_publish(const struct auth_identity *identity, const char *type, size_t len);
bool auth_may_subscribe(const struct auth_identity *identity, const char *type, size_t len);

void auth_identity_clear(struct auth_identity *identity);

/* The wire code of a result: "OK", "UNAUTHENTICATED", "AUTH_UNRECOGNIZED_SCHEME",
 * "TOKEN_EXPIRED", "FORBIDDEN", "TOO_MANY_AUTH_FAILURES". */
const char *auth_result_code(int result);

#endif
