/* JSON Web Tokens (RFC 7519) in the JWS compact serialisation (RFC 7515),
 * for "Authorization: Bearer <jwt>" and "authentication": "Bearer <jwt>".
 *
 * Accepted algorithms: HS256 (HMAC-SHA256 with any configured secret, so
 * keys can be rotated with an overlap), and RS256 / ES256 (P-256) with
 * configured public keys. A token's "alg" must name an algorithm for which
 * a key is configured: "none" and every other value are refused, and an
 * HS256 token is never checked against a public key (no algorithm
 * confusion). A "crit" header is refused (no extensions are understood).
 *
 * Claims: "exp" is required; "nbf" and "iat" are checked when present;
 * every time check allows leeway_s seconds of clock skew. A time claim is
 * a JSON number (integral or not) of magnitude below 2^53 (exact in a
 * double; about 285 million years): anything else, 1e300 or 1e400 (which
 * reads as infinity) included, is JWT_ERR_CLAIMS. The checks are done in
 * floating point and callers get exp as an integer, so no time computation
 * from a claim can overflow (see also jwt_end_time). "iss" and "aud"
 * must match when the verifier is configured with them ("aud" may be a
 * string or an array). Authorization claims: "roles" (array of role names),
 * "publish" and "subscribe" (arrays of event-type patterns); "sub" is the
 * subject, kept for log lines.
 *
 * Limits: JWT_MAX_LEN bytes of token, JWT_MAX_HEADER_LEN and
 * JWT_MAX_CLAIMS_LEN bytes of decoded header and claims, JWT_MAX_LIST
 * entries per array claim. Pure apart from mbedTLS's cryptography.
 */
#ifndef EVS_JWT_H
#define EVS_JWT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth/event_pattern.h"

struct jwt_cache;

#define JWT_MAX_LEN 8192
#define JWT_MAX_HEADER_LEN 1024
#define JWT_MAX_CLAIMS_LEN 4096
#define JWT_MAX_LIST 256
#define JWT_SUBJECT_MAX 128

enum jwt_status {
    JWT_OK = 0,
    JWT_ERR_MALFORMED = -1,     /* not three base64url parts, bad JSON, limits, "crit" */
    JWT_ERR_ALGORITHM = -2,     /* alg missing, "none", or not configured */
    JWT_ERR_SIGNATURE = -3,     /* no configured key verifies it */
    JWT_ERR_EXPIRED = -4,       /* exp (plus leeway) has passed */
    JWT_ERR_NOT_YET_VALID = -5, /* nbf or iat in the future (beyond leeway) */
    JWT_ERR_CLAIMS = -6,        /* exp missing, wrong types, iss/aud mismatch, bad patterns */
    JWT_ERR_NOMEM = -7,
    JWT_ERR_REFUSED = -8, /* a public-key signature left unchecked (jwt_verify_bounded) */
};

struct jwt_keys; /* configured secrets and public keys */

/* Parses the secrets file text: one HS256 secret per line, with the line
 * rules of text_lines.h (lines end at CRLF, CR or LF; blanks around a
 * secret trimmed; blank lines and '#' comments ignored); a secret shorter
 * than 32 bytes is ignored and counted in *too_short. As in the tokens
 * file, a line holding a NUL byte is ignored.
 * too_short may be NULL. Returns a new set (possibly empty) or NULL when out
 * of memory. */
struct jwt_keys *jwt_keys_parse_secrets(const char *text, size_t len, size_t *too_short);

/* A set holding the one HS256 secret secret[0..len), taken as raw bytes with
 * none of the file rules (no trimming, no minimum length): for tests and
 * known-answer vectors whose keys may hold '\n' or '#'. NULL when len is 0 or
 * out of memory. */
struct jwt_keys *jwt_keys_from_secret(const unsigned char *secret, size_t len);

/* Adds the public key in PEM file path (RSA for RS256, EC P-256 for ES256).
 * RSA keys under 2048 bits are refused (RFC 7518 §3.3). Returns 0, or -1
 * with a one-line reason in err. */
int jwt_keys_add_public_key_file(struct jwt_keys *keys, const char *path, char *err,
                                 size_t err_len);

size_t jwt_keys_secret_count(const struct jwt_keys *keys);
size_t jwt_keys_public_count(const struct jwt_keys *keys);
void jwt_keys_free(struct jwt_keys *keys);

struct jwt_policy {
    int64_t leeway_s;
    const char *issuer;   /* required "iss" when non-NULL and non-empty */
    const char *audience; /* required in "aud" when non-NULL and non-empty */
};

/* What a verified token grants. Owned by the caller: jwt_claims_clear. */
struct jwt_claims {
    int64_t exp;
    char subject[JWT_SUBJECT_MAX + 1]; /* "" when absent; control characters replaced */
    char **roles;
    size_t role_count;
    struct event_patterns publish;
    struct event_patterns subscribe;
    bool has_roles, has_publish, has_subscribe; /* which claims were present */
};

/* Verifies token[0..len) against keys at time now (seconds since the
 * epoch). On JWT_OK *claims is filled; otherwise it is left empty. *claims
 * is overwritten, not freed, on entry; claims may be NULL. */
int jwt_verify(const char *token, size_t len, const struct jwt_keys *keys,
               const struct jwt_policy *policy, int64_t now, struct jwt_claims *claims);

/* What a verification may cost, and what it did, for callers that bound
 * the work unauthenticated clients can cause. RSA and ECDSA verifications
 * cost up to a millisecond each, HMAC a few microseconds. */
struct jwt_cost {
    /* In: a public-key (RS256, ES256) signature that is not in the cache is
     * not checked; the token is JWT_ERR_REFUSED. */
    bool public_key_refused;
    /* Out: a public-key signature was checked, and it did not verify. */
    bool public_key_checked;
    bool public_key_failed;
};

/* jwt_verify with a cache of verified tokens (jwt_cache.h; NULL: none): a
 * token in the cache skips its signature check, one whose signature
 * verifies is added (also when its claims are then refused, so that
 * repeating an expired token stays cheap). cost may be NULL. */
int jwt_verify_bounded(const char *token, size_t len, const struct jwt_keys *keys,
                       struct jwt_cache *cache, const struct jwt_policy *policy, int64_t now,
                       struct jwt_cost *cost, struct jwt_claims *claims);

void jwt_claims_clear(struct jwt_claims *claims);

/* The time (seconds since the epoch) from which a token whose exp claim is
 * exp is refused: exp plus the policy's leeway (none when policy is NULL
 * or its leeway is not positive), saturated at INT64_MAX, so that a caller
 * timing a session never overflows on a far-future exp. */
int64_t jwt_end_time(int64_t exp, const struct jwt_policy *policy);

/* Signature verifications run by this process so far (a counter for the
 * metrics): one per jwt_verify call that gets as far as the cryptography,
 * whatever the result. */
uint64_t jwt_verification_count(void);

/* A short reason for a status, for log lines. */
const char *jwt_status_text(int status);

/* base64url without padding (RFC 7515 §2): decodes in[0..len) into out
 * (room for len * 3 / 4 + 1 bytes). Returns 0 with *out_len, or -1 on any
 * character outside the alphabet, '=' padding, or an impossible length. */
int jwt_base64url_decode(const char *in, size_t len, unsigned char *out, size_t *out_len);

#endif
