/* The tokens whose signature has been verified, so that a client that
 * presents the same JWT again (on every publish, on every re-init, on each
 * recheck of a live session) does not pay for another RSA or ECDSA
 * verification.
 *
 * An entry is the SHA-256 digest of the token's exact bytes: a hit means
 * that these very bytes carried a valid signature under the keys of the
 * moment, and a signature that verified once verifies again under the same
 * keys. Only the signature is vouched for: the claims (exp, nbf, iss, aud,
 * rights) are judged again at each use. Whoever changes the keys must call
 * jwt_cache_invalidate. Only verified tokens are ever inserted, so a client
 * without a key cannot fill the cache; it holds at most its capacity, the
 * least recently used entry of a set making room. Pure apart from
 * mbedTLS's SHA-256.
 */
#ifndef EVS_JWT_CACHE_H
#define EVS_JWT_CACHE_H

#include <stdbool.h>
#include <stddef.h>

#define JWT_CACHE_DIGEST_LEN 32

struct jwt_cache;

/* capacity is rounded up to a power of two times the set size. NULL when
 * out of memory. */
struct jwt_cache *jwt_cache_new(size_t capacity);
void jwt_cache_free(struct jwt_cache *cache); /* NULL: no-op */

/* The digest under which token[0..len) is cached. Returns 0, or -1 on a
 * failure of SHA-256. */
int jwt_cache_digest(const char *token, size_t len, unsigned char digest[JWT_CACHE_DIGEST_LEN]);

/* Whether digest is cached (and marks it recently used). */
bool jwt_cache_contains(struct jwt_cache *cache, const unsigned char digest[JWT_CACHE_DIGEST_LEN]);

/* Records a token whose signature verified. */
void jwt_cache_insert(struct jwt_cache *cache, const unsigned char digest[JWT_CACHE_DIGEST_LEN]);

/* Forgets every entry: the keys changed. */
void jwt_cache_invalidate(struct jwt_cache *cache);

size_t jwt_cache_count(const struct jwt_cache *cache);

#endif
